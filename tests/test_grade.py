"""Specification of `metrics.accuracy`, whose ties share the credit.

The solution is the real Kaggle sample (`kaggle-sample/train_sample.csv`: 32 rows of train.csv, texts and all).
Submissions are written here as CSV text, so each test controls every digit the grader reads.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss  # the grader's metric

from arenapref.data.record import LABELS
from arenapref.errors import SubmissionError
from arenapref.metrics import accuracy
from arenapref.submission import grade, write_submission

EPS64 = np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def solution_path(shared_data):
    return shared_data / "kaggle-sample" / "train_sample.csv"


@pytest.fixture(scope="module")
def answers(solution_path) -> pd.DataFrame:
    frame = pd.read_csv(solution_path)
    assert len(frame) == 32 and frame["id"].is_unique
    return frame[["id", *LABELS]]


@pytest.fixture(scope="module")
def predictions(answers) -> pd.DataFrame:
    """Dirichlet-random probabilities for the 32 ids, normalised, at full float precision."""
    p = np.random.default_rng(7).dirichlet([2.0, 2.0, 1.0], size=len(answers))
    return pd.DataFrame({"id": answers["id"], **{c: p[:, k] for k, c in enumerate(LABELS)}})


def write(tmp_path, frame: pd.DataFrame, name: str = "submission.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def expected_log_loss(answers: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The reference: sklearn's log_loss of the submitted values joined to the answers by id."""
    joined = answers.merge(submission, on="id", suffixes=("_true", ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sums within 5e-7 of 1 are not "close" to sklearn
        return sklearn_log_loss(joined[[f"{c}_true" for c in LABELS]].to_numpy(), joined[list(LABELS)].to_numpy())


def rejected(sub, sol) -> str:
    with pytest.raises(SubmissionError) as exc:
        grade(sub, sol)
    return str(exc.value)


def with_row(frame: pd.DataFrame, i: int, values) -> pd.DataFrame:
    frame = frame.copy()
    frame[list(LABELS)] = frame[list(LABELS)].astype(object)
    frame.loc[i, list(LABELS)] = values
    return frame


# --- accuracy: ties share the credit ------------------------------------------------------------------
A_WINS = np.tile([1.0, 0.0, 0.0], (8, 1))


def test_a_symmetric_prior_is_not_credited_with_every_a_win():
    prior = np.tile([0.4995015, 0.4995015, 0.00099701], (8, 1))
    assert accuracy(A_WINS, prior) == pytest.approx(0.5)
    assert accuracy(A_WINS, np.full((8, 3), 1 / 3)) == pytest.approx(1 / 3)


def test_accuracy_without_ties_is_the_share_of_argmax_hits():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    targets = np.eye(3)[[0, 0, 2, 0]]
    assert accuracy(targets, probs) == pytest.approx(0.75)


def test_a_tie_off_by_rounding_is_still_a_tie():
    a, b = 0.35 + 0.05, 0.4  # 0.39999999999999997 and 0.4, as averaging both A/B orders can leave them
    probs = np.array([[a, b, 0.2]])
    assert accuracy(np.eye(3)[[0]], probs) == pytest.approx(0.5)
    assert accuracy(np.eye(3)[[2]], probs) == 0.0


def test_cv_shows_the_prior_and_uniform_baselines_honestly_on_a_file_where_a_always_wins(llmbar_records):
    from arenapref.config import FoldsConfig, PriorConfig, RunConfig
    from arenapref.cv import cross_validate
    from arenapref.data.record import hard_labels

    a_wins = [r for r, k in zip(llmbar_records, hard_labels(llmbar_records)) if k == 0][:90]
    table = cross_validate(a_wins, RunConfig(model=PriorConfig(), folds=FoldsConfig(n_splits=3, seed=0)),
                           show_progress=False).table.set_index("slice")
    assert table.loc["pooled", "prior acc"] == pytest.approx(0.5)  # P(A) = P(B): a coin flip between them
    assert table.loc["pooled", "uniform acc"] == pytest.approx(1 / 3)

