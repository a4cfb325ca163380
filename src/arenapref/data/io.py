"""One entry point for reading any supported file or folder into canonical records, and one writer.

Formats are told from the columns (or keys) of each file, whatever its extension: Kaggle / canonical arena
files, LMArena dumps, battle logs (CSV or FastChat's clean_battle JSON), hh-rlhf, PandaLM, LLMBar, HHH,
LLMEval², LLMFAO and Tulu human eval. Sets spread over several files (LLMFAO: votes + pairs + models +
prompts; Tulu: annotations + instances) are read through their main file, which joins the others from its
folder; the other files are then skipped, so reading the folder gives every pair once.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from arenapref import errors
from arenapref.data import arena, battles, crowd, public
from arenapref.data.loading import Loaded, Unreadable, as_dicts, columns_of, load_rows
from arenapref.data.problems import ReadReport
from arenapref.data.record import LABELS, PairRecord

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
FORMATS = ("auto", "kaggle", "lmarena", "battles", "hh-rlhf", "pandalm", "llmbar", "hhh", "llmeval2", "llmfao", "tulu",
           "jsonl")
LABEL_MODES = ("auto", "ignore")
ID_CLASH_MODES = ("qualify", "error")

# Files that only complete another file of their set: (family, what they hold, the file to read instead)
COMPANIONS = {
    "llmfao-pairs": ("llmfao", "LLMFAO's pairs (the texts)", "crowd-comparisons.csv"),
    "llmfao-models": ("llmfao", "LLMFAO's model list", "crowd-comparisons.csv"),
    "llmfao-prompts": ("llmfao", "LLMFAO's prompt list", "crowd-comparisons.csv"),
    "tulu-instances": ("tulu", "Tulu human eval's instances (the texts)", "eval_annotations_tulu_1.csv"),
}


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly plus the data files found (recursively, sorted) under named folders."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if _is_data_file(f))
            if not found:
                raise errors.InputNotFound(f"{p}: folder holds no data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise errors.InputNotFound(f"{p}: no such file or folder")
    return out


def detect_format(columns: Sequence[str]) -> str | None:
    """The reader for a file with these columns (or JSON keys), or None. Companion files of multi-file sets
    get their own names (llmfao-pairs, llmfao-models, llmfao-prompts, tulu-instances)."""
    cols = set(columns)
    if {"conversation_a", "conversation_b"} <= cols:
        return "lmarena"
    if "chosen_instruction" in cols:
        return "hhh"
    if {"response1", "response2", "annotator1"} <= cols:
        return "pandalm"
    if {"query", "response1", "response2", "human"} <= cols:
        return "llmeval2"
    if crowd.TULU_ANNOTATIONS <= cols:
        return "tulu"
    if crowd.TULU_INSTANCES <= cols:
        return "tulu-instances"
    if crowd.LLMFAO_VOTES <= cols:
        return "llmfao"
    if crowd.LLMFAO_PAIRS <= cols:
        return "llmfao-pairs"
    if crowd.LLMFAO_MODELS <= cols:
        return "llmfao-models"
    if crowd.LLMFAO_PROMPTS <= cols and "prompt" not in cols:
        return "llmfao-prompts"
    if {"output_1", "output_2"} <= cols:
        return "llmbar"
    if {"chosen", "rejected"} <= cols:
        return "hh-rlhf"
    if {"prompt", "response_a", "response_b"} <= cols:
        return "kaggle"
    if battles.is_battle_log(cols):
        return "battles"
    return None


def _subset(path: Path) -> str:
    stem = path.name.split(".")[0]
    return stem[: -len("_test")] if stem.endswith("_test") else stem


class _Files:
    """Loaded files, each loaded once per read_pairs call (companions are looked up among them)."""

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

    def detect(self, path: Path) -> str | None:
        try:
            return detect_format(columns_of(self.load(path).rows))
        except Unreadable:
            return None

    def companions(self, path: Path, kind: str) -> list[Path]:
        """Files of format `kind` in `path`'s folder."""
        return [p for p in sorted(path.parent.iterdir()) if p != path and _is_data_file(p)
                and p.name.lower().endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson"))
                and self.detect(p) == kind]


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
    if fmt in COMPANIONS:
        _, what, main = COMPANIONS[fmt]
        report.add(path, None, None, None, f"this is {what}, which is read together with its main file: pass "
                   f"{main} or the folder that holds both")
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
    if fmt == "llmeval2":
        return public.llmeval2_records(records, file, report, rownums, labels)
    if fmt == "battles":
        return battles.battle_records(records, file, source or _subset(path), report, rownums, labels)
    if fmt == "llmfao":
        return _read_llmfao(path, records, rownums, report, labels, files)
    if fmt == "tulu":
        return _read_tulu(path, records, rownums, report, labels, files)
    if fmt == "jsonl":
        return public.mapped_records(records, file, source or _subset(path), mapping or {}, report, rownums, labels)
    raise errors.UsageError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def _tokens(path: Path) -> set[str]:
    return set(re.split(r"[-_.]+", path.name.lower())) - {"", "jsonl", "json", "csv", "gz"}


def _read_llmfao(path: Path, votes: list[dict], rownums, report: ReadReport, labels: bool, files: _Files) -> list[PairRecord]:
    candidates = files.companions(path, "llmfao-pairs")
    if not candidates:
        report.add(path, None, None, None, "LLMFAO votes need their pairs file (pairs-crowd.jsonl: id, text, model_x, "
                   "result_x, model_y, result_y) in the same folder; none found")
        return []
    vote_ids = {arena.normalise_id(v.get("id")) for v in votes}

    def fit(p: Path):
        ids = {arena.normalise_id(r.get("id")) for r in files.load(p).rows if isinstance(r, dict)}
        return (len(vote_ids & ids), len(_tokens(p) & _tokens(path)))

    pairs_path = max(candidates, key=fit)  # the pairs file that holds the voted pairs (pairs-crowd for crowd-*)
    models_paths = files.companions(path, "llmfao-models")
    models = files.load(models_paths[0]).rows if models_paths else None
    if models is None:
        report.add(path, None, None, None, "models.jsonl not found next to the votes: the left model is taken to be "
                   "model_x of each pair", fatal=False)
    return crowd.llmfao_records(votes, str(path), files.load(pairs_path).rows, str(pairs_path), models, report,
                                rownums, labels)


def _read_tulu(path: Path, rows: list[dict], rownums, report: ReadReport, labels: bool, files: _Files) -> list[PairRecord]:
    candidates = files.companions(path, "tulu-instances")
    instances = None
    if candidates:
        instances = files.load(max(candidates, key=lambda p: len(_tokens(p) & _tokens(path)))).rows
    else:
        report.add(path, None, None, None, "eval_instances_*.jsonl not found next to the annotations: texts are taken "
                   "from the sheet, where spreadsheet errors (#ERROR!, #N/A) replace completions that start with '='",
                   fatal=False)
    return crowd.tulu_records(rows, str(path), instances, report, rownums, labels)


def _companion_of_input(path: Path, kind: str, inputs: set[Path], files: _Files) -> bool:
    """Whether `path` (a companion file of format `kind`) belongs to a main file that is also being read."""
    family = COMPANIONS[kind][0]
    return any(p.parent == path.parent and p != path and files.detect(p) == family for p in inputs)


def read_pairs(paths: str | Path | Iterable[str | Path], fmt: str = "auto", mapping: Mapping[str, str] | None = None,
               source: str | None = None, strict: bool = True, labels: str = "auto",
               on_id_clash: str = "qualify") -> tuple[list[PairRecord], ReadReport]:
    """Read files and folders into canonical records, in file order then row order.

    Folders are read recursively (files ending in .csv, .csv.gz, .parquet, .jsonl, .jsonl.gz, .ndjson,
    .json, .json.gz). Each file's format is told from its columns; the companion files of a multi-file set
    (LLMFAO's pairs, models and prompts; Tulu's instances) are joined by its main file and not read again.

    Args:
        paths: a file, a folder, or several of them.
        fmt: "auto" (detect per file) or one of FORMATS to force a reader.
        mapping: generic JSON(L) field mapping, ours -> theirs (implies fmt="jsonl"); see public.mapped_records.
        source: the source name of every record (default: each reader's own, e.g. the file stem for Kaggle files).
        strict: True raises DataError listing every fatal problem; False returns them in the report (what
            `data validate` shows) together with the rows that could be read.
        labels: "auto" reads labels where the file has them; "ignore" skips every label column and soft label,
            so a test file whose label columns are partial or malformed can still be predicted on.
        on_id_clash: what to do with an id that two different sources both use (the hand-written quirks.csv
            reuses real Kaggle ids, for example): "qualify" renames it to "<source>/<id>" in both, with a
            warning; "error" reports it as a duplicate. The same id twice within one source is always an error.

    Returns:
        (records, report): the records, and the problems (each naming file, row, id and field) and counts of
        repairs found while reading.

    Raises:
        DataError: strict=True and some problem is fatal.
        FileNotFoundError: a path does not exist, or a folder holds no data files.

    Example:
        >>> records, report = read_pairs("../shared/data/llmfao")          # doctest: +SKIP
        >>> len(records), records[0].model_a, records[0].soft_label         # doctest: +SKIP
        (2139, 'Airoboros L2 70B', (0.5, 0.0, 0.5))
        >>> test, _ = read_pairs("test.csv", labels="ignore")               # doctest: +SKIP
    """
    if labels not in LABEL_MODES:
        raise errors.UsageError(f"labels={labels!r}: choose one of {LABEL_MODES}")
    if on_id_clash not in ID_CLASH_MODES:
        raise errors.UsageError(f"on_id_clash={on_id_clash!r}: choose one of {ID_CLASH_MODES}")
    if fmt not in FORMATS:
        raise errors.UsageError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = ReadReport()
    files = _Files()
    inputs = expand(paths)
    input_set = set(inputs)
    per_file: list[tuple[Path, list[PairRecord]]] = []
    for path in inputs:
        if fmt in ("auto", "llmfao", "tulu") and not mapping:
            kind = files.detect(path)
            if kind in COMPANIONS and fmt in ("auto", COMPANIONS[kind][0]) and _companion_of_input(path, kind, input_set, files):
                report.counts["companion_files_joined"] += 1
                continue
        per_file.append((path, read_file(path, fmt, mapping, source, report, labels == "auto", files)))
    return _unique_ids(per_file, report, on_id_clash, strict)


def _unique_ids(per_file: list[tuple[Path, list[PairRecord]]], report: ReadReport, on_id_clash: str,
                strict: bool) -> tuple[list[PairRecord], ReadReport]:
    sources_of: dict[str, dict[str, Path]] = {}  # id -> {source: first file}
    for path, recs in per_file:
        for r in recs:
            sources_of.setdefault(r.id, {}).setdefault(r.source, path)
    clashing = {i for i, by_source in sources_of.items() if len(by_source) > 1} if on_id_clash == "qualify" else set()
    if clashing:
        in_order = dict.fromkeys(r.id for _, recs in per_file for r in recs if r.id in clashing)
        for id_ in in_order:
            by_source = sources_of[id_]
            (first_src, first_file), *rest = by_source.items()
            for src, file in rest:
                report.add(file, None, id_, "id", f"id also used in {first_file} (source {first_src!r}); ids are kept "
                           f"unique per source, so they are now {first_src + '/' + id_!r} and {src + '/' + id_!r}",
                           fatal=False)
        report.counts["ids_qualified_with_source"] += sum(
            1 for _, recs in per_file for r in recs if r.id in clashing)
    records: list[PairRecord] = []
    seen: dict[str, tuple[str, str]] = {}  # id -> (file, source) where it first appeared
    for path, recs in per_file:
        for r in recs:
            if r.id in clashing:
                r = replace(r, id=f"{r.source}/{r.id}")
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
