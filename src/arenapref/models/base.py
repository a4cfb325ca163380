"""The model protocol, A/B swap augmentation and swap test-time augmentation, saving and loading.

Swap handling lives here once: a family encodes records into per-side and symmetric columns
(`PairFeatures`), and this class trains on both orders and averages both orders at prediction.
"""

from __future__ import annotations

import importlib
import json
import platform
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, TypeAdapter

from arenapref._version import __version__
from arenapref.calibrate import Calibrator, load_calibration, save_calibration
from arenapref.data.record import LABELS, PairRecord, swap_labels, targets
from arenapref.metrics import check_probabilities

MODEL_FILE = "arenapref.json"
FAMILIES = {
    "prior": "arenapref.models.prior:PriorModel",
    "features": "arenapref.models.features:FeaturesModel",
    "embed": "arenapref.models.embed:EmbedModel",
    "transformer": "arenapref.models.transformer:TransformerModel",
    "judge": "arenapref.models.judge:JudgeModel",
}


@dataclass
class PairFeatures:
    """Columns of A, columns of B (same layout), and columns that do not depend on the order."""

    a: np.ndarray
    b: np.ndarray
    pair: np.ndarray

    def swapped(self) -> "PairFeatures":
        return PairFeatures(self.b, self.a, self.pair)

    def design(self) -> np.ndarray:
        return np.hstack([self.a, self.b, self.a - self.b, self.pair]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.pair)


class PairModel(ABC):
    """fit(records) -> self; predict_proba(records) -> (n, 3) in LABELS order; save(dir); load(dir)."""

    family: ClassVar[str]
    classes_: tuple[str, ...] = LABELS
    calibration: Calibrator | None = None  # applied last in predict_proba; set by load_model or `arenapref calibrate`

    def __init__(self, config: BaseModel):
        self.config = config

    # --- what a family implements -------------------------------------------------------------
    @abstractmethod
    def encode(self, records: Sequence[PairRecord], fitting: bool = False) -> PairFeatures: ...

    @abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """X: design rows; y: (n, 3) target probabilities."""

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray: ...

    def _save_state(self, directory: Path) -> None: ...

    def _load_state(self, directory: Path) -> None: ...

    # --- the protocol -------------------------------------------------------------------------
    def fit(self, records: Sequence[PairRecord], progress=None) -> "PairModel":
        if not records:
            raise ValueError("cannot fit on zero rows")
        y = targets(records)
        enc = self.encode(records, fitting=True)
        X = enc.design()
        if self.config.swap_augment:
            X = np.vstack([X, enc.swapped().design()])
            y = np.vstack([y, swap_labels(y)])
        self._fit(X, y)
        self.n_train_ = len(records)
        return self

    def predict_proba(self, records: Sequence[PairRecord], swap_tta: bool | None = None) -> np.ndarray:
        """One row per record, in order: P(A wins), P(B wins), P(tie)."""
        if not records:
            return np.zeros((0, 3))
        tta = self.config.swap_tta if swap_tta is None else swap_tta
        enc = self.encode(records)
        probs = self._predict(enc.design())
        if tta:
            probs = (probs + swap_labels(self._predict(enc.swapped().design()))) / 2
        if self.calibration is not None:
            probs = self.calibration.transform(probs)
        return check_probabilities(probs, len(records), f"{self.family} model")

    def save(self, directory: str | Path) -> Path:
        from arenapref.config import save_config

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_state(directory)
        save_config(self.config, directory / "config.yaml")
        meta = {
            "family": self.family, "labels": list(LABELS), "arenapref_version": __version__,
            "config": json.loads(self.config.model_dump_json()), "n_train": getattr(self, "n_train_", None),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        save_calibration(directory, self.calibration)
        return directory


def _family_class(family: str) -> type[PairModel]:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(FAMILIES)}")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config: BaseModel) -> PairModel:
    return _family_class(config.family)(config)


def load_model(directory: str | Path) -> PairModel:
    from arenapref.config import ModelConfig

    directory = Path(directory)
    meta_path = directory / MODEL_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} is not an arenapref model directory (no {MODEL_FILE}); train one with `arenapref train`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if tuple(meta.get("labels", LABELS)) != LABELS:
        raise ValueError(f"{directory}: saved label order {meta['labels']} differs from {list(LABELS)}")
    config = TypeAdapter(ModelConfig).validate_python(meta["config"])
    model = build_model(config)
    model._load_state(directory)
    model.n_train_ = meta.get("n_train")
    model.calibration = load_calibration(directory)
    return model
