"""A pair as one token sequence for a cross-encoder: prompt, A and B turn by turn, within a token budget.

Pure functions of records, a tokenizer and an `InputFormat`; no model code. The budget is split per turn
(short texts keep everything, long ones share the rest by weight), the newest turn is placed first and older
turns are added while they fit, so the oldest turns are the ones dropped. Every formatted pair carries a `Cut`
saying how much was left out.

Pieces are tokenized separately and their ids concatenated, so the plain template meets the budget exactly and
tokenizing A and B does not depend on their order (a swapped pair is cut the same way).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from arenapref.data.record import PairRecord
from arenapref.errors import ConfigError

TEMPLATES = ("plain", "chat")
MIN_MAX_LENGTH = 32  # as config.MIN_MAX_LENGTH: tokens per pair below which no template leaves room for text


@dataclass(frozen=True)
class InputFormat:
    """How a pair becomes tokens. Saved with a model so prediction formats exactly as training did."""

    template: str = "plain"  # "plain": markers and texts; "chat": the same body inside the tokenizer's chat template
    max_length: int = 512  # tokens in all: special tokens, markers and chat template included
    max_prompt_tokens: int | None = 256  # cap per prompt turn
    max_response_tokens: int | None = None  # cap per response turn
    prompt_weight: float = 0.5  # a prompt's share of an overflowing turn, relative to each response's 1.0
    min_turn_tokens: int = 32  # an older turn that must be cut is kept only if this many text tokens fit
    prompt_marker: str = "# Prompt\n"
    a_marker: str = "\n\n# Response A\n"
    b_marker: str = "\n\n# Response B\n"
    turn_separator: str = "\n\n"
    instruction: str = "Which response does the user prefer: A, B, or is it a tie?\n\n"  # chat template only

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ConfigError(f"template {self.template!r}: choose one of {TEMPLATES}")
        if self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"max_length={self.max_length} leaves no room for text; use at least {MIN_MAX_LENGTH}")
        for name in ("max_prompt_tokens", "max_response_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value}: use a positive number of tokens, or null for no cap")
        if self.prompt_weight <= 0:
            raise ConfigError(f"prompt_weight={self.prompt_weight} must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputFormat":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Cut:
    """What truncation did to one pair: turns and text tokens before and after."""

    turns: int
    turns_kept: int
    text_tokens: int
    text_tokens_kept: int

    @property
    def tokens_cut(self) -> int:
        return self.text_tokens - self.text_tokens_kept

    @property
    def truncated(self) -> bool:
        return self.tokens_cut > 0


@dataclass(frozen=True)
class FormattedPair:
    input_ids: list[int]
    cut: Cut


def split_budget(lengths: Sequence[int], budget: int, weights: Sequence[float]) -> list[int]:
    """Token counts per text that add up to at most `budget`: texts shorter than their weighted share keep
    everything, and what they leave is shared by the longer ones (water-filling)."""
    alloc = [0] * len(lengths)
    todo = [i for i, n in enumerate(lengths) if n > 0]
    remaining = max(budget, 0)
    while todo:
        total = sum(weights[i] for i in todo)
        share = {i: remaining * weights[i] / total for i in todo}
        fits = [i for i in todo if lengths[i] <= share[i]]
        if not fits:
            for i in todo:
                alloc[i] = int(math.floor(share[i]))
            left = remaining - sum(alloc[i] for i in todo)
            for i in sorted(todo, key=lambda i: -share[i] + alloc[i])[:left]:
                alloc[i] += 1
            break
        for i in fits:
            alloc[i] = lengths[i]
            remaining -= lengths[i]
        todo = [i for i in todo if i not in fits]
    return alloc


def allocate_turns(turn_lengths: Sequence[tuple[int, int, int]], budget: int, fmt: InputFormat,
                   turn_overhead: int) -> list[tuple[int, int, int] | None]:
    """Per turn (oldest first), the tokens kept of (prompt, A, B), or None for a dropped turn.

    The newest turn is always kept (cut to fit); older turns are added newest-first while they fit whole, and the
    first that does not fit is cut if at least `min_turn_tokens` remain for it; every older one is dropped.
    """
    caps = (fmt.max_prompt_tokens, fmt.max_response_tokens, fmt.max_response_tokens)
    weights = (fmt.prompt_weight, 1.0, 1.0)
    alloc: list[tuple[int, int, int] | None] = [None] * len(turn_lengths)
    remaining = budget
    for i in reversed(range(len(turn_lengths))):
        capped = [n if cap is None else min(n, cap) for n, cap in zip(turn_lengths[i], caps)]
        room = remaining - turn_overhead
        newest = i == len(turn_lengths) - 1
        if not newest and room < min(sum(capped), fmt.min_turn_tokens):
            break
        kept = split_budget(capped, room, weights)
        alloc[i] = (kept[0], kept[1], kept[2])
        remaining = room - sum(kept)
        if sum(kept) < sum(capped):
            break
    return alloc


@dataclass(frozen=True)
class TurnLayout:
    """The markers and separator between turns, tokenized once, and the one place that assembles a pair's turns
    within a token budget (the cross-encoder format and the judging prompt both use it)."""

    markers: tuple[list[int], list[int], list[int]]  # before the prompt, A and B of every turn
    separator: list[int]  # between turns

    @property
    def turn_overhead(self) -> int:
        return sum(map(len, self.markers)) + len(self.separator)

    def body(self, pieces: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], budget: int,
             fmt: "InputFormat") -> tuple[list[int], Cut]:
        """Token ids of the kept turns (oldest first) under `budget` tokens, and what was cut."""
        lengths = [tuple(len(x) for x in turn) for turn in pieces]
        # the first kept turn has no separator before it, so the budget gains one separator's worth
        alloc = allocate_turns(lengths, budget + len(self.separator), fmt, self.turn_overhead)
        body: list[int] = []
        for turn, kept in zip(pieces, alloc):
            if kept is None:
                continue
            if body:
                body += self.separator
            for marker, text, n in zip(self.markers, turn, kept):
                body += marker + list(text[:n])
        cut = Cut(turns=len(pieces), turns_kept=sum(a is not None for a in alloc),
                  text_tokens=sum(map(sum, lengths)), text_tokens_kept=sum(sum(a) for a in alloc if a is not None))
        return body, cut

    @classmethod
    def encode(cls, tokenizer, prompt_marker: str, a_marker: str, b_marker: str, separator: str) -> "TurnLayout":
        enc = lambda s: tokenizer.encode(s, add_special_tokens=False) if s else []  # noqa: E731
        return cls((enc(prompt_marker), enc(a_marker), enc(b_marker)), enc(separator))


def tokenize_turns(tokenizer, records: Sequence[PairRecord]) -> list[list[tuple[list[int], list[int], list[int]]]]:
    """Token ids of (prompt, A, B) per turn of every record, all texts tokenized in one call."""
    turns = [pair_turns(r) for r in records]
    texts = [t for pair in turns for turn in pair for t in turn]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out, k = [], 0
    for pair in turns:
        out.append([tuple(ids[k + 3 * i: k + 3 * i + 3]) for i in range(len(pair))])
        k += 3 * len(pair)
    return out


def pair_turns(record: PairRecord) -> list[tuple[str, str, str]]:
    """(prompt, A, B) per turn; a side with fewer turns contributes empty texts (a `null` turn is empty too)."""
    def at(turns: Sequence[str | None], i: int) -> str:
        return (turns[i] or "") if i < len(turns) else ""

    return [(at(record.prompt, i), at(record.response_a, i), at(record.response_b, i)) for i in range(max(record.n_turns, 1))]


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text ([CLS] ... [SEP], <s> ..., none)."""
    probe = "x"
    bare = tokenizer.encode(probe, add_special_tokens=False)
    full = tokenizer.encode(probe, add_special_tokens=True)
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    raise ValueError("cannot tell where this tokenizer puts its special tokens")


class PairFormatter:
    """Formats records with one tokenizer and one InputFormat; caches the marker and template token counts."""

    def __init__(self, tokenizer, fmt: InputFormat):
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.layout = TurnLayout.encode(tokenizer, fmt.prompt_marker, fmt.a_marker, fmt.b_marker, fmt.turn_separator)
        self.turn_overhead = self.layout.turn_overhead
        if fmt.template == "plain":
            self.prefix, self.suffix = special_affixes(tokenizer)
            self.fixed = len(self.prefix) + len(self.suffix)
        else:
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError("template 'chat' needs a tokenizer with a chat template; this one has none: use template 'plain'")
            self.fixed = len(self._chat_ids(""))
        if fmt.max_length - self.fixed - self.turn_overhead < 8:
            raise ConfigError(f"max_length={fmt.max_length} is too small for this template and its markers "
                             f"({self.fixed + self.turn_overhead} tokens); raise it")

    def _chat_ids(self, body: str) -> list[int]:
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": self.fmt.instruction + body}],
                                                  tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def format(self, records: Sequence[PairRecord]) -> list[FormattedPair]:
        return [self._assemble(pieces) for pieces in tokenize_turns(self.tokenizer, records)]

    def _assemble(self, pieces) -> FormattedPair:
        budget = self.fmt.max_length - self.fixed
        for _ in range(4):
            body, cut = self.layout.body(pieces, budget, self.fmt)
            if self.fmt.template == "plain":
                input_ids = self.prefix + body + self.suffix
            else:
                input_ids = self._chat_ids(self.tokenizer.decode(body))
            excess = len(input_ids) - self.fmt.max_length
            if excess <= 0:
                break
            budget -= excess  # decode/re-encode of a chat body can merge tokens differently: shrink and retry
        else:
            input_ids = input_ids[-self.fmt.max_length:]
        return FormattedPair(input_ids, cut)


def format_pairs(records: Sequence[PairRecord], tokenizer, fmt: InputFormat) -> list[FormattedPair]:
    return PairFormatter(tokenizer, fmt).format(records)


def summarize_cuts(cuts: Sequence[Cut]) -> dict[str, float | int]:
    """How much truncation cut across many pairs: rows cut, turns dropped, share of text tokens left out."""
    n = len(cuts)
    total = sum(c.text_tokens for c in cuts)
    cut_tokens = sum(c.tokens_cut for c in cuts)
    return {
        "rows": n,
        "rows_truncated": sum(c.truncated for c in cuts),
        "share_rows_truncated": (sum(c.truncated for c in cuts) / n) if n else 0.0,
        "turns": sum(c.turns for c in cuts),
        "turns_dropped": sum(c.turns - c.turns_kept for c in cuts),
        "text_tokens": total,
        "text_tokens_cut": cut_tokens,
        "share_tokens_cut": (cut_tokens / total) if total else 0.0,
    }
