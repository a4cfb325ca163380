"""Scores of probability predictions against labels, and the baselines every score is shown beside."""

from __future__ import annotations

import numpy as np

# As sklearn.metrics.log_loss (which the competition's grader calls): probabilities are clipped to the machine
# epsilon of float64 and renormalised per row.
EPS = float(np.finfo(np.float64).eps)
# The prior baseline's floor: a class the training rows never show must not score infinity on the test rows.
PRIOR_FLOOR = 1e-3
_SWAP = np.array([1, 0, 2])


def log_loss(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean multi-class log loss. `targets` is (n, 3) one-hot or soft; probs are clipped and renormalised
    per row, as the Kaggle grader (sklearn.metrics.log_loss) does."""
    p = np.clip(np.asarray(probs, dtype=float), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-(np.asarray(targets) * np.log(p)).sum(axis=1).mean())


# Probabilities this close to a row's maximum count as tied with it (averaging both A/B orders can leave an
# exact tie off by a rounding error).
TIE_TOLERANCE = 1e-12


def accuracy(targets: np.ndarray, probs: np.ndarray) -> float:
    """Share of rows whose most probable class is the target's (the argmax of `targets`, i.e. hard labels).

    Where k classes share a row's maximum probability, the row earns 1/k if the target is one of them: the
    expected accuracy of breaking the tie at random. (np.argmax breaks every tie towards the first class, so a
    symmetric prior with P(A) = P(B) would be credited with every A win.) NaN for no rows.
    """
    p = np.asarray(probs, dtype=float)
    if len(p) == 0:
        return float("nan")
    target = np.argmax(np.asarray(targets), axis=1)
    tied = p >= p.max(axis=1, keepdims=True) - TIE_TOLERANCE
    credit = tied[np.arange(len(p)), target] / tied.sum(axis=1)
    return float(credit.mean())


def uniform(n: int) -> np.ndarray:
    return np.full((n, 3), 1 / 3)


def prior(train_targets: np.ndarray, n: int, symmetric: bool = True, weights: np.ndarray | None = None) -> np.ndarray:
    """The prior baseline: the class shares of the training targets, swap-symmetric (P(A) = P(B), as a model
    trained on both orders of every pair sees them), floored so a class unseen in training does not score
    infinity. What `cv`, `calibrate`, `report` and the `prior` model all use (the model passes
    symmetric=False: with swap augmentation its targets hold both orders already, without it the user asked
    for the shares as they are). `weights` (one per row): the shares of a weighted training set, e.g. the
    prior a model fitted with per-source sample weights was trained under."""
    t = np.asarray(train_targets, dtype=float)
    if len(t) == 0:
        return uniform(n)
    w = None if weights is None else np.asarray(weights, dtype=float)
    mean = t.mean(axis=0) if w is None else (w[:, None] * t).sum(axis=0) / w.sum()
    shares = ((mean + mean[_SWAP]) / 2 if symmetric else mean) + PRIOR_FLOOR
    return np.tile(shares / shares.sum(), (n, 1))


def fold_prior(targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The prior baseline out of fold: each fold's rows get `prior` of the other folds' targets (with one fold,
    the in-sample shares). One definition for the "prior" of `cv`, `calibrate` and `report`."""
    targets, folds = np.asarray(targets, dtype=float), np.asarray(folds)
    out = np.empty((len(targets), 3))
    keys = np.unique(folds)
    for k in keys:
        held = folds == k
        out[held] = prior(targets[~held] if len(keys) > 1 else targets, int(held.sum()))
    return out


def check_probabilities(probs: np.ndarray, n: int, what: str = "predictions") -> np.ndarray:
    """Every prediction path ends here: exactly n rows, 3 columns, finite, non-negative, rows summing to 1."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (n, 3):
        raise RuntimeError(f"{what}: expected shape ({n}, 3), got {probs.shape}")
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1)
    if bad.any():
        raise RuntimeError(f"{what}: {bad.sum()} row(s) not finite or negative, first at row {int(np.flatnonzero(bad)[0])}")
    return probs / probs.sum(axis=1, keepdims=True)
