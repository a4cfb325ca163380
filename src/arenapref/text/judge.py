"""A pair as a judging prompt for a causal LM, ending where the answer (a label word) would start.

    [chat template: system, user turn start] instruction, the conversation turn by turn with both answers,
    question [end of user turn, assistant turn start] answer_prefix  -> next token: "A", "B" or "tie"

Without a chat template the same text follows the tokenizer's leading special tokens and ends in "Answer:".
The fixed head and tail are tokenized once; the conversation gets the rest of `max_length`, cut per turn as the
cross-encoder format does (text/format.py: the newest turn is kept, the oldest dropped). Texts are tokenized
once, and both A/B orders are assembled from the same pieces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from arenapref.data.record import PairRecord
from arenapref.errors import ConfigError
from arenapref.text.format import (
    Cut,
    InputFormat,
    TurnLayout,
    special_affixes,
    tokenize_turns,
)

SENTINEL = "\x00ARENAPREF_CONVERSATION\x00"
JUDGE_TEMPLATES = ("auto", "chat", "plain")


@dataclass(frozen=True)
class JudgePrompt:
    template: str = "auto"  # auto: the chat template when the tokenizer has one, else plain
    system: str | None = None  # chat only; None keeps the template's own default system prompt, if any
    instruction: str = ("Below is a conversation between a user and two AI assistants, A and B, who each answered "
                        "the same user messages.")
    question: str = ("Which assistant answered better? Reply with one word: A if assistant A is better, B if "
                     "assistant B is better, or tie if they are equally good or equally bad.")
    answer_prefix: str | None = None  # text the answer follows; None: nothing (chat) or "\nAnswer:" (plain)
    label_words: tuple[str, str, str] | None = None  # None: A, B, tie (chat) or " A", " B", " tie" (plain)
    max_length: int = 1024
    max_prompt_tokens: int | None = 256
    max_response_tokens: int | None = None
    prompt_weight: float = 0.5
    min_turn_tokens: int = 32
    prompt_marker: str = "[User]\n"
    a_marker: str = "\n\n[Assistant A]\n"
    b_marker: str = "\n\n[Assistant B]\n"
    turn_separator: str = "\n\n"

    def __post_init__(self):
        if self.template not in JUDGE_TEMPLATES:
            raise ConfigError(f"template {self.template!r}: choose one of {JUDGE_TEMPLATES}")
        if self.label_words is not None and len(self.label_words) != 3:
            raise ConfigError(f"label_words needs three words (A wins, B wins, tie), got {list(self.label_words)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JudgePrompt":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "label_words" and v is not None else v) for k, v in data.items() if k in known})


class JudgeFormatter:
    """Token ids of judging prompts for one tokenizer; `label_token_ids` are the first tokens of the label words."""

    def __init__(self, tokenizer, prompt: JudgePrompt):
        self.tokenizer = tokenizer
        self.prompt = prompt
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if prompt.template == "chat" and not has_chat:
            raise ConfigError("template 'chat' needs a tokenizer with a chat template; this one has none: use 'plain' or 'auto'")
        self.template = "chat" if (prompt.template == "chat" or (prompt.template == "auto" and has_chat)) else "plain"
        enc = lambda s: tokenizer.encode(s, add_special_tokens=False) if s else []  # noqa: E731
        self.head, self.tail = self._head_tail(enc)
        words = prompt.label_words or (("A", "B", "tie") if self.template == "chat" else (" A", " B", " tie"))
        self.label_words = tuple(words)
        ids = []
        for w in words:
            tokens = enc(w)
            if not tokens:
                raise ConfigError(f"label word {w!r} has no tokens")
            ids.append(tokens[0])
        if len(set(ids)) != 3:
            raise ConfigError(f"label words {list(words)} start with the same token ({ids}); choose words whose first "
                             "tokens differ")
        self.label_token_ids = tuple(int(i) for i in ids)
        self.layout = TurnLayout.encode(tokenizer, prompt.prompt_marker, prompt.a_marker, prompt.b_marker,
                                        prompt.turn_separator)
        self.turn_overhead = self.layout.turn_overhead
        self.fixed = len(self.head) + len(self.tail)
        if prompt.max_length - self.fixed - self.turn_overhead < 8:
            raise ConfigError(f"max_length={prompt.max_length} leaves no room for the conversation: the judging prompt "
                             f"alone takes {self.fixed + self.turn_overhead} tokens; raise max_length")
        self.budget_format = InputFormat(template="plain", max_length=max(prompt.max_length, 32),
                                         max_prompt_tokens=prompt.max_prompt_tokens,
                                         max_response_tokens=prompt.max_response_tokens,
                                         prompt_weight=prompt.prompt_weight, min_turn_tokens=prompt.min_turn_tokens)

    def _head_tail(self, enc) -> tuple[list[int], list[int]]:
        p = self.prompt
        user = f"{p.instruction}\n\n{SENTINEL}\n\n{p.question}"
        if self.template == "chat":
            messages = ([{"role": "system", "content": p.system}] if p.system is not None else []) + [
                {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            text += p.answer_prefix or ""
            if text.count(SENTINEL) != 1:
                raise ConfigError("the chat template does not keep the user message intact; use template 'plain'")
            head, tail = text.split(SENTINEL)
            return enc(head), enc(tail)
        prefix, _ = special_affixes(self.tokenizer)  # a trailing [SEP]/</s> would end the text before the answer
        system = f"{p.system}\n\n" if p.system else ""
        head, tail = (system + user).split(SENTINEL)
        answer = "\nAnswer:" if p.answer_prefix is None else p.answer_prefix
        return prefix + enc(head), enc(tail + answer)

    def format_both(self, records: Sequence[PairRecord], swapped: bool = True
                    ) -> tuple[list[list[int]], list[list[int]] | None, list[Cut]]:
        """Token ids of each record as it is and, with `swapped`, with A and B exchanged; and the forward cuts."""
        forward, backward, cuts = [], [], []
        for pieces in tokenize_turns(self.tokenizer, records):
            seq, cut = self._assemble(pieces)
            forward.append(seq)
            cuts.append(cut)
            if swapped:
                backward.append(self._assemble([(p, b, a) for p, a, b in pieces])[0])
        return forward, (backward if swapped else None), cuts

    def format(self, records: Sequence[PairRecord]) -> list[list[int]]:
        return self.format_both(records, swapped=False)[0]

    def _assemble(self, pieces) -> tuple[list[int], Cut]:
        body, cut = self.layout.body(pieces, self.prompt.max_length - self.fixed, self.budget_format)
        return self.head + body + self.tail, cut
