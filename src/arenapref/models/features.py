"""`features`: hand-made response and pair measurements plus TF-IDF/SVD text columns, into LightGBM.

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
from arenapref.text.features import featurize, join_turns

TEXT_STATE = "text_features.json"
TEXT_ARRAYS = "text_features.npz"
PICKLED_STATE = "text_features.joblib"  # arenapref 0.1
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

    def encode(self, records, fitting=False) -> PairFeatures:
        fa, fb, fp = featurize([r.prompt for r in records], [r.response_a for r in records], [r.response_b for r in records])
        text = self.text_columns(records, fitting)
        return PairFeatures(np.hstack([fa, text.a]), np.hstack([fb, text.b]), np.hstack([fp, text.pair]))

    def _threads(self) -> int:
        return self.config.n_jobs or os.cpu_count() or 1

    def _fit_design(self, X, y) -> None:
        # LightGBM takes hard labels only; a soft target becomes one weighted copy of the row per class.
        rows, cls = np.nonzero(y > 0)
        cfg = self.config
        params = {
            "objective": "multiclass", "num_class": 3, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction, "lambda_l2": cfg.lambda_l2,
            "num_threads": self._threads(), "seed": cfg.seed, "verbosity": -1, "deterministic": True,
        }
        data = lgb.Dataset(X[rows], label=cls, weight=y[rows, cls])
        self.booster_ = lgb.train(params, data, num_boost_round=cfg.n_estimators)

    def _predict_design(self, X) -> np.ndarray:
        return self.booster_.predict(X, num_threads=self._threads())

    def _save_state(self, directory: Path) -> None:
        # written by Python, not LightGBM's C writer, so a full disk is an OSError like every other write
        (directory / "lightgbm.txt").write_text(self.booster_.model_to_string(), encoding="utf-8")
        vocabulary = sorted(self.tfidf_.vocabulary_, key=self.tfidf_.vocabulary_.get)
        (directory / TEXT_STATE).write_text(json.dumps({"ngram_range": list(NGRAMS), "sublinear_tf": True,
                                                        "vocabulary": vocabulary}, ensure_ascii=False), encoding="utf-8")
        np.savez(directory / TEXT_ARRAYS, idf=self.tfidf_.idf_, components=self.components_)

    def _load_state(self, directory: Path, trust_pickle: bool = False) -> None:
        booster = directory / "lightgbm.txt"
        if not booster.is_file():
            raise ModelDirError(f"{directory}: lightgbm.txt is missing; the model directory is incomplete, train it again")
        try:
            self.booster_ = lgb.Booster(model_file=str(booster))
        except lgb.basic.LightGBMError as e:
            raise ModelDirError(f"{booster}: unreadable LightGBM model ({str(e).splitlines()[0]}); train it again") from None
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
