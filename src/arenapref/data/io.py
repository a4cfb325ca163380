"""One entry point for reading any supported file or folder into canonical records, and one writer."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from arenapref.data import arena, public
from arenapref.data.problems import ReadReport
from arenapref.data.record import LABELS, PairRecord

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".json")
FORMATS = ("auto", "kaggle", "lmarena", "hh-rlhf", "pandalm", "llmbar", "hhh", "jsonl")


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly plus the data files found (recursively, sorted) under named folders."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if _is_data_file(f))
            if not found:
                raise FileNotFoundError(f"{p}: folder holds no data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _load_rows(path: Path) -> list[dict] | pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        opener = gzip.open if name.endswith(".gz") else open
        rows = []
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg} at char {e.pos})") from None
        return rows
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):  # {"data": [...]} or a column-oriented table
            data = next((v for v in data.values() if isinstance(v, list)), None) or pd.DataFrame(data).to_dict("records")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    return arena.read_table(path)


def detect_format(columns: Sequence[str]) -> str | None:
    cols = set(columns)
    if {"conversation_a", "conversation_b"} <= cols:
        return "lmarena"
    if "chosen_instruction" in cols:
        return "hhh"
    if {"response1", "response2", "annotator1"} <= cols:
        return "pandalm"
    if {"output_1", "output_2"} <= cols:
        return "llmbar"
    if {"chosen", "rejected"} <= cols:
        return "hh-rlhf"
    if {"prompt", "response_a", "response_b"} <= cols:
        return "kaggle"
    return None


def _subset(path: Path) -> str:
    stem = path.name.split(".")[0]
    return stem[: -len("_test")] if stem.endswith("_test") else stem


def read_file(path: Path, fmt: str = "auto", mapping: Mapping[str, str] | None = None, source: str | None = None,
              report: ReadReport | None = None) -> list[PairRecord]:
    report = report if report is not None else ReadReport()
    try:
        rows = _load_rows(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        report.add(path, None, None, None, f"cannot read: {e}")
        return []
    columns = list(rows.columns) if isinstance(rows, pd.DataFrame) else sorted({k for r in rows[:50] if isinstance(r, dict) for k in r})
    if mapping:
        fmt = "jsonl"
    elif fmt == "auto":
        fmt = detect_format(columns)
        if fmt is None:
            report.add(path, None, None, None, f"cannot tell the format from the columns {columns[:12]}; pass --format or --map")
            return []
    file = str(path)
    if fmt in ("kaggle", "lmarena"):
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        src = source or _subset(path)
        recs = (arena.kaggle_records if fmt == "kaggle" else arena.lmarena_records)(df, file, src, report)
        if fmt == "kaggle" and "source" in df.columns and source is None:
            # our own canonical files carry the source (and soft labels) of every row
            recs = _restore_columns(recs, df)
        return recs
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    if fmt == "hh-rlhf":
        return public.hh_rlhf_records(records, file, _subset(path), report)
    if fmt == "pandalm":
        return public.pandalm_records(records, file, report)
    if fmt == "llmbar":
        return public.llmbar_records(records, file, path.parent.name, report)
    if fmt == "hhh":
        return public.hhh_records(records, file, report)
    if fmt == "jsonl":
        return public.mapped_records(records, file, source or _subset(path), mapping or {}, report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def _restore_columns(records: list[PairRecord], df: pd.DataFrame) -> list[PairRecord]:
    from dataclasses import replace

    by_id = df.set_index(df["id"].astype(str))
    out = []
    for r in records:
        row = by_id.loc[r.id]
        soft = row.get("soft_label") if "soft_label" in by_id.columns else None
        if isinstance(soft, str) and soft.strip():
            soft = tuple(json.loads(soft))
        elif hasattr(soft, "tolist"):
            soft = tuple(soft.tolist())
        else:
            soft = None
        out.append(replace(r, source=str(row["source"]) or r.source, soft_label=soft))
    return out


def read_pairs(paths: str | Path | Iterable[str | Path], fmt: str = "auto", mapping: Mapping[str, str] | None = None,
               source: str | None = None, strict: bool = True) -> tuple[list[PairRecord], ReadReport]:
    """Read files and folders into records, in file order then row order.

    strict=True raises DataError listing every fatal problem; strict=False returns them in the report.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = ReadReport()
    records: list[PairRecord] = []
    seen: dict[str, tuple[str, str]] = {}  # id -> (file, source) where it first appeared
    for path in expand(paths):
        for r in read_file(path, fmt, mapping, source, report):
            if r.id in seen:
                first_file, first_source = seen[r.id]
                report.add(path, None, r.id, "id", f"duplicate id: also used in {first_file} (source {first_source!r}); "
                           "ids must be unique across inputs")
            else:
                seen[r.id] = (str(path), r.source)
            records.append(r)
    if strict:
        report.raise_if_fatal()
    return records, report


def write_pairs(records: Sequence[PairRecord], path: str | Path) -> Path:
    """Canonical file: Kaggle columns (turns as JSON lists) plus source and soft_label; CSV, parquet or JSONL."""
    path = Path(path)
    rows = []
    for r in records:
        row = {
            "id": r.id, "model_a": r.model_a, "model_b": r.model_b,
            "prompt": json.dumps(list(r.prompt), ensure_ascii=False),
            "response_a": json.dumps(list(r.response_a), ensure_ascii=False),
            "response_b": json.dumps(list(r.response_b), ensure_ascii=False),
        }
        if r.label is not None:
            row.update({c: int(k == r.label) for k, c in enumerate(LABELS)})
        row["source"] = r.source
        row["soft_label"] = json.dumps(list(r.soft_label)) if r.soft_label is not None else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif name.endswith((".jsonl", ".ndjson")):
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_csv(path, index=False)
    return path
