"""The canonical record. Every reader maps into it; everything downstream reads only it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

# Label order is fixed everywhere: column k of every probability matrix is LABELS[k].
LABELS: tuple[str, str, str] = ("winner_model_a", "winner_model_b", "winner_tie")
A_WINS, B_WINS, TIE = 0, 1, 2
# Swapping responses A and B maps (a, b, tie) -> (b, a, tie).
SWAP_INDEX = np.array([B_WINS, A_WINS, TIE])


def swap_labels(probs: np.ndarray) -> np.ndarray:
    """Columns of an (n, 3) probability or one-hot matrix after swapping A and B."""
    return np.asarray(probs)[..., SWAP_INDEX]


def swap_average(forward: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Swap test-time augmentation: the mean of each pair's predictions as given and with A and B exchanged
    (`swapped` is in the swapped pair's own columns). Exactly swap-equivariant: (x + y) / 2 == (y + x) / 2."""
    return (np.asarray(forward) + swap_labels(swapped)) / 2


@dataclass(frozen=True, slots=True)
class PairRecord:
    """One comparison: a conversation (user turns) and two candidate responses (assistant turns).

    `prompt[i]` is the user's i-th turn; `response_a[i]` / `response_b[i]` answer it. `label` is the hard
    label (index into LABELS) or None when unknown (a test row); `soft_label` is an optional probability
    vector over LABELS (annotator votes, a teacher's predictions) that training prefers over `label`.
    """

    id: str
    prompt: tuple[str, ...]
    response_a: tuple[str, ...]
    response_b: tuple[str, ...]
    label: int | None = None
    soft_label: tuple[float, float, float] | None = None
    model_a: str | None = None
    model_b: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt_key(self) -> str:
        """Stable hash of the prompt turns: the group key that keeps a prompt inside one fold."""
        return text_hash("\x1e".join(self.prompt))

    @property
    def n_turns(self) -> int:
        return max(len(self.prompt), len(self.response_a), len(self.response_b))

    def target(self) -> np.ndarray | None:
        """Training target as a probability vector (soft label when present, else one-hot)."""
        if self.soft_label is not None:
            return np.asarray(self.soft_label, dtype=float)
        if self.label is None:
            return None
        out = np.zeros(3)
        out[self.label] = 1.0
        return out

    def swapped(self) -> "PairRecord":
        """The same comparison with A and B exchanged (labels and model names follow)."""
        return replace(
            self,
            response_a=self.response_b,
            response_b=self.response_a,
            model_a=self.model_b,
            model_b=self.model_a,
            label=None if self.label is None else int(SWAP_INDEX[self.label]),
            soft_label=None if self.soft_label is None else tuple(float(self.soft_label[i]) for i in SWAP_INDEX),
        )


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def targets(records: Sequence[PairRecord]) -> np.ndarray:
    """(n, 3) target matrix; raises if any record is unlabelled, naming it."""
    out = np.empty((len(records), 3))
    for i, r in enumerate(records):
        t = r.target()
        if t is None:
            raise ValueError(f"record {r.id!r} (source {r.source!r}, position {i}) has no label; cannot train or score on it")
        out[i] = t
    return out


def hard_labels(records: Sequence[PairRecord]) -> np.ndarray:
    """Hard label per record (argmax of the soft label where there is no hard label)."""
    return np.array([r.label if r.label is not None else int(np.argmax(r.target())) for r in records])


def is_labelled(records: Sequence[PairRecord]) -> bool:
    return all(r.label is not None or r.soft_label is not None for r in records)
