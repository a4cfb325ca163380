"""Specification of calibration (temperature + tie bias, stored in the model directory) and of ensembling
prediction files (simplex weights or a stacked logistic model, scored cross-fitted by fold).

Everything runs on real data from `../shared/data`: a `features` model trained on tie-free sets (LLMBar and
part of hh-rlhf) and moved to PandaLM, whose human votes have ties; and out-of-fold predictions of the prior
and a `features` model cross-validated on PandaLM.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arenapref.calibrate import CALIBRATION_FILE, Calibrator
from arenapref.calibrate import cross_fit as calibrate_cross_fit
from arenapref.cli import app
from arenapref.config import FeaturesConfig, PriorConfig, RunConfig
from arenapref.cv import cross_validate, score_targets
from arenapref.data.folds import GroupedFolds
from arenapref.data.io import read_pairs, write_pairs
from arenapref.data.record import LABELS, TIE, swap_labels
from arenapref.ensemble import (
    PredictionFileError,
    Stacker,
    blend,
    cross_fit,
    ensemble,
    fit_weights,
    read_predictions,
)
from arenapref.metrics import log_loss
from arenapref.models import build_model, load_model
from arenapref.submission import grade, write_submission

SMALL = dict(n_estimators=40, tfidf_max_features=3000, svd_components=8, n_jobs=1)
runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pandalm(shared_data):
    records, _ = read_pairs(shared_data / "pandalm")
    return records


@pytest.fixture(scope="module")
def tie_free_model(shared_data):
    """A features model that has never seen a tie: LLMBar plus 600 hh-rlhf helpful-base pairs."""
    llmbar, _ = read_pairs(shared_data / "llmbar")
    hh, _ = read_pairs(shared_data / "hh-rlhf" / "helpful-base_test.jsonl.gz")
    train = list(llmbar) + list(hh[:600])
    assert score_targets(train)[:, TIE].sum() == 0
    return build_model(FeaturesConfig(**SMALL)).fit(train)


@pytest.fixture(scope="module")
def pandalm_cv(pandalm):
    """5-fold grouped CV of features (and, on the same folds, the prior) on PandaLM."""
    return cross_validate(pandalm, RunConfig(model=FeaturesConfig(**SMALL)), show_progress=False)


@pytest.fixture(scope="module")
def oof_files(pandalm_cv, tmp_path_factory):
    """oof.csv of each model, as `arenapref cv` writes them: {"features": path, "prior": path}."""
    root = tmp_path_factory.mktemp("oof")
    paths = {}
    for name in ("features", "prior"):
        frame = pandalm_cv.predictions_frame()
        frame[list(LABELS)] = pandalm_cv.oof[name]
        (root / name).mkdir()
        frame.to_csv(root / name / "oof.csv", index=False)
        paths[name] = root / name / "oof.csv"
    return paths


# ----------------------------------------------------------------------------------------------- calibration


def test_calibration_adapts_a_tie_free_model_to_the_target_tie_rate(tie_free_model, pandalm):
    probs = tie_free_model.predict_proba(pandalm)
    y = score_targets(pandalm)
    assert probs[:, TIE].max() < 0.01  # it never predicts a tie...
    assert y[:, TIE].mean() > 0.08  # ...and PandaLM has them
    half = GroupedFolds(2, seed=0).fold_ids(pandalm)  # halves split by prompt
    fit, held = half == 0, half == 1

    cal = Calibrator().fit(probs[fit], y[fit])
    after = cal.transform(probs[held])

    before_loss, after_loss = log_loss(y[held], probs[held]), log_loss(y[held], after)
    assert after_loss < before_loss - 1.0
    assert after_loss < 1.0
    assert abs(after[:, TIE].mean() - y[held, TIE].mean()) < 0.05
    assert np.isfinite(after).all() and np.allclose(after.sum(axis=1), 1)


def test_cross_fitted_calibration_never_scores_a_row_with_a_calibrator_fitted_on_it(pandalm_cv, pandalm):
    y = score_targets(pandalm)
    p = pandalm_cv.oof["features"]
    folds = pandalm_cv.fold_ids
    cross = calibrate_cross_fit(p, y, folds)
    k = folds[0]
    expected = Calibrator().fit(p[folds != k], y[folds != k]).transform(p[folds == k])
    np.testing.assert_allclose(cross[folds == k], expected)
    assert log_loss(y, cross) < log_loss(y, p) + 0.01


def test_calibration_round_trips_through_the_model_directory(tie_free_model, pandalm, tmp_path):
    y = score_targets(pandalm)
    rows = pandalm[:300]
    raw = tie_free_model.predict_proba(rows)
    tie_free_model.calibration = Calibrator().fit(raw, y[:300])
    try:
        calibrated = tie_free_model.predict_proba(rows)
        tie_free_model.save(tmp_path / "model")
    finally:
        tie_free_model.calibration = None

    assert (tmp_path / "model" / CALIBRATION_FILE).exists()
    meta = json.loads((tmp_path / "model" / "arenapref.json").read_text())
    assert meta["calibration"]["temperature"] == pytest.approx(json.loads((tmp_path / "model" / CALIBRATION_FILE).read_text())["temperature"])
    loaded = load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(rows), calibrated)
    assert not np.allclose(calibrated, raw)
    assert np.isfinite(calibrated).all() and np.allclose(calibrated.sum(axis=1), 1)

    # re-saving a model without calibration must not leave the old calibration.json to be picked up again
    loaded.calibration = None
    loaded.save(tmp_path / "model")
    assert not (tmp_path / "model" / CALIBRATION_FILE).exists()
    assert "calibration" not in json.loads((tmp_path / "model" / "arenapref.json").read_text())
    np.testing.assert_allclose(load_model(tmp_path / "model").predict_proba(rows), raw)


def test_symmetric_calibration_keeps_swap_tta_predictions_swap_equivariant(tie_free_model, pandalm):
    rows = pandalm[:200]
    y = score_targets(pandalm[200:600])
    raw = tie_free_model.predict_proba(pandalm[200:600])
    swapped_rows = [r.swapped() for r in rows]
    try:
        tie_free_model.calibration = Calibrator(symmetric=True).fit(raw, y)
        assert tie_free_model.calibration.bias[0] == tie_free_model.calibration.bias[1]
        np.testing.assert_allclose(swap_labels(tie_free_model.predict_proba(swapped_rows)), tie_free_model.predict_proba(rows), atol=1e-12)

        # the check has teeth: an A-vs-B bias breaks it
        tie_free_model.calibration = Calibrator(symmetric=False).fit(raw, y)
        tie_free_model.calibration.bias = np.array([0.3, -0.3, tie_free_model.calibration.bias[TIE]])
        assert not np.allclose(swap_labels(tie_free_model.predict_proba(swapped_rows)), tie_free_model.predict_proba(rows), atol=1e-6)
    finally:
        tie_free_model.calibration = None


def test_calibrator_rejects_a_saved_calibration_it_cannot_trust():
    good = Calibrator().fit(np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]), np.eye(3)[[0, 1]]).to_dict()
    assert Calibrator.from_dict(good).transform(np.array([[0.5, 0.4, 0.1]])).shape == (1, 3)
    with pytest.raises(ValueError, match="label order"):
        Calibrator.from_dict(good | {"labels": ["winner_model_b", "winner_model_a", "winner_tie"]})
    with pytest.raises(ValueError, match="invalid calibration"):
        Calibrator.from_dict(good | {"temperature": -1.0})


# ----------------------------------------------------------------------------------------------- ensembling


def test_blend_weights_are_a_convex_combination_that_never_loses_to_the_best_input(pandalm_cv, pandalm):
    y = score_targets(pandalm)
    probs = [pandalm_cv.oof["uniform"], pandalm_cv.oof["prior"], pandalm_cv.oof["features"]]
    best_single = min(log_loss(y, p) for p in probs)

    w = fit_weights(probs, y)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert log_loss(y, blend(probs, w)) <= best_single + 1e-12

    honest = cross_fit(probs, y, pandalm_cv.fold_ids)  # each fold blended with weights fitted on the others
    assert np.allclose(honest.sum(axis=1), 1)
    assert log_loss(y, honest) <= best_single + 1e-9


def test_stacked_blend_is_cross_fitted_and_swap_symmetric(pandalm_cv, pandalm):
    y = score_targets(pandalm)
    probs = [pandalm_cv.oof["prior"], pandalm_cv.oof["features"]]
    stacked = cross_fit(probs, y, pandalm_cv.fold_ids, stack=True)
    assert np.isfinite(stacked).all() and np.allclose(stacked.sum(axis=1), 1)
    assert log_loss(y, stacked) < log_loss(y, pandalm_cv.oof["prior"])

    stacker = Stacker().fit(probs, y)
    np.testing.assert_allclose(stacker.predict_proba([swap_labels(p) for p in probs]),
                               swap_labels(stacker.predict_proba(probs)), atol=1e-12)


def test_prediction_files_are_aligned_by_id_whatever_their_row_order(oof_files, tmp_path):
    shuffled = pd.read_csv(oof_files["prior"], dtype={"id": str}).sample(frac=1.0, random_state=0)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    aligned = read_predictions([oof_files["features"], tmp_path / "shuffled.csv"], need_labels=True)
    direct = read_predictions([oof_files["features"], oof_files["prior"]], need_labels=True)
    np.testing.assert_array_equal(aligned.probs[1], direct.probs[1])
    assert aligned.names == ["features", "shuffled"]


def test_misaligned_ids_name_the_file_and_the_ids(oof_files, tmp_path):
    df = pd.read_csv(oof_files["prior"], dtype={"id": str})
    dropped = df["id"].iloc[3]
    df = df.drop(index=3)
    df.loc[df.index[0], "id"] = "not-a-pandalm-id"
    df.to_csv(tmp_path / "prior_other.csv", index=False)

    with pytest.raises(PredictionFileError) as exc:
        ensemble([oof_files["features"], tmp_path / "prior_other.csv"])
    message = str(exc.value)
    assert "prior_other.csv" in message and dropped in message and "not-a-pandalm-id" in message

    result = runner.invoke(app, ["ensemble", str(oof_files["features"]), str(tmp_path / "prior_other.csv")])
    assert result.exit_code == 2
    assert "prior_other.csv" in said(result) and "not-a-pandalm-id" in said(result)


def test_out_of_fold_files_need_labels(oof_files, tmp_path):
    df = pd.read_csv(oof_files["prior"], dtype={"id": str}).drop(columns=["label"])
    df.to_csv(tmp_path / "unlabelled.csv", index=False)
    with pytest.raises(PredictionFileError, match="no `label` column"):
        ensemble([tmp_path / "unlabelled.csv"])


# ----------------------------------------------------------------------------------------------- the commands


def test_calibrate_command_on_an_oof_file(pandalm, oof_files, tmp_path):
    build_model(PriorConfig()).fit(pandalm).save(tmp_path / "prior")

    result = runner.invoke(app, ["calibrate", str(tmp_path / "prior"), str(oof_files["prior"])])

    assert result.exit_code == 0, result.output
    assert "logloss" in result.output and "pooled" in result.output and "temperature" in result.output
    saved = json.loads((tmp_path / "prior" / CALIBRATION_FILE).read_text())
    assert saved["bias"][0] == saved["bias"][1] and saved["fitted_on"].startswith("oof")
    assert load_model(tmp_path / "prior").calibration is not None


def test_calibrate_command_on_target_data_then_predict_applies_it(tie_free_model, shared_data, pandalm, tmp_path):
    tie_free_model.save(tmp_path / "model")
    pandalm_file = shared_data / "pandalm" / "testset-v1.json"

    result = runner.invoke(app, ["calibrate", str(tmp_path / "model"), "--target", str(pandalm_file), "--folds", "3"])
    assert result.exit_code == 0, result.output
    table = result.output[: result.output.index("temperature")]
    assert "fold 2" in table and "pooled" in table and "logloss" in table

    result = runner.invoke(app, ["predict", str(tmp_path / "model"), str(pandalm_file), "-o", str(tmp_path / "sub.csv")])
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert sub["winner_tie"].mean() > 0.05  # the raw model predicts ~0 ties
    solution = tmp_path / "solution.csv"  # PandaLM's majority labels in the competition's columns
    write_pairs(pandalm, solution)
    graded = grade(tmp_path / "sub.csv", solution)
    assert graded["rows"] == 999 and graded["log_loss"] < 1.0986  # calibrated: better than uniform on ties


def test_calibrate_command_needs_something_to_fit_on(tmp_path, pandalm):
    build_model(PriorConfig()).fit(pandalm[:50]).save(tmp_path / "prior")
    result = runner.invoke(app, ["calibrate", str(tmp_path / "prior")])
    assert result.exit_code == 2 and "--target" in said(result)


@pytest.mark.parametrize("stack", [False, True])
def test_ensemble_command_blends_test_predictions(oof_files, tie_free_model, pandalm, shared_data, tmp_path, stack):
    test_rows, _ = read_pairs(shared_data / "llmbar" / "LLMBar_Natural")
    ids = [r.id for r in test_rows]
    write_submission(ids, tie_free_model.predict_proba(test_rows), tmp_path / "features_sub.csv")
    # the second model's file lists the same rows in another order: rows are matched by id
    prior = build_model(PriorConfig()).fit(pandalm)
    write_submission(ids[::-1], prior.predict_proba(test_rows[::-1]), tmp_path / "prior_sub.csv")
    output = tmp_path / "out" / "blended.csv"

    args = ["ensemble", str(oof_files["features"]), str(oof_files["prior"]), "--test", str(tmp_path / "features_sub.csv"),
            "--test", str(tmp_path / "prior_sub.csv"), "-o", str(output)] + (["--stack"] if stack else [])
    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "blend" in result.output and "features" in result.output
    weights = json.loads((tmp_path / "out" / "blended.weights.json").read_text())
    scored = [row["model"] for row in weights["oof"]]
    assert scored[:2] == ["features", "prior"] and scored[2].startswith("blend") and (len(scored) == 4) == stack
    w = np.array([i["weight"] for i in weights["inputs"]])
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert weights["method"] == ("stack" if stack else "weights") and ("stacker" in weights) == stack
    blended = pd.read_csv(output, dtype={"id": str})
    assert blended["id"].tolist() == ids
    values = blended[list(LABELS)].to_numpy()
    assert np.isfinite(values).all() and np.allclose(values.sum(axis=1), 1, atol=1e-6)
    if not stack:
        expected = w[0] * tie_free_model.predict_proba(test_rows) + w[1] * prior.predict_proba(test_rows)
        np.testing.assert_allclose(values, expected, atol=1e-6)


def test_ensemble_command_needs_one_test_file_per_model(oof_files, tmp_path):
    result = runner.invoke(app, ["ensemble", str(oof_files["features"]), str(oof_files["prior"]),
                                 "--test", str(oof_files["prior"]), "-o", str(tmp_path / "b.csv")])
    assert result.exit_code == 2 and "one test prediction file per model" in said(result)
