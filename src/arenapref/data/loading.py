"""Raw file loading: bytes (gzip-aware), text (encoding-aware), then rows (CSV, parquet, JSON, JSON lines).

Everything a damaged or unusual file can do wrong ends here as `Unreadable`, whose message names the file and
what to do (a truncated download, a Latin-1 export, a row with too few cells), never as EOFError or a
UnicodeDecodeError with a byte offset. The format readers (arena.py, public.py, crowd.py, battles.py) only
see rows.

Decisions:
- JSON vs JSON lines is told by content, whatever the extension: a file that holds one JSON document is a
  document (a list of objects, or an object holding one), anything else is read as a sequence of objects
  (one per line, or concatenated).
- Text must be UTF-8 (a UTF-8 byte-order mark is dropped). A file that starts with a UTF-16 byte-order mark
  (Excel's "Unicode text", Windows PowerShell redirects) is unambiguous, so it is read as UTF-16 with a
  warning rather than refused. Other encodings (Latin-1, cp1252, UTF-16 without a mark) are not guessed: the
  error gives the first line that is not UTF-8 and the command that re-encodes the file.
- CSV is parsed with the csv module, which knows how many cells each row has: a row with fewer or more
  cells than the header is reported as such (and skipped) instead of failing later, field by field.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # Kaggle responses can exceed the 128 KiB default

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF8_BOM = b"\xef\xbb\xbf"


class Unreadable(ValueError):
    """The file cannot be read at all; the message says why and what to do (no file name: the caller adds it)."""


@dataclass
class Loaded:
    """Rows of one file plus what loading noticed.

    `rows` is a DataFrame (CSV, parquet) or a list of JSON values (JSON, JSON lines). `rownums[k]` is the
    1-based data row of `rows[k]` (rows that could not be split into cells are left out of `rows` and listed
    in `bad_rows` as (row, line, message, cells)). `warnings` are file-level notes (e.g. "read as UTF-16").
    """

    rows: pd.DataFrame | list
    rownums: list[int]
    bad_rows: list[tuple[int, int, str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_gzip_name(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz; damaged archives raise Unreadable."""
    if not is_gzip_name(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise Unreadable("the gzip file is truncated (the compressed data ends early): the file is incomplete; "
                         "download or copy it again") from None
    except gzip.BadGzipFile as e:
        raise Unreadable(f"not a valid gzip file ({e}) although its name ends in .gz; rename it or recompress it") from None
    except zlib.error as e:
        raise Unreadable(f"the gzip data is corrupt ({e}); download or copy the file again") from None


def decode(data: bytes, warnings: list[str] | None = None) -> str:
    """UTF-8 text (BOM dropped); UTF-16 with a BOM is decoded with a warning; anything else raises Unreadable
    naming the first line that is not UTF-8."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    elif data.startswith(UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise Unreadable(f"starts with a UTF-16 byte-order mark but is not valid UTF-16 ({e.reason} at byte {e.start}); "
                             "re-encode it as UTF-8") from None
        if warnings is not None:
            warnings.append("file is UTF-16 (it starts with a UTF-16 byte-order mark); read as UTF-16. "
                            "UTF-8 is what other tools expect: iconv -f utf-16 -t utf-8 FILE > FILE.utf8")
        return text
    if _looks_utf16(data):  # ASCII text in UTF-16 is valid UTF-8 full of NUL characters: refuse it here
        raise Unreadable("line 1: the file looks like UTF-16 without a byte-order mark (every other byte is 0). "
                         "Re-encode it as UTF-8, e.g. iconv -f utf-16le -t utf-8 FILE > FILE.utf8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable(_not_utf8_message(data, e)) from None


def _looks_utf16(data: bytes) -> bool:
    sample = data[:4096]
    return len(sample) >= 2 and sample.count(b"\x00") > len(sample) // 4


def _not_utf8_message(data: bytes, e: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, e.start) + 1
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    bad = data[e.start:e.start + 1]
    guess, source = "Latin-1 or Windows-1252 (or another 8-bit encoding)", "latin1"
    return (f"line {line}, column {column}: byte 0x{bad.hex()} is not UTF-8; the file is probably {guess}. "
            f"Re-encode it as UTF-8, e.g. iconv -f {source} -t utf-8 FILE > FILE.utf8")


def read_text(path: Path, warnings: list[str] | None = None) -> str:
    return decode(read_bytes(path), warnings)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def parse_json_values(text: str, lines_expected: bool = False) -> list:
    """One JSON document -> its rows; otherwise a sequence of JSON values (JSON lines, or concatenated objects).

    A document that is a list is the rows; an object holding a list (e.g. {"data": [...]}) gives that list; a
    column-oriented object ({"col": [v, ...], ...}) gives one row per index. With `lines_expected` (a .jsonl
    name) a file holding one object is one row, not a wrapper; a .jsonl file that holds one JSON list is
    read as that list.
    """
    stripped = text.lstrip()
    if not stripped:
        raise Unreadable("the file is empty")
    decoder = json.JSONDecoder()
    start = len(text) - len(stripped)
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise Unreadable(f"line {_line_of(text, e.pos)}: not valid JSON ({e.msg})") from None
    if not text[end:].strip():  # a single document
        if lines_expected:
            return value if isinstance(value, list) else [value]
        if isinstance(value, dict):
            inner = next((v for v in value.values() if isinstance(v, list)), None)
            if inner:
                return inner
            try:
                return pd.DataFrame(value).to_dict("records")
            except ValueError:  # an object of scalars: one row
                return [value]
        if isinstance(value, list):
            return value
        raise Unreadable(f"expected JSON objects, found a single {type(value).__name__}")
    values = [value]  # JSON lines (or concatenated JSON values), whatever the file's extension
    pos = end
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise Unreadable(f"line {_line_of(text, e.pos)}: not valid JSON ({e.msg}, column "
                             f"{e.pos - text.rfind(chr(10), 0, e.pos)}); each line must be one JSON object") from None
        values.append(value)
    return values


def parse_csv(text: str) -> Loaded:
    """CSV text -> DataFrame of strings (cells never NaN-ified), one row per data record with all its cells.

    Blank lines are skipped (they are not data rows). A record with a different number of cells than the
    header is left out and listed in `bad_rows` with its row and line number.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not header:
            header = next(reader, None)
        if header is None:
            raise Unreadable("the file is empty (no header row)")
        width = len(header)
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            raise Unreadable(f"the header names column(s) {dupes} more than once; every column needs its own name")
        good, rownums, bad = [], [], []
        rownum = 0
        for cells in reader:
            if not cells:
                continue
            rownum += 1
            if len(cells) != width:
                line = reader.line_num
                hint = ("a line break inside a cell that is not quoted, or a cell cut off?" if len(cells) < width
                        else "a comma inside a cell that is not quoted?")
                bad.append((rownum, line, f"has {len(cells)} of {width} cells ({hint}); row skipped", cells))
                continue
            good.append(cells)
            rownums.append(rownum)
    except csv.Error as e:
        raise Unreadable(f"line {reader.line_num}: not valid CSV ({e})") from None
    df = pd.DataFrame(good, columns=header, dtype=object) if good else pd.DataFrame(columns=header, dtype=object)
    return Loaded(df, rownums, bad)


def load_rows(path: Path) -> Loaded:
    """Rows of a CSV / parquet / JSON / JSON lines file (optionally .gz). Raises Unreadable."""
    name = path.name.lower()
    base = name.removesuffix(".gz")
    if base.endswith(".parquet"):
        try:
            df = pd.read_parquet(io.BytesIO(read_bytes(path)) if is_gzip_name(path) else path)
        except Unreadable:
            raise
        except (ValueError, OSError, TypeError) as e:  # pyarrow's ArrowInvalid, ArrowIOError, ArrowTypeError
            raise Unreadable(f"not a readable parquet file ({type(e).__name__}: {e})") from None
        return Loaded(df, list(range(1, len(df) + 1)))
    warnings: list[str] = []
    text = read_text(path, warnings)
    if base.endswith(".csv"):
        loaded = parse_csv(text)
        loaded.warnings.extend(warnings)
        return loaded
    values = parse_json_values(text, lines_expected=base.endswith((".jsonl", ".ndjson")))
    return Loaded(values, list(range(1, len(values) + 1)), warnings=warnings)


def columns_of(rows: pd.DataFrame | list) -> list[str]:
    if isinstance(rows, pd.DataFrame):
        return [str(c) for c in rows.columns]
    return sorted({str(k) for r in rows[:50] if isinstance(r, dict) for k in r})


def as_dicts(rows: pd.DataFrame | list) -> list[Any]:
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
