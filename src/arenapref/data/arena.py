"""Arena-format readers: Kaggle LMSYS train/test (CSV, parquet, JSONL) and LMArena conversation dumps."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from arenapref.data.problems import ReadReport
from arenapref.data.record import LABELS, TIE, PairRecord

KAGGLE_REQUIRED = ("id", "prompt", "response_a", "response_b")
TURN_FIELDS = ("prompt", "response_a", "response_b")
LMARENA_WINNERS = {"model_a": 0, "model_b": 1, "tie": TIE, "tie (bothbad)": TIE, "both_bad": TIE}


def repair_surrogates(text: str) -> tuple[str, int]:
    """Join UTF-16 surrogate pairs that arrived as separate escapes and replace lone ones with U+FFFD.

    json.loads turns "\\ud83c\\udf4d" into one emoji but leaves a lone "\\ud83d" as an unencodable surrogate,
    which crashes every tokenizer and file writer downstream. Returns the text and the number of lone
    surrogates replaced.
    """
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text, 0
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, fixed.count("\ufffd") - text.count("\ufffd")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_turns(value: Any, report: ReadReport, file, row, id_, field) -> tuple[str, ...] | None:
    """A JSON-encoded list of strings (one per turn) -> tuple of str. `null` turns become "" (counted)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            report.add(file, row, id_, field, f"not valid JSON ({e.msg} at char {e.pos}); expected a JSON list of strings such as [\"hi\"]")
            return None
    elif hasattr(value, "tolist"):  # parquet gives numpy arrays for list columns
        value = value.tolist()
    if not isinstance(value, list):
        shown = repr(value)[:60]
        report.add(file, row, id_, field, f"expected a JSON list of strings (one per turn), got {type(value).__name__} {shown}")
        return None
    turns = []
    for k, turn in enumerate(value):
        if turn is None:
            report.counts["null_turns"] += 1
            turn = ""
        elif not isinstance(turn, str):
            report.add(file, row, id_, field, f"turn {k} is {type(turn).__name__}, not a string; converted to text", fatal=False)
            turn = json.dumps(turn) if isinstance(turn, (dict, list)) else str(turn)
        turn, fixed = repair_surrogates(turn)
        if fixed:
            report.counts["repaired_surrogates"] += fixed
            report.counts["rows_with_repaired_surrogates"] += 1
        turns.append(turn)
    return tuple(turns)


def parse_onehot(row: dict, report: ReadReport, file, rownum, id_) -> int | None:
    values = []
    for col in LABELS:
        raw = row.get(col)
        try:
            v = float(raw)
        except (TypeError, ValueError):
            report.add(file, rownum, id_, col, f"label must be 0 or 1, got {raw!r}")
            return None
        if v not in (0.0, 1.0):
            report.add(file, rownum, id_, col, f"label must be 0 or 1, got {raw!r}")
            return None
        values.append(v)
    if sum(values) != 1:
        report.add(file, rownum, id_, ",".join(LABELS), f"labels must be one-hot (exactly one of them 1), got {values}")
        return None
    return values.index(1.0)


def read_table(path: Path) -> pd.DataFrame:
    """CSV, parquet or JSON(L) into a DataFrame of raw values (CSV cells kept as strings, never NaN-ified)."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return pd.read_json(path, lines=True, dtype=False)
    if name.endswith(".json"):
        return pd.read_json(path, dtype=False)
    raise ValueError(f"{path}: unknown file type; expected .csv, .parquet, .jsonl or .json")


def kaggle_records(df: pd.DataFrame, file: str, source: str, report: ReadReport) -> list[PairRecord]:
    """Kaggle LMSYS columns -> records. Train files carry the three winner columns, test files none."""
    missing = [c for c in KAGGLE_REQUIRED if c not in df.columns]
    if missing:
        report.add(file, None, None, ",".join(missing), f"missing column(s) {missing}; found {list(df.columns)}")
        return []
    label_cols = [c for c in LABELS if c in df.columns]
    if label_cols and len(label_cols) < 3:
        gone = [c for c in LABELS if c not in df.columns]
        report.add(file, None, None, ",".join(gone), f"has {label_cols} but not {gone}: a train file needs all three label columns")
        return []
    # Our own canonical files (write_pairs) may mix labelled rows with unlabelled ones, whose label cells are blank.
    canonical = {"source", "soft_label"} <= set(df.columns)
    records, seen = [], {}
    for i, row in enumerate(df.to_dict("records"), start=1):
        raw_id = row["id"]
        id_ = "" if is_missing(raw_id) else str(raw_id).strip()
        if not id_:
            report.add(file, i, None, "id", "empty id")
            continue
        if id_ in seen:
            report.add(file, i, id_, "id", f"duplicate id (first seen in row {seen[id_]})")
            continue
        seen[id_] = i
        turns = [parse_turns(row[f], report, file, i, id_, f) for f in TURN_FIELDS]
        needs_label = bool(label_cols) and not (canonical and all(_blank(row.get(c)) for c in LABELS))
        label = parse_onehot(row, report, file, i, id_) if needs_label else None
        if any(t is None for t in turns) or (needs_label and label is None):
            continue
        prompt, a, b = turns
        if not (len(prompt) == len(a) == len(b)):
            report.add(file, i, id_, "prompt", f"turn counts differ: prompt {len(prompt)}, response_a {len(a)}, response_b {len(b)}", fatal=False)
        records.append(
            PairRecord(
                id=id_, prompt=prompt, response_a=a, response_b=b, label=label,
                model_a=_opt_str(row.get("model_a")), model_b=_opt_str(row.get("model_b")), source=source,
            )
        )
    return records


def lmarena_records(df: pd.DataFrame, file: str, source: str, report: ReadReport) -> list[PairRecord]:
    """LMArena dumps: conversation_a/conversation_b as lists of {role, content}, winner as a word."""
    for col in ("conversation_a", "conversation_b"):
        if col not in df.columns:
            report.add(file, None, None, col, f"missing column {col!r}")
            return []
    id_col = next((c for c in ("question_id", "id", "battle_id") if c in df.columns), None)
    records, seen = [], {}
    for i, row in enumerate(df.to_dict("records"), start=1):
        id_ = str(row[id_col]) if id_col else str(i)
        if id_col and id_ in seen:  # LMArena repeats question_id across turns of a battle: disambiguate
            id_ = f"{id_}#{i}"
        seen[id_] = i
        convs = []
        for col in ("conversation_a", "conversation_b"):
            msgs = row[col]
            if isinstance(msgs, str):
                try:
                    msgs = json.loads(msgs)
                except json.JSONDecodeError as e:
                    report.add(file, i, id_, col, f"not valid JSON ({e.msg})")
                    msgs = None
            if hasattr(msgs, "tolist"):
                msgs = msgs.tolist()
            if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
                if msgs is not None:
                    report.add(file, i, id_, col, "expected a list of {role, content} messages")
                convs.append(None)
                continue
            convs.append(msgs)
        if None in convs:
            continue
        label = None
        if "winner" in df.columns and not is_missing(row["winner"]):
            label = LMARENA_WINNERS.get(str(row["winner"]).strip())
            if label is None:
                report.add(file, i, id_, "winner", f"unknown winner {row['winner']!r}; expected one of {sorted(LMARENA_WINNERS)}")
                continue
        users = [_content(m, report) for m in convs[0] if m.get("role") == "user"]
        ra = tuple(_content(m, report) for m in convs[0] if m.get("role") == "assistant")
        rb = tuple(_content(m, report) for m in convs[1] if m.get("role") == "assistant")
        records.append(
            PairRecord(
                id=id_, prompt=tuple(users), response_a=ra, response_b=rb, label=label,
                model_a=_opt_str(row.get("model_a")), model_b=_opt_str(row.get("model_b")), source=source,
                meta={k: row[k] for k in ("language", "turn") if k in row and not is_missing(row[k])},
            )
        )
    return records


def _content(message: dict, report: ReadReport) -> str:
    content = message.get("content")
    if content is None:
        report.counts["null_turns"] += 1
        return ""
    if isinstance(content, list):  # multimodal content parts: keep the text parts
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    text, fixed = repair_surrogates(str(content))
    report.counts["repaired_surrogates"] += fixed
    return text


def _blank(value: Any) -> bool:
    return is_missing(value) or (isinstance(value, str) and not value.strip())


def _opt_str(value: Any) -> str | None:
    if is_missing(value):
        return None
    s = str(value).strip()
    return s or None
