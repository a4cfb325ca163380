"""`features`: hand-made response and pair measurements plus TF-IDF/SVD text columns, into LightGBM."""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from arenapref.models.base import PairFeatures, PairModel
from arenapref.text.features import featurize, join_turns


class FeaturesModel(PairModel):
    family = "features"

    def text_columns(self, records, fitting: bool) -> PairFeatures:
        """TF-IDF of each response reduced by SVD, plus prompt-response and A-B cosine similarities."""
        cfg = self.config
        prompts = [join_turns(r.prompt) for r in records]
        a = [join_turns(r.response_a) for r in records]
        b = [join_turns(r.response_b) for r in records]
        if fitting:
            self.tfidf_ = TfidfVectorizer(max_features=cfg.tfidf_max_features, ngram_range=(1, 2), sublinear_tf=True,
                                          min_df=2, dtype=np.float32)
            self.tfidf_.fit(a + b + prompts)
        tp, ta, tb = (self.tfidf_.transform(x) for x in (prompts, a, b))
        if fitting:
            k = max(1, min(cfg.svd_components, ta.shape[1] - 1))
            self.svd_ = TruncatedSVD(n_components=k, random_state=cfg.seed).fit(_stack(ta, tb))
        sa, sb = self.svd_.transform(ta), self.svd_.transform(tb)
        cos_pa = np.asarray(ta.multiply(tp).sum(axis=1)).ravel()  # rows are L2-normalised by TfidfVectorizer
        cos_pb = np.asarray(tb.multiply(tp).sum(axis=1)).ravel()
        cos_ab = np.asarray(ta.multiply(tb).sum(axis=1)).ravel()
        return PairFeatures(np.column_stack([sa, cos_pa]), np.column_stack([sb, cos_pb]), cos_ab[:, None])

    def encode(self, records, fitting=False) -> PairFeatures:
        fa, fb, fp = featurize([r.prompt for r in records], [r.response_a for r in records], [r.response_b for r in records])
        text = self.text_columns(records, fitting)
        return PairFeatures(np.hstack([fa, text.a]), np.hstack([fb, text.b]), np.hstack([fp, text.pair]))

    def _fit(self, X, y) -> None:
        # LightGBM takes hard labels only; a soft target becomes one weighted copy of the row per class.
        rows, cls = np.nonzero(y > 0)
        cfg = self.config
        params = {
            "objective": "multiclass", "num_class": 3, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction, "lambda_l2": cfg.lambda_l2,
            "num_threads": cfg.n_jobs or os.cpu_count() or 1, "seed": cfg.seed, "verbosity": -1, "deterministic": True,
        }
        data = lgb.Dataset(X[rows], label=cls, weight=y[rows, cls])
        self.booster_ = lgb.train(params, data, num_boost_round=cfg.n_estimators)

    def _predict(self, X) -> np.ndarray:
        return self.booster_.predict(X, num_threads=self.config.n_jobs or os.cpu_count() or 1)

    def _save_state(self, directory: Path) -> None:
        self.booster_.save_model(str(directory / "lightgbm.txt"))
        joblib.dump({"tfidf": self.tfidf_, "svd": self.svd_}, directory / "text_features.joblib")

    def _load_state(self, directory: Path) -> None:
        self.booster_ = lgb.Booster(model_file=str(directory / "lightgbm.txt"))
        state = joblib.load(directory / "text_features.joblib")
        self.tfidf_, self.svd_ = state["tfidf"], state["svd"]


def _stack(*mats):
    from scipy.sparse import vstack

    return vstack(mats).tocsr()
