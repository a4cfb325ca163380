"""One entry point for reading any supported file or folder into canonical records, and one writer.

Formats are told from the columns (or keys) of each file, whatever its extension: Kaggle / canonical arena
files, LMArena dumps, hh-rlhf, PandaLM, LLMBar and HHH.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from arenapref import errors
from arenapref.data import arena, public
from arenapref.data.loading import Loaded, Unreadable, as_dicts, columns_of, load_rows
from arenapref.data.problems import ReadReport
from arenapref.data.record import LABELS, PairRecord

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
FORMATS = ("auto", "kaggle", "lmarena", "hh-rlhf", "pandalm", "llmbar", "hhh", "jsonl")
LABEL_MODES = ("auto", "ignore")


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


def detect_format(columns: Sequence[str]) -> str | None:
    """The reader for a file with these columns (or JSON keys), or None."""
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


class _Files:
    """Loaded files, each loaded once per read_pairs call."""

    def __init__(self):
        self._cache: dict[Path, Loaded | Unreadable] = {}

    def load(self, path: Path) -> Loaded:
        key = path.resolve()
        if key not in self._cache:
            try:
                self._cache[key] = load_rows(path)
            except (Unreadable, OSError) as e:
                self._cache[key] = e if isinstance(e, Unreadable) else Unreadable(str(e))
        got = self._cache[key]
        if isinstance(got, Unreadable):
            raise got
        return got


def read_file(path: Path, fmt: str = "auto", mapping: Mapping[str, str] | None = None, source: str | None = None,
              report: ReadReport | None = None, labels: bool = True, files: _Files | None = None) -> list[PairRecord]:
    """Records of one file (problems go to `report`); read_pairs is the entry point for files and folders."""
    report = report if report is not None else ReadReport()
    files = files or _Files()
    try:
        loaded = files.load(path)
    except Unreadable as e:
        report.add(path, None, None, None, f"cannot read: {e}")
        return []
    for note in loaded.warnings:
        report.add(path, None, None, None, note, fatal=False)
    rows, rownums = loaded.rows, loaded.rownums
    columns = columns_of(rows)
    for rownum, line, message, cells in loaded.bad_rows:
        id_ = cells[columns.index("id")].strip() or None if "id" in columns and columns.index("id") < len(cells) else None
        report.add(path, rownum, id_, None, f"this row (ending on line {line}) {message}")
    if not isinstance(rows, pd.DataFrame):
        kept, kept_nums = [], []
        for n, r in zip(rownums, rows):
            if isinstance(r, dict):
                kept.append(r)
                kept_nums.append(n)
            else:
                report.add(path, n, None, None, f"expected a JSON object, got {type(r).__name__} {str(r)[:40]!r}")
        rows, rownums = kept, kept_nums
    if mapping:
        fmt = "jsonl"
    elif fmt == "auto":
        fmt = detect_format(columns)
        if fmt is None:
            if not columns and not len(rows):
                report.add(path, None, None, None, "the file holds no rows", fatal=False)
                return []
            report.add(path, None, None, None, f"cannot tell the format from the columns {columns[:12]}; pass --format or --map")
            return []
    file = str(path)
    if fmt in ("kaggle", "lmarena"):
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        src = source or _subset(path)
        if fmt == "kaggle":
            # our own canonical files carry the source (and soft labels) of every row
            restore = "source" in df.columns and source is None
            return arena.kaggle_records(df, file, src, report, rownums, restore=restore, labels=labels)
        return arena.lmarena_records(df, file, src, report, rownums, labels=labels)
    records = as_dicts(rows)
    if fmt == "hh-rlhf":
        return public.hh_rlhf_records(records, file, _subset(path), report, rownums, labels)
    if fmt == "pandalm":
        return public.pandalm_records(records, file, report, rownums, labels)
    if fmt == "llmbar":
        return public.llmbar_records(records, file, path.parent.name, report, rownums, labels)
    if fmt == "hhh":
        return public.hhh_records(records, file, report, rownums, labels)
    if fmt == "jsonl":
        return public.mapped_records(records, file, source or _subset(path), mapping or {}, report, rownums, labels)
    raise errors.UsageError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def read_pairs(paths: str | Path | Iterable[str | Path], fmt: str = "auto", mapping: Mapping[str, str] | None = None,
               source: str | None = None, strict: bool = True, labels: str = "auto") -> tuple[list[PairRecord], ReadReport]:
    """Read files and folders into canonical records, in file order then row order.

    Folders are read recursively (files ending in .csv, .csv.gz, .parquet, .jsonl, .jsonl.gz, .ndjson,
    .json, .json.gz). Each file's format is told from its columns.

    Args:
        paths: a file, a folder, or several of them.
        fmt: "auto" (detect per file) or one of FORMATS to force a reader.
        mapping: generic JSON(L) field mapping, ours -> theirs (implies fmt="jsonl"); see public.mapped_records.
        source: the source name of every record (default: each reader's own, e.g. the file stem for Kaggle files).
        strict: True raises DataError listing every fatal problem; False returns them in the report (what
            `data validate` shows) together with the rows that could be read.
        labels: "auto" reads labels where the file has them; "ignore" skips every label column and soft label,
            so a test file whose label columns are partial or malformed can still be predicted on.
    Returns:
        (records, report): the records, and the problems (each naming file, row, id and field) and counts of
        repairs found while reading.

    Raises:
        DataError: strict=True and some problem is fatal.
        FileNotFoundError: a path does not exist, or a folder holds no data files.

    Example:
        >>> records, report = read_pairs("../shared/data/pandalm")         # doctest: +SKIP
        >>> len(records), records[0].model_a                                # doctest: +SKIP
        (999, 'bloom-7b')
        >>> test, _ = read_pairs("test.csv", labels="ignore")               # doctest: +SKIP
    """
    if labels not in LABEL_MODES:
        raise errors.UsageError(f"labels={labels!r}: choose one of {LABEL_MODES}")
    if fmt not in FORMATS:
        raise errors.UsageError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = ReadReport()
    files = _Files()
    records: list[PairRecord] = []
    seen: dict[str, tuple[str, str]] = {}  # id -> (file, source) where it first appeared
    for path in expand(paths):
        for r in read_file(path, fmt, mapping, source, report, labels == "auto", files):
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
