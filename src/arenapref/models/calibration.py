"""Temperature and per-class bias calibration of (n, 3) predictions: calibrated = softmax(log(p) / T + bias).

The tie bias is how a model trained on one tie rate is moved to another; the temperature fixes over- or
under-confidence. A symmetric calibrator has bias_a == bias_b, so it commutes with the A/B swap and keeps swap-TTA
predictions swap-equivariant. A model applies its calibration last in predict_proba (models/base.py); fitting
it on held-out predictions and reporting it is `arenapref calibrate` (calibrate.py).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from arenapref.data.record import LABELS, TIE
from arenapref.metrics import EPS

KIND = "temperature_bias"
# A class absent from the fitting targets would push its bias to minus infinity and score infinity the day it
# shows up; this ridge stops it near P = 1e-5 instead, and costs a well-supported bias almost nothing.
BIAS_RIDGE = 1e-6
INVERSE_T_BOUNDS = (0.02, 50.0)
# A model trained without ties predicts P(tie) near the EPS floor (log = -36); the tie bias must reach past it.
BIAS_BOUNDS = (-50.0, 50.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(probs: np.ndarray, what: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != 3:
        raise ValueError(f"{what}: expected an (n, 3) matrix in the order {list(LABELS)}, got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{what}: {int((~np.isfinite(probs)).any(axis=1).sum())} row(s) are not finite")
    return probs


class Calibrator:
    """softmax(log(p) / temperature + bias), fitted by minimising log loss.

    symmetric=True fits two numbers: the temperature and one tie-vs-not-tie bias (bias = [0, 0, b_tie]).
    symmetric=False also fits an A-vs-B offset (bias = [d, -d, b_tie]), which breaks swap-equivariance.

    >>> cal = Calibrator().fit(oof_probs, oof_targets)  # doctest: +SKIP
    >>> model.calibration = cal; save_calibration("models/features", cal)  # applied by every later prediction
    """

    def __init__(self, symmetric: bool = True):
        self.symmetric = symmetric
        self.temperature = 1.0
        self.bias = np.zeros(3)
        self.info: dict = {}

    def _bias(self, params: np.ndarray) -> np.ndarray:
        d = 0.0 if self.symmetric else params[2]
        return np.array([d, -d, params[1]]) + 0.0  # + 0.0 turns -0.0 into 0.0

    def fit(self, probs: np.ndarray, targets: np.ndarray) -> "Calibrator":
        """probs: (n, 3) uncalibrated predictions; targets: (n, 3) one-hot or soft labels of the same rows."""
        probs, targets = _check(probs, "calibration predictions"), _check(targets, "calibration targets")
        if len(probs) != len(targets):
            raise ValueError(f"calibration: {len(probs)} prediction rows but {len(targets)} target rows")
        if len(probs) == 0:
            raise ValueError("calibration: cannot fit on zero rows")
        z = np.log(np.clip(probs, EPS, 1.0))
        n = len(z)
        weight = targets.sum(axis=1, keepdims=True)

        # parametrised by the inverse temperature the logits are linear in the parameters, so the loss is convex
        def loss_and_grad(params):
            bias = self._bias(params)
            logits = params[0] * z + bias
            logp = logits - logits.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            loss = -(targets * logp).sum() / n + BIAS_RIDGE * (bias ** 2).sum()
            g = (weight * np.exp(logp) - targets) / n  # d loss / d logits
            grad = [(g * z).sum(), g[:, TIE].sum() + 2 * BIAS_RIDGE * bias[TIE]]
            if not self.symmetric:
                grad.append(g[:, 0].sum() - g[:, 1].sum() + 4 * BIAS_RIDGE * bias[0])
            return loss, np.array(grad)

        n_params = 2 if self.symmetric else 3
        bounds = [INVERSE_T_BOUNDS] + [BIAS_BOUNDS] * (n_params - 1)
        start = np.r_[1.0, np.zeros(n_params - 1)]
        res = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds)
        self.temperature = float(1 / res.x[0])
        self.bias = self._bias(res.x)
        self.info = {"n_fit": n, "converged": bool(res.success)}
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        probs = _check(probs, "predictions to calibrate")
        return _softmax(np.log(np.clip(probs, EPS, 1.0)) / self.temperature + self.bias)

    def to_dict(self) -> dict:
        return {"kind": KIND, "labels": list(LABELS), "symmetric": self.symmetric, "temperature": self.temperature,
                "bias": [float(b) for b in self.bias], **self.info}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibrator":
        if data.get("kind") != KIND:
            raise ValueError(f"unknown calibration kind {data.get('kind')!r}; expected {KIND!r}")
        if tuple(data.get("labels", LABELS)) != LABELS:
            raise ValueError(f"calibration label order {data['labels']} differs from {list(LABELS)}")
        bias = np.asarray(data["bias"], dtype=float)
        temperature = float(data["temperature"])
        if bias.shape != (3,) or not np.isfinite(bias).all() or not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"invalid calibration: temperature {temperature}, bias {data['bias']}")
        cal = cls(symmetric=bool(data.get("symmetric", True)))
        cal.temperature, cal.bias = temperature, bias
        cal.info = {k: v for k, v in data.items() if k not in ("kind", "labels", "symmetric", "temperature", "bias")}
        return cal

    def __repr__(self) -> str:
        return f"Calibrator(temperature={self.temperature:.4g}, bias={np.round(self.bias, 4).tolist()}, symmetric={self.symmetric})"
