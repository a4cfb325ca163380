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

import os
import queue as queue_module
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from arenapref.data.record import swap_labels
from arenapref.errors import SingleRowOutOfMemory
from arenapref.infer.batching import pad_batch, plan_batches
from arenapref.infer.store import ShardStore, fingerprint

BACKENDS = ("transformers", "vllm", "ray")
QUANTIZATION = ("none", "8bit", "4bit")


@dataclass
class EngineOptions:
    """How a prediction run is executed; none of these change the predictions (up to float rounding)."""

    token_budget: int = 16384  # padded tokens per batch: rows x longest row
    max_batch_rows: int = 256
    work_dir: str | Path | None = None  # results written here batch by batch; None: kept in memory only
    resume: bool = False  # continue from the results in work_dir instead of starting over
    backend: str = "transformers"
    devices: list[str] | None = None  # None: every CUDA GPU, else the CPU
    quantization: str | None = None  # "8bit" / "4bit" weights (CUDA + bitsandbytes); None: the model's setting
    progress: bool | None = None  # None: when stderr is a terminal
    description: str = "predict"
    ray_address: str | None = None  # None: a local Ray cluster on 127.0.0.1 (or the one already initialised)
    ray_workers: int | None = None  # actors; None: one per GPU, or one on CPU
    ray_rows_per_block: int = 256
    stats: dict = field(default_factory=dict)  # filled by the run: batches, oom_splits, seconds

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.token_budget < 1 or self.max_batch_rows < 1:
            raise ValueError("token_budget and max_batch_rows must be positive")
        if self.quantization not in (None, *QUANTIZATION):
            raise ValueError(f"quantization {self.quantization!r}: choose one of {', '.join(QUANTIZATION)}")
        if self.resume and self.work_dir is None:
            raise ValueError("resume needs a work dir: the results of the earlier run are read from there")


ScoreFn = Callable[..., "object"]  # (input_ids, attention_mask) int64 CPU tensors -> (rows, k) tensor


class ScorerFactory:
    """A picklable recipe for a score function on one device, for worker processes and Ray actors, which
    cannot receive a loaded model. Subclasses set `outputs` and implement `build`."""

    outputs = "logits"

    def build(self, device: str) -> ScoreFn:
        raise NotImplementedError


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_devices(devices: Sequence[str] | None) -> list[str]:
    if devices:
        return list(devices)
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


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


# --- one worker per GPU ------------------------------------------------------------------------------------
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
                    raise RuntimeError(f"worker on {dead[0][0]} died (exit code {dead[0][1]}); the finished batches are "
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


# --- running a back-end ------------------------------------------------------------------------------------
def _rate_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class PairsPerSecond(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("-- pairs/s" if speed is None else f"{speed:.1f} pairs/s")

    return PairsPerSecond()


@contextmanager
def engine_progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from arenapref.progress import console

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _rate_column(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                        disable=not enabled)
    with progress:
        yield progress


def run_engine(backend, sequences: Sequence[Sequence[int]], options: EngineOptions | None = None, key: str = "",
               n_outputs: int = 3, rows_per_pair: int = 1) -> np.ndarray:
    """Scores of every sequence, (n, n_outputs) in input order. With a work dir, finished batches are stored as
    they complete and, with `resume`, rows already there are not computed again."""
    from arenapref.progress import console, interactive

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
    enabled = interactive() if options.progress is None else options.progress
    try:
        with engine_progress(enabled and len(todo) > 0) as bar:
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


def predict_pairs(forward: Sequence[Sequence[int]], swapped: Sequence[Sequence[int]] | None, backend,
                  options: EngineOptions | None = None, key: str = "") -> np.ndarray:
    """P(A), P(B), P(tie) per pair from token ids of each pair (`forward`) and, for swap TTA, of each pair with
    A and B exchanged (`swapped`); both orders run in the same pass and are averaged."""
    n = len(forward)
    if swapped is not None and len(swapped) != n:
        raise ValueError(f"{n} pairs but {len(swapped)} swapped pairs")
    sequences = list(forward) + (list(swapped) if swapped is not None else [])
    raw = run_engine(backend, sequences, options, key, rows_per_pair=2 if swapped is not None else 1)
    probs = to_probabilities(raw, backend.outputs)
    if swapped is not None:
        probs = (probs[:n] + swap_labels(probs[n:])) / 2
    return probs


def engine_predict(forward, swapped, score: ScoreFn | ScorerFactory, pad_token_id: int,
                   options: EngineOptions | None = None, key: str = "", outputs: str | None = None) -> np.ndarray:
    """The engine for a model that can score a padded batch: `score(input_ids, attention_mask)` returning (rows, 3)
    logits (or a ScorerFactory for one worker per GPU / Ray). One row of probabilities per pair, in input order."""
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
