"""Batched inference for token-sequence models: length-sorted token-budget batches, swap TTA in one pass,
out-of-memory back-off, one worker per GPU, resumable results, and the transformers / Ray / vLLM back-ends.

Wiring a model that can score a padded batch takes one call:

    probs = engine_predict(forward_ids, swapped_ids, score, pad_token_id, options)

where `score(input_ids, attention_mask)` returns (rows, 3) logits (e.g. `sequence_classifier_score(model)`), and
`swapped_ids` are the same pairs with A and B exchanged (None: no swap TTA).
"""

from arenapref.infer.batching import length_order, pad_batch, plan_batches
from arenapref.infer.engine import (BACKENDS, EngineOptions, ScorerFactory, TransformersBackend, engine_predict,
                                    make_backend, predict_pairs, resolve_devices, run_engine, to_probabilities)
from arenapref.infer.store import ShardStore, fingerprint

__all__ = [
    "BACKENDS", "EngineOptions", "ScorerFactory", "ShardStore", "TransformersBackend", "engine_predict", "fingerprint",
    "length_order", "make_backend", "pad_batch", "plan_batches", "predict_pairs", "resolve_devices", "run_engine",
    "to_probabilities",
]
