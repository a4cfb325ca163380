"""The `ray` back-end: Ray Data over a pool of actors, one per GPU (or CPU workers), each running the local engine
(token-budget batches, out-of-memory back-off) on the blocks it is given.

Inputs go to parquet shards (row, input_ids), longest rows first so each block holds similar lengths; Ray Data
reads them, the actors score them, and the driver streams the results into the run's `ShardStore`, so progress
and `--resume` work as with the local back-end. Without `ray_address` a local cluster is started on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from arenapref.errors import require_extra
from arenapref.infer.batching import length_order, plan_batches
from arenapref.infer.local import score_batches
from arenapref.infer.options import EngineOptions, ScorerFactory


def need_ray():
    require_extra("ray", "ray", "ray.data", what="the ray back-end")
    import ray

    return ray


class RayScorer:
    """A Ray Data actor: builds the score function once, then scores blocks of (row, input_ids)."""

    def __init__(self, factory: ScorerFactory, pad_token_id: int, token_budget: int, max_batch_rows: int,
                 use_gpu: bool, cpus: int = 1):
        import torch

        if not use_gpu:
            torch.set_num_threads(max(1, cpus))
        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU, so it is always device 0 here
        self.score = factory.build("cuda:0" if use_gpu else "cpu")
        self.pad_token_id, self.token_budget, self.max_batch_rows = pad_token_id, token_budget, max_batch_rows

    def __call__(self, batch: dict) -> dict:
        rows = np.asarray(batch["row"], dtype=np.int64)
        local = {int(r): [int(t) for t in ids] for r, ids in zip(rows, batch["input_ids"])}
        found: dict[int, np.ndarray] = {}

        def sink(done_rows, scores):
            found.update(zip(done_rows.tolist(), scores))

        batches = plan_batches(local, self.token_budget, self.max_batch_rows, rows=list(local))
        score_batches(batches, local, self.score, self.pad_token_id, sink)
        scores = np.stack([found[int(r)] for r in rows])
        return {"row": rows} | {f"s{k}": scores[:, k] for k in range(scores.shape[1])}


class RayBackend:
    name = "ray"

    def __init__(self, factory: ScorerFactory, pad_token_id: int, options: EngineOptions | None = None,
                 outputs: str | None = None):
        self.factory = factory
        self.pad_token_id = pad_token_id
        self.options = options or EngineOptions(backend="ray")
        self.outputs = outputs or factory.outputs

    def _connect(self):
        ray = need_ray()
        if ray.is_initialized():
            return ray, False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # runs are offline
        if self.options.ray_address:
            ray.init(address=self.options.ray_address, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
        return ray, True

    def _write_inputs(self, sequences: Sequence[Sequence[int]], rows: np.ndarray, folder: Path) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        order = length_order(sequences, rows.tolist())
        step = self.options.ray_rows_per_block
        files = 0
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            table = pa.table({"row": pa.array(chunk, pa.int64()),
                              "input_ids": pa.array([list(map(int, sequences[i])) for i in chunk], pa.list_(pa.int64()))})
            pq.write_table(table, folder / f"input-{files:06d}.parquet")
            files += 1
        return files

    def run(self, sequences: Sequence[Sequence[int]], rows: np.ndarray, sink: Callable) -> None:
        ray, started = self._connect()
        base = Path(self.options.work_dir) if self.options.work_dir is not None else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="ray-input-", dir=base))
        try:
            self._write_inputs(sequences, rows, folder)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the engine shows its own
            gpus = int(ray.cluster_resources().get("GPU", 0))
            workers = self.options.ray_workers or max(gpus, 1)
            ds = ray.data.read_parquet(str(folder))
            ds = ds.map_batches(
                RayScorer, batch_size=self.options.ray_rows_per_block, batch_format="numpy", concurrency=workers,
                num_gpus=1 if gpus else 0, num_cpus=1,
                fn_constructor_kwargs=dict(factory=self.factory, pad_token_id=self.pad_token_id,
                                           token_budget=self.options.token_budget,
                                           max_batch_rows=self.options.max_batch_rows, use_gpu=bool(gpus)))
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                n_out = len([k for k in batch if k.startswith("s")])
                sink(batch["row"], np.stack([batch[f"s{k}"] for k in range(n_out)], axis=1))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if started:
                ray.shutdown()
