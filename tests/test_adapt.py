"""Specification of prior adaptation (arenapref/adapt.py) and of `predict --tie-rate` / `--adapt-prior`.

A model's outputs are posteriors under its training prior; a test set with another tie rate gets them reweighted
by Bayes' rule, to a tie rate the user gives or to one estimated from the test rows' own predictions by EM
(Saerens et al. 2002), always with P(A) = P(B) in the prior, so A/B swap symmetry holds exactly.
Real data: LLMEval2 (hard labels, 19% ties) subsampled to known tie rates, PandaLM for the CLI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arenapref.adapt import (
    adapt_prior,
    estimate_prior,
    reweight,
    shift_to_tie_rate,
    symmetric_prior,
)
from arenapref.cli import app
from arenapref.config import FeaturesConfig
from arenapref.data.folds import GroupedFolds
from arenapref.data.io import read_pairs
from arenapref.data.record import TIE, hard_labels, swap_labels
from arenapref.errors import UsageError
from arenapref.models import build_model


@pytest.fixture(scope="module")
def llmeval2_predictions(shared_data):
    """A default-strength features model (smaller vocabulary) trained on one half of LLMEval2 (grouped by prompt),
    its predictions on the other half and that half's hard labels."""
    records, _ = read_pairs(shared_data / "llmeval2")
    folds = GroupedFolds(2, seed=0).fold_ids(records)
    train = [r for r, f in zip(records, folds) if f == 0]
    test = [r for r, f in zip(records, folds) if f == 1]
    model = build_model(FeaturesConfig(tfidf_max_features=3000, svd_components=8, n_jobs=1)).fit(train)
    return model, model.predict_proba(test), hard_labels(test), test


def subsample_to_tie_rate(labels, tie_rate, n, seed=0):
    """Indices of n rows of which a share `tie_rate` are ties: a test set with a known prior shift."""
    rng = np.random.default_rng(seed)
    ties, others = np.flatnonzero(labels == TIE), np.flatnonzero(labels != TIE)
    k = int(round(tie_rate * n))
    return np.r_[rng.choice(ties, k, replace=False), rng.choice(others, n - k, replace=False)]


# --------------------------------------------------------------------------------------------- the math


def test_symmetric_prior_splits_the_rest_evenly():
    assert symmetric_prior(0.3).tolist() == [0.35, 0.35, 0.3]


def test_shifting_to_the_training_tie_rate_changes_nothing(llmeval2_predictions):
    model, probs, _, _ = llmeval2_predictions
    same, info = shift_to_tie_rate(probs, model.train_prior_, float(model.train_prior_[TIE]))
    np.testing.assert_allclose(same, probs, atol=1e-12)
    assert info.method == "tie_rate" and info.rows == len(probs)


def test_a_higher_tie_rate_raises_every_p_tie_and_keeps_the_a_b_odds(llmeval2_predictions):
    model, probs, _, _ = llmeval2_predictions
    shifted, info = shift_to_tie_rate(probs, model.train_prior_, 0.5)
    assert (shifted[:, TIE] > probs[:, TIE]).all()
    np.testing.assert_allclose(shifted[:, 0] / shifted[:, 1], probs[:, 0] / probs[:, 1], rtol=1e-12)
    np.testing.assert_allclose(shifted.sum(axis=1), 1.0, atol=1e-12)
    assert info.mean_tie_after > info.mean_tie_before and info.target_prior == [0.25, 0.25, 0.5]


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5])
def test_a_tie_rate_outside_0_1_is_refused_naming_the_flag(llmeval2_predictions, rate):
    model, probs, _, _ = llmeval2_predictions
    with pytest.raises(UsageError, match="--tie-rate"):
        shift_to_tie_rate(probs, model.train_prior_, rate)


def test_em_on_rows_of_the_training_distribution_keeps_about_the_training_prior(llmeval2_predictions):
    model, probs, labels, _ = llmeval2_predictions
    prior, _, converged = estimate_prior(probs, model.train_prior_)
    assert converged
    assert abs(prior[TIE] - np.mean(labels == TIE)) < 0.06


@pytest.mark.parametrize("tie_rate", [0.05, 0.40])
def test_em_estimates_a_known_tie_rate_better_than_the_mean_prediction(llmeval2_predictions, tie_rate):
    """The held-out half subsampled to 5% and 40% ties (it holds 19%): EM lands within 0.05 of the true rate,
    closer than the mean predicted P(tie), which stays near the training prior."""
    model, probs, labels, _ = llmeval2_predictions
    rows = subsample_to_tie_rate(labels, tie_rate, 500)
    adapted, info = adapt_prior(probs[rows], model.train_prior_)
    assert info.method == "em" and info.converged and info.iterations > 1 and info.applied
    assert abs(info.tie_rate - tie_rate) <= 0.05
    assert abs(info.tie_rate - tie_rate) < abs(info.mean_tie_before - tie_rate)
    assert info.target_prior[0] == info.target_prior[1]
    np.testing.assert_allclose(adapted, reweight(probs[rows], model.train_prior_, symmetric_prior(info.tie_rate)))


def test_both_adaptations_keep_swap_symmetry_exactly(llmeval2_predictions):
    """Predictions of the swapped pairs, adapted, are exactly the adapted predictions with A and B exchanged; the
    EM estimate of a test set and of its swap is the same number."""
    model, _, _, test = llmeval2_predictions
    test = test[:300]
    forward = model.predict_proba(test)
    swapped = model.predict_proba([r.swapped() for r in test])
    assert np.array_equal(swapped, swap_labels(forward))  # swap TTA: the model itself is exactly equivariant
    for adapt in (lambda p: shift_to_tie_rate(p, model.train_prior_, 0.3), lambda p: adapt_prior(p, model.train_prior_)):
        a, info_a = adapt(forward)
        b, info_b = adapt(swapped)
        assert np.array_equal(b, swap_labels(a))
        assert info_a.target_prior == info_b.target_prior


def test_a_model_that_never_saw_a_tie_is_warned(llmbar_records):
    model = build_model(FeaturesConfig(n_estimators=20, tfidf_max_features=2000, svd_components=8, n_jobs=1))
    model.fit(list(llmbar_records[:300]))
    probs = model.predict_proba(list(llmbar_records[300:400]))
    _, info = shift_to_tie_rate(probs, model.train_prior_, 0.3)
    assert info.warnings and "never" in info.warnings[0]


# --------------------------------------------------------------------------------------------- predict flags


@pytest.fixture(scope="module")
def cli_model(write_pandalm, tmp_path_factory):
    """A small features model trained through the CLI on 300 PandaLM rows, and 200 other rows as a test file."""
    root = tmp_path_factory.mktemp("adapt-cli")
    write_pandalm(root / "train.json", 300)
    write_pandalm(root / "test.json", 500, start=300)
    result = CliRunner().invoke(app, ["train", str(root / "train.json"), "-o", str(root / "model"), "--set",
                                      "model.n_estimators=30", "--set", "model.tfidf_max_features=2000", "--set",
                                      "model.svd_components=8", "--set", "model.n_jobs=1"])
    assert result.exit_code == 0, result.output
    return root


def predict(root, *flags):
    out = root / f"sub{abs(hash(flags))}.csv"
    result = CliRunner().invoke(app, ["predict", str(root / "model"), str(root / "test.json"), "-o", str(out), *flags])
    return result, out


def test_predict_with_a_tie_rate_moves_the_predictions_and_says_so(cli_model):
    plain, plain_csv = predict(cli_model)
    given, given_csv = predict(cli_model, "--tie-rate", "0.3")
    assert plain.exit_code == 0 and given.exit_code == 0, given.output
    assert "tie rate 0.3000 (given" in " ".join(given.output.split())
    before, after = pd.read_csv(plain_csv), pd.read_csv(given_csv)
    assert list(after["id"]) == list(before["id"])
    assert after["winner_tie"].mean() > before["winner_tie"].mean()
    np.testing.assert_allclose(after[["winner_model_a", "winner_model_b", "winner_tie"]].sum(axis=1), 1.0, atol=1e-6)


def test_predict_with_adapt_prior_reports_the_estimate(cli_model):
    result, out = predict(cli_model, "--adapt-prior")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimated by EM" in text and "training prior" in text
    assert len(pd.read_csv(out)) == 200


@pytest.mark.parametrize("flags, phrase", [(("--tie-rate", "0.3", "--adapt-prior"), "give one"),
                                           (("--tie-rate", "1.5"), "--tie-rate 1.5")])
def test_predict_refuses_contradicting_or_impossible_prior_flags(cli_model, flags, phrase):
    result, out = predict(cli_model, *flags)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert phrase in " ".join(result.output.split())
    assert not out.exists()


def test_em_that_runs_to_no_ties_reports_the_estimate_and_leaves_the_predictions(llmeval2_predictions):
    """Predictions with less tie mass than the prior they are read against on every row (here: read against a 97%
    tie prior): the likelihood has no maximum inside and EM runs to 0. Applied, that would cost every tie row tens
    of nats, so the estimate is reported, the predictions are left as they were, and the warning says why."""
    _, probs, _, _ = llmeval2_predictions
    assert (probs[:, TIE] < 0.97).all()
    adapted, info = adapt_prior(probs, symmetric_prior(0.97))
    assert info.tie_rate < 0.005
    assert info.warnings and "unreliable" in info.warnings[0] and "--tie-rate" in info.warnings[0]
    assert not info.applied and np.array_equal(adapted, probs)
