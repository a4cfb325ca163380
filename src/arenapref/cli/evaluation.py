"""`arenapref grade | calibrate | ensemble | rank | report`: parse, call arenapref.workflows, print."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.markup import escape

from arenapref.cli.common import (
    CONFIG_OPT,
    FORMAT_OPT,
    INPUTS_HELP,
    MODEL_OPT,
    SET_OPT,
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


def _show_ranking(result, title: str) -> None:
    ci = result.ci
    shown = result.table()[["rank", "model", "rating", "ci_low", "ci_high", "battles"]].rename(
        columns={"ci_low": f"CI {ci:.0%} low", "ci_high": f"CI {ci:.0%} high"})
    for col in shown.columns[2:5]:
        shown[col] = shown[col].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
    show_table(shown, title)
    if result.skipped:
        warn(f"{result.skipped} row(s) without two different model names or a label were left out")
    if result.groups > 1:
        warn(f"the models fall into {result.groups} groups that never met, directly or through others: ratings are "
             "comparable only within a group")
    if result.style_coef is not None:
        interval = f" ({ci:.0%} CI {result.style_ci[0]:.3f} to {result.style_ci[1]:.3f})" if result.style_ci else ""
        out.print(f"length coefficient: {result.style_coef:.3f} log-odds per unit of log(len A / len B){interval}; "
                  f"answering twice as long is worth {result.style_points_per_doubling:+.0f} rating points")
    if result.tie_rate_between_equals is not None:
        out.print(f"{result.tie_model} tie model: P(tie) between two equally rated models {result.tie_rate_between_equals:.3f}")


def _show_agreement(agreement) -> None:
    table = agreement.table()
    for col in ("human rating", "judge rating", "difference"):
        table[col] = table[col].map(lambda v: f"{v:.1f}")
    table["moved"] = table["moved"].map(lambda v: f"{v:+d}" if v else "")
    table = table.rename(columns={"human rank": "people #", "judge rank": "judge #", "human rating": "people",
                                  "judge rating": "judge", "difference": "judge-people"})
    show_table(table, "ratings by people and by the judge, same battles (moved: judge # - people #)")
    summary = agreement.summary()
    for col in ("value", "ci_low", "ci_high"):
        summary[col] = summary[col].map(lambda v: "" if np.isnan(v) else f"{v:.3f}")
    show_table(summary, f"agreement ({agreement.ci:.0%} intervals from {agreement.n_bootstrap} paired resamples)"
               if agreement.intervals else "agreement")
    moved = agreement.moved()
    if len(moved):
        head = moved.head(8)
        shown = ", ".join(f"{m} {h}->{j}" for m, h, j in zip(head["model"], head["human rank"], head["judge rank"]))
        out.print(f"moved ({len(moved)} of {len(agreement.models)}; human rank -> judge rank): {escape(shown)}"
                  + (", ..." if len(moved) > 8 else ""), highlight=False)
    if agreement.human_stability is not None:
        out.print(f"for scale: the human ranking's own resamples correlate with it at Spearman "
                  f"{agreement.human_stability:.3f} (median)")


def rank(
    inputs: List[Path] = typer.Argument(..., help="Battles: any input with model names (battle logs, Kaggle arena CSV, "
                                        "LMArena dumps, PandaLM, LLMFAO, Tulu), or, with --judge, a folder of per-model "
                                        "answer files (FastChat MT-Bench / Arena-Hard model_answer/*.jsonl)."),
    bootstrap: int = typer.Option(200, "--bootstrap", "-b", min=0, help="Bootstrap resamples for the intervals (0: none)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    style_control: bool = typer.Option(False, "--style-control", help="Add log(len A / len B) as a covariate: ratings at equal answer length."),
    ci: float = typer.Option(0.95, "--ci", min=0.5, max=0.999, help="Interval coverage."),
    tie_model: str = typer.Option("half", "--tie-model", help="half (a tie is half a win each way, as LMSYS), davidson "
                                  "or rao-kupper (a fitted tie parameter)."),
    bootstrap_by: Optional[str] = typer.Option(None, "--bootstrap-by", help="Resample battles or prompts (default: "
                                               "battle; prompt with --judge)."),
    vote_shares: bool = typer.Option(False, "--vote-shares", help="Battles with several annotators count their vote "
                                     "shares (the soft label) instead of the majority."),
    judge: Optional[Path] = typer.Option(None, "--judge", help="A model directory that judges every battle (P(A), P(B), "
                                         "P(tie), swap TTA); ratings are fitted from its probabilities, and compared "
                                         "with the votes' ranking when the battles carry votes."),
    cross_fit: Optional[int] = typer.Option(None, "--cross-fit", min=2, help="Train K judges on folds of the battles "
                                            "(grouped by prompt), each scoring only prompts it never saw; the recipe is "
                                            "--judge's config, or --model / --config / --set."),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    schedule: str = typer.Option("all", "--schedule", help="Answer folders: all (every two models on every question) "
                                 "or baseline:MODEL (every model against MODEL)."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="Answer folders: the questions file (default: "
                                             "question.jsonl in the folder or its parent)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Ratings CSV to write (rank, model, rating, ci_low, ci_high, battles, ...); "
                                          "with --judge also *-judgements.csv, *-human.csv, *-agreement.csv beside it."),
    winrate_output: Optional[Path] = typer.Option(None, "--winrate-output", help="Win-rate matrix CSV (default: beside --output, *-winrate.csv)."),
    fmt: str = FORMAT_OPT,
    trust_model_code: bool = TRUST_OPT,
):
    """Bradley-Terry ratings (Elo-like scale: mean 1000, 400 points = 10x odds; ties count half a win each way),
    with bootstrap intervals and the predicted win-rate matrix. With --judge or --cross-fit, the ratings come
    from a judge's probabilities, beside the human ranking of the same battles."""
    from arenapref.cli.common import config_from
    from arenapref.data.answers import is_answer_folder, read_answer_folder
    from arenapref.errors import UsageError
    from arenapref.workflows import JudgeRequest, judge_recipe, run_judge_rank, run_rank

    judged = judge is not None or cross_fit is not None
    answers = [p for p in inputs if is_answer_folder(p)]
    if answers:
        if len(inputs) > 1:
            raise UsageError(f"{answers[0]} is a folder of model answers: rank one answer folder at a time")
        if not judged:
            raise UsageError(f"{answers[0]} holds model answers, which carry no votes: add --judge MODEL_DIR")
        answer_set = read_answer_folder(answers[0], questions, schedule)
        records = answer_set.records
        out.print(f"{len(records)} battles of {len(answer_set.models)} models on {answer_set.questions} questions "
                  f"(schedule {schedule})")
        for note in answer_set.notes:
            warn(note)
    else:
        if questions is not None or schedule != "all":
            raise UsageError("--schedule and --questions apply to folders of model answers")
        records, _ = read(inputs, fmt)
    start = time.perf_counter()
    if not judged:
        if model or config or overrides:
            raise UsageError("--model, --config and --set choose the judge's recipe; use them with --cross-fit")
        result = run_rank(records, bootstrap, seed, style_control, ci, output, winrate_output, tie_model,
                          bootstrap_by or "battle", vote_shares)
        _show_ranking(result, f"Bradley-Terry ratings{' (style-controlled)' if style_control else ''}: "
                      f"{result.n_battles} battles, {len(result.models)} models, {bootstrap} bootstrap resamples "
                      f"({time.perf_counter() - start:.0f} s)")
    else:
        recipe = None
        if cross_fit:
            if judge is not None and (model or config):
                raise UsageError("--cross-fit retrains --judge's own recipe; drop --model / --config, or drop --judge")
            recipe = judge_recipe(judge, overrides or []) if judge is not None else config_from(config, overrides, model)
        elif model or config or overrides:
            raise UsageError("--model, --config and --set choose the recipe of --cross-fit judges; a trained --judge "
                             "is used as it is")
        request = JudgeRequest(judge, recipe, cross_fit, trust_pickle=trust_model_code)
        done = run_judge_rank(records, request, bootstrap, seed, style_control, ci, tie_model, bootstrap_by or "prompt",
                              vote_shares, output, winrate_output)
        for note in done.notes:
            warn(note)
        result = done.judge
        how = f"{cross_fit}-fold cross-fitted" if cross_fit else str(judge)
        _show_ranking(result, f"judge ratings ({done.scores.family}, {how}): {result.n_battles} battles, "
                      f"{len(result.models)} models, {bootstrap} resamples by {result.bootstrap_by} "
                      f"({done.seconds:.0f} s)")
        if done.agreement is not None:
            _show_agreement(done.agreement)
        result.files = done.files
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
