"""The local back-end: score functions run in this process, or one spawned worker process per GPU; batches that
run out of memory are halved and retried."""

from __future__ import annotations

import os
import queue as queue_module
import traceback
from collections import deque
from typing import Callable, Mapping, Sequence

import numpy as np

from arenapref.errors import DeviceError, SingleRowOutOfMemory
from arenapref.infer.batching import pad_batch, plan_batches
from arenapref.infer.options import (
    EngineOptions,
    ScoreFn,
    ScorerFactory,
    resolve_devices,
)


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_batches(batches: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]] | Mapping[int, Sequence[int]],
                  score: ScoreFn, pad_token_id: int, sink: Callable, stats: dict | None = None) -> None:
    """Runs `score` on each batch (rows longest first) and passes (rows, scores) to `sink`. A batch that runs out
    of memory is split in two and both halves go back to the front of the queue; from then on a batch with more
    than half the padded tokens of the one that failed is split before it runs."""
    import torch

    stats = stats if stats is not None else {}
    stats.setdefault("batches", 0)
    stats.setdefault("oom_splits", 0)
    limit = stats.get("oom_limit", float("inf"))  # kept in stats so a worker remembers it across calls
    todo = deque(np.asarray(b, dtype=np.int64) for b in batches if len(b))
    while todo:
        rows = todo.popleft()
        width = max(len(sequences[int(i)]) for i in rows)
        if len(rows) > 1 and len(rows) * width > limit:
            half = (len(rows) + 1) // 2
            todo.extendleft([rows[half:], rows[:half]])
            continue
        ids, mask = pad_batch(sequences, [int(i) for i in rows], pad_token_id)
        try:
            with torch.inference_mode():
                out = score(ids, mask)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled; the rest re-raise
            if not is_oom(exc):
                raise
            del exc  # its traceback's frames hold the failed batch's tensors: free them before retrying
            _free_memory()
            if len(rows) == 1:
                raise SingleRowOutOfMemory(
                    f"one sequence of {width} tokens does not fit in memory even alone; lower the model's "
                    "max_length, use quantization (8bit/4bit on CUDA), or a device with more memory") from None
            # the next batches get half of what failed: one failure per halving, none after the first success
            limit = stats["oom_limit"] = min(limit, len(rows) * width // 2)
            stats["oom_splits"] += 1
            half = (len(rows) + 1) // 2
            todo.extendleft([rows[half:], rows[:half]])
            continue
        scores = out.detach().to("cpu", dtype=torch.float64).numpy()
        if scores.shape[0] != len(rows):
            raise RuntimeError(f"the score function returned {scores.shape[0]} rows for a batch of {len(rows)}")
        stats["batches"] += 1
        sink(rows, scores)


# --- in this process, or one worker per GPU -------------------------------------------------------------
class TransformersBackend:
    """Runs a score function in this process, or a `ScorerFactory` in one worker process per device."""

    name = "transformers"

    def __init__(self, scorer: ScoreFn | ScorerFactory, pad_token_id: int, options: EngineOptions | None = None,
                 outputs: str | None = None):
        self.scorer = scorer
        self.pad_token_id = pad_token_id
        self.options = options or EngineOptions()
        self.outputs = outputs or getattr(scorer, "outputs", "logits")

    def run(self, sequences: Sequence[Sequence[int]], rows: np.ndarray, sink: Callable) -> None:
        opts = self.options
        batches = plan_batches(sequences, opts.token_budget, opts.max_batch_rows, rows=rows)
        if isinstance(self.scorer, ScorerFactory):
            devices = resolve_devices(opts.devices)
            if len(devices) > 1:
                return run_workers(self.scorer, devices, sequences, batches, self.pad_token_id, sink, opts.stats)
            score = self.scorer.build(devices[0])
        else:
            score = self.scorer
        score_batches(batches, sequences, score, self.pad_token_id, sink, opts.stats)


def _worker_main(factory: ScorerFactory, device: str, n_workers: int, pad_token_id: int, tasks, results) -> None:
    try:
        import torch

        if device == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        score = factory.build(device)
        stats: dict = {"batches": 0, "oom_splits": 0}
        while True:
            task = tasks.get()
            if task is None:
                break
            rows, seqs = task
            before = (stats["batches"], stats["oom_splits"])
            score_batches([rows], dict(zip(rows.tolist(), seqs)), score, pad_token_id,
                          lambda r, s: results.put(("ok", r, s)), stats)
            results.put(("stats", stats["batches"] - before[0], stats["oom_splits"] - before[1]))
        results.put(("done", device))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", device, traceback.format_exc()))


def run_workers(factory: ScorerFactory, devices: Sequence[str], sequences, batches, pad_token_id: int, sink: Callable,
                stats: dict | None = None) -> None:
    """Worker processes (spawned: CUDA cannot be forked), one per device, pulling batches from one queue, so a
    faster GPU takes more of them; the parent writes the results."""
    import torch.multiprocessing as mp

    stats = stats if stats is not None else {}
    stats.setdefault("batches", 0)
    stats.setdefault("oom_splits", 0)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for b in batches:
        tasks.put((b, [list(sequences[int(i)]) for i in b]))
    for _ in devices:
        tasks.put(None)
    procs = [ctx.Process(target=_worker_main, args=(factory, d, len(devices), pad_token_id, tasks, results), daemon=True)
             for d in devices]
    for p in procs:
        p.start()
    finished = 0
    try:
        while finished < len(procs):
            try:
                msg = results.get(timeout=1.0)
            except queue_module.Empty:
                dead = [(d, p.exitcode) for d, p in zip(devices, procs) if p.exitcode not in (None, 0)]
                if dead:
                    raise DeviceError(f"worker on {dead[0][0]} died (exit code {dead[0][1]}); the finished batches are "
                                       "kept when a work dir is set: run again with --resume")
                continue
            if msg[0] == "ok":
                sink(msg[1], msg[2])
            elif msg[0] == "stats":
                stats["batches"] += msg[1]
                stats["oom_splits"] += msg[2]
            elif msg[0] == "done":
                finished += 1
            else:
                raise RuntimeError(f"worker on {msg[1]} failed:\n{msg[2]}")
    finally:
        for p in procs:
            p.join(timeout=5 if finished == len(procs) else 0.1)
            if p.is_alive():
                p.terminate()


