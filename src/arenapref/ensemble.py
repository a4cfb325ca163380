"""Blending several models' prediction files: simplex weights (or a small stacked logistic model) chosen on
out-of-fold predictions, scored cross-fitted by fold, then applied to the models' test predictions.

Inputs are files, not models, so any mix of families (or outside predictions) works: out-of-fold files as
written by `arenapref cv` (id, fold, label and the three winner columns) and submissions (id and the three
winner columns), rows matched by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from arenapref.data.record import LABELS, swap_labels
from arenapref.errors import PredictionFileError, UsageError
from arenapref.files import write_json
from arenapref.metrics import EPS, accuracy, check_probabilities, log_loss
from arenapref.predictions import read_prediction_file

DEFAULT_FOLDS = 5


@dataclass
class PredictionSet:
    """Several files' predictions for the same rows, aligned to the first file's row order."""

    names: list[str]
    paths: list[Path]
    ids: list[str]
    probs: list[np.ndarray]  # one (n, 3) matrix per file
    targets: np.ndarray | None = None  # (n, 3) one-hot, from the first file's `label` column
    folds: np.ndarray | None = None  # from the first file's `fold` column
    sources: np.ndarray | None = None


def _name(path: Path) -> str:
    return path.parent.name if path.stem in ("oof", "submission") and path.parent.name else path.stem


def read_predictions(paths: Sequence[str | Path], need_labels: bool = False) -> PredictionSet:
    """Read and align prediction files by id; any difference in the id sets is an error naming file and ids."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise PredictionFileError("no prediction files given")
    frames = [read_prediction_file(p, need_labels) for p in paths]
    first = frames[0]
    ids = first["id"].tolist()
    id_set = set(ids)
    for path, df in zip(paths[1:], frames[1:]):
        absent, extra = sorted(id_set - set(df["id"])), sorted(set(df["id"]) - id_set)
        if absent or extra:
            raise PredictionFileError(
                f"{path} does not cover the same rows as {paths[0]}: missing id(s) {absent[:5]} ({len(absent)}), "
                f"unknown id(s) {extra[:5]} ({len(extra)}); prediction files must be made from the same data")
    frames = [df.loc[ids] for df in frames]
    targets = folds = None
    if "label" in first.columns:
        labels = first["label"].to_numpy()
        for path, df in zip(paths[1:], frames[1:]):
            if "label" in df.columns and (df["label"].to_numpy() != labels).any():
                bad = first["id"][df["label"].to_numpy() != labels].tolist()
                raise PredictionFileError(f"{path}: labels differ from {paths[0]} for id(s) {bad[:5]}")
        targets = np.eye(3)[[LABELS.index(v) for v in labels]]
    if "fold" in first.columns:
        folds = first["fold"].to_numpy(int)
    names = [_name(p) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    return PredictionSet(
        names=names, paths=paths, ids=ids,
        probs=[check_probabilities(df[list(LABELS)].to_numpy(), len(ids), str(p)) for p, df in zip(paths, frames)],
        targets=targets, folds=folds, sources=first["source"].to_numpy() if "source" in first.columns else None,
    )


def default_folds(n: int, n_splits: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % n_splits)


# --- weights --------------------------------------------------------------------------------------------------


def blend(probs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return np.tensordot(np.asarray(weights, dtype=float), np.stack(probs), axes=1)


def fit_weights(probs: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the log loss of the weighted average (SLSQP)."""
    stack = np.clip(np.stack(probs), EPS, 1.0)  # (m, n, 3)
    m, n = stack.shape[0], stack.shape[1]

    def loss_and_grad(w):
        q = np.clip(np.tensordot(w, stack, axes=1), EPS, None)
        loss = -(targets * np.log(q)).sum() / n
        grad = -(targets[None] * stack / q[None]).sum(axis=(1, 2)) / n
        return loss, grad

    res = minimize(loss_and_grad, np.full(m, 1 / m), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}])
    w = np.clip(res.x, 0.0, None)
    w = w / w.sum() if w.sum() > 0 else np.full(m, 1 / m)
    # the simplex includes every single model, so the blend must never lose to one of them on its fitting rows
    candidates = [w, *np.eye(m)]
    return min(candidates, key=lambda c: loss_and_grad(c)[0])


# --- stacking -------------------------------------------------------------------------------------------------


class Stacker:
    """Multinomial logistic regression on every model's log-probabilities, trained on both A/B orders and
    averaged over both at prediction, so the stack is as swap-symmetric as its inputs."""

    def __init__(self, C: float = 1.0):
        self.C = C

    @staticmethod
    def _design(probs: Sequence[np.ndarray]) -> np.ndarray:
        return np.hstack([np.log(np.clip(p, EPS, 1.0)) for p in probs])

    def fit(self, probs: Sequence[np.ndarray], targets: np.ndarray) -> "Stacker":
        from sklearn.linear_model import LogisticRegression

        X = np.vstack([self._design(probs), self._design([swap_labels(p) for p in probs])])
        y = np.concatenate([targets.argmax(axis=1), swap_labels(targets).argmax(axis=1)])
        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(X, y)
        return self

    def _proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), 3))
        out[:, self.model_.classes_] = self.model_.predict_proba(X)
        return out

    def predict_proba(self, probs: Sequence[np.ndarray]) -> np.ndarray:
        direct = self._proba(self._design(probs))
        swapped = swap_labels(self._proba(self._design([swap_labels(p) for p in probs])))
        return check_probabilities((direct + swapped) / 2, len(direct), "stacked predictions")

    def to_dict(self) -> dict:
        return {"C": self.C, "classes": [LABELS[k] for k in self.model_.classes_],
                "coef": self.model_.coef_.tolist(), "intercept": self.model_.intercept_.tolist()}


# --- cross-fitting and the whole job --------------------------------------------------------------------------


def cross_fit(probs: Sequence[np.ndarray], targets: np.ndarray, folds: np.ndarray, stack: bool = False) -> np.ndarray:
    """Blended (or stacked) predictions where each fold's rows use weights fitted on the other folds only."""
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2:
        raise UsageError("cross-fitted blending needs at least two folds")
    out = np.empty_like(probs[0])
    for k in np.unique(folds):
        held = folds == k
        train = [p[~held] for p in probs]
        test = [p[held] for p in probs]
        if stack:
            out[held] = Stacker().fit(train, targets[~held]).predict_proba(test)
        else:
            out[held] = blend(test, fit_weights(train, targets[~held]))
    return out


@dataclass
class EnsembleResult:
    names: list[str]
    weights: np.ndarray
    table: pd.DataFrame  # model, weight, oof logloss, oof acc: one row per input, then the blend (and stack)
    method: str  # "weights" or "stack"
    blend_oof: np.ndarray
    stacker: Stacker | None = None
    test_ids: list[str] | None = None
    test_probs: np.ndarray | None = None
    files: list[dict] = field(default_factory=list)  # per input: {"oof": path, "test": path}

    def to_dict(self) -> dict:
        return {
            "method": self.method, "labels": list(LABELS),
            "inputs": [{"name": n, "weight": float(w), **f} for n, w, f in zip(self.names, self.weights, self.files)],
            "oof": self.table.to_dict(orient="records"),
            **({"stacker": self.stacker.to_dict()} if self.stacker is not None else {}),
        }


def ensemble(oof_paths: Sequence[str | Path], test_paths: Sequence[str | Path] | None = None, stack: bool = False) -> EnsembleResult:
    """Fit blend weights (and optionally a stacker) on out-of-fold files; blend the test files if given.

    Args:
        oof_paths: one oof.csv per model (from `arenapref cv`), rows matched by id.
        test_paths: each model's test predictions (submission CSVs), in the same order; None: no blending.
        stack: a logistic stack on the log-probabilities instead of simplex weights.
    Returns:
        EnsembleResult: `weights`, a cross-fitted `table` per input and for the blend, and `test_probs`.

    >>> result = ensemble(["runs/a/oof.csv", "runs/b/oof.csv"], ["a.csv", "b.csv"]); result.weights  # doctest: +SKIP
    """
    if test_paths and len(test_paths) != len(oof_paths):
        raise PredictionFileError(f"{len(oof_paths)} out-of-fold file(s) but {len(test_paths)} test file(s): "
                                  "give one test prediction file per model, in the same order")
    oof = read_predictions(oof_paths, need_labels=True)
    folds = oof.folds if oof.folds is not None else default_folds(len(oof.ids))
    y = oof.targets
    weights = fit_weights(oof.probs, y)
    rows = [{"model": n, "weight": float(w), "oof logloss": log_loss(y, p), "oof acc": accuracy(y, p)}
            for n, w, p in zip(oof.names, weights, oof.probs)]
    blend_oof = cross_fit(oof.probs, y, folds)
    rows.append({"model": "blend (weights fitted on other folds)", "weight": "",
                 "oof logloss": log_loss(y, blend_oof), "oof acc": accuracy(y, blend_oof)})
    stacker = None
    if stack:
        stack_oof = cross_fit(oof.probs, y, folds, stack=True)
        rows.append({"model": "stack (fitted on other folds)", "weight": "",
                     "oof logloss": log_loss(y, stack_oof), "oof acc": accuracy(y, stack_oof)})
        stacker = Stacker().fit(oof.probs, y)
        blend_oof = stack_oof
    files = [{"oof": str(p)} for p in oof.paths]
    result = EnsembleResult(oof.names, weights, pd.DataFrame(rows), "stack" if stack else "weights", blend_oof, stacker,
                            files=files)
    if test_paths:
        test = read_predictions(test_paths)
        result.test_ids = test.ids
        result.test_probs = stacker.predict_proba(test.probs) if stacker is not None else blend(test.probs, weights)
        for f, p in zip(files, test.paths):
            f["test"] = str(p)
    return result


def write_weights(result: EnsembleResult, path: str | Path) -> Path:
    return write_json(path, result.to_dict(), "ensemble weights")
