"""Teacher -> student distillation through soft labels.

A teacher's probabilities become each row's `soft_label` in arenapref's canonical file (the columns
`data.io.write_pairs` writes; hard labels are kept where the rows have them), and `arenapref train` on that file
trains a student on them: every family trains on `soft_label` when a row has one (LightGBM as one weighted copy
of the row per class, the transformer and judge families with soft cross-entropy).

Two ways to get teacher labels (both write the same file):
- `arenapref predict TEACHER DATA --soft-labels -o teacher.csv`: a trained teacher labels any rows, e.g.
  unlabelled ones (pseudo-labels); on the teacher's own training rows these labels are over-confident.
- `arenapref cv DATA --model TEACHER_FAMILY --save-oof-soft teacher.csv`: out-of-fold labels of the training rows
  themselves, each from a teacher that did not see the row's prompt, which is how distillation sets were built
  for the LMSYS Kaggle competition.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.io import write_pairs
from arenapref.data.record import PairRecord
from arenapref.errors import OutputError, UsageError
from arenapref.files import output_error

SOFT_LABEL_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")


def with_soft_labels(records: Sequence[PairRecord], probs: np.ndarray) -> list[PairRecord]:
    """The records with `probs` (one row per record, in order) as their soft labels; hard labels are kept.

    Raises:
        UsageError: probs is not (len(records), 3) finite rows summing to 1.
    """
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(records), 3):
        raise UsageError(f"teacher probabilities have shape {probs.shape}; expected ({len(records)}, 3)")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1, atol=1e-6):
        raise UsageError("teacher probabilities must be finite, non-negative and sum to 1 per row")
    probs = probs / probs.sum(axis=1, keepdims=True)
    return [replace(r, soft_label=(float(p[0]), float(p[1]), float(p[2]))) for r, p in zip(records, probs)]


def check_soft_label_path(path: Path) -> None:
    if not str(path).lower().endswith(SOFT_LABEL_SUFFIXES):
        raise UsageError(f"{path}: soft labels are written as arenapref's canonical file; name it .csv, .parquet or "
                         ".jsonl")


def write_soft_labels(records: Sequence[PairRecord], probs: np.ndarray, path: str | Path) -> Path:
    """Writes the canonical file (CSV, parquet or JSONL by the name) with the teacher's probabilities as soft
    labels, whole or not at all (a temporary file in the same folder, moved into place)."""
    path = Path(path)
    check_soft_label_path(path)
    labelled = with_soft_labels(records, probs)
    if path.is_dir():
        raise OutputError(f"cannot write soft labels {path}: it is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            staged = write_pairs(labelled, Path(tmp) / path.name)  # the suffix tells write_pairs the format
            os.replace(staged, path)
    except OSError as e:
        raise output_error(path, e, "soft labels") from None
    return path
