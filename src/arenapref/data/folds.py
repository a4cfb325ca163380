"""Grouped, stratified k-fold splits: every prompt stays inside one fold, label shares stay even."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from arenapref.data.record import PairRecord, hard_labels


@dataclass(frozen=True)
class GroupedFolds:
    """k folds grouped by prompt (and stratified by label, where labels exist), reproducible by seed."""

    n_splits: int = 5
    seed: int = 0

    def fold_ids(self, records: Sequence[PairRecord]) -> np.ndarray:
        """Fold index (0..k-1) of each record."""
        n = len(records)
        groups = [r.prompt_key for r in records]
        n_groups = len(set(groups))
        if n_groups < self.n_splits:
            raise ValueError(f"{n} rows with {n_groups} distinct prompt(s) cannot fill {self.n_splits} folds; use fewer folds")
        has_labels = all(r.label is not None or r.soft_label is not None for r in records)
        y = hard_labels(records) if has_labels else np.zeros(n, dtype=int)
        # StratifiedGroupKFold wants every class in at least n_splits groups; fall back to plain grouping
        # (stratify on a constant) for tiny or single-class sets rather than erroring.
        if has_labels and np.bincount(y, minlength=3)[np.bincount(y, minlength=3) > 0].min() < self.n_splits:
            y = np.zeros(n, dtype=int)
        splitter = StratifiedGroupKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        out = np.empty(n, dtype=int)
        for k, (_, test) in enumerate(splitter.split(np.zeros(n), y, groups)):
            out[test] = k
        return out

    def split(self, records: Sequence[PairRecord]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(train_index, test_index) per fold."""
        ids = self.fold_ids(records)
        for k in range(self.n_splits):
            yield np.flatnonzero(ids != k), np.flatnonzero(ids == k)
