"""Length-sorted batches under a token budget, and padding. Pure functions of token-id lists."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def length_order(sequences: Sequence[Sequence[int]], rows: Sequence[int] | None = None) -> np.ndarray:
    """Row indices, longest first; equal lengths ordered by content.

    Ordering by content rather than by position makes the batches depend only on the set of sequences: a pair
    and its swap predicted in either order meet the same batches, so swap TTA is exactly equivariant.
    """
    rows = range(len(sequences)) if rows is None else rows
    return np.array(sorted(rows, key=lambda i: (-len(sequences[i]), list(sequences[i]))), dtype=np.int64)


def padded_tokens(lengths: Sequence[int]) -> int:
    """Tokens a right-padded batch of these rows holds: rows x longest row."""
    return len(lengths) * max(lengths, default=0)


def plan_batches(sequences: Sequence[Sequence[int]], token_budget: int, max_rows: int | None = None,
                 rows: Sequence[int] | None = None) -> list[np.ndarray]:
    """Greedy batches over the rows in `length_order`: each holds at most `token_budget` padded tokens and
    `max_rows` rows; a single row longer than the budget gets a batch of its own."""
    order = length_order(sequences, rows)
    return cut_batches(order, [len(sequences[i]) for i in order], token_budget, max_rows)


def cut_batches(order: np.ndarray, lengths: Sequence[int], token_budget: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Cuts `order` (rows, longest first; `lengths` in the same order) into batches under the budget."""
    if token_budget < 1:
        raise ValueError(f"token_budget={token_budget}: use a positive number of padded tokens per batch")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = max(int(lengths[start]), 1)  # the batch's longest row: the order is descending
        fit = max(token_budget // width, 1)
        if max_rows:
            fit = min(fit, max_rows)
        batches.append(np.asarray(order[start:start + fit], dtype=np.int64))
        start += fit
    return batches


def pad_batch(sequences: Sequence[Sequence[int]], rows: Sequence[int], pad_token_id: int):
    """Right-padded (input_ids, attention_mask) as int64 tensors."""
    import torch

    width = max(max((len(sequences[i]) for i in rows), default=0), 1)
    ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, i in enumerate(rows):
        n = len(sequences[i])
        ids[k, :n] = sequences[i]
        mask[k, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
