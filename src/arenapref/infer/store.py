"""Results written as they are computed: one small parquet file per finished batch, keyed by row index.

A killed run loses at most the batches in flight; `resume` reads what is there and computes only the rest.
Each file is written under a temporary name and renamed, so a file that exists is whole. A manifest holds a
fingerprint of the inputs (token ids, model, settings), so a run never resumes from another run's results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from arenapref.errors import ResumeMismatch, WorkDirBusy

MANIFEST = "manifest.json"
SHARDS = "shards"
LOCK = "lock"


def fingerprint(sequences: Sequence[Sequence[int]], key: str = "") -> str:
    """A hash of every sequence (order included) and of `key` (the model and anything else that changes results)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(key.encode("utf-8", "surrogatepass"))
    h.update(np.int64(len(sequences)).tobytes())
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64)
        h.update(np.int64(len(arr)).tobytes())
        h.update(arr.tobytes())
    return h.hexdigest()


def _lock(path: Path):
    """An exclusive lock on the work dir for the life of the run: two runs writing and compacting the same shards
    would read each other's files half-deleted. The OS releases it when the process dies, so a killed run never
    leaves it behind."""
    import fcntl

    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise WorkDirBusy(f"another run is using {path.parent}; wait for it, or choose another --work-dir") from None
    return handle


def probe_work_dir(directory: str | Path) -> None:
    """Raises WorkDirBusy now, before a model loads, if another run holds `directory`."""
    lock = Path(directory) / LOCK
    if lock.exists():
        _lock(lock).close()


class ShardStore:
    """`directory/manifest.json` and `directory/shards/**/*.parquet` with columns `row`, `s0`, `s1`, ..."""

    def __init__(self, directory: str | Path, fingerprint: str, n_rows: int, n_outputs: int, resume: bool):
        self.directory = Path(directory)
        self.shard_dir = self.directory / SHARDS
        self.n_rows, self.n_outputs = n_rows, n_outputs
        self.removed = 0
        self._count = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.directory / LOCK)
        manifest = self.directory / MANIFEST
        meta = {"fingerprint": fingerprint, "rows": n_rows, "outputs": n_outputs}
        if resume and manifest.exists():
            saved = json.loads(manifest.read_text(encoding="utf-8"))
            if {k: saved.get(k) for k in meta} != meta:
                raise ResumeMismatch(
                    f"{self.directory} holds results of a different run (other inputs, model or settings); "
                    "run without --resume to start over there, or choose another --work-dir")
        else:
            if self.shard_dir.exists():
                self.removed = sum(1 for _ in self.shard_dir.rglob("*.parquet"))
                shutil.rmtree(self.shard_dir)
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.replace(tmp, manifest)
        self.shard_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Releases the work dir for another run."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def files(self) -> list[Path]:
        return sorted(self.shard_dir.rglob("*.parquet"))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of every finished row; a row written twice (a retried batch) keeps its first result."""
        import pyarrow.parquet as pq

        rows, scores = [], []
        for path in self.files():
            table = pq.read_table(path)
            rows.append(table.column("row").to_numpy())
            scores.append(np.stack([table.column(f"s{k}").to_numpy() for k in range(self.n_outputs)], axis=1))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.n_outputs))
        rows_all = np.concatenate(rows).astype(np.int64)
        scores_all = np.concatenate(scores).astype(np.float64)
        if len(rows_all) and (rows_all.min() < 0 or rows_all.max() >= self.n_rows):
            raise ResumeMismatch(f"{self.shard_dir}: row indices outside 0..{self.n_rows - 1}; the work dir is damaged")
        _, first = np.unique(rows_all, return_index=True)
        return rows_all[first], scores_all[first]

    def write(self, rows: Iterable[int], scores: np.ndarray) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = np.asarray(list(rows), dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64).reshape(len(rows), self.n_outputs)
        columns = {"row": rows} | {f"s{k}": scores[:, k] for k in range(self.n_outputs)}
        self._count += 1
        name = f"part-{time.time_ns()}-{os.getpid()}-{self._count:06d}.parquet"
        tmp = self.shard_dir / ("." + name + ".tmp")
        pq.write_table(pa.table(columns), tmp)
        os.replace(tmp, self.shard_dir / name)
        return self.shard_dir / name

    def compact(self) -> None:
        """Rewrites all shards as one file (fewer files to read on the next resume)."""
        files = self.files()
        if len(files) < 2:
            return
        rows, scores = self.load()
        merged = self.write(rows, scores)
        for path in files:
            if path != merged:
                path.unlink()
