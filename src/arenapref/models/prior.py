"""The class prior: the baseline every other model must beat."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arenapref.models.base import PairFeatures, PairModel


class PriorModel(PairModel):
    family = "prior"

    def encode(self, records, fitting=False) -> PairFeatures:
        empty = np.zeros((len(records), 0), dtype=np.float32)
        return PairFeatures(empty, empty, empty)

    def _fit(self, X, y) -> None:
        p = y.mean(axis=0) + 1e-3  # floor: a class unseen in training must not score infinity
        self.prior_ = p / p.sum()

    def _predict(self, X) -> np.ndarray:
        return np.tile(self.prior_, (len(X), 1))

    def _save_state(self, directory: Path) -> None:
        (directory / "prior.json").write_text(json.dumps(self.prior_.tolist()))

    def _load_state(self, directory: Path) -> None:
        self.prior_ = np.asarray(json.loads((directory / "prior.json").read_text()))
