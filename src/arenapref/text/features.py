"""Hand-made measurements of a response and of a pair, the kind of signal human raters react to.

Pure functions of text; the `features` and `embed` models turn them into columns. The basic columns
(RESPONSE_FEATURES, PAIR_FEATURES) are always there; optional groups (FEATURE_GROUPS) add more, chosen by the
model's `feature_groups` setting:

- `length`: raw character, word and sentence counts, the response's length relative to the prompt's and its
  share of the pair's characters (the length signals the Kaggle LMSYS write-ups leaned on);
- `readability`: words per sentence, syllables per word, Flesch reading ease, long-word and comma rates;
- `structure`: numbered items, inline code, quotes, the share of lines that are list items, the longest line,
  the share of characters inside code fences;
- `style`: "as an AI", refusals counted over the whole text, apologies, disclaimers, hedging, stock openers and
  closers, emoji, first-person rate;
- `turns`: per-turn lengths aggregated over the turns (mean, max, min), and the last turn's words, list items,
  refusal and share of the response (a multi-turn pair often differs only in its last turn);
- `symmetric` (pair columns): |A - B| of every response column, so "the two are alike" (a tie signal) is one
  split away for the trees; order-free, so swap symmetry holds.
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
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
VOWEL_GROUP = re.compile(r"[aeiouy]+", re.I)
LONG_WORD = re.compile(r"\b\w{7,}\b", re.UNICODE)
INLINE_CODE = re.compile(r"(?<!`)`[^`\n]+`(?!`)")
QUOTE_LINE = re.compile(r"^\s*>", re.M)
NUMBERED_ITEM = re.compile(r"^\s*\d+[.)]\s+", re.M)
FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
AS_AN_AI = re.compile(r"\bas an? (?:AI|artificial intelligence|language model|large language model|assistant)\b|"
                      r"\bI(?:'m| am) (?:just |only )?an? (?:AI|language model|large language model|virtual assistant)\b", re.I)
APOLOGY = re.compile(r"\b(?:I apologi[sz]e|I(?:'m| am) sorry|sorry,|my apologies)", re.I)
DISCLAIMER = re.compile(r"\b(?:it(?:'s| is) important to (?:note|remember|consider)|please (?:note|consult|remember)|"
                        r"consult (?:a|an|with|your)|seek (?:professional|medical|legal)|I(?: would|'d) recommend|"
                        r"not (?:a substitute|financial|medical|legal) advice)\b", re.I)
HEDGE = re.compile(r"\b(?:may|might|could|possibly|perhaps|generally|typically|likely|depends)\b", re.I)
OPENER = re.compile(r"^\s*(?:sure|certainly|of course|absolutely|great question|yes|no|okay|ok|here(?:'s| is| are))\b", re.I)
CLOSER = re.compile(r"I hope (?:this|that) helps|let me know if|feel free to|happy to help", re.I)
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
FIRST_PERSON = re.compile(r"\b(?:I|me|my|mine)\b")

RESPONSE_FEATURES = (
    "log_chars", "log_words", "n_lines", "n_paragraphs", "n_list_items", "n_headers", "n_code_blocks", "n_bold",
    "n_links", "n_table_rows", "n_questions", "n_exclaims", "refusal", "empty", "n_empty_turns", "unique_word_ratio",
    "compress_ratio", "mean_word_len", "digit_ratio", "upper_ratio", "non_ascii_ratio", "ends_cleanly",
    "prompt_coverage", "prompt_jaccard", "last_turn_log_chars",
)
PAIR_FEATURES = ("identical", "ab_jaccard", "n_turns", "prompt_log_chars", "prompt_has_code", "prompt_is_question")
# optional response-column groups, in this order after RESPONSE_FEATURES; `symmetric` adds pair columns
FEATURE_GROUPS = {
    "length": ("n_chars", "n_words", "n_sentences", "log_chars_over_prompt", "char_share"),
    "readability": ("words_per_sentence", "syllables_per_word", "flesch_reading_ease", "long_word_ratio", "comma_rate"),
    "structure": ("n_numbered_items", "n_inline_code", "n_quote_lines", "list_line_share", "max_line_log_chars",
                  "code_char_share"),
    "style": ("as_an_ai", "n_refusals", "apology", "disclaimer", "hedge_rate", "opener", "closer", "n_emoji",
              "first_person_rate"),
    "turns": ("turn_mean_log_chars", "turn_max_log_chars", "turn_min_log_chars", "last_turn_log_words",
              "last_turn_list_items", "last_turn_refusal", "last_turn_share"),
    "symmetric": (),
}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """The groups in their canonical order; an unknown name is a ValueError naming the choices."""
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"feature group(s) {unknown}: choose from {list(FEATURE_GROUPS)}")
    return tuple(g for g in FEATURE_GROUPS if g in groups)


def response_feature_names(groups: Sequence[str] = ()) -> tuple[str, ...]:
    return RESPONSE_FEATURES + tuple(n for g in check_groups(groups) for n in FEATURE_GROUPS[g])


def pair_feature_names(groups: Sequence[str] = ()) -> tuple[str, ...]:
    extra = tuple(f"abs_diff_{n}" for n in response_feature_names(groups)) if "symmetric" in groups else ()
    return PAIR_FEATURES + extra


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
        sum(map(str.isdigit, text)) / n_chars if n_chars else 0.0,
        sum(map(str.isupper, text)) / n_chars if n_chars else 0.0,
        (n_chars - len(text.encode("ascii", "ignore"))) / n_chars if n_chars else 0.0,  # code points above 127
        float(stripped[-1:] in {".", "!", "?", "`", ")", '"', "*", ":"} if stripped else 0.0),
        len(wset & prompt_words) / len(prompt_words) if prompt_words else 0.0,
        len(wset & prompt_words) / len(wset | prompt_words) if wset | prompt_words else 0.0,
        math.log1p(len(turns[-1])) if turns else 0.0,
    ]


def _ratio(x: float, n: float) -> float:
    return x / n if n else 0.0


def group_features(turns: Sequence[str], prompt_chars: int, groups: Sequence[str]) -> list[float]:
    """The optional groups' measurements of one response, in FEATURE_GROUPS order (`char_share` is filled in by
    `featurize`, which sees both responses)."""
    text = "\n\n".join(turns)
    n_chars = len(text)
    out: list[float] = []
    if not groups:
        return out
    n_words = len(WORD.findall(text))
    n_sentences = len(SENTENCE_END.findall(text)) or (1 if text.strip() else 0)
    if "length" in groups:
        out += [float(n_chars), float(n_words), float(n_sentences), math.log1p(n_chars) - math.log1p(prompt_chars), 0.0]
    if "readability" in groups:
        ascii_words = n_words or 1
        wps = _ratio(n_words, n_sentences)
        spw = len(VOWEL_GROUP.findall(text)) / ascii_words
        out += [wps, spw, 206.835 - 1.015 * wps - 84.6 * spw if n_words else 0.0,
                _ratio(len(LONG_WORD.findall(text)), n_words), _ratio(text.count(","), n_words)]
    if "structure" in groups:
        lines = [line for line in text.split("\n") if line.strip()]
        out += [len(NUMBERED_ITEM.findall(text)), len(INLINE_CODE.findall(text)), len(QUOTE_LINE.findall(text)),
                _ratio(len(LIST_ITEM.findall(text)), len(lines)),
                math.log1p(max((len(line) for line in lines), default=0)),
                _ratio(sum(len(m) for m in FENCED.findall(text)), n_chars)]
    if "style" in groups:
        out += [float(bool(AS_AN_AI.search(text))), len(REFUSAL.findall(text)), float(bool(APOLOGY.search(text))),
                len(DISCLAIMER.findall(text)), _ratio(len(HEDGE.findall(text)), n_words),
                float(bool(OPENER.match(text))), float(bool(CLOSER.search(text))), len(EMOJI.findall(text)),
                _ratio(len(FIRST_PERSON.findall(text)), n_words)]
    if "turns" in groups:
        logs = [math.log1p(len(t)) for t in turns] or [0.0]
        last = turns[-1] if turns else ""
        out += [sum(logs) / len(logs), max(logs), min(logs), math.log1p(len(WORD.findall(last))),
                len(LIST_ITEM.findall(last)), float(bool(REFUSAL.search(last[:600]))), _ratio(len(last), n_chars)]
    return out


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


def featurize(prompts, responses_a, responses_b, groups: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A features, B features, pair features) for lists of turn tuples: the basic columns, then those of
    `groups` (FEATURE_GROUPS), in the order of response_feature_names / pair_feature_names."""
    groups = check_groups(groups)
    fa, fb, fp = [], [], []
    for p, a, b in zip(prompts, responses_a, responses_b):
        pw = set(words("\n".join(p)))
        prompt_chars = len("\n\n".join(p))
        fa.append(response_features(a, pw) + group_features(a, prompt_chars, groups))
        fb.append(response_features(b, pw) + group_features(b, prompt_chars, groups))
        fp.append(pair_features(p, a, b))
    width = len(response_feature_names(groups))
    fa = np.asarray(fa, dtype=np.float32).reshape(-1, width)
    fb = np.asarray(fb, dtype=np.float32).reshape(-1, width)
    fp = np.asarray(fp, dtype=np.float32).reshape(-1, len(PAIR_FEATURES))
    if "length" in groups:
        share = response_feature_names(groups).index("char_share")
        chars = response_feature_names(groups).index("n_chars")
        total = fa[:, chars] + fb[:, chars]
        fa[:, share] = np.where(total > 0, fa[:, chars] / np.maximum(total, 1), 0.5)
        fb[:, share] = np.where(total > 0, fb[:, chars] / np.maximum(total, 1), 0.5)
    if "symmetric" in groups:
        fp = np.hstack([fp, np.abs(fa - fb)])
    return fa, fb, fp


def join_turns(turns: Sequence[str]) -> str:
    return "\n\n".join(t for t in turns if t)


def response_chars(turns: Sequence[str | None]) -> int:
    """Characters of a response over all its turns (`null` turns count 0): the length that raters see."""
    return sum(len(t) for t in turns if t)
