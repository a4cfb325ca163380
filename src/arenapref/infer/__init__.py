"""Batched inference for token-sequence models: length-sorted token-budget batches, swap TTA in one pass,
out-of-memory back-off, one worker per GPU, resumable results, and the transformers / Ray / vLLM back-ends.

The engine knows token ids and score functions, never models: a sequence model (models/base.SequenceModel) hands
it its sequences and a scorer. Wiring anything that can score a padded batch takes one call:

    probs = engine_predict(forward_ids, swapped_ids, score, pad_token_id, options)

where `score(input_ids, attention_mask)` returns (rows, 3) logits (e.g. `sequence_classifier_score(model)`), and
`swapped_ids` are the same pairs with A and B exchanged (None: no swap TTA).
"""

from arenapref.infer.batching import length_order, pad_batch, plan_batches
from arenapref.infer.engine import (
                                    engine_predict,
                                    make_backend,
                                    predict_pairs,
                                    run_engine,
                                    score_orders,
                                    to_probabilities,
)
from arenapref.infer.local import TransformersBackend
from arenapref.infer.options import (
                                    BACKENDS,
                                    EngineOptions,
                                    ScorerFactory,
                                    resolve_devices,
)
from arenapref.infer.store import ShardStore, fingerprint

__all__ = [
    "BACKENDS", "EngineOptions", "ScorerFactory", "ShardStore", "TransformersBackend", "engine_predict", "fingerprint",
    "length_order", "make_backend", "pad_batch", "plan_batches", "predict_pairs", "resolve_devices", "run_engine",
    "score_orders", "to_probabilities",
]
