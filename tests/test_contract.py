"""The model contract, checked for every family (in the spirit of scikit-learn's estimator checks).

Every family, on real PandaLM pairs: one finite row per input, in input order, summing to 1; exact A/B swap
equivariance with swap TTA and NOT without it; predictions that depend on the row; a save/load round trip that
predicts the same; NotFittedError before fit; a calibration applied exactly once, also after a reload. The
prior is the baseline by design: constant and symmetric, so it is checked for exactly that instead.

Each check is a plain function, and `test_the_checks_can_fail` runs them on deliberately broken models.
"""

from __future__ import annotations

import numpy as np
import pytest

from arenapref.config import (
    EmbedConfig,
    FeaturesConfig,
    JudgeConfig,
    PriorConfig,
    TransformerConfig,
)
from arenapref.data.record import swap_labels
from arenapref.errors import NotFittedError
from arenapref.models import build_model, load_model
from arenapref.models.base import PairFeatures, TabularModel
from arenapref.models.calibration import Calibrator

FAMILIES = ["prior", "features", "embed", "transformer", "judge"]
# the same checks for the optional settings that change what a family's columns are (BENCHMARKS.md, features)
VARIANTS = ["features, every option", "embed, pca", "embed, raw"]
FAMILIES += VARIANTS
SEQUENCE = {"transformer", "judge"}


@pytest.fixture(scope="module")
def split(pandalm_records):
    rows = list(pandalm_records[:96])
    return rows[:80], rows[80:96]


@pytest.fixture(scope="module")
def configs(tmp_path_factory, tiny_checkpoints):
    from tiny_models import tiny_causal_lm

    root = tmp_path_factory.mktemp("contract")
    lm = tiny_causal_lm(root / "lm")
    seq = dict(max_steps=2, batch_size=8, logging_steps=1, save_steps=100, warmup_ratio=0.0, learning_rate=1e-2,
               max_prompt_tokens=24)
    return {
        "prior": PriorConfig(),
        "features": FeaturesConfig(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1),
        "embed": EmbedConfig(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1,
                             cache_dir=str(root / "cache")),
        "features, every option": FeaturesConfig(
            n_estimators=60, tfidf_max_features=2000, svd_components=6, n_jobs=1, tfidf_ngram_max=3, char_ngram_max=4,
            char_max_features=2000, sparse_tfidf=True, early_stopping_rounds=5, validation_folds=2,
            feature_groups=["length", "readability", "structure", "style", "turns", "symmetric"]),
        "embed, pca": EmbedConfig(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1,
                                  cache_dir=str(root / "cache"), embedding_columns="pca", embedding_pca=4),
        "embed, raw": EmbedConfig(n_estimators=30, tfidf_max_features=2000, svd_components=6, n_jobs=1,
                                  cache_dir=str(root / "cache"), embedding_columns="raw"),
        "transformer": TransformerConfig(model_path=str(tiny_checkpoints("llama")), finetune="full", max_length=64,
                                         checkpoint_dir=str(root / "ck-transformer"), **seq),
        "judge": JudgeConfig(model_path=str(lm), finetune="lora", lora_r=2, max_length=160, token_budget=4096,
                             instruction="Which answer is better?", question="Reply A, B or tie.",
                             checkpoint_dir=str(root / "ck-judge"), **seq),
    }


_fitted: dict = {}


@pytest.fixture
def fitted(request, configs, split):
    family = request.param
    if family not in _fitted:
        _fitted[family] = build_model(configs[family]).fit(split[0], progress=False)
    return _fitted[family]


# --- the checks -----------------------------------------------------------------------------------------------
def check_rows(model, rows):
    p = model.predict_proba(rows)
    assert p.shape == (len(rows), 3) and np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    reversed_p = model.predict_proba(rows[::-1])[::-1]
    np.testing.assert_allclose(reversed_p, p, atol=1e-6, err_msg="rows are not returned in input order")
    return p


def check_swap_equivariant_with_tta(model, rows):
    p = model.predict_proba(rows, swap_tta=True)
    q = model.predict_proba([r.swapped() for r in rows], swap_tta=True)
    np.testing.assert_array_equal(q, swap_labels(p), err_msg="swap TTA is not exactly swap-equivariant")


def check_not_equivariant_without_tta(model, rows):
    one = model.predict_proba(rows, swap_tta=False)
    other = model.predict_proba([r.swapped() for r in rows], swap_tta=False)
    assert np.abs(other - swap_labels(one)).max() > 1e-6, "one order alone is swap-equivariant: is the input read?"


def check_varies_by_row(model, rows):
    p = model.predict_proba(rows)
    assert np.ptp(p, axis=0).max() > 1e-6, "every row gets the same prediction: the model ignores its input"


def check_round_trip(model, rows, directory, atol):
    before = model.predict_proba(rows)
    after = load_model(model.save(directory)).predict_proba(rows)
    np.testing.assert_allclose(after, before, atol=atol, err_msg="a reloaded model predicts differently")


def check_calibration_once(model, rows, directory):
    raw = model.predict_proba(rows)
    calibrator = Calibrator()
    calibrator.temperature, calibrator.bias = 2.0, np.array([0.0, 0.0, 1.0])
    model.calibration = calibrator
    try:
        expected = calibrator.transform(raw)
        np.testing.assert_allclose(model.predict_proba(rows), expected, atol=1e-12)
        reloaded = load_model(model.save(directory))
        assert reloaded.calibration is not None
        np.testing.assert_allclose(reloaded.predict_proba(rows), expected, atol=1e-5,
                                   err_msg="calibration not applied exactly once after a reload")
    finally:
        model.calibration = None


# --- every family -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_not_fitted_error_before_fit(family, configs, split):
    config = configs[family]
    if family == "judge":  # a zero-shot judge has nothing to learn and predicts at once: checked with LoRA
        zero_shot = build_model(config.model_copy(update={"finetune": "none"}))
        assert zero_shot.predict_proba(split[1][:2]).shape == (2, 3)
    model = build_model(config)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict_proba(split[1])
    with pytest.raises(NotFittedError):
        model.save("never-written")


@pytest.mark.parametrize("fitted", FAMILIES, indirect=True)
def test_one_finite_row_per_input_in_order(fitted, split):
    check_rows(fitted, split[1])


@pytest.mark.parametrize("fitted", FAMILIES, indirect=True)
def test_swap_tta_is_exactly_swap_equivariant(fitted, split):
    check_swap_equivariant_with_tta(fitted, split[1])


@pytest.mark.parametrize("fitted", [f for f in FAMILIES if f != "prior"], indirect=True)
def test_one_order_alone_is_not_swap_equivariant_and_rows_differ(fitted, split):
    check_not_equivariant_without_tta(fitted, split[1])
    check_varies_by_row(fitted, split[1])


@pytest.mark.parametrize("fitted", ["prior"], indirect=True)
def test_the_prior_is_constant_and_symmetric_by_design(fitted, split):
    p = fitted.predict_proba(split[1], swap_tta=False)
    assert np.ptp(p, axis=0).max() == 0 and p[0, 0] == p[0, 1]


@pytest.mark.parametrize("fitted", FAMILIES, indirect=True)
def test_save_load_round_trip_predicts_the_same(fitted, split, tmp_path):
    check_round_trip(fitted, split[1], tmp_path / "model", atol=1e-5 if fitted.family in SEQUENCE else 1e-9)


@pytest.mark.parametrize("fitted", FAMILIES, indirect=True)
def test_calibration_is_applied_exactly_once(fitted, split, tmp_path):
    check_calibration_once(fitted, split[1], tmp_path / "calibrated")


# --- the checks are not vacuous -------------------------------------------------------------------------------
class _Broken(TabularModel):
    """A stand-in model with a configurable defect."""

    family = "broken"

    def __init__(self, defect: str):
        super().__init__(PriorConfig())
        self.defect = defect

    def _is_fitted(self):
        return True

    def encode(self, records, fitting=False):
        n = np.array([[len("".join(r.response_a))] for r in records], dtype=np.float32)
        m = np.array([[len("".join(r.response_b))] for r in records], dtype=np.float32)
        return PairFeatures(n, m, np.zeros((len(records), 0), dtype=np.float32))

    def _fit_design(self, X, y):
        pass

    def _predict_design(self, X):
        a, b = X[:, 0], X[:, 1]
        if self.defect == "constant":
            return np.tile([0.4, 0.4, 0.2], (len(X), 1))  # ignores the input, symmetric: passes a bare TTA test
        if self.defect == "order":  # depends on the row's position, not on its content
            return np.column_stack([np.linspace(0.2, 0.6, len(X)), np.full(len(X), 0.3), np.full(len(X), 0.2)])
        # healthy: reads both responses, with a position bias that only swap TTA removes
        p = np.column_stack([1.2 + np.tanh((a - b) / 100), 1 - np.tanh((a - b) / 100), np.full(len(X), 0.5)])
        return p / p.sum(1, keepdims=True)

    def _save_state(self, directory):
        pass

    def _load_state(self, directory, trust_pickle=False):
        pass


def test_the_checks_can_fail(split):
    rows = split[1]
    with pytest.raises(AssertionError, match="ignores its input"):
        check_varies_by_row(_Broken("constant"), rows)
    with pytest.raises(AssertionError, match="is the input read"):
        check_not_equivariant_without_tta(_Broken("constant"), rows)
    with pytest.raises(AssertionError, match="input order"):
        check_rows(_Broken("order"), rows)
    healthy = _Broken("none")
    check_rows(healthy, rows)
    check_varies_by_row(healthy, rows)
    check_not_equivariant_without_tta(healthy, rows)
