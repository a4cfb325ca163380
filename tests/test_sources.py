"""Specification of the source as an input of the tabular models (models/sources.py, features and embed).

Per-source sample weights keep one set from drowning the others; source columns (one indicator per training
source, or the source's tie share) let the model learn each set's tie rate; a row of a source the model was not
trained on is predicted as `default_source` or as the training pool; the saved model remembers its sources.
Real data: PandaLM (ties) and LLMBar (none).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from arenapref.data.record import TIE, swap_labels, targets
from arenapref.errors import ConfigError
from arenapref.metrics import prior
from arenapref.models import build_model, load_model
from arenapref.models.base import MODEL_FILE
from arenapref.models.sources import STATE_FILE, SourceState, source_weights


@pytest.fixture(scope="module")
def two_sources(pandalm_records, llmbar_records):
    """600 PandaLM + 300 LLMBar rows to train on, 100 + 100 others to predict."""
    train = list(pandalm_records[:600]) + list(llmbar_records[:300])
    test = list(pandalm_records[600:700]) + list(llmbar_records[300:400])
    return train, test


@pytest.fixture(scope="module")
def indicator_model(two_sources):
    from arenapref.config import FeaturesConfig

    cfg = FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1,
                         source_weighting="balanced", source_columns="indicator")
    return build_model(cfg).fit(two_sources[0])


def as_source(records, source):
    return [replace(r, source=source) for r in records]


def test_balanced_weights_give_every_source_the_same_total_weight():
    w = source_weights([900, 100], "balanced")
    assert w[0] * 900 == pytest.approx(w[1] * 100) and (w * [900, 100]).sum() == pytest.approx(1000)
    assert source_weights([900, 100], "none").tolist() == [1.0, 1.0]
    sqrt = source_weights([900, 100], "sqrt")
    assert sqrt[1] / sqrt[0] == pytest.approx(3.0)


def test_the_training_prior_is_weighted_as_the_rows_were(indicator_model, two_sources):
    """Balanced: the prior is the mean of the two sources' priors, not the pooled rows' shares."""
    train = two_sources[0]
    pandalm = [r for r in train if r.source == "pandalm"]
    llmbar = [r for r in train if r.source == "llmbar"]
    expected = (targets(pandalm).mean(axis=0) + targets(llmbar).mean(axis=0)) / 2
    expected = prior(np.array([expected]), 1)[0]
    np.testing.assert_allclose(indicator_model.train_prior_, expected, atol=1e-12)
    assert indicator_model.train_prior_[0] == indicator_model.train_prior_[1]
    assert indicator_model.train_sources_ == {"llmbar": 300, "pandalm": 600}


def test_the_indicator_tells_the_sources_tie_rates_apart(indicator_model, two_sources):
    """The same pairs predicted as PandaLM (11% ties) get more tie mass than as LLMBar (none)."""
    test = two_sources[1]
    as_pandalm = indicator_model.predict_proba(as_source(test, "pandalm"))
    as_llmbar = indicator_model.predict_proba(as_source(test, "llmbar"))
    assert as_pandalm[:, TIE].mean() > 1.5 * as_llmbar[:, TIE].mean()


def test_an_unknown_source_is_predicted_as_the_training_pool(indicator_model, two_sources):
    """Rows of a new source get the average of their predictions as each training source, weighted by the
    sources' shares of the training weight (balanced: one half each)."""
    test = two_sources[1]
    state = indicator_model.sources_
    np.testing.assert_allclose(state.shares(), [0.5, 0.5])
    pooled = indicator_model.predict_proba(as_source(test, "arena"))
    mixture = sum(share * indicator_model.predict_proba(as_source(test, s)) for s, share in zip(state.sources, state.shares()))
    np.testing.assert_allclose(pooled, mixture, atol=1e-12)
    assert state.unknown([r.source for r in as_source(test, "arena")]) == ["arena"]


def test_known_and_unknown_rows_mixed_in_one_call_keep_their_order(indicator_model, two_sources):
    test = two_sources[1]
    mixed = [r if i % 2 else replace(r, source="new") for i, r in enumerate(test)]
    together = indicator_model.predict_proba(mixed)
    one_by_one = np.vstack([indicator_model.predict_proba([r]) for r in mixed])
    np.testing.assert_allclose(together, one_by_one, atol=1e-12)


def test_unknown_source_predictions_are_exactly_swap_equivariant(indicator_model, two_sources):
    test = as_source(two_sources[1], "new")
    forward = indicator_model.predict_proba(test)
    swapped = indicator_model.predict_proba([r.swapped() for r in test])
    assert np.array_equal(swapped, swap_labels(forward))


def test_a_default_source_takes_the_unknown_rows(two_sources, small_features_config):
    train, test = two_sources
    model = build_model(small_features_config(source_columns="indicator", default_source="pandalm")).fit(train)
    np.testing.assert_array_equal(model.predict_proba(as_source(test, "new")), model.predict_proba(as_source(test, "pandalm")))


def test_a_default_source_outside_the_training_rows_is_refused(two_sources, small_features_config):
    with pytest.raises(ConfigError, match="default_source 'arena'"):
        build_model(small_features_config(source_columns="indicator", default_source="arena")).fit(two_sources[0])


def test_tie_rate_columns_hold_each_sources_tie_share_and_the_pool_for_a_new_one(two_sources, small_features_config):
    model = build_model(small_features_config(source_columns="tie_rate", source_weighting="balanced")).fit(two_sources[0])
    state = model.sources_
    cols = state.columns_for(state.resolve(["pandalm", "llmbar", "new"]))[:, 0]
    assert cols[0] > 0.05 and cols[1] == pytest.approx(prior(np.array([[0.5, 0.5, 0.0]]), 1)[0, TIE])
    assert cols[2] == pytest.approx(state.pooled_tie_rate) and cols[1] < cols[2] < cols[0]


def test_the_saved_model_remembers_its_sources(indicator_model, two_sources, tmp_path):
    test = two_sources[1] + as_source(two_sources[1][:20], "new")
    indicator_model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / STATE_FILE).read_text())
    assert [s["name"] for s in saved["sources"]] == ["llmbar", "pandalm"] and saved["columns"] == "indicator"
    meta = json.loads((tmp_path / "m" / MODEL_FILE).read_text())
    assert meta["train_sources"] == {"llmbar": 300, "pandalm": 600}
    assert meta["train_prior"] == pytest.approx(indicator_model.train_prior_.tolist())
    loaded = load_model(tmp_path / "m")
    assert loaded.sources_ == indicator_model.sources_
    np.testing.assert_array_equal(loaded.train_prior_, indicator_model.train_prior_)
    np.testing.assert_array_equal(loaded.predict_proba(test), indicator_model.predict_proba(test))


def test_a_model_saved_before_sources_were_an_input_predicts_as_before(two_sources, small_features_config, tmp_path):
    """No sources.json (an older directory): no source columns, whatever today's config defaults say."""
    train, test = two_sources
    model = build_model(small_features_config(source_columns="none", source_weighting="none", source_trees=0)).fit(train)
    model.save(tmp_path / "old")
    (tmp_path / "old" / STATE_FILE).unlink()
    loaded = load_model(tmp_path / "old")
    assert loaded.sources_ == SourceState()
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))


@pytest.fixture(scope="module")
def source_trees_model(two_sources):
    from arenapref.config import FeaturesConfig

    cfg = FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1,
                         source_weighting="sqrt", source_columns="none", source_trees=20)
    return build_model(cfg).fit(two_sources[0])


def test_source_trees_refine_each_known_source_and_leave_a_new_one_to_the_pool(source_trees_model, two_sources):
    from arenapref.data.record import swap_average

    model, test = source_trees_model, two_sources[1]
    assert set(model.source_boosters_) == {"llmbar", "pandalm"}
    new = as_source(test, "new")
    enc = model.encode(new)  # no source columns: the pooled trees alone
    pool = swap_average(model._predict_design(enc.design()), model._predict_design(enc.swapped().design()))
    np.testing.assert_allclose(model.predict_proba(new), pool, atol=1e-12)
    as_pandalm = model.predict_proba(as_source(test, "pandalm"))
    assert np.abs(as_pandalm - pool).max() > 1e-3
    swapped = model.predict_proba([r.swapped() for r in as_source(test, "pandalm")])
    assert np.array_equal(swapped, swap_labels(as_pandalm))


def test_source_trees_round_trip(source_trees_model, two_sources, tmp_path):
    test = two_sources[1] + as_source(two_sources[1][:20], "new")
    source_trees_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").glob("lightgbm-source-*.txt")) == ["lightgbm-source-0.txt",
                                                                                       "lightgbm-source-1.txt"]
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(test), source_trees_model.predict_proba(test))


def test_a_known_source_is_adapted_from_its_own_prior_and_a_new_one_from_the_pool(indicator_model, two_sources):
    test = [two_sources[1][0], replace(two_sources[1][0], source="new"), two_sources[1][-1]]
    priors = indicator_model.training_priors(test)
    state = indicator_model.sources_
    tie = dict(zip(state.sources, state.tie_rates))
    assert priors[0, TIE] == pytest.approx(tie["pandalm"]) and priors[2, TIE] == pytest.approx(tie["llmbar"])
    np.testing.assert_array_equal(priors[1], indicator_model.train_prior_)
    assert (priors[:, 0] == priors[:, 1]).all()
