"""Competition submissions: writing them, and grading them by the rules of the competition's grader.

The rules are those of the LMSYS Chatbot Arena grader in openai/mle-bench
(`mlebench/competitions/lmsys-chatbot-arena/grade.py`, with `mlebench/competitions/utils.py`,
`mlebench/grade_helpers.py` and `read_csv` in `mlebench/utils.py`), restated here:

- Both files are read by pandas with its own type inference (ids that are all integers are compared as
  integers, an empty or "NaN" cell is NaN) and exact float parsing.
- The submission needs the columns id, winner_model_a, winner_model_b, winner_tie; others are ignored.
- It needs exactly as many rows as the solution.
- Every probability must lie in [0, 1]; NaN and infinity fail this check, and so does text.
- Each row's sum, rounded to 6 decimals, must equal 1: |sum - 1| below about 5e-7. 0.9995, 1.0005 and a row
  of three 0.333333 (sum 0.999999) are all rejected; 1/3 written with 7 or more digits passes.
- Sorted by id, the submission's ids must equal the solution's, one for one: so row order does not matter,
  and a repeated id (which leaves another one missing) is rejected.
- The score is sklearn.metrics.log_loss of the unaltered values: no renormalisation, values clipped to
  [eps, 1 - eps] with eps the float64 machine epsilon (2.2e-16), so a 0 on the true class costs 36.04.
  mle-bench reports it rounded to 5 decimals (`score` here); `log_loss` is the unrounded value.

One check goes beyond the grader: the solution itself is validated first (columns, unique ids, one-hot
labels), and a problem there is reported as the solution's. The grader's own solution, a split of the
Kaggle train.csv, always passes; with a repeated id in a solution it would blame the submission.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.data.record import LABELS
from arenapref.errors import SubmissionError
from arenapref.files import write_frame
from arenapref.metrics import accuracy, check_probabilities

SUBMISSION_COLUMNS = ("id", *LABELS)
SUM_DECIMALS = 6  # the grader rounds each row's sum to this many decimals and requires exactly 1
SHOWN = 5  # ids quoted in a message


def write_submission(ids: Sequence[str], probs: np.ndarray, path: str | Path) -> Path:
    """id,winner_model_a,winner_model_b,winner_tie: one row per id, in the given order, written to a temporary
    sibling and moved into place, so an existing submission survives a failed write intact.

    Rows are renormalised and written with 9 significant digits, so each row's sum is within 2e-9 of 1 and
    passes the grader's check (sum rounded to 6 decimals equals 1).
    """
    probs = check_probabilities(probs, len(ids), "submission")
    if len(set(ids)) != len(ids):
        raise SubmissionError("submission ids are not unique")
    df = pd.DataFrame({"id": list(ids), **{c: probs[:, k] for k, c in enumerate(LABELS)}})
    return write_frame(df, path, "submission", float_format="%.9g")


def _read(path: Path, what: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read as mle-bench does: pandas' type inference, floats parsed exactly (the default from pandas 3.1 on)."""
    options = {} if tuple(int(x) for x in pd.__version__.split(".")[:2]) >= (3, 1) else {"float_precision": "round_trip"}
    if columns is not None:
        options["usecols"] = lambda c: c in columns
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise SubmissionError(f"{what} {path}: cannot read as CSV (the file is empty)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise SubmissionError(f"{what} {path}: cannot read as CSV ({e})") from None


def _ids(values) -> list[str]:
    return [str(v) for v in list(values)[:SHOWN]]


def _some(values) -> str:
    values = list(values)
    more = f" and {len(values) - SHOWN} more" if len(values) > SHOWN else ""
    return f"{_ids(values)}{more}"


def _check_solution(sol: pd.DataFrame, path: Path) -> np.ndarray:
    """The solution's own problems, blamed on the solution: columns, unique ids, one-hot labels."""
    missing = [c for c in SUBMISSION_COLUMNS if c not in sol.columns]
    if missing:
        raise SubmissionError(f"solution {path}: missing column(s) {missing}; a solution needs id and the three "
                              f"winner columns (a labelled train.csv has them)")
    if len(sol) == 0:
        raise SubmissionError(f"solution {path}: no rows")
    repeated = sol["id"][sol["id"].duplicated()].unique()
    if len(repeated):
        raise SubmissionError(f"solution {path}: id(s) {_some(repeated)} appear more than once; a solution needs "
                              "one row per id")
    y = sol[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isin(y, (0.0, 1.0)).all(axis=1) & (y.sum(axis=1) == 1))
    if bad.any():
        raise SubmissionError(f"solution {path}: the winner columns must be one-hot (one 1 and two 0s per row); "
                              f"id(s) {_some(sol['id'][bad])} are not")
    return y


def _id_problems(sub_ids: pd.Series, sol_ids: pd.Series) -> str:
    """What differs between two id columns, for a message: repeated, missing and unknown ids."""
    sub_set, sol_set = set(sub_ids.tolist()), set(sol_ids.tolist())
    parts = []
    repeated = sub_ids[sub_ids.duplicated()].unique()
    if len(repeated):
        parts.append(f"repeats id(s) {_some(repeated)}")
    absent = sorted(sol_set - sub_set, key=str)
    if absent:
        parts.append(f"missing {_some(absent)} ({len(absent)})")
    extra = sorted(sub_set - sol_set, key=str)
    if extra:
        parts.append(f"unknown {_some(extra)} ({len(extra)})")
    return "; ".join(parts)


def _sorted_ids_match(sub_ids: pd.Series, sol_ids: pd.Series) -> bool:
    """The grader's id check: both columns sorted, then equal element by element (NaN equals nothing)."""
    a = sub_ids.sort_values(kind="mergesort").tolist()
    b = sol_ids.sort_values(kind="mergesort").tolist()
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


def grade(submission: str | Path, solution: str | Path) -> dict:
    """Check a submission against a solution file (any CSV with id and the three winner columns, e.g. a labelled
    train.csv) by the competition grader's rules (see the module docstring), and score it.

    Returns rows, log_loss (sklearn.metrics.log_loss, as the grader computes it), score (log_loss rounded to
    5 decimals, as mle-bench reports it) and accuracy (metrics.accuracy: ties share the credit). Raises
    SubmissionError naming the file, the rule and the ids that break it.
    """
    from sklearn.metrics import (
        log_loss,  # the grader's metric itself, so scores agree to the last digit
    )

    sub_path, sol_path = Path(submission), Path(solution)
    sol = _read(sol_path, "solution", SUBMISSION_COLUMNS)
    y = _check_solution(sol, sol_path)
    sub = _read(sub_path, "submission")

    missing = [c for c in SUBMISSION_COLUMNS if c not in sub.columns]
    if missing:
        raise SubmissionError(f"submission {sub_path}: missing column(s) {missing}; expected {list(SUBMISSION_COLUMNS)} "
                              f"(other columns are ignored), got {list(sub.columns)}")
    if len(sub) != len(sol):
        hint = _id_problems(sub["id"], sol["id"])
        raise SubmissionError(f"submission {sub_path} has {len(sub)} rows, the solution has {len(sol)}: need exactly one "
                              f"row per id" + (f" (the submission {hint})" if hint else ""))

    values = sub[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise SubmissionError(f"submission {sub_path}: probabilities must be numbers in [0, 1]; id(s) {_some(sub['id'][bad])} "
                              "have non-numeric or non-finite values (NaN, inf, empty or text)")
    bad = ((values < 0) | (values > 1)).any(axis=1)
    if bad.any():
        raise SubmissionError(f"submission {sub_path}: probabilities outside [0, 1] for id(s) {_some(sub['id'][bad])}")
    # The same pandas sum and rounding as the grader, so a borderline row is judged the same way.
    sums = sub[list(LABELS)].astype(float).sum(axis=1)
    bad = ~sums.round(SUM_DECIMALS).eq(1).to_numpy()
    if bad.any():
        shown = ", ".join(f"{s:.10g}" for s in sums[bad][:SHOWN])
        raise SubmissionError(f"submission {sub_path}: each row must sum to 1 (the grader rounds the sum to "
                              f"{SUM_DECIMALS} decimals, so |sum - 1| must stay below 5e-7); id(s) "
                              f"{_some(sub['id'][bad])} sum to {shown}: renormalise each row and write at least "
                              "7 significant digits")
    if not _sorted_ids_match(sub["id"], sol["id"]):
        raise SubmissionError(f"submission {sub_path}: ids differ from the solution's: the submission "
                              f"{_id_problems(sub['id'], sol['id']) or 'has ids of another type'}")

    # Ids are unique and equal: sorting both by id pairs each submission row with its solution row.
    sub_order = np.argsort(sub["id"].to_numpy(), kind="stable")
    sol_order = np.argsort(sol["id"].to_numpy(), kind="stable")
    y_true, y_pred = y[sol_order], values[sub_order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "values do not sum to one": within 5e-7 they may not
        loss = float(log_loss(y_true, y_pred))
    return {"rows": len(sol), "log_loss": loss, "score": round(loss, 5), "accuracy": accuracy(y_true, y_pred)}
