"""Specification of the optional settings of the `features` family (text/features.py groups, n-gram ranges,
character TF-IDF, sparse columns, early stopping) and of the legacy defaults that keep a model directory written
before those settings existed predicting exactly as it did. Real PandaLM rows. The contract checks (order, swap
equivariance, round trip, calibration) run for these settings in tests/test_contract.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arenapref.config import FeaturesConfig
from arenapref.models import build_model, load_model
from arenapref.models.base import MODEL_FILE
from arenapref.text.features import (
    FEATURE_GROUPS,
    featurize,
    pair_feature_names,
    response_feature_names,
)

ALL_GROUPS = list(FEATURE_GROUPS)


@pytest.fixture(scope="module")
def rows(pandalm_records):
    return list(pandalm_records[:200]), list(pandalm_records[200:240])


def test_every_group_adds_its_named_columns_and_is_swap_symmetric(pandalm_records):
    rows = pandalm_records[:40]
    prompts, a, b = [r.prompt for r in rows], [r.response_a for r in rows], [r.response_b for r in rows]
    fa, fb, fp = featurize(prompts, a, b, ALL_GROUPS)
    assert fa.shape == fb.shape == (40, len(response_feature_names(ALL_GROUPS)))
    assert fp.shape == (40, len(pair_feature_names(ALL_GROUPS)))
    assert np.isfinite(fa).all() and np.isfinite(fp).all()
    base = featurize(prompts, a, b)
    np.testing.assert_array_equal(fa[:, :base[0].shape[1]], base[0])  # the basic columns first, unchanged
    sa, sb, sp = featurize(prompts, b, a, ALL_GROUPS)
    np.testing.assert_array_equal(sa, fb)
    np.testing.assert_array_equal(sp, fp)  # |A - B| and every other pair column does not depend on the order
    # the length and readability columns vary on real answers (PandaLM's plain-text answers have no markdown, so
    # some structure and style columns are constant there)
    names = response_feature_names(ALL_GROUPS)
    spread = dict(zip(names, np.ptp(np.vstack([fa, fb]), axis=0)))
    assert all(spread[n] > 0 for n in FEATURE_GROUPS["length"] + FEATURE_GROUPS["readability"])


def test_the_style_group_reads_what_it_names():
    from arenapref.text.features import group_features

    names = FEATURE_GROUPS["style"]
    text = "As an AI language model, I'm sorry, but I cannot help with that. I hope this helps!"
    values = dict(zip(names, group_features((text,), 10, ("style",))))
    assert values["as_an_ai"] == 1 and values["apology"] == 1 and values["closer"] == 1 and values["n_refusals"] >= 1
    plain = dict(zip(names, group_features(("Paris is the capital of France.",), 10, ("style",))))
    assert plain["as_an_ai"] == plain["apology"] == plain["closer"] == plain["n_refusals"] == 0


def test_an_unknown_group_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="readability"):
        featurize([("q",)], [("a",)], [("b",)], ["readablity"])
    with pytest.raises(Exception, match="readability"):
        FeaturesConfig(feature_groups=["readablity"])


def test_early_stopping_picks_fewer_rounds_than_the_ceiling_and_refits_on_every_row(rows):
    train, _ = rows
    model = build_model(FeaturesConfig(n_estimators=800, early_stopping_rounds=10, learning_rate=0.1,
                                       tfidf_max_features=2000, svd_components=6, n_jobs=1)).fit(train, progress=False)
    assert 1 <= model.rounds_[None] < 800
    assert model.booster_.num_trees() == 3 * model.rounds_[None]  # the refit's round count, 3 classes per round


def test_sparse_columns_and_char_ngrams_change_the_model(rows):
    train, test = rows
    small = dict(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1)
    plain = build_model(FeaturesConfig(**small)).fit(train, progress=False)
    rich = build_model(FeaturesConfig(**small, char_ngram_max=4, char_max_features=3000, sparse_tfidf=True)).fit(
        train, progress=False)
    assert rich.char_tfidf_ is not None and len(rich.char_tfidf_.vocabulary_) == 3000
    assert rich.booster_.num_feature() > plain.booster_.num_feature() + 2 * 2000
    assert np.abs(rich.predict_proba(test) - plain.predict_proba(test)).max() > 1e-3


def test_a_model_saved_before_the_new_settings_loads_with_the_old_behaviour(rows, tmp_path):
    """An arenapref.json without the new fields (a 0.2.0 model) gets the values that reproduce 0.2.0, not today's
    defaults, so the stored booster sees the columns it was trained on."""
    train, test = rows
    legacy = FeaturesConfig.legacy_defaults
    old = build_model(FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1,
                                     **legacy)).fit(train, progress=False)
    before = old.predict_proba(test)
    directory = old.save(tmp_path / "old")
    meta = json.loads((directory / MODEL_FILE).read_text())
    for key in legacy:
        meta["config"].pop(key)
    (directory / MODEL_FILE).write_text(json.dumps(meta))
    (directory / "config.yaml").unlink(missing_ok=True)
    loaded = load_model(directory)
    for key, value in legacy.items():
        assert getattr(loaded.config, key) == value
    np.testing.assert_array_equal(loaded.predict_proba(test), before)


def test_an_embed_config_saved_before_embedding_columns_keeps_every_raw_dimension():
    from arenapref.config import EmbedConfig, model_config

    old = EmbedConfig().model_dump()
    for key in EmbedConfig.legacy_defaults:
        old.pop(key)
    config = model_config(old)
    assert config.embedding_columns == "raw" and config.feature_groups == [] and config.early_stopping_rounds == 0
    assert EmbedConfig().embedding_columns == "similarity"  # what a model trained today gets
