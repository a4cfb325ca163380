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
from scipy.sparse import hstack, vstack
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
NGRAMS = (1, 2)  # the word n-grams of a model saved without `tfidf_ngram_max`


def _vectorizer(max_features: int | None = None, vocabulary: dict | None = None, ngrams=NGRAMS, min_df: int = 2,
                analyzer: str = "word") -> TfidfVectorizer:
    return TfidfVectorizer(max_features=max_features, vocabulary=vocabulary, ngram_range=tuple(ngrams), sublinear_tf=True,
                           min_df=1 if vocabulary is not None else min_df, dtype=np.float32, analyzer=analyzer)


def _terms(vectorizer: TfidfVectorizer) -> list[str]:
    """The vocabulary in column order (what the model directory stores)."""
    return sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)


def _vocabulary(state: dict) -> dict[str, int]:
    return {t: i for i, t in enumerate(state["vocabulary"])}


def _cosine(x, y) -> np.ndarray:
    return np.asarray(x.multiply(y).sum(axis=1)).ravel()  # rows are L2-normalised by TfidfVectorizer


def _dataset(X, y, weights, init_score=None, reference=None) -> lgb.Dataset:
    # LightGBM takes hard labels only; a soft target becomes one weighted copy of the row per class.
    rows, cls = np.nonzero(y > 0)
    weight = y[rows, cls] if weights is None else y[rows, cls] * weights[rows]
    return lgb.Dataset(X[rows], label=cls, weight=weight, init_score=None if init_score is None else init_score[rows],
                       reference=reference)


class FeaturesModel(TabularModel):
    family = "features"

    def _is_fitted(self) -> bool:
        return getattr(self, "booster_", None) is not None

    def _project(self, tfidf):
        return np.asarray(tfidf @ self.components_.T)  # TruncatedSVD.transform, with the saved components

    def _word_ngrams(self) -> tuple[int, int]:
        return (1, self.config.tfidf_ngram_max)

    def text_columns(self, records, fitting: bool) -> PairFeatures:
        """TF-IDF of each response reduced by SVD, plus prompt-response and A-B cosine similarities; with character
        n-grams, their A-B and prompt-response similarities too; with `sparse_tfidf`, the TF-IDF columns
        themselves as sparse columns of A and of B."""
        cfg = self.config
        prompts = [join_turns(r.prompt) for r in records]
        a = [join_turns(r.response_a) for r in records]
        b = [join_turns(r.response_b) for r in records]
        if fitting:
            self.tfidf_ = _vectorizer(cfg.tfidf_max_features, ngrams=self._word_ngrams(),
                                      min_df=cfg.tfidf_min_df).fit(a + b + prompts)
            self.char_tfidf_ = None
            if cfg.char_ngram_max:
                self.char_tfidf_ = _vectorizer(cfg.char_max_features, ngrams=(2, cfg.char_ngram_max),
                                               min_df=cfg.tfidf_min_df, analyzer="char_wb").fit(a + b + prompts)
        tp, ta, tb = (self.tfidf_.transform(x) for x in (prompts, a, b))
        if fitting:
            k = max(1, min(cfg.svd_components, ta.shape[1] - 1))
            self.components_ = TruncatedSVD(n_components=k, random_state=cfg.seed).fit(vstack([ta, tb]).tocsr()).components_
        sa, sb = self._project(ta), self._project(tb)
        cols_a, cols_b, cols_pair = [sa, _cosine(ta, tp)[:, None]], [sb, _cosine(tb, tp)[:, None]], [_cosine(ta, tb)[:, None]]
        sparse_a, sparse_b = [ta], [tb]
        if getattr(self, "char_tfidf_", None) is not None:
            cp, ca, cb = (self.char_tfidf_.transform(x) for x in (prompts, a, b))
            cols_a.append(_cosine(ca, cp)[:, None])
            cols_b.append(_cosine(cb, cp)[:, None])
            cols_pair.append(_cosine(ca, cb)[:, None])
            sparse_a.append(ca)
            sparse_b.append(cb)
        enc = PairFeatures(np.hstack(cols_a), np.hstack(cols_b), np.hstack(cols_pair))
        if cfg.sparse_tfidf:
            enc.sparse_a, enc.sparse_b = hstack(sparse_a, format="csr"), hstack(sparse_b, format="csr")
        return enc

    def encode_pair(self, records, fitting=False) -> PairFeatures:
        """The columns of the texts (the embed family adds its embeddings here)."""
        fa, fb, fp = featurize([r.prompt for r in records], [r.response_a for r in records],
                               [r.response_b for r in records], self.config.feature_groups)
        text = self.text_columns(records, fitting)
        return PairFeatures(np.hstack([fa, text.a]), np.hstack([fb, text.b]), np.hstack([fp, text.pair]),
                            text.sparse_a, text.sparse_b)

    def encode(self, records, fitting=False) -> PairFeatures:
        """encode_pair plus the source columns (models/sources.py), last among the pair columns."""
        enc = self.encode_pair(records, fitting)
        if fitting:
            cfg = self.config
            self.sources_ = SourceState.fit(records, cfg.source_columns, cfg.source_weighting, cfg.default_source)
            self.fit_sources_ = np.array([r.source for r in records])  # of the design rows (_fit_design)
            self.fit_groups_ = np.array([r.prompt_key for r in records])  # the inner split of early stopping
        return self._with_sources(enc, self.sources_.resolve([r.source for r in records]))

    def _with_sources(self, enc: PairFeatures, resolved) -> PairFeatures:
        return enc.with_pair(self.sources_.columns_for(resolved))

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
            part = self._with_sources(enc.take(rows), as_sources)
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

    def _train(self, X, y, weights, rounds: int, init_score=None, valid=None) -> lgb.Booster:
        """`rounds` boosting rounds; with `valid` (row indices into X) those rows are held out and the booster
        stops early on their log loss (its best_iteration says where)."""
        cfg = self.config
        params = {
            "objective": "multiclass", "num_class": 3, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction, "lambda_l2": cfg.lambda_l2,
            "num_threads": self._threads(), "seed": cfg.seed, "verbosity": -1, "deterministic": True,
        }
        if valid is None:
            return lgb.train(params, _dataset(X, y, weights, init_score), num_boost_round=rounds)
        fit = np.setdiff1d(np.arange(X.shape[0]), valid)
        take = (lambda v, rows: None if v is None else v[rows])
        train = _dataset(X[fit], y[fit], take(weights, fit), take(init_score, fit))
        held = _dataset(X[valid], y[valid], take(weights, valid), take(init_score, valid), reference=train)
        return lgb.train(params, train, num_boost_round=rounds, valid_sets=[held],
                         callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])

    def _validation_splits(self, n_design: int) -> list[np.ndarray]:
        """Design rows (a pair and its swap together) held out for early stopping, one array per inner split: one
        split of `validation_fraction` of the prompts, or `validation_folds` folds of them; none when early
        stopping is off or the training rows hold too few prompts to spare some."""
        cfg = self.config
        distinct = np.unique(self.fit_groups_)
        if not cfg.early_stopping_rounds or len(distinct) < 10:
            return []
        groups = np.tile(self.fit_groups_, n_design // len(self.fit_groups_))
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(distinct)
        if cfg.validation_folds == 1:
            held = [order[:max(1, int(round(cfg.validation_fraction * len(distinct))))]]
        else:
            held = np.array_split(order, cfg.validation_folds)
        return [np.flatnonzero(np.isin(groups, h)) for h in held]

    def _early_stopped_rounds(self, X, y, weights, of_row, sources, valid) -> dict:
        """Rounds of the pooled model, and of each source's trees on top of it, where log loss on the `valid`
        rows stopped improving."""
        cfg = self.config
        inner = self._train(X, y, weights, cfg.n_estimators, valid=valid)
        rounds = {None: max(1, inner.best_iteration or cfg.n_estimators)}
        if sources:
            base = inner.predict(X, raw_score=True, num_threads=self._threads(), num_iteration=rounds[None])
            for source in sources:
                mine = np.flatnonzero(of_row == source)
                held = np.flatnonzero(np.isin(mine, valid))
                rounds[source] = cfg.source_trees
                if len(held) and len(held) < len(mine):
                    booster = self._train(X[mine], y[mine], None, cfg.source_trees, base[mine], valid=held)
                    rounds[source] = max(1, booster.best_iteration or cfg.source_trees)
        return rounds

    def _fit_design(self, X, y, weights=None) -> None:
        cfg = self.config
        of_row = np.tile(self.fit_sources_, X.shape[0] // len(self.fit_sources_))
        sources = self.sources_.sources if cfg.source_trees and len(self.sources_.sources) > 1 else ()
        rounds = {None: cfg.n_estimators} | {s: cfg.source_trees for s in sources}
        splits = self._validation_splits(X.shape[0])
        if splits:
            # the round counts early stopping finds on the inner split(s) (their mean), then a refit on every row
            found = [self._early_stopped_rounds(X, y, weights, of_row, sources, valid) for valid in splits]
            rounds = {key: max(1, int(round(np.mean([f[key] for f in found])))) for key in rounds}
        self.rounds_ = rounds
        self.booster_ = self._train(X, y, weights, rounds[None])
        self.source_boosters_ = {}
        if sources:
            # each training source's own trees, boosted on its rows alone from the pooled model's scores (with one
            # source the pooled model is that source's)
            base = self.booster_.predict(X, raw_score=True, num_threads=self._threads())
            for source in sources:
                mine = np.flatnonzero(of_row == source)
                self.source_boosters_[source] = self._train(X[mine], y[mine], None, rounds[source], base[mine])

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
        state = {"ngram_range": list(self._word_ngrams()), "sublinear_tf": True, "vocabulary": _terms(self.tfidf_)}
        arrays = {"idf": self.tfidf_.idf_, "components": self.components_} | self._extra_arrays()
        if getattr(self, "char_tfidf_", None) is not None:
            state["char"] = {"analyzer": "char_wb", "ngram_range": list(self.char_tfidf_.ngram_range),
                             "vocabulary": _terms(self.char_tfidf_)}
            arrays["char_idf"] = self.char_tfidf_.idf_
        (directory / TEXT_STATE).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        np.savez(directory / TEXT_ARRAYS, **arrays)
        self.sources_.save(directory)
        for i, source in enumerate(self.sources_.sources):
            if source in self.source_boosters_:
                (directory / SOURCE_BOOSTER.format(i)).write_text(self.source_boosters_[source].model_to_string(),
                                                                 encoding="utf-8")

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
                arrays = dict(arrays)
            self.components_ = arrays["components"]
            self._load_extra_arrays(arrays)
            self.tfidf_ = _vectorizer(vocabulary=_vocabulary(state), ngrams=state.get("ngram_range", NGRAMS))
            self.tfidf_.idf_ = arrays["idf"]
            self.char_tfidf_ = None
            if "char" in state:
                self.char_tfidf_ = _vectorizer(vocabulary=_vocabulary(state["char"]), ngrams=state["char"]["ngram_range"],
                                               analyzer=state["char"]["analyzer"])
                self.char_tfidf_.idf_ = arrays["char_idf"]
        elif (directory / PICKLED_STATE).is_file():
            self._load_pickle(directory / PICKLED_STATE, trust_pickle)
        else:
            raise ModelDirError(f"{directory}: {TEXT_STATE} is missing; the model directory is incomplete, train it again")

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays of a subclass (the embed family's PCA), saved in text_features.npz."""
        return {}

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def _load_pickle(self, path: Path, trust_pickle: bool) -> None:
        if not trust_pickle:
            raise UnsafeModelError(
                f"{path} is a pickle (written by arenapref 0.1): loading it can run any code its author put in. "
                "Retrain the model with this version (it saves data only), or pass --trust-model-code if you trust "
                "whoever wrote this directory")
        import joblib

        state = joblib.load(path)
        self.tfidf_, self.components_ = state["tfidf"], state["svd"].components_
