"""`arenapref grade | calibrate | ensemble | rank | report`: parse, call arenapref.workflows, print."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from arenapref.cli.common import (
    FORMAT_OPT,
    INPUTS_HELP,
    TRUST_OPT,
    out,
    read,
    show_table,
    warn,
)


def grade(submission: Path = typer.Argument(..., help="Submission CSV."),
          solution: Path = typer.Argument(..., help="Solution CSV with id and the three winner columns (e.g. a labelled train.csv).")):
    """Check a submission (columns, row count, ids, range, sums) and score its log loss, as the grader does.
    Exit status 1: the submission is invalid (the reason is printed)."""
    from arenapref.cli.common import error_line
    from arenapref.errors import SubmissionError
    from arenapref.submission import grade as grade_submission

    try:
        result = grade_submission(submission, solution)
    except SubmissionError as e:
        error_line(str(e))
        raise typer.Exit(1) from None
    out.print(f"valid submission: {result['rows']} rows; log loss {result['log_loss']:.5f}; accuracy {result['accuracy']:.4f}")


def calibrate(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`; calibration.json is stored there."),
    oof_csv: Optional[Path] = typer.Argument(None, help="oof.csv from `arenapref cv` run with the model's settings (labels and folds)."),
    target: Optional[List[Path]] = typer.Option(
        None, "--target", "-t", help="Labelled rows of the target distribution (e.g. a labelled sample of the test "
        "set): fit on the model's predictions for them instead of the OOF file. Repeatable."),
    asymmetric: bool = typer.Option(False, "--asymmetric", help="Also fit an A-vs-B bias (breaks A/B swap symmetry)."),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="Folds for the held-out report on --target rows."),
    fmt: str = FORMAT_OPT,
    trust_model_code: bool = TRUST_OPT,
):
    """Fit temperature and tie bias on held-out predictions, store them in the model directory (applied by every
    later prediction), and print log loss before and after, each fold scored by a calibrator fitted on the others."""
    from arenapref.workflows import run_calibrate

    target_records = read(target, fmt)[0] if target else None
    done = run_calibrate(model_dir, oof_csv, target_records, ", ".join(map(str, target or [])), asymmetric, folds,
                         trust_pickle=trust_model_code)
    show_table(done.table, f"calibration on {done.fitted_on} ({done.calibrator.info.get('n_fit')} rows): each fold "
               "scored by a calibrator fitted on the other folds; lower log loss is better")
    if done.oof_table is not None:
        show_table(done.oof_table, f"the same calibration on the OOF rows of {oof_csv} (not fitted on them)")
    for note in done.notes:
        warn(note)
    c = done.calibrator
    out.print(f"temperature {c.temperature:.4f}, bias (A, B, tie) {', '.join(f'{b:+.4f}' for b in c.bias)} -> "
              f"{model_dir / 'calibration.json'}")


def ensemble(
    oof: List[Path] = typer.Argument(..., help="Out-of-fold prediction files (oof.csv from `arenapref cv`), one per model."),
    test: Optional[List[Path]] = typer.Option(
        None, "--test", help="Each model's test predictions (submission CSV), in the same order as the OOF files; "
        "repeat the option once per file."),
    output: Path = typer.Option(Path("blended.csv"), "--output", "-o", help="Blended submission to write; weights go "
                                "beside it as <name>.weights.json."),
    stack: bool = typer.Option(False, "--stack", help="Blend with a logistic model on the log-probabilities instead of weights."),
):
    """Choose blend weights (non-negative, summing to 1) by out-of-fold log loss, report each input and the blend
    cross-fitted by fold, and blend the test predictions into one submission."""
    from arenapref.workflows import run_ensemble

    result = run_ensemble(oof, test, output, stack)
    show_table(result.table, f"ensemble of {len(oof)} model(s): out-of-fold log loss; the blend's weights are fitted "
               "on the other folds of each fold")
    used = "the stack is used; simplex weights for comparison" if stack else "used"
    out.print(f"weights ({used}): " + ", ".join(f"{n} {w:.4f}" for n, w in zip(result.names, result.weights))
              + f" -> {result.weights_path}")
    if result.test_probs is not None:
        out.print(f"wrote {len(result.test_ids)} blended predictions to {output}")


def rank(
    inputs: List[Path] = typer.Argument(..., help="Battles: any input with model names (battle logs, Kaggle arena CSV, "
                                        "LMArena dumps, PandaLM, LLMFAO, Tulu)."),
    bootstrap: int = typer.Option(200, "--bootstrap", "-b", min=0, help="Bootstrap resamples for the intervals (0: none)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    style_control: bool = typer.Option(False, "--style-control", help="Add log(len A / len B) as a covariate: ratings at equal answer length."),
    ci: float = typer.Option(0.95, "--ci", min=0.5, max=0.999, help="Interval coverage."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Ratings CSV to write (rank, model, rating, ci_low, ci_high, battles, ...)."),
    winrate_output: Optional[Path] = typer.Option(None, "--winrate-output", help="Win-rate matrix CSV (default: beside --output, *-winrate.csv)."),
    fmt: str = FORMAT_OPT,
):
    """Bradley-Terry ratings (Elo-like scale: mean 1000, 400 points = 10x odds; ties count half a win each way),
    with bootstrap intervals and the predicted win-rate matrix."""
    from arenapref.workflows import run_rank

    records, _ = read(inputs, fmt)
    start = time.perf_counter()
    result = run_rank(records, bootstrap, seed, style_control, ci, output, winrate_output)
    table = result.table()
    shown = table[["rank", "model", "rating", "ci_low", "ci_high", "battles"]].rename(
        columns={"ci_low": f"CI {ci:.0%} low", "ci_high": f"CI {ci:.0%} high"})
    for col in shown.columns[2:5]:
        shown[col] = shown[col].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
    show_table(shown,
               f"Bradley-Terry ratings{' (style-controlled)' if style_control else ''}: {result.n_battles} battles, "
               f"{len(result.models)} models, {bootstrap} bootstrap resamples ({time.perf_counter() - start:.0f} s)")
    if result.skipped:
        warn(f"{result.skipped} row(s) without two different model names or a label were left out")
    if result.groups > 1:
        warn(f"the models fall into {result.groups} groups that never met, directly or through others: ratings are "
             "comparable only within a group")
    if style_control:
        interval = f" ({ci:.0%} CI {result.style_ci[0]:.3f} to {result.style_ci[1]:.3f})" if result.style_ci else ""
        out.print(f"length coefficient: {result.style_coef:.3f} log-odds per unit of log(len A / len B){interval}; "
                  f"answering twice as long is worth {result.style_points_per_doubling:+.0f} rating points")
    matrix = result.win_rate_matrix()
    if len(matrix) <= 6:  # wider matrices do not fit an 80-column terminal: they go to the CSV
        shown_matrix = matrix.reset_index().rename(columns={"model": "P(row beats column)"})
        show_table(shown_matrix.map(lambda v: ("" if np.isnan(v) else f"{v:.3f}") if isinstance(v, float) else v),
                   "predicted win rates (a tie counts half)")
    for what, path in result.files.items():
        out.print(f"{what}: {path}")
    return result


def report(
    inputs: List[Path] = typer.Argument(..., help="The labelled data the predictions are for. " + INPUTS_HELP),
    oof: Optional[List[str]] = typer.Option(None, "--oof", help="Out-of-fold predictions (oof.csv from `arenapref cv`), "
                                            "as PATH or NAME=PATH; repeatable."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write (self-contained)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory: adds swap consistency and the model's length bias."),
    bootstrap: int = typer.Option(200, "--bootstrap", "-b", min=0, help="Bootstrap resamples for the ranking intervals."),
    title: str = typer.Option("arenapref report", help="Page title."),
    fmt: str = FORMAT_OPT,
    trust_model_code: bool = TRUST_OPT,
):
    """One self-contained HTML page: data overview, CV scores beside the baselines, reliability, confusion,
    log loss by length / source / turns, swap consistency, length bias and the model ranking."""
    from arenapref.report import parse_oof_arg
    from arenapref.workflows import run_report

    records, _ = read(inputs, fmt)
    named = [parse_oof_arg(item) for item in oof or []]
    page = run_report(records, named, output, model, bootstrap, title, [str(p) for p in inputs],
                      trust_pickle=trust_model_code)
    for note in page.notes:
        warn(note)
    out.print(f"wrote {output} ({len(page.html) / 1e6:.1f} MB; sections: {', '.join(page.sections)})")
    return page


def register(app: typer.Typer) -> None:
    for command in (grade, calibrate, ensemble, rank, report):
        app.command()(command)
