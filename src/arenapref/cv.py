"""Grouped k-fold cross-validation: out-of-fold predictions, per-fold and pooled scores, always beside
the uniform and prior baselines on the same folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.config import PriorConfig, RunConfig
from arenapref.data.folds import GroupedFolds
from arenapref.data.record import LABELS, PairRecord, hard_labels
from arenapref.metrics import accuracy, log_loss, uniform
from arenapref.models import build_model
from arenapref.progress import progress_bar


def score_targets(records: Sequence[PairRecord]) -> np.ndarray:
    """Scoring uses hard labels (one-hot), as the competition does; soft labels are for training only."""
    return np.eye(3)[hard_labels(records)]


@dataclass
class CVResult:
    family: str
    fold_ids: np.ndarray
    oof: dict[str, np.ndarray]  # model name -> (n, 3) out-of-fold probabilities: "uniform", "prior", family
    records: Sequence[PairRecord]
    table: pd.DataFrame = field(default=None)

    def predictions_frame(self) -> pd.DataFrame:
        """One row per input row, in input order: id, source, fold, label, and the model's probabilities."""
        p = self.oof[self.family]
        return pd.DataFrame({
            "id": [r.id for r in self.records], "source": [r.source for r in self.records], "fold": self.fold_ids,
            "label": [LABELS[k] for k in hard_labels(self.records)],
            **{c: p[:, k] for k, c in enumerate(LABELS)},
        })


def score_table(records: Sequence[PairRecord], fold_ids: np.ndarray, oof: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows: each fold, pooled, and each source (when several); columns: log loss and accuracy per model."""
    y = score_targets(records)
    sources = np.array([r.source for r in records])
    slices = [(f"fold {k}", fold_ids == k) for k in np.unique(fold_ids)] + [("pooled", np.ones(len(records), bool))]
    if len(set(sources)) > 1:
        slices += [(f"source {s}", sources == s) for s in sorted(set(sources))]
    rows = []
    for name, mask in slices:
        row = {"slice": name, "rows": int(mask.sum())}
        for model, p in oof.items():
            row[f"{model} logloss"] = log_loss(y[mask], p[mask])
            row[f"{model} acc"] = accuracy(y[mask], p[mask])
        rows.append(row)
    return pd.DataFrame(rows)


def cross_validate(records: Sequence[PairRecord], config: RunConfig, show_progress: bool = True) -> CVResult:
    folds = GroupedFolds(config.folds.n_splits, config.folds.seed)
    fold_ids = folds.fold_ids(records)
    family = config.model.family
    oof = {name: np.zeros((len(records), 3)) for name in ("uniform", "prior", family)}
    oof["uniform"][:] = uniform(len(records))
    prior_config = config.model if family == "prior" else PriorConfig()
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"cv {family}, {folds.n_splits} folds", total=folds.n_splits)
        for train_idx, test_idx in folds.split(records):
            train = [records[i] for i in train_idx]
            test = [records[i] for i in test_idx]
            oof["prior"][test_idx] = build_model(prior_config).fit(train).predict_proba(test)
            if family != "prior":
                oof[family][test_idx] = build_model(config.model).fit(train).predict_proba(test)
            bar.advance(task)
    # family "prior": the model is the prior baseline itself, already in oof["prior"] (the dict has two entries)
    result = CVResult(family, fold_ids, oof, records)
    result.table = score_table(records, fold_ids, oof)
    return result
