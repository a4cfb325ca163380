"""Fitting calibrations on held-out predictions and reporting them honestly (each fold scored by a calibrator
fitted on the other folds). The calibrator itself, softmax(log(p) / T + bias), is models/calibration.py; a model
stores it in its directory (calibration.json) and applies it last at every prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arenapref.data.record import TIE
from arenapref.errors import UsageError
from arenapref.metrics import fold_prior, log_loss
from arenapref.models.base import CALIBRATION_FILE
from arenapref.models.calibration import Calibrator

__all__ = ["CALIBRATION_FILE", "Calibrator", "calibration_table", "cross_fit"]


def cross_fit(probs: np.ndarray, targets: np.ndarray, folds: np.ndarray, symmetric: bool = True) -> np.ndarray:
    """Calibrated predictions where each fold's rows come from a calibrator fitted on the other folds only."""
    probs, folds = np.asarray(probs, dtype=float), np.asarray(folds)
    if len(np.unique(folds)) < 2:
        raise UsageError("cross-fitted calibration needs at least two folds")
    out = np.empty_like(probs)
    for k in np.unique(folds):
        held = folds == k
        out[held] = Calibrator(symmetric).fit(probs[~held], targets[~held]).transform(probs[held])
    return out


def calibration_table(targets: np.ndarray, before: np.ndarray, after: np.ndarray, folds: np.ndarray,
                      sources: np.ndarray | None = None) -> pd.DataFrame:
    """Log loss before and after calibration beside the prior baseline on the same folds (metrics.fold_prior, as
    `cv` and `report` compute it), and true vs predicted tie rate, per fold, pooled and per source."""
    n = len(targets)
    baseline = fold_prior(targets, folds)
    slices = [(f"fold {k}", folds == k) for k in np.unique(folds)] + [("pooled", np.ones(n, bool))]
    if sources is not None and len(set(sources)) > 1:
        slices += [(f"source {s}", sources == s) for s in sorted(set(sources))]
    rows = []
    for name, m in slices:
        rows.append({
            "slice": name, "rows": int(m.sum()), "tie rate": float(targets[m, TIE].mean()),
            "pred tie before": float(before[m, TIE].mean()), "pred tie after": float(after[m, TIE].mean()),
            "logloss before": log_loss(targets[m], before[m]), "logloss after": log_loss(targets[m], after[m]),
            "prior logloss": log_loss(targets[m], baseline[m]),
        })
    return pd.DataFrame(rows)
