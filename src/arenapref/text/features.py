"""Hand-made measurements of a response and of a pair, the kind of signal human raters react to.

Pure functions of text; the `features` and `embed` models turn them into columns.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Sequence

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)
LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.M)
HEADER = re.compile(r"^\s*#{1,6}\s+\S", re.M)
CODE_FENCE = re.compile(r"```")
BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
LINK = re.compile(r"https?://|\]\(")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$", re.M)
REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I can(?:no|')t|I won't|as an AI|as a language model|"
    r"I do not have (?:personal|the ability)|I don't have (?:personal|the ability)|cannot (?:assist|help|provide|fulfill)|"
    r"not (?:appropriate|able to)|against my)\b",
    re.I,
)

RESPONSE_FEATURES = (
    "log_chars", "log_words", "n_lines", "n_paragraphs", "n_list_items", "n_headers", "n_code_blocks", "n_bold",
    "n_links", "n_table_rows", "n_questions", "n_exclaims", "refusal", "empty", "n_empty_turns", "unique_word_ratio",
    "compress_ratio", "mean_word_len", "digit_ratio", "upper_ratio", "non_ascii_ratio", "ends_cleanly",
    "prompt_coverage", "prompt_jaccard", "last_turn_log_chars",
)
PAIR_FEATURES = ("identical", "ab_jaccard", "n_turns", "prompt_log_chars", "prompt_has_code", "prompt_is_question")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def response_features(turns: Sequence[str], prompt_words: set[str]) -> list[float]:
    """Measurements of one response (all its turns), in RESPONSE_FEATURES order."""
    text = "\n\n".join(turns)
    w = words(text)
    n_chars = len(text)
    wset = set(w)
    raw = text.encode("utf-8", "replace")
    stripped = text.rstrip()
    return [
        math.log1p(n_chars),
        math.log1p(len(w)),
        text.count("\n") + (1 if text else 0),
        len([p for p in text.split("\n\n") if p.strip()]),
        len(LIST_ITEM.findall(text)),
        len(HEADER.findall(text)),
        len(CODE_FENCE.findall(text)) // 2,
        len(BOLD.findall(text)),
        len(LINK.findall(text)),
        len(TABLE_ROW.findall(text)),
        text.count("?"),
        text.count("!"),
        float(bool(REFUSAL.search(text[:600]))),
        float(not text.strip()),
        sum(1 for t in turns if not t.strip()),
        len(wset) / len(w) if w else 0.0,
        len(zlib.compress(raw)) / len(raw) if raw else 0.0,  # low = repetitive
        sum(map(len, w)) / len(w) if w else 0.0,
        sum(c.isdigit() for c in text) / n_chars if n_chars else 0.0,
        sum(c.isupper() for c in text) / n_chars if n_chars else 0.0,
        sum(ord(c) > 127 for c in text) / n_chars if n_chars else 0.0,
        float(stripped[-1:] in {".", "!", "?", "`", ")", '"', "*", ":"} if stripped else 0.0),
        len(wset & prompt_words) / len(prompt_words) if prompt_words else 0.0,
        len(wset & prompt_words) / len(wset | prompt_words) if wset | prompt_words else 0.0,
        math.log1p(len(turns[-1])) if turns else 0.0,
    ]


def pair_features(prompt: Sequence[str], a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Measurements that do not change when A and B are swapped, in PAIR_FEATURES order."""
    wa, wb = set(words("\n".join(a))), set(words("\n".join(b)))
    p = "\n\n".join(prompt)
    return [
        float(tuple(a) == tuple(b)),
        len(wa & wb) / len(wa | wb) if wa | wb else 1.0,
        float(max(len(prompt), len(a), len(b))),
        math.log1p(len(p)),
        float("```" in p or "def " in p or "{" in p),
        float("?" in p),
    ]


def featurize(prompts, responses_a, responses_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A features, B features, pair features) for lists of turn tuples."""
    fa, fb, fp = [], [], []
    for p, a, b in zip(prompts, responses_a, responses_b):
        pw = set(words("\n".join(p)))
        fa.append(response_features(a, pw))
        fb.append(response_features(b, pw))
        fp.append(pair_features(p, a, b))
    return (np.asarray(fa, dtype=np.float32).reshape(-1, len(RESPONSE_FEATURES)),
            np.asarray(fb, dtype=np.float32).reshape(-1, len(RESPONSE_FEATURES)),
            np.asarray(fp, dtype=np.float32).reshape(-1, len(PAIR_FEATURES)))


def join_turns(turns: Sequence[str]) -> str:
    return "\n\n".join(t for t in turns if t)


def response_chars(turns: Sequence[str | None]) -> int:
    """Characters of a response over all its turns (`null` turns count 0): the length that raters see."""
    return sum(len(t) for t in turns if t)
