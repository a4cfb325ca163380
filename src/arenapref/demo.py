"""The main job: cross-validate, train and predict the default CPU model on the real shared sets."""

from __future__ import annotations

import time
from pathlib import Path

from arenapref.cli import out, read, run_cv, run_predict, run_train
from arenapref.config import load_run_config

TRAIN_SETS = ("hh-rlhf", "pandalm", "llmbar", "hhh")
ARENA_FILE = Path("arena-format") / "quirks.csv"


def run_demo(data: Path, output: Path, family: str = "features", folds: int = 5) -> None:
    from arenapref.submission import grade

    start = time.perf_counter()
    run = load_run_config(None, [f"folds.n_splits={folds}"], family)
    inputs = [data / name for name in TRAIN_SETS if (data / name).exists()]
    records, _ = read(inputs)
    out.rule(f"[bold]arenapref demo: {family} on {len(records)} real pairs from {', '.join(p.name for p in inputs)}")
    run_cv(records, run, output / "cv")
    model_dir = output / "model"
    run_train(records, run, model_dir)
    arena, _ = read([data / ARENA_FILE])
    submission = output / "submission.csv"
    run_predict(model_dir, arena, submission)
    result = grade(submission, data / ARENA_FILE)
    out.print(f"graded {submission} against {ARENA_FILE} ({result['rows']} arena-format rows, every known trap): "
              f"log loss {result['log_loss']:.4f}, accuracy {result['accuracy']:.3f}")
    out.print(f"done in {time.perf_counter() - start:.0f} s; outputs in {output}/")
