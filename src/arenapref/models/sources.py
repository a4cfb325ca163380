"""The source of a pair (`PairRecord.source`: "pandalm", "hh-rlhf", the file stem of a Kaggle file) as an input
of the tabular models (features, embed).

Public preference sets differ in tie rate (0 to 50%), domain and annotators. Pooled as one, the largest set
drowns the others and the model learns one tie rate for all of them. Two settings of `FeaturesConfig` treat the
source as part of the data:

- `source_weighting`: per-row sample weights by source. "balanced" gives every source the same total weight,
  "sqrt" weights a source of n rows by 1/sqrt(n) (between pooled and balanced), "none" weights every row alike.
  Weights are scaled to a mean of 1 per training row.
- `source_columns`: what the model sees of the source. "indicator" adds one 0/1 column per training source (the
  trees can then learn each source's tie rate and style); "tie_rate" adds one column, the source's tie share in
  the training rows; "none" adds nothing.

A row whose source the model was not trained on (a new set, a Kaggle test file) is predicted as
`default_source` when that names a training source; otherwise as the training pool: with "indicator", the
average of its predictions as each training source, weighted by that source's share of the training weight;
with "tie_rate", with the pool's (weighted) tie share. Either way its predictions are then posteriors under the
model's training prior (`PairModel.train_prior_`), which is what `--tie-rate` and `--adapt-prior` assume.

The state is saved with the model as `sources.json` (data only), so a loaded model knows its sources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.record import TIE, PairRecord, targets
from arenapref.errors import ConfigError, ModelDirError
from arenapref.metrics import prior

SOURCE_WEIGHTING = ("none", "sqrt", "balanced")
SOURCE_COLUMNS = ("none", "indicator", "tie_rate")
STATE_FILE = "sources.json"


def source_weights(counts: Sequence[int], weighting: str) -> np.ndarray:
    """Per-row weight of each source's rows, scaled so that the weighted row count equals the row count.

    >>> source_weights([900, 100], "balanced").round(3).tolist()
    [0.556, 5.0]
    """
    n = np.asarray(counts, dtype=float)
    if weighting == "none":
        raw = np.ones_like(n)
    elif weighting == "sqrt":
        raw = 1 / np.sqrt(n)
    elif weighting == "balanced":
        raw = 1 / n
    else:
        raise ValueError(f"source_weighting={weighting!r}: choose one of {SOURCE_WEIGHTING}")
    return raw * n.sum() / (raw * n).sum()


@dataclass
class SourceState:
    """What a fitted model knows of its training sources (sorted by name) and how it uses them."""

    columns: str = "none"
    weighting: str = "none"
    default_source: str | None = None
    sources: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()  # per-row weight of each source's rows
    tie_rates: tuple[float, ...] = ()  # each source's swap-symmetric tie share in its training targets
    pooled_tie_rate: float = 0.0  # the tie share of the weighted training pool

    @classmethod
    def fit(cls, records: Sequence[PairRecord], columns: str, weighting: str,
            default_source: str | None = None) -> "SourceState":
        if columns not in SOURCE_COLUMNS:
            raise ValueError(f"source_columns={columns!r}: choose one of {SOURCE_COLUMNS}")
        names = sorted({r.source for r in records})
        if default_source is not None and default_source not in names:
            raise ConfigError(f"default_source {default_source!r} is not a source of the training rows (they hold "
                             f"{', '.join(map(repr, names))}); set model.default_source to one of them, or to null")
        index = {s: i for i, s in enumerate(names)}
        of_row = np.array([index[r.source] for r in records])
        counts = np.bincount(of_row, minlength=len(names))
        weights = source_weights(counts, weighting)
        y = targets(records)
        ties = [float(prior(y[of_row == i], 1)[0, TIE]) for i in range(len(names))]
        pooled = float(prior(y, 1, weights=weights[of_row])[0, TIE])
        return cls(columns, weighting, default_source, tuple(names), tuple(int(c) for c in counts),
                   tuple(float(w) for w in weights), tuple(ties), pooled)

    # --- training ---------------------------------------------------------------------------------------------
    def row_weights(self, records: Sequence[PairRecord]) -> np.ndarray | None:
        """Training weight of each row (None when every source weighs the same per row)."""
        if self.weighting == "none":
            return None
        by_name = dict(zip(self.sources, self.weights))
        return np.array([by_name[r.source] for r in records])

    # --- prediction ---------------------------------------------------------------------------------------------
    def shares(self) -> np.ndarray:
        """Each source's share of the total training weight: how the pool mixes them."""
        total = np.asarray(self.rows, dtype=float) * np.asarray(self.weights)
        return total / total.sum()

    def resolve(self, sources: Sequence[str]) -> list[str | None]:
        """The training source each row is predicted as: its own when known, else `default_source` (None: the
        pool)."""
        known = set(self.sources)
        return [s if s in known else self.default_source for s in sources]

    def unknown(self, sources: Sequence[str]) -> list[str]:
        """The distinct sources among `sources` that the model was not trained on, in order of appearance."""
        known = set(self.sources)
        return list(dict.fromkeys(s for s in sources if s not in known))

    def pooled_rows(self, sources: Sequence[str]) -> np.ndarray:
        """Rows that the "indicator" columns cannot describe (an unknown source and no default): those are
        predicted as every training source in turn and averaged with `shares()`."""
        if self.columns != "indicator":
            return np.zeros(len(sources), dtype=bool)
        return np.array([s is None for s in self.resolve(sources)], dtype=bool)

    def n_columns(self) -> int:
        return {"none": 0, "indicator": len(self.sources), "tie_rate": 1}[self.columns]

    def columns_for(self, resolved: Sequence[str | None]) -> np.ndarray:
        """(n, n_columns) source columns of rows already `resolve`d (None: the pool; not for "indicator")."""
        n = len(resolved)
        if self.columns == "none":
            return np.zeros((n, 0), dtype=np.float32)
        index = {s: i for i, s in enumerate(self.sources)}
        if self.columns == "tie_rate":
            rates = [self.pooled_tie_rate if s is None else self.tie_rates[index[s]] for s in resolved]
            return np.asarray(rates, dtype=np.float32)[:, None]
        out = np.zeros((n, len(self.sources)), dtype=np.float32)
        for i, s in enumerate(resolved):
            if s is None:
                raise ValueError("an unknown source has no indicator columns: predict it as every source (pooled_rows)")
            out[i, index[s]] = 1.0
        return out

    # --- the model directory ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"columns": self.columns, "weighting": self.weighting, "default_source": self.default_source,
                "pooled_tie_rate": self.pooled_tie_rate,
                "sources": [{"name": s, "rows": n, "weight": w, "tie_rate": t} for s, n, w, t in
                            zip(self.sources, self.rows, self.weights, self.tie_rates)]}

    @classmethod
    def from_dict(cls, data: dict) -> "SourceState":
        items = data["sources"]
        return cls(data["columns"], data["weighting"], data.get("default_source"), tuple(d["name"] for d in items),
                   tuple(int(d["rows"]) for d in items), tuple(float(d["weight"]) for d in items),
                   tuple(float(d["tie_rate"]) for d in items), float(data["pooled_tie_rate"]))

    def save(self, directory: Path) -> None:
        (directory / STATE_FILE).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "SourceState":
        """The saved state; a directory from before sources were an input has none, and predicts as it did then
        (no source columns)."""
        path = directory / STATE_FILE
        if not path.is_file():
            return cls()
        try:
            state = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelDirError(f"{path}: unreadable ({e}); the model directory is damaged, train it again") from None
        if state.columns not in SOURCE_COLUMNS or state.weighting not in SOURCE_WEIGHTING:
            raise ModelDirError(f"{path}: unknown source settings {state.columns!r} / {state.weighting!r}")
        return state
