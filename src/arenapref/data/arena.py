"""Arena-format readers: Kaggle LMSYS train/test (CSV, parquet, JSONL) and LMArena conversation dumps."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from arenapref.data.problems import ReadReport
from arenapref.data.record import LABELS, TIE, PairRecord, battle_log_record

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
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


_INTEGRAL_FLOAT_TEXT = re.compile(r"^[+-]?\d+\.0*$")


def normalise_id(value: Any) -> str:
    """An id cell as the string every reader uses: stripped, integral floats written as integers.

    An id column that once held a NaN comes back from parquet (or pandas' CSV writer, or a spreadsheet) as
    floats: 4206.0 (or the text "4206.0") is id "4206", as in the file it came from. Other floats keep their
    digits; a missing id is "".

    Args:
        value: a cell (str, int, float, numpy scalar, None or NaN).

    Returns:
        The id as a string ("" when missing).

    >>> normalise_id(4206.0), normalise_id(" 17 "), normalise_id("4206.0"), normalise_id(None)
    ('4206', '17', '4206', '')
    """
    if is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if _INTEGRAL_FLOAT_TEXT.match(text):
        text = text.split(".", 1)[0].lstrip("+")
    return text


SOFT_LABEL_TOLERANCE = 1e-6  # a soft label must sum to 1 within this...
SOFT_LABEL_RENORMALISE = 1e-3  # ...or within this, when it is rescaled to sum to 1 (counted) instead of refused


def parse_soft_label(value: Any, report: ReadReport, file, row, id_, field: str = "soft_label"
                     ) -> tuple[float, float, float] | None | bool:
    """A soft label cell -> (p_a, p_b, p_tie), None when blank, or False after reporting why it is invalid.

    Accepted: a JSON list (or a parquet array / list) of 3 finite, non-negative numbers summing to 1 within
    1e-6. A sum off by at most 1e-3 (probabilities rounded to three decimals, e.g. [0.333, 0.333, 0.333]) is
    rescaled to 1 and counted as `soft_labels_renormalised`; anything further off is an error, since it is not
    a probability vector and rescaling would hide a broken teacher or a column mix-up.

    Args:
        value: the cell (JSON text, list, tuple, numpy array, blank or missing).
        report: where a problem goes, naming file, row, id and field.
        file, row, id_, field: where the cell is, for the problem.

    Returns:
        The probabilities, None for a blank cell, or False when the cell is invalid (a problem was added).

    >>> parse_soft_label("[0.6, 0.3, 0.1]", ReadReport(), "f.csv", 1, "7")
    (0.6, 0.3, 0.1)
    """
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            report.add(file, row, id_, field, f"not valid JSON ({e.msg} at char {e.pos}); expected a list of 3 "
                       "probabilities such as [0.6, 0.3, 0.1]")
            return False
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or len(value) != 3:
        shown = repr(value)[:60]
        what = f"{len(value)} values" if isinstance(value, list) else f"{type(value).__name__} {shown}"
        report.add(file, row, id_, field, f"expected a list of 3 probabilities (A wins, B wins, tie), got {what}")
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        report.add(file, row, id_, field, f"expected 3 numbers, got {value!r:.80}")
        return False
    probs = [float(v) for v in value]
    if not all(math.isfinite(v) for v in probs):
        report.add(file, row, id_, field, f"values must be finite, got {value!r:.80}")
        return False
    if min(probs) < 0:
        report.add(file, row, id_, field, f"probabilities cannot be negative, got {value!r:.80}")
        return False
    total = sum(probs)
    if abs(total - 1) > SOFT_LABEL_TOLERANCE:
        if abs(total - 1) > SOFT_LABEL_RENORMALISE:
            report.add(file, row, id_, field, f"probabilities must sum to 1, got {value!r:.80} (sum {total:.6g})")
            return False
        probs = [v / total for v in probs]
        report.counts["soft_labels_renormalised"] += 1
    return (probs[0], probs[1], probs[2])


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
    """CSV, parquet or JSON(L) into a DataFrame of raw values (CSV cells kept as strings, never NaN-ified).

    Kept for callers of the old API; readers use `loading.load_rows`, which also reports rows that could not
    be split into cells.
    """
    from arenapref.data.loading import load_rows

    rows = load_rows(path).rows
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)


def numbered(rows: Sequence, rownums: Sequence[int] | None = None):
    """(1-based data row, row) pairs; `rownums` gives the rows' own numbers when some rows were left out."""
    return zip(rownums if rownums is not None else range(1, len(rows) + 1), rows)


def kaggle_records(df: pd.DataFrame, file: str, source: str, report: ReadReport, rownums: Sequence[int] | None = None,
                   restore: bool = False, labels: bool = True) -> list[PairRecord]:
    """Kaggle LMSYS columns -> records. Train files carry the three winner columns, test files none.

    `restore`: the file is one of our canonical files (write_pairs), whose `source` and `soft_label` columns
    are read back per row. `labels=False` skips the label columns (and soft labels) entirely, for a test file
    whose label columns are partial or malformed.
    """
    missing = [c for c in KAGGLE_REQUIRED if c not in df.columns]
    if missing:
        report.add(file, None, None, ",".join(missing), f"missing column(s) {missing}; found {list(df.columns)}")
        return []
    label_cols = [c for c in LABELS if c in df.columns] if labels else []
    if label_cols and len(label_cols) < 3:
        gone = [c for c in LABELS if c not in df.columns]
        report.add(file, None, None, ",".join(gone), f"has {label_cols} but not {gone}: a train file needs all three "
                   "label columns (reading a test file? its label columns can be ignored)")
        return []
    # Our own canonical files (write_pairs) may mix labelled rows with unlabelled ones, whose label cells are blank.
    canonical = {"source", "soft_label"} <= set(df.columns)
    restore_soft = restore and labels and "soft_label" in df.columns
    records, seen = [], {}
    for i, row in numbered(df.to_dict("records"), rownums):
        id_ = normalise_id(row["id"])
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
        soft = parse_soft_label(row.get("soft_label"), report, file, i, id_) if restore_soft else None
        if any(t is None for t in turns) or (needs_label and label is None) or soft is False:
            continue
        prompt, a, b = turns
        if not (len(prompt) == len(a) == len(b)):
            report.add(file, i, id_, "prompt", f"turn counts differ: prompt {len(prompt)}, response_a {len(a)}, response_b {len(b)}", fatal=False)
        row_source = source
        if restore:
            row_source = _opt_str(row.get("source")) or source
        records.append(
            PairRecord(
                id=id_, prompt=prompt, response_a=a, response_b=b, label=label, soft_label=soft,
                model_a=_opt_str(row.get("model_a")), model_b=_opt_str(row.get("model_b")), source=row_source,
            )
        )
    return records


def lmarena_records(df: pd.DataFrame, file: str, source: str, report: ReadReport, rownums: Sequence[int] | None = None,
                    labels: bool = True) -> list[PairRecord]:
    """LMArena dumps: conversation_a/conversation_b as lists of {role, content}, winner as a word.

    FastChat's clean_battle files keep the conversation columns but may leave them null (vote logs without
    texts): such a row becomes a battle-log record (no texts, `meta["battle_log"]`), like battles.py's.
    """
    for col in ("conversation_a", "conversation_b"):
        if col not in df.columns:
            report.add(file, None, None, col, f"missing column {col!r}")
            return []
    id_col = next((c for c in ("question_id", "id", "battle_id") if c in df.columns), None)
    records, seen = [], {}
    for i, row in numbered(df.to_dict("records"), rownums):
        id_ = normalise_id(row[id_col]) if id_col else ""
        id_ = id_ or str(i)
        if id_ in seen:  # LMArena repeats question_id across turns of a battle: disambiguate
            id_ = f"{id_}#{i}"
        seen[id_] = i
        label = None
        if labels and "winner" in df.columns and not is_missing(row["winner"]):
            label = LMARENA_WINNERS.get(str(row["winner"]).strip())
            if label is None:
                report.add(file, i, id_, "winner", f"unknown winner {row['winner']!r}; expected one of {sorted(LMARENA_WINNERS)}")
                continue
        meta = {k: row[k] for k in ("language", "turn") if k in row and not is_missing(row[k])}
        if all(is_missing(row[c]) for c in ("conversation_a", "conversation_b")):
            report.counts["battle_log_rows"] += 1
            records.append(battle_log_record(id_, _opt_str(row.get("model_a")), _opt_str(row.get("model_b")), label,
                                             source, meta))
            continue
        convs = []
        for col in ("conversation_a", "conversation_b"):
            msgs = row[col]
            if isinstance(msgs, str):
                try:
                    msgs = json.loads(msgs)
                except json.JSONDecodeError as e:
                    report.add(file, i, id_, col, f"not valid JSON ({e.msg})")
                    convs.append(None)
                    continue
            if hasattr(msgs, "tolist"):
                msgs = msgs.tolist()
            if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
                report.add(file, i, id_, col, "expected a list of {role, content} messages")
                convs.append(None)
                continue
            convs.append(msgs)
        if None in convs:
            continue
        users = [_content(m, report) for m in convs[0] if m.get("role") == "user"]
        ra = tuple(_content(m, report) for m in convs[0] if m.get("role") == "assistant")
        rb = tuple(_content(m, report) for m in convs[1] if m.get("role") == "assistant")
        records.append(
            PairRecord(
                id=id_, prompt=tuple(users), response_a=ra, response_b=rb, label=label,
                model_a=_opt_str(row.get("model_a")), model_b=_opt_str(row.get("model_b")), source=source,
                meta=meta,
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
