"""The class prior: the baseline every other model must beat (swap-symmetric, as metrics.prior)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arenapref.metrics import prior
from arenapref.models.base import PairFeatures, TabularModel


class PriorModel(TabularModel):
    family = "prior"

    def encode(self, records, fitting=False) -> PairFeatures:
        empty = np.zeros((len(records), 0), dtype=np.float32)
        return PairFeatures(empty, empty, empty)

    def _is_fitted(self) -> bool:
        return getattr(self, "prior_", None) is not None

    def _fit_design(self, X, y, weights=None) -> None:
        self.prior_ = prior(y, 1, symmetric=False)[0]

    def _predict_design(self, X) -> np.ndarray:
        return np.tile(self.prior_, (len(X), 1))

    def _save_state(self, directory: Path) -> None:
        (directory / "prior.json").write_text(json.dumps(self.prior_.tolist()))

    def _load_state(self, directory: Path, trust_pickle: bool = False) -> None:
        self.prior_ = np.asarray(json.loads((directory / "prior.json").read_text()))
