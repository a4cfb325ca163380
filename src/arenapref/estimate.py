"""How long a prediction run will take on this machine with these settings, from a timed sample.

For engine models: tokenize a random sample (timed: tokenization time per row), take its lengths as the length
distribution of the whole file and plan the full run's batches from it (padded tokens in all), then score a
smaller sample spread over the length range with the same token budget, after one warm-up batch, and project
seconds per padded token onto the full plan. Attention grows faster than linearly with length, so a file much
longer than the sample's rows is underestimated; the sample is spread over lengths to keep that small.
Other models: time predict_proba on a sample and scale by rows.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from arenapref.data.record import PairRecord
from arenapref.errors import UsageError
from arenapref.infer.batching import cut_batches, plan_batches
from arenapref.infer.engine import run_engine
from arenapref.infer.local import TransformersBackend
from arenapref.infer.options import EngineOptions, resolve_devices
from arenapref.models.base import PairModel, SequenceModel


@dataclass
class Estimate:
    rows: int
    sample_rows: int
    timed_rows: int
    swap_tta: bool
    backend: str
    hardware: str
    settings: dict
    load_seconds: float = 0.0
    tokenize_seconds: float = 0.0  # projected, whole file
    score_seconds: float = 0.0  # projected, whole file
    pairs_per_second: float = 0.0  # measured on the timed sample
    tokens_per_second: float = 0.0  # real (unpadded) tokens, measured
    mean_tokens: float = 0.0
    padded_tokens: int = 0  # the whole file's plan
    batches: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.load_seconds + self.tokenize_seconds + self.score_seconds

    def to_dict(self) -> dict:
        return asdict(self) | {"total_seconds": self.total_seconds}


def hardware() -> str:
    import os

    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"{len(names)} x {names[0]}"
    return f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def spread_sample(lengths: Sequence[int], k: int) -> np.ndarray:
    """k indices spread evenly over the sorted lengths (shortest to longest)."""
    order = np.argsort(lengths, kind="stable")
    if k >= len(order):
        return order
    return order[np.linspace(0, len(order) - 1, k).round().astype(int)]


def estimate_run(model: PairModel, records: Sequence[PairRecord], options: EngineOptions | None = None,
                 swap_tta: bool = True, timed_rows: int = 32, tokenize_rows: int = 512, seed: int = 0) -> Estimate:
    """How long `predict` of `model` on `records` takes here with `options`: a sequence model's run is planned
    batch by batch from a tokenized sample and timed on a sample spread over the lengths; a tabular model is timed
    on a sample and scaled by rows."""
    n = len(records)
    if n == 0:
        raise UsageError("no rows to estimate")
    if options is None:
        options = model.engine_options(progress=False) if isinstance(model, SequenceModel) else EngineOptions(progress=False)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, tokenize_rows), replace=False)
    est = Estimate(rows=n, sample_rows=len(sample), timed_rows=0, swap_tta=swap_tta, backend=options.backend,
                   hardware=hardware(), settings={"token_budget": options.token_budget,
                                                  "max_batch_rows": options.max_batch_rows,
                                                  "devices": resolve_devices(options.devices),
                                                  "quantization": options.quantization})
    sample_records = [records[i] for i in sample]
    if not isinstance(model, SequenceModel):
        return _estimate_plain(model, records, sample_records, swap_tta, timed_rows, est)
    if options.backend != "transformers":
        est.notes.append(f"measured with the transformers back-end: {options.backend} is not timed here")
    start = time.perf_counter()
    model.sequences(sample_records[:1], swap_tta)  # loads the tokenizer: not part of the per-row time
    est.load_seconds += time.perf_counter() - start
    start = time.perf_counter()
    forward, swapped = model.sequences(sample_records, swap_tta)
    est.tokenize_seconds = (time.perf_counter() - start) * n / len(sample)
    orders = 2 if swapped is not None else 1
    lengths = [len(s) for s in forward] + [len(s) for s in (swapped or [])]
    est.mean_tokens = float(np.mean(lengths)) * orders
    full = np.sort(np.resize(np.asarray(lengths), n * orders))[::-1]  # the sample's lengths, as many as the file has
    plan = cut_batches(np.arange(len(full)), full, options.token_budget, options.max_batch_rows)
    est.padded_tokens = int(sum(len(b) * int(full[b[0]]) for b in plan))
    est.batches = len(plan)

    start = time.perf_counter()
    score = model.score_function(resolve_devices(options.devices)[0], options.quantization)
    est.load_seconds += time.perf_counter() - start
    pick = spread_sample([len(s) for s in forward], min(timed_rows, len(forward)))
    seqs = [forward[i] for i in pick] + ([swapped[i] for i in pick] if swapped is not None else [])
    pad = model.pad_token_id
    quiet = EngineOptions(token_budget=options.token_budget, max_batch_rows=options.max_batch_rows, progress=False)
    warm = plan_batches(seqs, options.token_budget, options.max_batch_rows)[-1]  # the shortest batch
    run_engine(TransformersBackend(score, pad, quiet), [seqs[int(i)] for i in warm], quiet)
    timed = plan_batches(seqs, options.token_budget, options.max_batch_rows)
    timed_padded = sum(len(b) * len(seqs[int(b[0])]) for b in timed)
    start = time.perf_counter()
    run_engine(TransformersBackend(score, pad, quiet), seqs, quiet)
    seconds = time.perf_counter() - start
    workers = len(resolve_devices(options.devices))
    est.timed_rows = len(pick)
    est.pairs_per_second = len(pick) / seconds
    est.tokens_per_second = sum(map(len, seqs)) / seconds
    est.score_seconds = seconds / timed_padded * est.padded_tokens / workers
    if workers > 1:
        est.notes.append(f"timed on one device and divided by {workers} workers")
    return est


def _estimate_plain(model, records, sample_records, swap_tta, timed_rows, est: Estimate) -> Estimate:
    k = min(len(sample_records), max(timed_rows, 64))
    model.predict_proba(sample_records[:2], swap_tta=swap_tta)  # warm-up: lazy loading, caches
    start = time.perf_counter()
    model.predict_proba(sample_records[:k], swap_tta=swap_tta)
    seconds = time.perf_counter() - start
    est.timed_rows = k
    est.pairs_per_second = k / seconds
    est.score_seconds = seconds * len(records) / k
    est.settings = {}  # the engine's settings do not apply
    est.notes.append(f"the {model.family} model predicts directly, not on the engine: predict_proba timed on {k} "
                     "rows and scaled")
    return est
