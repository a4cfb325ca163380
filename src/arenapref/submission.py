"""Competition submissions: writing them, and grading them the way the Kaggle grader does."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.data.record import LABELS
from arenapref.errors import SubmissionError
from arenapref.files import write_frame
from arenapref.metrics import check_probabilities, log_loss

SUBMISSION_COLUMNS = ("id", *LABELS)




def write_submission(ids: Sequence[str], probs: np.ndarray, path: str | Path) -> Path:
    """id,winner_model_a,winner_model_b,winner_tie: one row per id, in the given order. Written to a temporary
    sibling and moved into place, so an existing submission survives a failed write intact."""
    probs = check_probabilities(probs, len(ids), "submission")
    if len(set(ids)) != len(ids):
        raise SubmissionError("submission ids are not unique")
    df = pd.DataFrame({"id": list(ids), **{c: probs[:, k] for k, c in enumerate(LABELS)}})
    return write_frame(df, path, "submission", float_format="%.9g")


def _read(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SubmissionError(f"{what} {path}: cannot read as CSV ({e})") from None


def grade(submission: str | Path, solution: str | Path, sum_tolerance: float = 1e-3) -> dict:
    """Check a submission against a solution file (any CSV with id and the three winner columns) and score it.

    Checks, in order: columns, row count, ids (unique, none missing, none extra), values numeric, finite and in
    [0, 1], rows summing to 1 within `sum_tolerance`; then the log loss (rows renormalised and clipped, as
    sklearn.metrics.log_loss does in the competition metric) and accuracy.
    """
    sub_path, sol_path = Path(submission), Path(solution)
    sub, sol = _read(sub_path, "submission"), _read(sol_path, "solution")
    missing = [c for c in SUBMISSION_COLUMNS if c not in sub.columns]
    if missing:
        raise SubmissionError(f"submission {sub_path}: missing column(s) {missing}; expected {list(SUBMISSION_COLUMNS)}, got {list(sub.columns)}")
    missing = [c for c in SUBMISSION_COLUMNS if c not in sol.columns]
    if missing:
        raise SubmissionError(f"solution {sol_path}: missing column(s) {missing}")
    if len(sub) != len(sol):
        raise SubmissionError(f"submission has {len(sub)} rows, solution has {len(sol)}: need exactly one row per test id")
    dup = sub["id"][sub["id"].duplicated()].tolist()
    if dup:
        raise SubmissionError(f"submission repeats id(s) {dup[:5]}")
    extra = sorted(set(sub["id"]) - set(sol["id"]))
    absent = sorted(set(sol["id"]) - set(sub["id"]))
    if extra or absent:
        raise SubmissionError(f"submission ids differ from the solution: missing {absent[:5]} ({len(absent)}), unknown {extra[:5]} ({len(extra)})")
    sub = sub.set_index("id").loc[sol["id"]]
    values = sub[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise SubmissionError(f"non-numeric or non-finite probabilities for id(s) {sub.index[bad][:5].tolist()}")
    bad = ((values < 0) | (values > 1)).any(axis=1)
    if bad.any():
        raise SubmissionError(f"probabilities outside [0, 1] for id(s) {sub.index[bad][:5].tolist()}")
    sums = values.sum(axis=1)
    bad = np.abs(sums - 1) > sum_tolerance
    if bad.any():
        raise SubmissionError(f"rows must sum to 1 (±{sum_tolerance}); id(s) {sub.index[bad][:5].tolist()} sum to {np.round(sums[bad][:5], 4).tolist()}")
    y = sol[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(y).all() or not np.allclose(y.sum(axis=1), 1):
        raise SubmissionError(f"solution {sol_path}: label columns must be one-hot per row")
    return {"rows": len(sol), "log_loss": log_loss(y, values), "accuracy": float((y.argmax(1) == values.argmax(1)).mean())}
