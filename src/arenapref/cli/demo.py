"""`arenapref demo`, the main job: what arenapref does, on the real shared data, in a few minutes on 2 cores.

It calls the library (arenapref/workflows.py) like any user's script would, and prints what it did.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from arenapref.cli.common import out, read, show_table
from arenapref.config import load_run_config

TRAIN_SETS = ("hh-rlhf", "pandalm", "llmbar", "hhh")
ARENA_FILE = Path("arena-format") / "quirks.csv"


def run_demo(data: Path, output: Path, family: str = "features", folds: int = 5) -> None:
    from arenapref.submission import grade
    from arenapref.workflows import run_cv, run_predict, run_train

    start = time.perf_counter()
    run = load_run_config(None, [f"folds.n_splits={folds}"], family)
    inputs = [data / name for name in TRAIN_SETS if (data / name).exists()]
    records, _ = read(inputs)
    out.rule(f"[bold]arenapref demo: {family} on {len(records)} real pairs from {', '.join(p.name for p in inputs)}")
    cv = run_cv(records, run, output / "cv")
    show_table(cv.result.table, f"{family}: {folds}-fold grouped CV ({len(records)} rows, {cv.seconds:.0f} s)")
    model_dir = output / "model"
    run_train(records, run, model_dir)
    arena, _ = read([data / ARENA_FILE])
    submission = output / "submission.csv"
    run_predict(model_dir, arena, submission)
    result = grade(submission, data / ARENA_FILE)
    out.print(f"graded {submission} against {ARENA_FILE} ({result['rows']} arena-format rows, every known trap): "
              f"log loss {result['log_loss']:.4f}, accuracy {result['accuracy']:.3f}")
    out.print(f"done in {time.perf_counter() - start:.0f} s; outputs in {output}/")


def demo(
    data: Path = typer.Option(Path("../shared/data"), help="The shared data folder."),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Where models, predictions and tables go."),
    model: str = typer.Option("features", "--model", "-m", help="Model family to run."),
    folds: int = typer.Option(5, "--folds", "-k", min=2),
):
    """The main job: CV, training and prediction of the default CPU model on the real shared sets."""
    from arenapref.errors import UsageError

    if not data.exists():
        raise UsageError(f"{data} not found: run from the repository root with shared/ beside it, or pass --data")
    run_demo(data, output, model, folds)


def register(app: typer.Typer) -> None:
    app.command()(demo)
