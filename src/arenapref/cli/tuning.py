"""`arenapref tune`: parse, call arenapref.workflows.run_tune, print."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from arenapref.cli.common import (
    CONFIG_OPT,
    FORMAT_OPT,
    INPUTS_HELP,
    MODEL_OPT,
    SET_OPT,
    config_from,
    err,
    out,
    read,
    show_table,
    warn,
)


def tune(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="Most trials (the starting config is the first)."),
    timeout: float = typer.Option(600, "--timeout", min=1, help="Seconds: no trial starts after this, and a running "
                                  "one stops at its next fold."),
    folds: int = typer.Option(3, "--folds", "-k", min=2, help="Inner folds, grouped by prompt, that score each trial."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and of the sampler."),
    output: Path = typer.Option(Path("runs/tune"), "--output", "-o", help="Folder for best.yaml and trials.csv."),
    fmt: str = FORMAT_OPT,
):
    """Search the features / embed hyper-parameters with Optuna on grouped folds (needs the `tune` extra) and
    write the best as a config file for `--config`."""
    from arenapref.workflows import run_tune

    run = config_from(config, overrides, model)
    records, _ = read(inputs, fmt)

    def report(number, value, best):
        score = "pruned or cut short" if value is None else f"log loss {value:.4f}"
        err.print(f"trial {number}: {score}" + ("" if best is None else f" (best {best:.4f})"), highlight=False)

    done = run_tune(records, run, output, trials=trials, timeout=timeout, folds=folds, seed=seed, progress=report)
    for note in done.notes:
        warn(note)
    result = done.result
    table = result.trials.sort_values("logloss", na_position="last").head(10)
    show_table(table, f"{run.model.family}: {len(result.trials)} trial(s) on {result.folds} grouped folds of "
               f"{done.rows} rows in {result.seconds:.0f} s (stopped by {result.stopped_by}); lower log loss is better")
    if result.baseline_value is not None:
        out.print(f"starting config {result.baseline_value:.4f} -> best {result.best_value:.4f}", highlight=False)
    out.print(f"best config: {done.files['best']} (use it: arenapref train DATA -o MODEL --config {done.files['best']}); "
              f"every trial: {done.files['trials']}", highlight=False)
    return result


def register(app: typer.Typer) -> None:
    app.command()(tune)
