"""What every command shares: the consoles, the one-line error format, reading inputs, tables, and options."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arenapref.config import RunConfig, load_run_config
from arenapref.errors import ConfigError, UsageError

out = Console()
err = Console(stderr=True)

INPUTS_HELP = ("Data files or folders: Kaggle arena CSV/parquet/JSONL, LMArena dumps, battle logs, hh-rlhf, PandaLM, "
               "LLMBar, HHH, LLMFAO, LLMEval2, Tulu (format detected from the content).")
FORMAT_OPT = typer.Option("auto", "--format", "-f", help="Force a reader: auto, kaggle, lmarena, battles, hh-rlhf, "
                          "pandalm, llmbar, hhh, llmeval2, llmfao, tulu, jsonl.")
MAP_OPT = typer.Option(None, "--map", help="Generic JSONL field mapping, ours=theirs, repeatable: --map prompt=question --map response_a=ans1 ...")
CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML or TOML run config (see examples/).")
SET_OPT = typer.Option(None, "--set", "-s", help="Override a config value, e.g. --set model.n_estimators=500 (repeatable).")
MODEL_OPT = typer.Option(None, "--model", "-m", help="Model family: prior, features (default), embed, transformer, judge.")
TRUST_OPT = typer.Option(False, "--trust-model-code", help="Load a model directory from arenapref 0.1 whose state is a "
                         "pickle. Unpickling runs any code its author put in it: only for directories you trust.")


def error_line(message: str) -> None:
    # escaped: messages quote user data (ids, cell values, pydantic's "[type=...]"), which rich would otherwise
    # swallow as markup or crash on ("[/b]" closes no tag)
    err.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]{escape(str(message))}[/]", highlight=False, soft_wrap=True)


def parse_mapping(mapping: Optional[List[str]]) -> dict[str, str] | None:
    out_map = {}
    for item in mapping or []:
        ours, sep, theirs = item.partition("=")
        if not sep:
            raise UsageError(f"--map {item!r}: expected ours=theirs, e.g. --map prompt=question")
        out_map[ours.strip()] = theirs.strip()
    return out_map or None


def read(inputs: List[Path], fmt: str = "auto", mapping: Optional[List[str]] = None, strict: bool = True, **kwargs):
    """read_pairs with the warnings printed (strict) or returned in the report (validate)."""
    from arenapref.data.io import read_pairs

    records, report = read_pairs(inputs, fmt, parse_mapping(mapping), strict=strict, **kwargs)
    if strict:
        for p in report.problems:
            if not p.fatal:
                warn(str(p))
        repaired = report.counts.get("repaired_surrogates", 0)
        if repaired:
            warn(f"repaired {repaired} unpaired surrogate escape(s) in {report.counts['rows_with_repaired_surrogates']} row(s)")
    return records, report


def config_from(config: Optional[Path], overrides: Optional[List[str]], model: Optional[str],
                folds: Optional[int] = None) -> RunConfig:
    over = list(overrides or [])
    if folds is not None:
        over.append(f"folds.n_splits={folds}")
    try:
        return load_run_config(config, over, model)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else a config file can hold wrong is the user's to fix
        raise ConfigError(f"invalid config: {e}") from None


def show_table(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in row])
    out.print(table)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
