"""`arenapref data import | validate | stats | overlap`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from arenapref.cli.common import FORMAT_OPT, INPUTS_HELP, MAP_OPT, out, read

app = typer.Typer(help="Import, validate and describe preference data.", no_args_is_help=True)


@app.command("import")
def data_import(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Canonical file to write (.csv, .parquet or .jsonl)."),
    fmt: str = FORMAT_OPT,
    mapping: Optional[List[str]] = MAP_OPT,
):
    """Read any supported input and write it in the canonical arena format (readable by every command)."""
    from arenapref.data.io import write_pairs
    from arenapref.files import check_output_file

    check_output_file(output, "canonical file")
    records, _ = read(inputs, fmt, mapping)
    write_pairs(records, output)
    out.print(f"wrote {len(records)} rows to {output}")


@app.command("validate")
def data_validate(inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP), fmt: str = FORMAT_OPT,
                  mapping: Optional[List[str]] = MAP_OPT):
    """Report every problem in the input at once (file, row, id, field); exit 1 if any is fatal."""
    records, report = read(inputs, fmt, mapping, strict=False)
    for p in report.problems:
        out.print(("[red]" if p.fatal else "[yellow]") + str(p).replace("[", "\\[") + "[/]", highlight=False)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(report.counts.items()) if v) or "none"
    out.print(f"{len(records)} readable rows; {len(report.fatal)} error(s), "
              f"{len(report.problems) - len(report.fatal)} warning(s); repairs and counts: {counts}")
    raise typer.Exit(1 if report.fatal else 0)


@app.command("stats")
def data_stats(inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP), fmt: str = FORMAT_OPT,
               mapping: Optional[List[str]] = MAP_OPT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Rows, tie rate, turns, length percentiles, identical/empty responses, model counts (per source too)."""
    from arenapref.data.stats import describe

    records, _ = read(inputs, fmt, mapping)
    by_source = {"all": describe(records)}
    sources = sorted({r.source for r in records})
    if len(sources) > 1:
        by_source |= {s: describe([r for r in records if r.source == s]) for s in sources}
    if as_json:
        out.print_json(json.dumps(by_source))
        return
    rows = [
        ("rows", lambda d: d["rows"]), ("labelled", lambda d: d["labelled"]),
        ("A wins", lambda d: f"{d['label_share']['winner_model_a']:.3f}"),
        ("B wins", lambda d: f"{d['label_share']['winner_model_b']:.3f}"), ("tie rate", lambda d: f"{d['tie_rate']:.3f}"),
        ("turns mean / max", lambda d: f"{d['turns']['mean']:.2f} / {d['turns']['max']}"),
        ("multi-turn share", lambda d: f"{d['turns']['multi_turn_share']:.3f}"),
        ("prompt chars p50/p90/p99", lambda d: "/".join(str(d["chars"]["prompt"][f"p{q}"]) for q in (50, 90, 99))),
        ("response chars p50/p90/p99", lambda d: "/".join(str(d["chars"]["response"][f"p{q}"]) for q in (50, 90, 99))),
        ("identical responses", lambda d: d["identical_responses"]), ("empty responses", lambda d: d["empty_responses"]),
        ("battle-log rows (no text)", lambda d: d.get("textless", 0)), ("models", lambda d: len(d["models"])),
    ]
    names = list(by_source)
    for start in range(0, len(names), 4):  # at most four sets side by side: the table fits 80 columns
        table = Table(title="data stats" if start == 0 else None, title_justify="left")
        table.add_column("")
        for name in names[start:start + 4]:
            table.add_column(name, justify="right")
        for label, get in rows:
            table.add_row(label, *[str(get(by_source[n])) for n in names[start:start + 4]])
        out.print(table)
    models = by_source["all"]["models"]
    if models:
        out.print("most frequent models: " + ", ".join(f"{m} ({c})" for m, c in list(models.items())[:10]))


@app.command("overlap")
def data_overlap(
    inputs: List[Path] = typer.Argument(..., help="Two or more data files or folders (each one set), or one folder "
                                        "whose sources are compared with each other."),
    level: str = typer.Option("conversation", help="conversation: all turns must match; first_turn: the first only."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="CSV of the shared pairs and prompts per two sets."),
    fmt: str = FORMAT_OPT,
):
    """Pairs (prompt and both responses, in either A/B order) and prompts that appear in more than one input, texts
    compared case-, space- and punctuation-insensitively: what a held-out set shares with the training data."""
    from arenapref.data.overlap import find_overlaps, sets_by_source
    from arenapref.errors import UsageError
    from arenapref.files import write_frame

    if level not in ("conversation", "first_turn"):
        raise UsageError(f"--level {level!r}: choose conversation or first_turn")
    if len(inputs) > 1:
        sets = {}
        for path in inputs:
            name = path.name or str(path)
            sets[name if name not in sets else str(path)] = read([path], fmt)[0]
    else:
        sets = sets_by_source(read(inputs, fmt)[0], with_subset=True)
    report = find_overlaps(sets, level=level)
    out.print(report.summary(), highlight=False)
    if output is not None:
        write_frame(report.table(), output, "overlap table")
        out.print(f"table: {output}")
