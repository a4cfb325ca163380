"""Grouped k-fold cross-validation: out-of-fold predictions, per-fold and pooled scores, always beside
the uniform and prior baselines on the same folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.config import RunConfig
from arenapref.data.folds import GroupedFolds
from arenapref.data.record import LABELS, PairRecord, hard_labels
from arenapref.errors import UsageError
from arenapref.metrics import accuracy, fold_prior, log_loss, uniform
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


def first_unlabelled(records: Sequence[PairRecord]) -> str | None:
    for i, r in enumerate(records):
        if r.label is None and r.soft_label is None:
            return f"row {i + 1} of the input (id {r.id}, source {r.source or '-'})"
    return None


def cross_validate(records: Sequence[PairRecord], config: RunConfig, show_progress: bool | None = True) -> CVResult:
    """Out-of-fold predictions of `config.model` on k folds grouped by prompt, scored beside the uniform and
    prior baselines on the same folds.

    Args:
        records: labelled pairs.
        config: the model and the folds (RunConfig).
        show_progress: a progress bar per fold (None: on a terminal).
    Returns:
        CVResult with `oof` (name -> (n, 3)), `fold_ids`, and `table` (per fold, pooled, per source).

    >>> result = cross_validate(records, load_run_config(model="features")); print(result.table)  # doctest: +SKIP
    """
    records = list(records)
    where = first_unlabelled(records)
    if where is not None:
        raise UsageError(f"cross-validation needs labels: {where} has none (is this a test file?)")
    if len(records) < config.folds.n_splits:
        raise UsageError(f"{len(records)} rows cannot fill {config.folds.n_splits} folds; use fewer folds (-k)")
    folds = GroupedFolds(config.folds.n_splits, config.folds.seed)
    try:
        fold_ids = folds.fold_ids(records)
    except ValueError as e:
        raise UsageError(str(e)) from None
    family = config.model.family
    y = score_targets(records)
    oof = {"uniform": uniform(len(records)), "prior": fold_prior(y, fold_ids)}
    if family != "prior":
        oof[family] = np.zeros((len(records), 3))
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"cv {family}, {folds.n_splits} folds", total=folds.n_splits)
        for k in range(folds.n_splits):
            train_idx, test_idx = np.flatnonzero(fold_ids != k), np.flatnonzero(fold_ids == k)
            train = [records[i] for i in train_idx]
            test = [records[i] for i in test_idx]
            if family != "prior":
                oof[family][test_idx] = build_model(config.model).fit(train, progress=False).predict_proba(test)
            bar.advance(task)
    # family "prior": the model is the prior baseline itself, already in oof["prior"] (the dict has two entries)
    result = CVResult(family, fold_ids, oof, records)
    result.table = score_table(records, fold_ids, oof)
    return result
