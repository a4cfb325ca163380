"""The inference engine for token-sequence models: one row per input sequence, in input order.

Sequences are tokenized by the model (once, both A/B orders), then sorted by length and cut into batches by a
budget of padded tokens rather than a fixed row count. A batch that runs out of memory is halved and retried,
and later batches that large are split before they run. Results go to a `ShardStore` batch by batch when a work
dir is given, so a killed run resumes where it stopped. With several GPUs one worker process per GPU pulls
batches from a shared queue.

A back-end turns sequences into scores: `TransformersBackend` (here), `RayBackend` (infer/ray_backend.py),
`VLLMBackend` (infer/vllm_backend.py). Each has `name`, `outputs` ("logits", "logprobs" or "probs") and
`run(sequences, rows, sink)`, which scores `rows` and hands each finished batch to `sink(rows, scores)`.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from arenapref.data.record import swap_average
from arenapref.infer.local import TransformersBackend
from arenapref.infer.options import (
    EngineOptions,
    ScoreFn,
    ScorerFactory,
    resolve_devices,
)
from arenapref.infer.store import ShardStore, fingerprint
from arenapref.progress import console, progress_bar


def run_engine(backend, sequences: Sequence[Sequence[int]], options: EngineOptions | None = None, key: str = "",
               n_outputs: int = 3, rows_per_pair: int = 1) -> np.ndarray:
    """Scores of every sequence, (n, n_outputs) in input order. With a work dir, finished batches are stored as
    they complete and, with `resume`, rows already there are not computed again."""
    options = options or getattr(backend, "options", None) or EngineOptions()
    n = len(sequences)
    out = np.zeros((n, n_outputs))
    done = np.zeros(n, dtype=bool)
    store = None
    start = time.perf_counter()
    if options.work_dir is not None and n:
        store = ShardStore(options.work_dir, fingerprint(sequences, key), n, n_outputs, options.resume)
        if store.removed:
            console.print(f"[yellow]removed {store.removed} result file(s) of an earlier run in {options.work_dir} "
                          "(pass --resume to continue a run instead)[/]")
        rows, scores = store.load()
        out[rows], done[rows] = scores, True
    options.stats.update(resumed_rows=int(done.sum()), rows=n)
    todo = np.flatnonzero(~done)
    try:
        with progress_bar(options.progress if len(todo) else False, rate="pairs") as bar:
            task = bar.add_task(options.description, total=n / rows_per_pair, completed=done.sum() / rows_per_pair)

            def sink(rows, scores):
                rows = np.asarray(rows, dtype=np.int64)
                scores = np.asarray(scores, dtype=np.float64).reshape(len(rows), n_outputs)
                if store is not None:
                    store.write(rows, scores)
                out[rows], done[rows] = scores, True
                bar.advance(task, len(rows) / rows_per_pair)

            if len(todo):
                backend.run(sequences, todo, sink)
        if not done.all():
            raise RuntimeError(f"the {getattr(backend, 'name', 'engine')} back-end left {int((~done).sum())} of {n} "
                               f"rows unscored, first at row {int(np.flatnonzero(~done)[0])}")
        if store is not None:
            store.compact()
    finally:
        if store is not None:
            store.close()
    options.stats["seconds"] = time.perf_counter() - start
    return out


def to_probabilities(scores: np.ndarray, outputs: str) -> np.ndarray:
    """Logits or log-probabilities of the label classes -> softmax over them; probabilities -> renormalised."""
    scores = np.asarray(scores, dtype=np.float64)
    if outputs in ("logits", "logprobs"):
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    if outputs == "probs":
        return scores / scores.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown output kind {outputs!r}")


def score_orders(forward: Sequence[Sequence[int]], swapped: Sequence[Sequence[int]] | None, backend,
                 options: EngineOptions | None = None, key: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """P(A), P(B), P(tie) of each pair as given (`forward`) and, when `swapped` is given, of each pair with A and
    B exchanged (in that order's own columns: not yet mapped back). Both orders run in the same pass."""
    n = len(forward)
    if swapped is not None and len(swapped) != n:
        raise ValueError(f"{n} pairs but {len(swapped)} swapped pairs")
    sequences = list(forward) + (list(swapped) if swapped is not None else [])
    # Each distinct sequence is scored once: a pair that occurs twice (or is another pair's swap) costs nothing
    # more, and identical sequences get identical scores whatever batch they would have landed in, which keeps
    # swap TTA exactly equivariant on data with duplicates.
    index: dict[tuple[int, ...], int] = {}
    inverse = np.fromiter((index.setdefault(tuple(s), len(index)) for s in sequences), dtype=np.int64,
                          count=len(sequences))
    unique = [list(k) for k in index]
    raw = run_engine(backend, unique, options, key, rows_per_pair=len(unique) / max(n, 1))[inverse]
    probs = to_probabilities(raw, backend.outputs)
    return (probs[:n], probs[n:]) if swapped is not None else (probs, None)


def predict_pairs(forward: Sequence[Sequence[int]], swapped: Sequence[Sequence[int]] | None, backend,
                  options: EngineOptions | None = None, key: str = "") -> np.ndarray:
    """P(A), P(B), P(tie) per pair; with `swapped`, the swap-TTA mean of both orders (one pass).

    Args:
        forward: token ids of each pair as given.
        swapped: token ids of each pair with A and B exchanged, or None (no swap TTA).
        backend: from `make_backend` (transformers, ray or vllm).
        options: batching, work dir and resume (EngineOptions).
        key: what besides the token ids decides the scores (the model), so --resume never mixes runs.
    Returns:
        (n, 3) probabilities in input order.
    """
    probs, back = score_orders(forward, swapped, backend, options, key)
    return probs if back is None else swap_average(probs, back)


def engine_predict(forward, swapped, score: ScoreFn | ScorerFactory, pad_token_id: int,
                   options: EngineOptions | None = None, key: str = "", outputs: str | None = None) -> np.ndarray:
    """The engine for a model that can score a padded batch: `score(input_ids, attention_mask)` returning (rows, 3)
    logits (or a ScorerFactory for one worker per GPU / Ray). One row of probabilities per pair, in input order.

    >>> probs = engine_predict(forward_ids, swapped_ids, sequence_classifier_score(model), pad_id,
    ...                        EngineOptions(token_budget=16384, work_dir="parts"))  # doctest: +SKIP
    """
    options = options or EngineOptions()
    return predict_pairs(forward, swapped, make_backend(options, pad_token_id, score=score, outputs=outputs), options, key)


def make_backend(options: EngineOptions, pad_token_id: int, score: ScoreFn | None = None,
                 factory: ScorerFactory | None = None, vllm: dict | None = None, outputs: str | None = None):
    """The back-end `options.backend` names. `score`/`factory` serve transformers and ray; ray needs a factory
    (its actors load the model themselves); vllm needs `vllm=dict(model=..., mode=..., ...)` (VLLMBackend)."""
    if isinstance(score, ScorerFactory):
        score, factory = None, score
    if options.backend == "transformers":
        multi = factory is not None and len(resolve_devices(options.devices)) > 1
        chosen = factory if (multi or score is None) else score
        if chosen is None:
            raise ValueError("the transformers back-end needs a score function or a ScorerFactory")
        return TransformersBackend(chosen, pad_token_id, options, outputs)
    if options.backend == "ray":
        if factory is None:
            raise ValueError("this model cannot run on the ray back-end: its actors need a ScorerFactory to load it")
        from arenapref.infer.ray_backend import RayBackend

        return RayBackend(factory, pad_token_id, options, outputs)
    if vllm is None:
        raise ValueError("this model cannot run on the vllm back-end")
    from arenapref.infer.vllm_backend import VLLMBackend

    return VLLMBackend(options=options, **vllm)
