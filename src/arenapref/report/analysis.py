"""The numbers behind the report: out-of-fold predictions aligned to the data, baselines on the same folds,
calibration, confusion, log loss by slice, swap consistency and length bias. Pure functions, no HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.data.record import (
    A_WINS,
    B_WINS,
    LABELS,
    TIE,
    PairRecord,
    hard_labels,
    swap_labels,
)
from arenapref.errors import PredictionFileError
from arenapref.metrics import fold_prior, log_loss, uniform
from arenapref.predictions import read_prediction_file
from arenapref.text.features import response_chars

SHORT = ("A wins", "B wins", "tie")


def parse_oof_arg(item: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH`; a bare path is named after its file, or its folder when the file is oof.csv."""
    name, sep, path = item.partition("=")
    if sep and name and not Path(item).exists():
        return name, Path(path)
    path = Path(item)
    stem = path.name.split(".")[0]
    return (path.resolve().parent.name if stem == "oof" else stem) or str(path), path


def read_oof(path: Path) -> pd.DataFrame:
    """An oof.csv from `arenapref cv` (the one prediction-file reader, predictions.py)."""
    return read_prediction_file(path).reset_index(drop=True)


@dataclass
class Scored:
    """The rows that every oof file predicts, with each model's and the baselines' probabilities on them."""

    records: list[PairRecord]
    fold_ids: np.ndarray
    probs: dict[str, np.ndarray]  # "uniform", "prior", then each oof model, in the order given
    models: list[str]  # the oof models only
    notes: list[str] = field(default_factory=list)

    @property
    def y(self) -> np.ndarray:
        return np.eye(3)[hard_labels(self.records)]


def align_oof(records: Sequence[PairRecord], named: Sequence[tuple[str, Path]]) -> Scored | None:
    """Match oof rows to data rows by id; baselines are computed on the oof's folds (the first file's)."""
    if not named:
        return None
    notes = []
    by_id = {r.id: i for i, r in enumerate(records)}
    frames, names = [], []
    for name, path in named:
        df = read_oof(path)
        known = df["id"].isin(by_id)
        if not known.any():
            raise PredictionFileError(f"{path}: none of its {len(df)} ids is in the data; were these predictions made on it?")
        if (~known).any():
            notes.append(f"{name}: {int((~known).sum())} of {len(df)} oof rows have ids not in the data and are left out")
        base, k = name, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        frames.append(df[known].set_index("id"))
        names.append(name)
    common = [r.id for r in records if all(r.id in f.index for f in frames)]
    if not common:
        raise PredictionFileError("the oof files share no row ids: they cover different data")
    if len(common) < len(records):
        notes.append(f"scores cover the {len(common)} of {len(records)} data rows that every oof file predicts")
    rows = [records[by_id[i]] for i in common]
    labels = np.array([LABELS[k] for k in hard_labels(rows)])
    for name, f in zip(names, frames):
        if "label" in f.columns:
            differ = int((f.loc[common, "label"].astype(str).to_numpy() != labels).sum())
            if differ:
                notes.append(f"{name}: the oof label differs from the data label on {differ} row(s); the data label is used")
    first = frames[0]
    folds = first.loc[common, "fold"].to_numpy() if "fold" in first.columns else np.zeros(len(common), int)
    y = np.eye(3)[hard_labels(rows)]
    probs = {"uniform": uniform(len(rows)), "prior": fold_prior(y, folds)}
    if len(np.unique(folds)) < 2:
        notes.append("no folds in the oof file: the prior baseline is the in-sample class share")
    for name, f in zip(names, frames):
        p = f.loc[common, list(LABELS)].to_numpy(float)
        probs[name] = p / p.sum(axis=1, keepdims=True)
    return Scored(rows, folds, probs, names, notes)


def cv_table(scored: Scored) -> pd.DataFrame:
    """Rows: pooled, each fold, each source (when several); log loss and accuracy of every model and baseline."""
    from arenapref.cv import score_table

    table = score_table(scored.records, scored.fold_ids, scored.probs)
    pooled = table[table["slice"] == "pooled"]
    return pd.concat([pooled, table[table["slice"] != "pooled"]], ignore_index=True)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per class and equal-width bin of the predicted probability: rows, mean predicted, observed frequency."""
    rows = []
    edges = np.linspace(0, 1, bins + 1)
    for k in range(3):
        which = np.clip(np.digitize(p[:, k], edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            m = which == b
            if m.any():
                rows.append({"class": SHORT[k], "bin": b, "rows": int(m.sum()),
                             "predicted": float(p[m, k].mean()), "observed": float(y[m, k].mean())})
    return pd.DataFrame(rows)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
    rel = reliability(y, p, bins)
    out = {}
    for name, g in rel.groupby("class", sort=False):
        out[name] = float((g["rows"] * (g["predicted"] - g["observed"]).abs()).sum() / len(y))
    return out


def confusion(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Counts: rows = true label, columns = the predicted (argmax) label."""
    m = np.zeros((3, 3), int)
    np.add.at(m, (np.argmax(y, 1), np.argmax(p, 1)), 1)
    return m


def total_response_chars(records: Sequence[PairRecord]) -> np.ndarray:
    return np.array([response_chars(r.response_a) + response_chars(r.response_b) for r in records])


def _short_number(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def length_buckets(records: Sequence[PairRecord], n: int = 5) -> np.ndarray:
    chars = total_response_chars(records)
    edges = np.unique(np.quantile(chars, np.linspace(0, 1, n + 1)))
    if len(edges) < 2:
        return np.array([f"{_short_number(chars[0])} chars"] * len(chars), dtype=object)
    idx = np.clip(np.searchsorted(edges, chars, side="right") - 1, 0, len(edges) - 2)
    names = [f"{_short_number(edges[i])}-{_short_number(edges[i + 1])}" for i in range(len(edges) - 1)]
    return np.array([f"{i + 1}: {names[i]}" for i in idx], dtype=object)


def turn_buckets(records: Sequence[PairRecord]) -> np.ndarray:
    return np.array([f"{r.n_turns} turn{'s' if r.n_turns > 1 else ''}" if r.n_turns < 4 else "4+ turns" for r in records],
                    dtype=object)


def loss_by(scored: Scored, groups: np.ndarray) -> pd.DataFrame:
    """One row per group (sorted): rows, tie rate, and the log loss of every model and baseline."""
    y = scored.y
    out = []
    for g in sorted(set(groups)):
        m = groups == g
        row = {"group": g, "rows": int(m.sum()), "tie rate": float(y[m, TIE].mean())}
        row |= {name: log_loss(y[m], p[m]) for name, p in scored.probs.items()}
        out.append(row)
    return pd.DataFrame(out)


def breakdowns(scored: Scored) -> dict[str, pd.DataFrame]:
    recs = scored.records
    return {
        "response length (chars, A + B)": loss_by(scored, length_buckets(recs)),
        "source": loss_by(scored, np.array([r.source or "-" for r in recs], dtype=object)),
        "turns": loss_by(scored, turn_buckets(recs)),
    }


@dataclass
class SwapCheck:
    original: np.ndarray  # predictions as given
    swapped_back: np.ndarray  # predictions on the swapped pairs, mapped back to the original A/B
    y: np.ndarray

    @property
    def tta(self) -> np.ndarray:
        return (self.original + self.swapped_back) / 2

    def summary(self) -> dict[str, float]:
        flips = np.argmax(self.original, 1) != np.argmax(self.swapped_back, 1)
        # P(first-shown answer wins) - P(second-shown wins), averaged over both presentations of each pair
        first_minus_second = ((self.original[:, A_WINS] - self.original[:, B_WINS])
                              + (self.swapped_back[:, B_WINS] - self.swapped_back[:, A_WINS])) / 2
        return {
            "rows": len(self.y),
            "verdict changes on swap": float(flips.mean()),
            "mean |change| of P(A wins)": float(np.abs(self.original[:, A_WINS] - self.swapped_back[:, A_WINS]).mean()),
            "position bias: mean P(first wins) - P(second wins)": float(first_minus_second.mean()),
            "log loss, as given": log_loss(self.y, self.original),
            "log loss, swapped": log_loss(self.y, self.swapped_back),
            "log loss, swap-TTA average": log_loss(self.y, self.tta),
        }


def swap_check(model, records: Sequence[PairRecord]) -> SwapCheck:
    original = model.predict_proba(list(records), swap_tta=False)
    swapped = model.predict_proba([r.swapped() for r in records], swap_tta=False)
    return SwapCheck(original, swap_labels(swapped), np.eye(3)[hard_labels(records)])


def length_sides(records: Sequence[PairRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(index of the longer side: 0 = A, 1 = B, -1 = same length; |log length ratio|)."""
    la = np.array([response_chars(r.response_a) for r in records], dtype=float)
    lb = np.array([response_chars(r.response_b) for r in records], dtype=float)
    longer = np.where(la > lb, A_WINS, np.where(lb > la, B_WINS, -1))
    return longer, np.abs(np.log((la + 1) / (lb + 1)))


RATIO_EDGES = (0.0, 0.25, 0.5, 1.0, np.inf)


def _ratio_bucket_names() -> list[str]:
    names = []
    for lo, hi in zip(RATIO_EDGES[:-1], RATIO_EDGES[1:]):
        lo_x, hi_x = np.exp(lo), np.exp(hi)
        names.append(f"over {lo_x:.1f}x" if np.isinf(hi) else f"{lo_x:.1f}-{hi_x:.1f}x")
    return names


def length_bias(records: Sequence[PairRecord], predictions: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of decisive outcomes won by the longer answer: from the labels, and expected under each model's
    predictions (sum P(longer wins) / sum (P(longer wins) + P(shorter wins))). Pairs of equal length are left
    out. Returns (overall, by length-ratio bucket)."""
    longer, ratio = length_sides(records)
    differ = longer >= 0
    y = np.eye(3)[hard_labels(records)]
    rows = np.flatnonzero(differ)
    side = longer[rows]

    def shares(p: np.ndarray, idx: np.ndarray, sides: np.ndarray) -> tuple[float, float]:
        p_long = p[idx, sides]
        p_short = p[idx, 1 - sides]
        decisive = p_long + p_short
        return (float(p_long.sum() / decisive.sum()) if decisive.sum() > 0 else float("nan"), float(p[idx, TIE].mean()))

    sources = {"data labels": y} | predictions
    overall = []
    for name, p in sources.items():
        share, tie = shares(p, rows, side)
        overall.append({"from": name, "pairs": len(rows), "longer answer's share of wins": share, "tie share": tie})
    bucket_names = _ratio_bucket_names()
    bucket = np.clip(np.searchsorted(RATIO_EDGES, ratio[rows], side="right") - 1, 0, len(bucket_names) - 1)
    by = []
    for b, bname in enumerate(bucket_names):
        m = bucket == b
        row = {"length ratio": bname, "pairs": int(m.sum())}
        for name, p in sources.items():
            row[name] = shares(p, rows[m], side[m])[0] if m.any() else float("nan")
        by.append(row)
    return pd.DataFrame(overall), pd.DataFrame(by)


def overview(records: Sequence[PairRecord]) -> dict:
    from arenapref.data.stats import describe

    d = describe(records)
    turns = pd.Series(turn_buckets(records)).value_counts().sort_index()
    d["turn_counts"] = turns.to_dict()
    return d
