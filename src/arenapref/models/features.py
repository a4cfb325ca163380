"""`features`: hand-made response and pair measurements plus TF-IDF/SVD text columns, into LightGBM.

The row's source is an input too (`source_weighting`, `source_columns`, `default_source`; models/sources.py):
its columns are appended to the order-free pair columns, so swap symmetry is untouched, and a row of a source
the model never saw is predicted as the training pool.

Saved as data only: the booster as LightGBM's text format, the TF-IDF vocabulary as JSON and its idf weights and
the SVD projection as NumPy arrays (`text_features.json`, `text_features.npz`, read with allow_pickle=False).
Directories written by arenapref 0.1 hold a joblib pickle instead, which could run code on load: they are
refused unless the caller trusts them explicitly (`load_model(..., trust_pickle=True)`, `--trust-model-code`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightgbm as lgb
import numpy as np
from scipy.sparse import vstack
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from arenapref.errors import ModelDirError, UnsafeModelError
from arenapref.models.base import PairFeatures, TabularModel
from arenapref.models.sources import SourceState
from arenapref.text.features import featurize, join_turns

TEXT_STATE = "text_features.json"
TEXT_ARRAYS = "text_features.npz"
PICKLED_STATE = "text_features.joblib"  # arenapref 0.1
SOURCE_BOOSTER = "lightgbm-source-{}.txt"  # the trees of the i-th training source (sources.json order)
NGRAMS = (1, 2)


def _vectorizer(max_features: int | None = None, vocabulary: dict | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(max_features=max_features, vocabulary=vocabulary, ngram_range=NGRAMS, sublinear_tf=True,
                           min_df=1 if vocabulary is not None else 2, dtype=np.float32)


class FeaturesModel(TabularModel):
    family = "features"

    def _is_fitted(self) -> bool:
        return getattr(self, "booster_", None) is not None

    def _project(self, tfidf):
        return np.asarray(tfidf @ self.components_.T)  # TruncatedSVD.transform, with the saved components

    def text_columns(self, records, fitting: bool) -> PairFeatures:
        """TF-IDF of each response reduced by SVD, plus prompt-response and A-B cosine similarities."""
        cfg = self.config
        prompts = [join_turns(r.prompt) for r in records]
        a = [join_turns(r.response_a) for r in records]
        b = [join_turns(r.response_b) for r in records]
        if fitting:
            self.tfidf_ = _vectorizer(cfg.tfidf_max_features).fit(a + b + prompts)
        tp, ta, tb = (self.tfidf_.transform(x) for x in (prompts, a, b))
        if fitting:
            k = max(1, min(cfg.svd_components, ta.shape[1] - 1))
            self.components_ = TruncatedSVD(n_components=k, random_state=cfg.seed).fit(vstack([ta, tb]).tocsr()).components_
        sa, sb = self._project(ta), self._project(tb)
        cos_pa = np.asarray(ta.multiply(tp).sum(axis=1)).ravel()  # rows are L2-normalised by TfidfVectorizer
        cos_pb = np.asarray(tb.multiply(tp).sum(axis=1)).ravel()
        cos_ab = np.asarray(ta.multiply(tb).sum(axis=1)).ravel()
        return PairFeatures(np.column_stack([sa, cos_pa]), np.column_stack([sb, cos_pb]), cos_ab[:, None])

    def encode_pair(self, records, fitting=False) -> PairFeatures:
        """The columns of the texts (the embed family adds its embeddings here)."""
        fa, fb, fp = featurize([r.prompt for r in records], [r.response_a for r in records], [r.response_b for r in records])
        text = self.text_columns(records, fitting)
        return PairFeatures(np.hstack([fa, text.a]), np.hstack([fb, text.b]), np.hstack([fp, text.pair]))

    def encode(self, records, fitting=False) -> PairFeatures:
        """encode_pair plus the source columns (models/sources.py), last among the pair columns."""
        enc = self.encode_pair(records, fitting)
        if fitting:
            cfg = self.config
            self.sources_ = SourceState.fit(records, cfg.source_columns, cfg.source_weighting, cfg.default_source)
            self.fit_sources_ = np.array([r.source for r in records])  # of the design rows (_fit_design)
        return self._with_sources(enc, self.sources_.resolve([r.source for r in records]))

    def _with_sources(self, enc: PairFeatures, resolved) -> PairFeatures:
        return PairFeatures(enc.a, enc.b, np.hstack([enc.pair, self.sources_.columns_for(resolved)]))

    def training_weights(self, records):
        return self.sources_.row_weights(records)

    def training_priors(self, records):
        """A row of a known source is predicted under that source's own prior when the model tells sources apart
        (source columns or source trees); every other row under the (weighted) training pool's."""
        priors = super().training_priors(records)
        if self.sources_.columns == "none" and not self.source_boosters_:
            return priors
        tie = dict(zip(self.sources_.sources, self.sources_.tie_rates))
        for i, source in enumerate(self.sources_.resolve([r.source for r in records])):
            if source is not None:
                priors[i] = [(1 - tie[source]) / 2, (1 - tie[source]) / 2, tie[source]]
        return priors

    def _predict_orders(self, records, swap_tta, options):
        """As TabularModel's, except that a row of a known source gets its source's own trees (source_trees), and
        a row of a source the indicator columns cannot describe is predicted as every training source, averaged
        with the sources' shares of the training weight (the pool)."""
        pooled = self.sources_.pooled_rows([r.source for r in records])
        if options is not None or not (pooled.any() or self.source_boosters_):
            return super()._predict_orders(records, swap_tta, options)
        enc = self.encode_pair(records)
        resolved = self.sources_.resolve([r.source for r in records])
        forward = np.zeros((len(records), 3))
        swapped = np.zeros((len(records), 3)) if swap_tta else None

        def add(rows, as_sources, weight=1.0):
            part = self._with_sources(PairFeatures(enc.a[rows], enc.b[rows], enc.pair[rows]), as_sources)
            forward[rows] += weight * self._predict_as(part.design(), as_sources)
            if swap_tta:
                swapped[rows] += weight * self._predict_as(part.swapped().design(), as_sources)

        known = np.flatnonzero(~pooled)
        if len(known):
            add(known, [resolved[i] for i in known])
        unknown = np.flatnonzero(pooled)
        for source, share in zip(self.sources_.sources, self.sources_.shares()) if len(unknown) else ():
            add(unknown, [source] * len(unknown), share)
        return forward, swapped

    def _threads(self) -> int:
        return self.config.n_jobs or os.cpu_count() or 1

    def _train(self, X, y, weights, rounds: int, init_score=None) -> lgb.Booster:
        # LightGBM takes hard labels only; a soft target becomes one weighted copy of the row per class.
        rows, cls = np.nonzero(y > 0)
        weight = y[rows, cls] if weights is None else y[rows, cls] * weights[rows]
        cfg = self.config
        params = {
            "objective": "multiclass", "num_class": 3, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction, "lambda_l2": cfg.lambda_l2,
            "num_threads": self._threads(), "seed": cfg.seed, "verbosity": -1, "deterministic": True,
        }
        data = lgb.Dataset(X[rows], label=cls, weight=weight, init_score=None if init_score is None else init_score[rows])
        return lgb.train(params, data, num_boost_round=rounds)

    def _fit_design(self, X, y, weights=None) -> None:
        self.booster_ = self._train(X, y, weights, self.config.n_estimators)
        self.source_boosters_ = {}
        if self.config.source_trees and len(self.sources_.sources) > 1:
            # each training source's own trees, boosted on its rows alone from the pooled model's scores (with one
            # source the pooled model is that source's)
            of_row = np.tile(self.fit_sources_, len(X) // len(self.fit_sources_))
            base = self.booster_.predict(X, raw_score=True, num_threads=self._threads())
            for source in self.sources_.sources:
                mine = of_row == source
                self.source_boosters_[source] = self._train(X[mine], y[mine], None, self.config.source_trees, base[mine])

    def _predict_design(self, X) -> np.ndarray:
        return self.booster_.predict(X, num_threads=self._threads())

    def _predict_as(self, X, as_sources) -> np.ndarray:
        """Probabilities of design rows predicted as the given training sources (their own trees added)."""
        if not self.source_boosters_:
            return self._predict_design(X)
        raw = self.booster_.predict(X, raw_score=True, num_threads=self._threads())
        as_sources = np.asarray(as_sources, dtype=object)
        for source, booster in self.source_boosters_.items():
            mine = as_sources == source
            if mine.any():
                raw[mine] += booster.predict(X[mine], raw_score=True, num_threads=self._threads())
        raw = np.exp(raw - raw.max(axis=1, keepdims=True))
        return raw / raw.sum(axis=1, keepdims=True)

    def _save_state(self, directory: Path) -> None:
        # written by Python, not LightGBM's C writer, so a full disk is an OSError like every other write
        (directory / "lightgbm.txt").write_text(self.booster_.model_to_string(), encoding="utf-8")
        vocabulary = sorted(self.tfidf_.vocabulary_, key=self.tfidf_.vocabulary_.get)
        (directory / TEXT_STATE).write_text(json.dumps({"ngram_range": list(NGRAMS), "sublinear_tf": True,
                                                        "vocabulary": vocabulary}, ensure_ascii=False), encoding="utf-8")
        np.savez(directory / TEXT_ARRAYS, idf=self.tfidf_.idf_, components=self.components_)
        self.sources_.save(directory)
        for i, source in enumerate(self.sources_.sources):
            if source in self.source_boosters_:
                self.source_boosters_[source].save_model(str(directory / SOURCE_BOOSTER.format(i)))

    def _load_state(self, directory: Path, trust_pickle: bool = False) -> None:
        booster = directory / "lightgbm.txt"
        if not booster.is_file():
            raise ModelDirError(f"{directory}: lightgbm.txt is missing; the model directory is incomplete, train it again")
        try:
            self.booster_ = lgb.Booster(model_file=str(booster))
        except lgb.basic.LightGBMError as e:
            raise ModelDirError(f"{booster}: unreadable LightGBM model ({str(e).splitlines()[0]}); train it again") from None
        self.sources_ = SourceState.load(directory)
        self.source_boosters_ = {}
        for i, source in enumerate(self.sources_.sources):
            path = directory / SOURCE_BOOSTER.format(i)
            if path.is_file():
                self.source_boosters_[source] = lgb.Booster(model_file=str(path))
        if (directory / TEXT_STATE).is_file():
            state = json.loads((directory / TEXT_STATE).read_text(encoding="utf-8"))
            with np.load(directory / TEXT_ARRAYS, allow_pickle=False) as arrays:
                idf, self.components_ = arrays["idf"], arrays["components"]
            self.tfidf_ = _vectorizer(vocabulary={t: i for i, t in enumerate(state["vocabulary"])})
            self.tfidf_.idf_ = idf
        elif (directory / PICKLED_STATE).is_file():
            self._load_pickle(directory / PICKLED_STATE, trust_pickle)
        else:
            raise ModelDirError(f"{directory}: {TEXT_STATE} is missing; the model directory is incomplete, train it again")

    def _load_pickle(self, path: Path, trust_pickle: bool) -> None:
        if not trust_pickle:
            raise UnsafeModelError(
                f"{path} is a pickle (written by arenapref 0.1): loading it can run any code its author put in. "
                "Retrain the model with this version (it saves data only), or pass --trust-model-code if you trust "
                "whoever wrote this directory")
        import joblib

        state = joblib.load(path)
        self.tfidf_, self.components_ = state["tfidf"], state["svd"].components_
