"""Server-side micro-batching: requests that arrive together are scored together, off the event loop.

Each request submits its items (pairs) as one job. A single worker coroutine takes the oldest job, waits at
most `max_wait_ms` (counted from when that job arrived) for more jobs to join while the batch is below
`max_batch` pairs, then scores the batch in one worker thread. Jobs that queue up while a batch is being
scored form the next batch, so under load batches grow without any waiting at all.

One thread does all the scoring: models (and the embedding cache of `embed`) are not written to be called
from several threads at once, and a model call already uses every core through its own thread pool.

A request that gives up (its `submit` is cancelled: a timeout, a client gone) is dropped at once: taken off the
queue, so it neither holds queue capacity nor delays the batch it would have joined, and, when its batch is
already running, the chunks of the batch that serve only dropped requests are skipped. Otherwise a request
that has already answered 504 would keep the one scoring thread busy and push the next request into a 504.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


class QueueFull(Exception):
    """More pairs are waiting than `max_queue_pairs` allows."""


@dataclass(eq=False)  # jobs are compared by identity (deque.remove)
class _Job:
    items: Sequence[Any]
    future: asyncio.Future
    arrived: float
    # Set on the event loop when the request gives up; read by the scoring thread between chunks.
    dropped: threading.Event = field(default_factory=threading.Event)


@dataclass
class BatchStats:
    requests: int = 0
    calls: int = 0
    pairs: int = 0
    largest_batch: int = 0
    failed_batches: int = 0
    dropped_requests: int = 0  # gave up (timed out) before their scores were ready
    skipped_pairs: int = 0  # pairs of dropped requests that were never scored

    def as_dict(self) -> dict:
        return {"requests": self.requests, "model_calls": self.calls, "pairs": self.pairs,
                "largest_batch": self.largest_batch, "failed_batches": self.failed_batches,
                "mean_batch": round(self.pairs / self.calls, 2) if self.calls else 0.0,
                "dropped_requests": self.dropped_requests, "skipped_pairs": self.skipped_pairs}


class MicroBatcher:
    """`await submit(items)` -> (len(items), k) rows of `score(items)`, in order.

    `score` is called in the worker thread with at most `max_batch` items; with `enabled=False` every job is
    scored on its own (the same thread and queue, so the two modes differ only in batching). `in_flight`, when
    given, counts the requests the server is handling; the batcher does not wait for company when all of them
    are already in the batch.
    """

    def __init__(self, score: Callable[[list], np.ndarray], *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 enabled: bool = True, max_queue: int = 8192, in_flight: Callable[[], int] | None = None):
        self.score = score
        self.in_flight = in_flight
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.enabled = enabled
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._loop = asyncio.get_running_loop()
        self._pending: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arenapref-score")
        self._worker = asyncio.create_task(self._run(), name="arenapref-batcher")

    async def stop(self) -> None:
        """Score everything already submitted, then stop the worker and its thread."""
        if self._worker is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await self._worker
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._worker = None

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        if not items:
            return np.zeros((0, 0))
        if not self.running or self._loop is not asyncio.get_running_loop():
            # Apps driven without their lifespan (httpx's ASGITransport, a TestClient outside `with`) start here.
            await self.start()
        if self._closing:
            raise RuntimeError("the server is shutting down")
        if self._queued + len(items) > self.max_queue:
            raise QueueFull(f"{self._queued} pairs are waiting to be scored; the limit is {self.max_queue} (max_queue_pairs)")
        future = self._loop.create_future()
        job = _Job(list(items), future, self._loop.time())
        self._pending.append(job)
        self._queued += len(items)
        self.stats.requests += 1
        self._wakeup.set()
        try:
            return await future
        except asyncio.CancelledError:
            self._drop(job)
            raise

    def _drop(self, job: _Job) -> None:
        """The request gave up: forget its work (see the module docstring)."""
        job.dropped.set()
        self.stats.dropped_requests += 1
        try:
            self._pending.remove(job)
        except ValueError:
            return  # already taken into a batch: its chunks are skipped when nothing else needs them
        self._queued -= len(job.items)
        self.stats.skipped_pairs += len(job.items)

    # --- the worker -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            jobs = await self._collect()
            gave_up = [j for j in jobs if j.dropped.is_set()]  # while the batch was being collected
            self.stats.skipped_pairs += sum(len(j.items) for j in gave_up)
            jobs = [j for j in jobs if not j.dropped.is_set()]
            if jobs:
                await self._score(jobs)

    def _pop(self) -> _Job:
        job = self._pending.popleft()
        self._queued -= len(job.items)
        return job

    async def _collect(self) -> list[_Job]:
        jobs = [self._pop()]
        if not self.enabled:
            return jobs
        n = len(jobs[0].items)
        deadline = jobs[0].arrived + self.max_wait
        while n < self.max_batch:
            while self._pending and n + len(self._pending[0].items) <= self.max_batch:
                jobs.append(self._pop())
                n += len(jobs[-1].items)
            remaining = deadline - self._loop.time()
            if n >= self.max_batch or self._pending or self._closing or remaining <= 0:
                break  # full, or the next job does not fit, or the wait is over
            if self.in_flight is not None and self.in_flight() <= len(jobs):
                break  # no other request is on its way: waiting would only add latency
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return jobs

    async def _score(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        owners = [job for job in jobs for _ in job.items]
        try:
            rows = await self._loop.run_in_executor(self._executor, self._score_chunks, items, owners)
        except Exception as e:
            self.stats.failed_batches += 1
            if len(jobs) > 1:
                # Score the requests one by one, so that one bad request fails alone.
                for job in jobs:
                    if not job.dropped.is_set():
                        await self._score([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        start = 0
        for job in jobs:
            end = start + len(job.items)
            if not job.future.done():
                job.future.set_result(rows[start:end])
            start = end

    def _score_chunks(self, items: list, owners: list[_Job]) -> np.ndarray:
        """Runs in the scoring thread. A chunk whose requests have all given up is not scored (its rows stay
        NaN, and no one receives them)."""
        out = None
        for i in range(0, len(items), self.max_batch):
            chunk = items[i:i + self.max_batch]
            if all(job.dropped.is_set() for job in owners[i:i + self.max_batch]):
                self.stats.skipped_pairs += len(chunk)
                continue
            rows = np.asarray(self.score(chunk), dtype=float)
            if len(rows) != len(chunk):
                raise RuntimeError(f"scoring {len(chunk)} items returned {len(rows)} rows")
            if out is None:
                out = np.full((len(items), *rows.shape[1:]), np.nan)
            out[i:i + len(chunk)] = rows
            self.stats.calls += 1
            self.stats.pairs += len(chunk)
            self.stats.largest_batch = max(self.stats.largest_batch, len(chunk))
        return out if out is not None else np.full((len(items), 0), np.nan)
