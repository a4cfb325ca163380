"""Moving a model's predictions to a test set's class prior, without that set's labels.

A model's outputs are posteriors under the prior it was trained under (`PairModel.training_priors(records)`:
the training pool's, or a known source's own for a source-aware model). When the test
set has another prior (another tie rate) but the same class-conditional distributions, Bayes' rule gives the
posteriors under the new prior by reweighting each class and renormalising each row (Saerens, Latinne &
Decaestecker 2002, "Adjusting the outputs of a classifier to new a priori probabilities: a simple procedure"):

    q(k | x) = (pi_new[k] / pi_train[k]) p(k | x) / sum_j (pi_new[j] / pi_train[j]) p(j | x)

- `shift_to_tie_rate(probs, train_prior, R)`: the new prior is ((1 - R) / 2, (1 - R) / 2, R): the user knows the
  target's tie rate (`predict --tie-rate R`).
- `estimate_prior(probs, train_prior)`: the new prior is estimated from the test rows' own predictions by the EM
  of Saerens et al. (E: reweight the posteriors with the current prior; M: the prior is their mean), constrained to
  P(A) = P(B): that is EM on the test set together with its A/B swap, the maximum-likelihood prior among the
  swap-symmetric ones (`predict --adapt-prior`).

Both keep A/B swap symmetry exactly: the weights of A and B are the same number, so reweighting commutes with
swapping the columns, and the EM estimate is the same for a test set and its swap.

Where each is right: `--tie-rate` when the target's tie rate is known (the Arena's is about 0.3; a labelled sample
tells it); `--adapt-prior` when it is not, the test set is large (hundreds of rows), and it differs from the
training data in its class mix only (LLMEval2 subsampled to 5% and 40% ties: EM lands within 0.04, the mean P(tie)
0.10-0.16 off; tests/test_adapt.py). Both assume the model is reasonably calibrated on its training distribution and
that only the prior moved. On a source unlike the training sets that fails: the model's P(tie) moves for reasons
other than ties, the likelihood has no maximum inside and EM runs to 0 or 1 (leave-one-source-out on the shared
sets, BENCHMARKS.md); such an estimate is reported and not applied. Neither can create ties that a model trained
without ties never predicts (its P(tie) is near zero everywhere), and neither fixes a model that ranks A against B
badly on the new set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from arenapref.data.record import TIE
from arenapref.errors import UsageError

# Prior probabilities are kept inside (MIN_PRIOR, 1 - 2 MIN_PRIOR): a class at 0 would stay at 0 forever in EM and
# divide by zero in the weights.
MIN_PRIOR = 1e-6
# Below this training tie share the model has (almost) never seen a tie: a prior shift cannot add ties to it.
FEW_TIES = 0.01
# An EM estimate this close to 0 or 1 means the likelihood has no maximum inside: (nearly) every row looks less (or
# more) tie-like than under the training prior, which is what a new source does to the predictions (covariate
# shift), not what a prior shift alone does. Applying it would put (almost) no mass on ties, or on anything else,
# and a single row of the other kind would cost tens of nats: the estimate is reported, not applied.
EDGE = 0.005


def symmetric_prior(tie_rate: float) -> np.ndarray:
    """(P(A), P(B), P(tie)) with P(A) = P(B) and the given tie rate.

    >>> symmetric_prior(0.3).tolist()
    [0.35, 0.35, 0.3]
    """
    t = float(np.clip(tie_rate, MIN_PRIOR, 1 - 2 * MIN_PRIOR))
    return np.array([(1 - t) / 2, (1 - t) / 2, t])


def _symmetric(prior: np.ndarray) -> np.ndarray:
    """The swap-symmetric form of a prior (3,) or of one prior per row (n, 3)."""
    p = np.asarray(prior, dtype=float)
    if p.shape[-1:] != (3,) or p.ndim > 2 or not np.isfinite(p).all() or (p < 0).any() or (p.sum(axis=-1) <= 0).any():
        raise ValueError(f"a prior is three non-negative numbers (P(A), P(B), P(tie)) or one such row per "
                         f"prediction, got shape {p.shape}")
    t = np.clip(p[..., TIE] / p.sum(axis=-1), MIN_PRIOR, 1 - 2 * MIN_PRIOR)
    return np.stack([(1 - t) / 2, (1 - t) / 2, t], axis=-1)


def _mean_prior(train_prior: np.ndarray) -> list[float]:
    sym = _symmetric(train_prior)
    return (sym if sym.ndim == 1 else sym.mean(axis=0)).tolist()


def reweight(probs: np.ndarray, train_prior: np.ndarray, new_prior: np.ndarray) -> np.ndarray:
    """Posteriors under `new_prior` of posteriors `probs` under `train_prior` (both priors taken swap-symmetric:
    P(A) = P(B) = (1 - P(tie)) / 2). `train_prior` is (3,) or one prior per row (n, 3): a source-aware model
    predicts a row of a known source under that source's prior."""
    p = np.asarray(probs, dtype=float)
    w = _symmetric(new_prior) / _symmetric(train_prior)
    w[..., 1] = w[..., 0]  # one number for both sides (not two equal-looking ones): reweighting commutes with the swap
    q = p * w
    return q / (q[:, 0] + q[:, 1] + q[:, 2])[:, None]  # a + b + tie == b + a + tie exactly


@dataclass
class PriorAdaptation:
    """What an adaptation did: the prior shifted from and to, and (EM) how the estimate was reached."""

    method: str  # "tie_rate" or "em"
    train_prior: list[float]
    target_prior: list[float]
    rows: int
    mean_tie_before: float  # mean P(tie) of the predictions before and after
    mean_tie_after: float
    iterations: int = 0
    converged: bool = True
    warnings: list[str] | None = None
    applied: bool = True  # False: the EM estimate ran to 0 or 1 and the predictions were left as they were

    @property
    def tie_rate(self) -> float:
        return self.target_prior[TIE]

    def to_dict(self) -> dict:
        return asdict(self) | {"tie_rate": self.tie_rate}


def _warnings(train_prior: np.ndarray) -> list[str]:
    if _mean_prior(train_prior)[TIE] < FEW_TIES:
        return [f"the model was trained with a tie share of {_mean_prior(train_prior)[TIE]:.4f}: it has (almost) never "
                "seen a tie, so a prior shift cannot put mass on ties; train on data with ties (several sources), or "
                "calibrate on labelled rows of the target (`arenapref calibrate MODEL --target DATA`)"]
    return []


def shift_to_tie_rate(probs: np.ndarray, train_prior: np.ndarray, tie_rate: float) -> tuple[np.ndarray, PriorAdaptation]:
    """Posteriors for a test set whose tie rate is `tie_rate` (and P(A) = P(B)).

    Args:
        probs: (n, 3) predictions of a model trained under `train_prior`.
        train_prior: the model's training prior, (3,) or one per row (`model.training_priors(records)`).
        tie_rate: the test set's share of ties, strictly between 0 and 1.
    Returns:
        (adapted (n, 3) predictions, PriorAdaptation).
    """
    if not 0 < tie_rate < 1:
        raise UsageError(f"--tie-rate {tie_rate}: give the test set's share of ties, strictly between 0 and 1 (the "
                         "Arena's is about 0.3)")
    p = np.asarray(probs, dtype=float)
    target = symmetric_prior(tie_rate)
    q = reweight(p, train_prior, target)
    return q, PriorAdaptation("tie_rate", _mean_prior(train_prior), target.tolist(), len(p),
                              _mean_tie(p), _mean_tie(q), warnings=_warnings(train_prior))


def estimate_prior(probs: np.ndarray, train_prior: np.ndarray, max_iter: int = 1000,
                   tol: float = 1e-8) -> tuple[np.ndarray, int, bool]:
    """The swap-symmetric class prior of unlabelled rows by EM (Saerens et al. 2002) on their predictions.

    Args:
        probs: (n, 3) predictions of a model trained under `train_prior`.
        train_prior: the model's training prior, (3,) or one per row.
        max_iter, tol: stop after this many steps, or when the tie share moves less than `tol`.
    Returns:
        (prior (3,), iterations, converged).
    """
    p = np.asarray(probs, dtype=float)
    if len(p) == 0:
        raise UsageError("--adapt-prior needs test rows to estimate their prior from")
    prior = symmetric_prior(_mean_prior(train_prior)[TIE])
    for it in range(1, max_iter + 1):
        # M step on the test set and its swap: P(tie) is the mean adapted P(tie), P(A) = P(B) share the rest
        tie = float(np.clip(_mean_tie(reweight(p, train_prior, prior)), MIN_PRIOR, 1 - 2 * MIN_PRIOR))
        moved = abs(tie - prior[TIE])
        prior = symmetric_prior(tie)
        if moved < tol:
            return prior, it, True
    return prior, max_iter, False


def adapt_prior(probs: np.ndarray, train_prior: np.ndarray, max_iter: int = 1000,
                tol: float = 1e-8) -> tuple[np.ndarray, PriorAdaptation]:
    """Posteriors under the test set's own prior, estimated by `estimate_prior`."""
    p = np.asarray(probs, dtype=float)
    prior, iterations, converged = estimate_prior(p, train_prior, max_iter, tol)
    q = reweight(p, train_prior, prior)
    warnings = _warnings(train_prior)
    if not converged:
        warnings.append(f"the prior estimate had not settled after {iterations} EM steps")
    applied = True
    if not EDGE < prior[TIE] < 1 - EDGE and not warnings:
        side = "lower" if prior[TIE] <= EDGE else "higher"
        applied, q = False, p
        warnings.append(f"EM ran to a tie rate of {prior[TIE]:.3f}: the model's P(tie) on these rows is {side} than under "
                        "its training prior almost everywhere, without telling ties apart. That is what rows unlike the "
                        "training data (a new source) do, so the estimate is unreliable and was not applied: the "
                        "predictions are the model's own. Give --tie-rate if you know the rate")
    return q, PriorAdaptation("em", _mean_prior(train_prior), prior.tolist(), len(p), _mean_tie(p),
                              _mean_tie(q), iterations, converged, warnings, applied)


def _mean_tie(probs: np.ndarray) -> float:
    return float(np.mean(probs[:, TIE])) if len(probs) else float("nan")
