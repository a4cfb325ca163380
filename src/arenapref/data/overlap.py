"""Overlap audit: which pairs and prompts appear in more than one input set.

Public preference sets are remixes of each other (LLMBar's Processed_MT-Bench and LLMEval² both hold the
MT-Bench human judgements; LLMEval² also holds hh-rlhf pairs), so a model trained on one set and tested on
another may be tested on its training rows. `find_overlaps` says how many, per pair of sets, with examples.

Texts are compared after `normalise_text`: case-folded, Unicode NFKC, every run of punctuation, symbols and
whitespace turned into one space. A *pair* is the unordered pair of its two responses (A/B order does not
matter; the prompt does not enter, because remixes often re-template the instruction); a *prompt* is the
user turns. Each text is hashed once, so the audit is linear in the size of the data (the whole shared data
folder takes a second or two). Records without text (battle logs) and pairs whose responses are both empty
after normalisation are left out.

`level="first_turn"` compares only the first turn (prompt[0], response_a[0], response_b[0]): it finds the
same first exchange inside longer conversations, e.g. MT-Bench's turn-1 judgements (LLMBar, one turn) in
the two-turn transcripts of LLMEval².
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from arenapref.data.record import PairRecord, has_text, text_hash

_NOT_WORD = re.compile(r"[\W_]+")
LEVELS = ("conversation", "first_turn")


def normalise_text(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form of a text.

    Args:
        text: any text.

    Returns:
        The text case-folded and NFKC-normalised, with every run of non-word characters as one space.

    >>> normalise_text("  Hello,   WORLD!! ") == normalise_text("hello world")
    True
    """
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _side(turns: Sequence[str], level: str) -> str:
    turns = turns[:1] if level == "first_turn" else turns
    return "\x1e".join(normalise_text(t) for t in turns)


def pair_key(record: PairRecord, level: str = "conversation") -> str | None:
    """Hash of the unordered pair of normalised responses, or None when both are empty.

    Args:
        record: a record.
        level: "conversation" (all turns) or "first_turn".

    Returns:
        A hex digest, the same for the record and its A/B swap.

    >>> r = PairRecord("1", ("q",), ("Yes.",), ("no",))
    >>> pair_key(r) == pair_key(r.swapped())
    True
    """
    a, b = _side(record.response_a, level), _side(record.response_b, level)
    if not a.replace("\x1e", "").strip() and not b.replace("\x1e", "").strip():
        return None
    lo, hi = sorted((a, b))
    return text_hash(lo + "\x1f" + hi)


def prompt_key(record: PairRecord, level: str = "conversation") -> str | None:
    """Hash of the normalised user turns, or None when they are empty.

    Args:
        record: a record.
        level: "conversation" (all turns) or "first_turn".

    Returns:
        A hex digest, or None.
    """
    p = _side(record.prompt, level)
    return text_hash(p) if p.replace("\x1e", "").strip() else None


@dataclass
class SetOverlap:
    """What two sets share, by one kind of key (pairs or prompts).

    `rows_a` / `rows_b`: how many rows of the first / second set have a key the other set also has;
    `distinct`: how many distinct keys they share; `examples`: up to a few (id in the first, id in the second).
    """

    rows_a: int = 0
    rows_b: int = 0
    distinct: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class OverlapReport:
    """Overlaps between every two named sets (pairs and prompts), plus repeats inside each set.

    `pairs[(a, b)]` and `prompts[(a, b)]` hold a SetOverlap for every two sets, named in input order, that
    share at least one key. `repeated_pairs[name]`: rows of a set whose pair occurs more than once in it.
    `sizes[name]`: rows compared (records with text); `skipped[name]`: records left out (no text).
    """

    level: str
    sizes: dict[str, int]
    skipped: dict[str, int]
    pairs: dict[tuple[str, str], SetOverlap]
    prompts: dict[tuple[str, str], SetOverlap]
    repeated_pairs: dict[str, int]

    def table(self) -> pd.DataFrame:
        """One row per two sets that share something: shared pairs and prompts, counted in rows of each set."""
        keys = sorted(set(self.pairs) | set(self.prompts), key=lambda k: (list(self.sizes).index(k[0]),
                                                                          list(self.sizes).index(k[1])))
        rows = []
        for a, b in keys:
            p, q = self.pairs.get((a, b), SetOverlap()), self.prompts.get((a, b), SetOverlap())
            rows.append({"set_a": a, "set_b": b, "pairs_in_a": p.rows_a, "pairs_in_b": p.rows_b,
                         "distinct_pairs": p.distinct, "prompts_in_a": q.rows_a, "prompts_in_b": q.rows_b,
                         "distinct_prompts": q.distinct,
                         "example": " = ".join(p.examples[0]) if p.examples else (" = ".join(q.examples[0]) if q.examples else "")})
        return pd.DataFrame(rows, columns=["set_a", "set_b", "pairs_in_a", "pairs_in_b", "distinct_pairs",
                                           "prompts_in_a", "prompts_in_b", "distinct_prompts", "example"])

    def summary(self) -> str:
        """A few lines for a terminal: one per two sets that share pairs or prompts."""
        if not self.pairs and not self.prompts:
            return f"no shared pairs or prompts between {len(self.sizes)} sets ({self.level})"
        lines = [f"overlaps ({self.level}; texts compared case-, space- and punctuation-insensitively):"]
        for row in self.table().itertuples():
            lines.append(f"  {row.set_a} / {row.set_b}: {row.distinct_pairs} shared pairs ({row.pairs_in_a} / "
                         f"{row.pairs_in_b} rows), {row.distinct_prompts} shared prompts ({row.prompts_in_a} / "
                         f"{row.prompts_in_b} rows){', e.g. ' + row.example if row.example else ''}")
        return "\n".join(lines)


def _overlaps(index: dict[str, dict[str, list[str]]], names: list[str], n_examples: int) -> dict:
    """index: key -> {set name: [ids]} -> {(a, b): SetOverlap} for keys in two or more sets."""
    out: dict[tuple[str, str], SetOverlap] = {}
    order = {n: i for i, n in enumerate(names)}
    for by_set in index.values():
        if len(by_set) < 2:
            continue
        present = sorted(by_set, key=order.__getitem__)
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                o = out.setdefault((a, b), SetOverlap())
                o.rows_a += len(by_set[a])
                o.rows_b += len(by_set[b])
                o.distinct += 1
                if len(o.examples) < n_examples:
                    o.examples.append((by_set[a][0], by_set[b][0]))
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]])))


def find_overlaps(named_sets: Mapping[str, Sequence[PairRecord]], level: str = "conversation",
                  n_examples: int = 3) -> OverlapReport:
    """Pairs and prompts that appear in more than one of the named sets.

    Args:
        named_sets: set name -> its records (e.g. `sets_by_source(records)`, or two files read separately).
        level: "conversation" compares all turns; "first_turn" only the first (see the module docstring).
        n_examples: how many (id, id) examples to keep per two sets.

    Returns:
        An OverlapReport (`.table()` for a DataFrame, `.summary()` for text).

    Example:
        >>> bar, _ = read_pairs("../shared/data/llmbar/Processed_LLMEval-2")      # doctest: +SKIP
        >>> ev2, _ = read_pairs("../shared/data/llmeval2")                         # doctest: +SKIP
        >>> find_overlaps({"llmbar": bar, "llmeval2": ev2}).pairs[("llmbar", "llmeval2")].rows_a  # doctest: +SKIP
    """
    if level not in LEVELS:
        raise ValueError(f"level={level!r}: choose one of {LEVELS}")
    names = list(named_sets)
    pairs: dict[str, dict[str, list[str]]] = defaultdict(dict)
    prompts: dict[str, dict[str, list[str]]] = defaultdict(dict)
    sizes, skipped, repeated = {}, {}, {}
    for name in names:
        n = gone = 0
        counts: dict[str, int] = defaultdict(int)
        for r in named_sets[name]:
            if not has_text(r):
                gone += 1
                continue
            n += 1
            pk = pair_key(r, level)
            if pk is not None:
                pairs[pk].setdefault(name, []).append(r.id)
                counts[pk] += 1
            qk = prompt_key(r, level)
            if qk is not None:
                prompts[qk].setdefault(name, []).append(r.id)
        sizes[name], skipped[name] = n, gone
        repeated[name] = sum(c for c in counts.values() if c > 1)
    return OverlapReport(level=level, sizes=sizes, skipped=skipped, pairs=_overlaps(pairs, names, n_examples),
                         prompts=_overlaps(prompts, names, n_examples), repeated_pairs=repeated)


def sets_by_source(records: Sequence[PairRecord], with_subset: bool = False) -> dict[str, list[PairRecord]]:
    """Records grouped by `source` (or "source/subset" where meta has a subset: LLMBar's subsets, LLMEval²'s
    datasets, hh-rlhf's splits), in order of first appearance: the usual input of find_overlaps.

    Args:
        records: records of several sets, e.g. read_pairs of a whole folder.
        with_subset: name the sets "source/subset" where a record has meta["subset"].

    Returns:
        Set name -> its records.

    >>> records, _ = read_pairs("../shared/data")                    # doctest: +SKIP
    >>> print(find_overlaps(sets_by_source(records, with_subset=True)).summary())  # doctest: +SKIP
    """
    out: dict[str, list[PairRecord]] = {}
    for r in records:
        name = r.source
        if with_subset and r.meta.get("subset"):
            name = f"{r.source}/{r.meta['subset']}"
        out.setdefault(name, []).append(r)
    return out
