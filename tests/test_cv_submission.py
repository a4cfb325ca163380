"""Specification of cross-validation (out-of-fold predictions and score tables beside the baselines) and of
competition submissions (writing and grading them the way the Kaggle grader does).

Real subsets are read in place through conftest fixtures; submissions and solutions are written in tmp_path.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    log_loss as sklearn_log_loss,  # the competition grader's metric
)

from arenapref.config import FoldsConfig, PriorConfig, RunConfig
from arenapref.cv import cross_validate, score_targets
from arenapref.data.record import LABELS, hard_labels
from arenapref.metrics import accuracy, log_loss, prior
from arenapref.models import build_model
from arenapref.submission import SubmissionError, grade, write_submission

# ------------------------------------------------------------------------------------------------------ cv


@pytest.fixture(scope="module")
def cv_rows(pandalm_records):
    return list(pandalm_records[:300])


@pytest.fixture(scope="module")
def cv_config():
    from arenapref.config import FeaturesConfig

    model = FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1)
    return RunConfig(model=model, folds=FoldsConfig(n_splits=3, seed=0))


@pytest.fixture(scope="module")
def cv_result(cv_rows, cv_config):
    return cross_validate(cv_rows, cv_config, show_progress=False)


def test_cv_returns_oof_for_uniform_prior_and_model(cv_result, cv_rows):
    assert cv_result.family == "features"
    assert set(cv_result.oof) == {"uniform", "prior", "features"}
    for name, p in cv_result.oof.items():
        assert p.shape == (len(cv_rows), 3), name
        assert np.isfinite(p).all(), name
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(cv_result.oof["uniform"], np.full((len(cv_rows), 3), 1 / 3))
    assert len(cv_result.fold_ids) == len(cv_rows)
    assert set(cv_result.fold_ids.tolist()) == {0, 1, 2}


def test_cv_keeps_each_prompt_in_one_fold(cv_result, cv_rows):
    fold_of_prompt = {}
    for r, k in zip(cv_rows, cv_result.fold_ids):
        assert fold_of_prompt.setdefault(r.prompt_key, k) == k


def test_cv_oof_rows_are_in_input_order(cv_result, cv_rows, cv_config):
    """Refit each fold by hand: oof row i is the prediction for input row i by the model that did not see it."""
    for k in range(cv_config.folds.n_splits):
        test_mask = cv_result.fold_ids == k
        train = [r for r, m in zip(cv_rows, test_mask) if not m]
        test = [r for r, m in zip(cv_rows, test_mask) if m]
        expected = build_model(cv_config.model).fit(train).predict_proba(test)
        np.testing.assert_allclose(cv_result.oof["features"][test_mask], expected, atol=1e-9)
        # the prior baseline: the swap-symmetric class shares of the other folds' (hard) labels
        expected_prior = prior(score_targets(train), len(test))
        np.testing.assert_allclose(cv_result.oof["prior"][test_mask], expected_prior, atol=1e-12)
        assert expected_prior[0, 0] == expected_prior[0, 1]


def test_cv_predictions_frame_has_one_row_per_input_in_order(cv_result, cv_rows):
    frame = cv_result.predictions_frame()
    assert len(frame) == len(cv_rows)
    assert frame["id"].tolist() == [r.id for r in cv_rows]
    assert frame["label"].tolist() == [LABELS[k] for k in hard_labels(cv_rows)]
    np.testing.assert_array_equal(frame[list(LABELS)].to_numpy(), cv_result.oof["features"])
    np.testing.assert_array_equal(frame["fold"].to_numpy(), cv_result.fold_ids)


def test_cv_table_has_fold_and_pooled_rows(cv_result, cv_rows):
    table = cv_result.table
    assert table["slice"].tolist() == ["fold 0", "fold 1", "fold 2", "pooled"]  # one source: no source rows
    folds = table[table["slice"].str.startswith("fold")]
    assert folds["rows"].sum() == len(cv_rows)
    pooled = table.set_index("slice").loc["pooled"]
    assert pooled["rows"] == len(cv_rows)
    y = np.eye(3)[hard_labels(cv_rows)]  # scored on hard labels even though PandaLM carries soft ones
    for model in ("uniform", "prior", "features"):
        assert pooled[f"{model} logloss"] == pytest.approx(log_loss(y, cv_result.oof[model]), abs=1e-12)
        for k in range(3):
            mask = cv_result.fold_ids == k
            row = table.set_index("slice").loc[f"fold {k}"]
            assert row["rows"] == mask.sum()
            assert row[f"{model} logloss"] == pytest.approx(log_loss(y[mask], cv_result.oof[model][mask]), abs=1e-12)


def test_cv_uniform_log_loss_is_exactly_ln3(cv_result):
    for value in cv_result.table["uniform logloss"]:
        assert value == pytest.approx(math.log(3), abs=1e-12)


def test_cv_model_beats_uniform_and_prior_on_pandalm(cv_result):
    pooled = cv_result.table.set_index("slice").loc["pooled"]
    assert pooled["prior logloss"] < pooled["uniform logloss"]
    assert pooled["features logloss"] < pooled["prior logloss"]


def test_cv_scores_use_hard_labels(cv_rows):
    y = score_targets(cv_rows)
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y.argmax(axis=1), hard_labels(cv_rows))


def test_cv_adds_a_row_per_source_when_sources_are_mixed(pandalm_records, llmbar_records, cv_config):
    rows = list(pandalm_records[:150]) + list(llmbar_records[:150])
    result = cross_validate(rows, cv_config, show_progress=False)
    table = result.table.set_index("slice")
    assert list(table.index) == ["fold 0", "fold 1", "fold 2", "pooled", "source llmbar", "source pandalm"]
    assert table.loc["source llmbar", "rows"] == 150 and table.loc["source pandalm", "rows"] == 150
    y = score_targets(rows)
    is_llmbar = np.array([r.source == "llmbar" for r in rows])
    for model in result.oof:
        assert table.loc["source llmbar", f"{model} logloss"] == pytest.approx(
            log_loss(y[is_llmbar], result.oof[model][is_llmbar]), abs=1e-12)
        assert table.loc["source pandalm", f"{model} logloss"] == pytest.approx(
            log_loss(y[~is_llmbar], result.oof[model][~is_llmbar]), abs=1e-12)


def test_cv_of_the_prior_family(cv_rows):
    result = cross_validate(cv_rows, RunConfig(model=PriorConfig(), folds=FoldsConfig(n_splits=3)), show_progress=False)
    assert set(result.oof) == {"uniform", "prior"}
    assert result.oof["prior"].shape == (len(cv_rows), 3)
    assert len(result.predictions_frame()) == len(cv_rows)
    pooled = result.table.set_index("slice").loc["pooled"]
    assert pooled["prior logloss"] < pooled["uniform logloss"]


def test_cv_with_too_few_prompts_for_the_folds_is_refused(cv_rows, cv_config):
    one_prompt = [r for r in cv_rows if r.prompt_key == cv_rows[0].prompt_key]
    with pytest.raises(ValueError, match="folds"):
        cross_validate(one_prompt, cv_config, show_progress=False)


# ---------------------------------------------------------------------------------------------- submission

IDS = ["101", "102", "103", "104", "105", "106"]
SOLUTION_LABELS = [0, 1, 2, 0, 1, 2]
PROBS = np.array([
    [0.7, 0.2, 0.1],
    [0.25, 0.5, 0.25],
    [0.1, 0.3, 0.6],
    [0.3333333333, 0.3333333333, 0.3333333334],
    [0.0, 1.0, 0.0],
    [0.45, 0.45, 0.1],
])


def write_rows(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def solution(tmp_path):
    rows = [[i, *(int(k == label) for k in range(3))] for i, label in zip(IDS, SOLUTION_LABELS)]
    return write_rows(tmp_path / "solution.csv", ["id", *LABELS], rows)


@pytest.fixture
def submission(tmp_path):
    return write_submission(IDS, PROBS, tmp_path / "submission.csv")


def edited(tmp_path, submission, edit, name="edited.csv"):
    """A copy of the submission after `edit(df)` (a DataFrame of strings)."""
    df = pd.read_csv(submission, dtype=str, keep_default_na=False)
    df = edit(df)
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def grade_error(sub, sol) -> str:
    with pytest.raises(SubmissionError) as exc:
        grade(sub, sol)
    return str(exc.value)


def test_write_submission_writes_ids_in_the_given_order(submission):
    df = pd.read_csv(submission, dtype={"id": str})
    assert list(df.columns) == ["id", *LABELS]
    assert df["id"].tolist() == IDS
    np.testing.assert_allclose(df[list(LABELS)].to_numpy(), PROBS, atol=1e-9)


def test_write_submission_refuses_duplicate_ids_and_bad_shapes(tmp_path):
    with pytest.raises(SubmissionError, match="unique"):
        write_submission(["1", "1"], np.full((2, 3), 1 / 3), tmp_path / "dup.csv")
    with pytest.raises(RuntimeError, match="shape"):
        write_submission(["1", "2", "3"], np.full((2, 3), 1 / 3), tmp_path / "short.csv")
    with pytest.raises(RuntimeError, match="not finite"):
        write_submission(["1", "2"], np.array([[0.5, 0.5, 0.0], [np.nan, 0.5, 0.5]]), tmp_path / "nan.csv")
    assert not (tmp_path / "dup.csv").exists() and not (tmp_path / "nan.csv").exists()


def test_valid_submission_grades_with_the_metrics_log_loss(submission, solution):
    result = grade(submission, solution)
    assert result["rows"] == len(IDS)
    written = pd.read_csv(submission, dtype={"id": str})[list(LABELS)].to_numpy(dtype=float)
    y = np.eye(3)[SOLUTION_LABELS]
    assert result["log_loss"] == pytest.approx(sklearn_log_loss(y, written), rel=1e-12)  # as written, not renormalised
    assert result["log_loss"] == pytest.approx(log_loss(y, PROBS), rel=1e-8)
    assert result["accuracy"] == pytest.approx(accuracy(y, written))  # written, row 104 is an exact three-way tie
    assert math.isfinite(result["log_loss"])  # the 0.0 for a wrong class is clipped, not infinite


def test_a_zero_on_the_true_class_is_clipped_like_sklearn(tmp_path, solution):
    probs = PROBS.copy()
    probs[0] = [0.0, 0.5, 0.5]  # id 101 is an A win
    sub = write_submission(IDS, probs, tmp_path / "zero.csv")
    result = grade(sub, solution)
    assert math.isfinite(result["log_loss"])
    written = pd.read_csv(sub, dtype={"id": str})[list(LABELS)].to_numpy(dtype=float)
    # the grader's metric clips at the float64 eps, not at metrics.EPS = 1e-15
    assert result["log_loss"] == pytest.approx(sklearn_log_loss(np.eye(3)[SOLUTION_LABELS], written), rel=1e-12)
    assert result["log_loss"] > -math.log(np.finfo(float).eps) / len(IDS)


def test_row_order_does_not_matter(tmp_path, submission, solution):
    expected = grade(submission, solution)
    shuffled = edited(tmp_path, submission, lambda df: df.iloc[[3, 0, 5, 2, 4, 1]])
    assert pd.read_csv(shuffled, dtype={"id": str})["id"].tolist() != IDS
    result = grade(shuffled, solution)
    assert result["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert result["accuracy"] == expected["accuracy"]


def test_column_order_does_not_matter(tmp_path, submission, solution):
    reordered = edited(tmp_path, submission, lambda df: df[["winner_tie", "id", "winner_model_b", "winner_model_a"]])
    assert grade(reordered, solution)["log_loss"] == pytest.approx(grade(submission, solution)["log_loss"], rel=1e-12)


def test_missing_column_is_named(tmp_path, submission, solution):
    sub = edited(tmp_path, submission, lambda df: df.drop(columns=["winner_tie"]))
    message = grade_error(sub, solution)
    assert "missing column" in message and "winner_tie" in message


def test_wrong_row_count(tmp_path, submission, solution):
    sub = edited(tmp_path, submission, lambda df: df.iloc[:-1])
    message = grade_error(sub, solution)
    assert "5 rows" in message and "6" in message


def test_duplicate_id_is_named(tmp_path, submission, solution):
    def dup(df):
        df.loc[4, "id"] = "102"
        return df

    message = grade_error(edited(tmp_path, submission, dup), solution)
    assert "repeats id" in message and "102" in message


def test_unknown_and_missing_ids_are_named(tmp_path, submission, solution):
    def rename(df):
        df.loc[2, "id"] = "999"
        return df

    message = grade_error(edited(tmp_path, submission, rename), solution)
    assert "missing ['103']" in message
    assert "unknown ['999']" in message


def test_value_outside_unit_interval_is_named(tmp_path, submission, solution):
    def bad(df):
        df.loc[1, list(LABELS)] = ["1.2", "-0.2", "0"]  # sums to 1: only the range is wrong
        return df

    message = grade_error(edited(tmp_path, submission, bad), solution)
    assert "outside [0, 1]" in message and "102" in message


@pytest.mark.parametrize("value", ["nan", "NaN", "", "inf", "abc"])
def test_nan_or_non_numeric_value_is_named(tmp_path, submission, solution, value):
    def bad(df):
        df.loc[3, "winner_tie"] = value
        return df

    message = grade_error(edited(tmp_path, submission, bad), solution)
    assert "non-finite" in message and "104" in message


def test_rows_not_summing_to_one_are_named(tmp_path, submission, solution):
    def bad(df):
        df.loc[5, list(LABELS)] = ["0.5", "0.5", "0.5"]
        return df

    message = grade_error(edited(tmp_path, submission, bad), solution)
    assert "sum to 1" in message and "106" in message and "1.5" in message


def test_rows_summing_to_one_within_tolerance_pass(tmp_path, submission, solution):
    def nearly(df):  # the grader rounds each sum to 6 decimals: 1.0000004 passes (1.0004 does not: test_grade.py)
        df.loc[0, list(LABELS)] = ["0.7000004", "0.2", "0.1"]
        return df

    assert grade(edited(tmp_path, submission, nearly), solution)["rows"] == len(IDS)


def test_unreadable_submission(tmp_path, solution):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "cannot read" in grade_error(empty, solution)


def test_grading_against_the_real_arena_format_file(tmp_path, quirks_csv):
    ids = pd.read_csv(quirks_csv, dtype={"id": str}, keep_default_na=False)["id"].tolist()
    assert len(ids) == 12 and "4294947231" in ids
    sub = write_submission(ids, np.full((12, 3), 1 / 3), tmp_path / "uniform.csv")
    result = grade(sub, quirks_csv)
    assert result["rows"] == 12
    assert result["log_loss"] == pytest.approx(math.log(3), abs=1e-8)


def test_cv_calibrate_and_report_print_the_same_prior_for_the_same_folds(pandalm_records, tmp_path):
    """One prior baseline: the pooled prior log loss in cv's scores.csv, calibrate's table and the report's CV
    table agree exactly on the same oof.csv (the report used to compute an asymmetric prior of its own)."""
    from typer.testing import CliRunner

    from arenapref.cli import app
    from arenapref.data.io import write_pairs
    from arenapref.report import analysis

    rows = list(pandalm_records[:300])
    data = write_pairs(rows, tmp_path / "pandalm.csv")
    runner = CliRunner()
    settings = ["--set", "model.n_estimators=20", "--set", "model.tfidf_max_features=1000", "--set", "model.n_jobs=1"]
    assert runner.invoke(app, ["cv", str(data), "-k", "3", "-o", str(tmp_path / "cv"), *settings]).exit_code == 0
    assert runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "model"), *settings]).exit_code == 0
    scores = pd.read_csv(tmp_path / "cv" / "scores.csv").set_index("slice")
    cv_prior = scores.loc["pooled", "prior logloss"]

    from arenapref.workflows import run_calibrate

    calibrated = run_calibrate(tmp_path / "model", tmp_path / "cv" / "oof.csv")
    calibrate_prior = calibrated.table.set_index("slice").loc["pooled", "prior logloss"]
    scored = analysis.align_oof(rows, [("features", tmp_path / "cv" / "oof.csv")])
    report_prior = analysis.cv_table(scored).set_index("slice").loc["pooled", "prior logloss"]
    assert cv_prior == pytest.approx(calibrate_prior, abs=1e-12) == pytest.approx(report_prior, abs=1e-12)
    assert cv_prior < np.log(3)
