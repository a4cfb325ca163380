"""The canonical record. Every reader maps into it; everything downstream reads only it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from arenapref.errors import UsageError

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
            raise UsageError(f"record {r.id!r} (source {r.source!r}, position {i}) has no label; cannot train or score on it")
        out[i] = t
    return out


def hard_labels(records: Sequence[PairRecord]) -> np.ndarray:
    """Hard label per record (argmax of the soft label where there is no hard label)."""
    return np.array([r.label if r.label is not None else int(np.argmax(r.target())) for r in records])


def is_labelled(records: Sequence[PairRecord]) -> bool:
    return all(r.label is not None or r.soft_label is not None for r in records)


# --- records without texts: battle logs --------------------------------------------------------------------

BATTLE_LOG = "battle_log"  # meta key: True on a record read from a vote log that has no texts


def battle_log_record(id_: str, model_a: str | None, model_b: str | None, label: int | None, source: str,
                      meta: dict[str, Any] | None = None) -> PairRecord:
    """A vote between two named models with no conversation: empty turns, `meta["battle_log"] = True`.

    Rankings (`arenapref.rank`), `data stats` and `data validate` use such records; a preference model cannot
    learn from them, so training code leaves them out with `split_textless`.

    Args:
        id_: the record's id.
        model_a, model_b: the two models' names.
        label: index into LABELS, or None.
        source: the set's name.
        meta: more fields to keep (judge, language, ...); `battle_log` is added.

    Returns:
        A PairRecord with empty prompt and responses.

    >>> battle_log_record("votes/1", "gpt-4", "claude-v1", A_WINS, "votes").meta
    {'battle_log': True}
    """
    return PairRecord(id=id_, prompt=(), response_a=(), response_b=(), label=label, model_a=model_a, model_b=model_b,
                      source=source, meta={BATTLE_LOG: True, **(meta or {})})


def has_text(record: PairRecord) -> bool:
    """Whether the record carries a conversation a model can read (False for battle-log records, also after a
    round trip through a canonical file, where their turns are empty lists).

    Args:
        record: any record.

    Returns:
        False when the record is marked as a battle log or every turn is blank, else True.

    >>> has_text(battle_log_record("b/1", "gpt-4", "claude-v1", A_WINS, "votes"))
    False
    """
    if record.meta.get(BATTLE_LOG):
        return False
    return any(t.strip() for part in (record.prompt, record.response_a, record.response_b) for t in part)


def split_textless(records: Sequence[PairRecord]) -> tuple[list[PairRecord], list[PairRecord]]:
    """(records with text, records without): training and prediction use the first, rankings can use both.

    Args:
        records: any records, e.g. everything read_pairs returned.

    Returns:
        (with_text, textless), each in input order (`has_text` decides).

    >>> with_text, textless = split_textless(records)            # doctest: +SKIP
    >>> if textless: print(f"left out {len(textless)} battle-log rows without texts")  # doctest: +SKIP
    """
    with_text, textless = [], []
    for r in records:
        (with_text if has_text(r) else textless).append(r)
    return with_text, textless


# --- several annotators per pair ---------------------------------------------------------------------------


def majority_label(votes: Sequence[int]) -> int:
    """Hard label of several annotators' votes (indices into LABELS): the most frequent vote when it is the
    only most frequent one; a shared top (1-1, 2-2, 1-1-1: the annotators split) is a tie, as in PandaLM's
    own evaluation.

    Args:
        votes: one label index (A_WINS, B_WINS or TIE) per annotator.

    Returns:
        The hard label.

    Raises:
        ValueError: no votes.

    >>> majority_label([A_WINS, A_WINS, TIE]), majority_label([A_WINS, B_WINS]), majority_label([B_WINS])
    (0, 2, 1)
    """
    if not votes:
        raise ValueError("no votes")
    counts = np.bincount(np.asarray(votes, dtype=int), minlength=3)
    top = counts.max()
    winners = np.flatnonzero(counts == top)
    return int(winners[0]) if len(winners) == 1 else TIE


def mean_soft_label(vectors: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Average of per-vote probability vectors (one-hot for a plain vote): the annotators' vote shares.

    Args:
        vectors: one (p_a, p_b, p_tie) per vote.

    Returns:
        Their mean, rescaled to sum to exactly 1.

    >>> mean_soft_label([(1, 0, 0), (0.75, 0, 0.25)])
    (0.875, 0.0, 0.125)
    """
    m = np.mean(np.asarray(vectors, dtype=float), axis=0)
    m = m / m.sum()
    return (float(m[0]), float(m[1]), float(m[2]))
