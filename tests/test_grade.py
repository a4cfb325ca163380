"""Specification of `grade`: the rules of the competition's grader (openai/mle-bench,
mlebench/competitions/lmsys-chatbot-arena/grade.py with the helpers it calls), one test per rule, each case
judged as that grader judges it; and of `metrics.accuracy`, whose ties share the credit.

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


# --- valid submissions: the score is sklearn's log loss ---------------------------------------------
def test_a_valid_submission_scores_sklearns_log_loss_to_10_decimals(tmp_path, solution_path, answers, predictions):
    result = grade(write(tmp_path, predictions), solution_path)
    expected = expected_log_loss(answers, predictions)
    assert result["rows"] == 32
    assert result["log_loss"] == pytest.approx(expected, abs=1e-10)
    assert result["score"] == round(expected, 5)  # what mle-bench reports


def test_write_submission_always_writes_what_the_grader_accepts(tmp_path, solution_path, answers):
    p = np.random.default_rng(3).dirichlet([0.3, 0.3, 0.3], size=len(answers)) * 7.0  # unnormalised, near 0 and 1
    path = write_submission(answers["id"].astype(str).tolist(), p, tmp_path / "written.csv")
    written = pd.read_csv(path)
    assert grade(path, solution_path)["log_loss"] == pytest.approx(expected_log_loss(answers, written), abs=1e-10)


def test_row_order_does_not_matter(tmp_path, solution_path, predictions):
    shuffled = predictions.sample(frac=1.0, random_state=1)
    assert shuffled["id"].tolist() != predictions["id"].tolist()
    assert grade(write(tmp_path, shuffled), solution_path)["log_loss"] == pytest.approx(
        grade(write(tmp_path, predictions, "ordered.csv"), solution_path)["log_loss"], abs=1e-15)


def test_extra_columns_are_ignored(tmp_path, solution_path, answers, predictions):
    extra = predictions.assign(note="x", winner=1.0)[["note", *LABELS, "id", "winner"]]
    result = grade(write(tmp_path, extra), solution_path)
    assert result["log_loss"] == pytest.approx(expected_log_loss(answers, predictions), abs=1e-10)


def test_uniform_at_full_precision_is_valid_and_scores_ln3(tmp_path, solution_path):
    ids = pd.read_csv(solution_path)["id"]
    uniform = pd.DataFrame({"id": ids, **{c: 0.3333333333333333 for c in LABELS}})  # mle-bench's sample submission
    assert grade(write(tmp_path, uniform), solution_path)["log_loss"] == pytest.approx(math.log(3), abs=1e-10)


def test_a_zero_on_the_true_class_is_clipped_at_float64_eps(tmp_path, solution_path, answers):
    """All-wrong one-hot rows: each costs -log(eps) = 36.04, not -log(1e-15) = 34.54."""
    wrong = answers.copy()
    wrong[list(LABELS)] = np.roll(answers[list(LABELS)].to_numpy(), 1, axis=1)
    result = grade(write(tmp_path, wrong), solution_path)
    assert result["log_loss"] == pytest.approx(-math.log(EPS64), abs=1e-10)
    assert result["log_loss"] == pytest.approx(expected_log_loss(answers, wrong), abs=1e-10)
    assert result["score"] == 36.04365


def test_ids_are_compared_as_pandas_reads_them(tmp_path, solution_path, answers, predictions):
    """The grader lets pandas infer types: ids that are all integers are integers, so 0030192 is 30192."""
    path = tmp_path / "padded.csv"
    padded = predictions.assign(id=[f"{i:07d}" for i in predictions["id"]])
    padded.to_csv(path, index=False, float_format="%.17g")
    assert "0030192," in path.read_text()
    assert grade(path, solution_path)["log_loss"] == pytest.approx(expected_log_loss(answers, predictions), abs=1e-10)


# --- rows and ids ------------------------------------------------------------------------------------
def test_a_missing_row_is_rejected_naming_the_id(tmp_path, solution_path, predictions):
    message = rejected(write(tmp_path, predictions.drop(index=5)), solution_path)
    assert "31 rows" in message and "32" in message and str(predictions["id"][5]) in message


def test_an_extra_row_is_rejected_naming_the_id(tmp_path, solution_path, predictions):
    extra = pd.concat([predictions, predictions.iloc[[0]].assign(id=99)], ignore_index=True)
    message = rejected(write(tmp_path, extra), solution_path)
    assert "33 rows" in message and "unknown ['99']" in message


def test_a_repeated_id_in_the_submission_is_rejected(tmp_path, solution_path, predictions):
    dup = predictions.copy()
    dup.loc[3, "id"] = dup.loc[4, "id"]  # same row count, one id twice, another missing
    message = rejected(write(tmp_path, dup), solution_path)
    assert "repeats id(s) ['198779']" in message and "missing ['96401']" in message
    assert message.startswith("submission ")


def test_a_repeated_id_in_the_solution_is_the_solutions_fault(tmp_path, solution_path, predictions):
    sol = pd.read_csv(solution_path)
    sol.loc[3, "id"] = sol.loc[4, "id"]
    sol_path = tmp_path / "solution.csv"
    sol.to_csv(sol_path, index=False)
    sub = predictions.copy()
    sub.loc[3, "id"] = sub.loc[4, "id"]  # even a submission that mirrors it exactly
    sub_path = write(tmp_path, sub)
    message = rejected(sub_path, sol_path)
    assert message.startswith(f"solution {sol_path}") and "198779" in message and "more than once" in message
    assert str(sub_path) not in message


def test_a_solution_without_one_hot_labels_is_the_solutions_fault(tmp_path, predictions, solution_path):
    sol = pd.read_csv(solution_path)
    sol[list(LABELS)] = sol[list(LABELS)].astype(float)
    sol.loc[0, list(LABELS)] = [0.5, 0.5, 0.0]
    sol_path = tmp_path / "soft.csv"
    sol.to_csv(sol_path, index=False)
    message = rejected(write(tmp_path, predictions), sol_path)
    assert message.startswith(f"solution {sol_path}") and "one-hot" in message and "30192" in message


# --- values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "", "inf", "abc"])
def test_nan_infinite_or_text_values_are_rejected(tmp_path, solution_path, predictions, value):
    bad = with_row(predictions, 2, [value, 0.5, 0.5])
    message = rejected(write(tmp_path, bad), solution_path)
    assert "65089" in message and "non-finite" in message


def test_a_negative_value_is_rejected_even_when_the_row_sums_to_one(tmp_path, solution_path, predictions):
    bad = with_row(predictions, 2, [-0.1, 0.6, 0.5])
    message = rejected(write(tmp_path, bad), solution_path)
    assert "outside [0, 1]" in message and "65089" in message


@pytest.mark.parametrize("row, total", [
    (["0.5005", "0.3", "0.2"], "1.0005"),
    (["0.4995", "0.3", "0.2"], "0.9995"),
    (["0.499", "0.3", "0.2"], "0.999"),
    (["0.333333", "0.333333", "0.333333"], "0.999999"),  # six-digit uniform
    (["0.5000006", "0.3", "0.2"], "1.0000006"),
])
def test_rows_whose_sum_does_not_round_to_one_at_6_decimals_are_rejected(tmp_path, solution_path, predictions, row, total):
    path = tmp_path / "sums.csv"
    frame = with_row(predictions, 7, row)
    frame.to_csv(path, index=False)
    message = rejected(path, solution_path)
    assert "370945" in message and total in message  # the id of row 7
    assert "6 decimals" in message and "0.001" not in message and "±" not in message  # the rule it applies


@pytest.mark.parametrize("row", [
    ["0.5000004", "0.3", "0.2"],
    ["0.4999996", "0.3", "0.2"],
    ["0.3333333", "0.3333333", "0.3333333"],  # seven digits: 0.9999999 rounds to 1
])
def test_rows_whose_sum_rounds_to_one_at_6_decimals_pass(tmp_path, solution_path, answers, predictions, row):
    frame = with_row(predictions, 7, row)
    path = tmp_path / "sums.csv"
    frame.to_csv(path, index=False)
    values = frame.assign(**{c: frame[c].astype(float) for c in LABELS})
    assert grade(path, solution_path)["log_loss"] == pytest.approx(expected_log_loss(answers, values), abs=1e-10)


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


def test_grade_reports_tie_aware_accuracy(tmp_path, solution_path, answers):
    uniform = pd.DataFrame({"id": answers["id"], **{c: 0.3333333333333333 for c in LABELS}})
    assert grade(write(tmp_path, uniform), solution_path)["accuracy"] == pytest.approx(1 / 3)
