"""The `arenapref` command line: data tools, cv, train, predict, grade and the demo main job."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arenapref.config import RunConfig, load_run_config, save_config
from arenapref.data.problems import DataError
from arenapref.submission import SubmissionError

app = typer.Typer(
    help="Predict which of two chatbot answers people prefer: P(A wins), P(B wins), P(tie).\n\n"
    "Typical run: `arenapref cv train.csv`, `arenapref train train.csv -o model/`, "
    "`arenapref predict model/ test.csv -o submission.csv`.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
data_app = typer.Typer(help="Import, validate and describe preference data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)

INPUTS_HELP = ("Data files or folders: Kaggle arena CSV/parquet/JSONL, LMArena dumps, hh-rlhf, PandaLM, LLMBar, HHH "
               "(format detected from the columns).")
FORMAT_OPT = typer.Option("auto", "--format", "-f", help="Force a reader: auto, kaggle, lmarena, hh-rlhf, pandalm, llmbar, hhh, jsonl.")
MAP_OPT = typer.Option(None, "--map", help="Generic JSONL field mapping, ours=theirs, repeatable: --map prompt=question --map response_a=ans1 ...")
CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML or TOML run config (see examples/).")
SET_OPT = typer.Option(None, "--set", "-s", help="Override a config value, e.g. --set model.n_estimators=500 (repeatable).")
MODEL_OPT = typer.Option(None, "--model", "-m", help="Model family: prior, features (default), embed, transformer, judge.")


def fail(message: str, code: int = 2) -> None:
    # escaped: messages quote user data (ids, cell values, pydantic's "[type=...]"), which rich would otherwise
    # swallow as markup or crash on ("[/b]" closes no tag -> MarkupError and a traceback)
    err.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def read(inputs: List[Path], fmt: str = "auto", mapping: Optional[List[str]] = None, strict: bool = True):
    from arenapref.data.io import read_pairs

    mapping_dict = {}
    for item in mapping or []:
        ours, sep, theirs = item.partition("=")
        if not sep:
            fail(f"--map {item!r}: expected ours=theirs, e.g. --map prompt=question")
        mapping_dict[ours.strip()] = theirs.strip()
    try:
        records, report = read_pairs(inputs, fmt, mapping_dict or None, strict=strict)
    except DataError as e:
        fail(f"{e}")
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    for p in report.problems:
        if not p.fatal and strict:
            err.print(f"[yellow]{escape(str(p))}[/]", highlight=False)
    repaired = report.counts.get("repaired_surrogates", 0)
    if repaired and strict:
        err.print(f"[yellow]repaired {repaired} unpaired surrogate escape(s) in {report.counts['rows_with_repaired_surrogates']} row(s)[/]")
    return records, report


def config_from(config: Optional[Path], overrides: Optional[List[str]], model: Optional[str], folds: Optional[int] = None) -> RunConfig:
    try:
        over = list(overrides or [])
        if folds is not None:
            over.append(f"folds.n_splits={folds}")
        return load_run_config(config, over, model)
    except Exception as e:  # pydantic ValidationError, YAML errors, bad overrides: all user input
        fail(f"invalid config: {e}")


def show_table(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        table.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    out.print(table)


# ---------------------------------------------------------------------------------------------------
@data_app.command("import")
def data_import(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Canonical file to write (.csv, .parquet or .jsonl)."),
    fmt: str = FORMAT_OPT,
    mapping: Optional[List[str]] = MAP_OPT,
):
    """Read any supported input and write it in the canonical arena format (readable by every command)."""
    from arenapref.data.io import write_pairs

    records, report = read(inputs, fmt, mapping)
    write_pairs(records, output)
    out.print(f"wrote {len(records)} rows to {output}")


@data_app.command("validate")
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


@data_app.command("stats")
def data_stats(inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP), fmt: str = FORMAT_OPT,
               mapping: Optional[List[str]] = MAP_OPT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Rows, tie rate, turns, length percentiles, identical/empty responses, model counts."""
    from arenapref.data.stats import describe

    records, _ = read(inputs, fmt, mapping)
    by_source = {"all": describe(records)}
    sources = sorted({r.source for r in records})
    if len(sources) > 1:
        by_source |= {s: describe([r for r in records if r.source == s]) for s in sources}
    if as_json:
        out.print_json(json.dumps(by_source))
        return
    table = Table(title="data stats", title_justify="left")
    table.add_column("")
    for name in by_source:
        table.add_column(name, justify="right")
    rows = [
        ("rows", lambda d: d["rows"]), ("labelled", lambda d: d["labelled"]),
        ("A wins", lambda d: f"{d['label_share']['winner_model_a']:.3f}"),
        ("B wins", lambda d: f"{d['label_share']['winner_model_b']:.3f}"), ("tie rate", lambda d: f"{d['tie_rate']:.3f}"),
        ("turns mean / max", lambda d: f"{d['turns']['mean']:.2f} / {d['turns']['max']}"),
        ("multi-turn share", lambda d: f"{d['turns']['multi_turn_share']:.3f}"),
        ("prompt chars p50/p90/p99", lambda d: "/".join(str(d["chars"]["prompt"][f"p{q}"]) for q in (50, 90, 99))),
        ("response chars p50/p90/p99", lambda d: "/".join(str(d["chars"]["response"][f"p{q}"]) for q in (50, 90, 99))),
        ("identical responses", lambda d: d["identical_responses"]), ("empty responses", lambda d: d["empty_responses"]),
        ("models", lambda d: len(d["models"])),
    ]
    for name, get in rows:
        table.add_row(name, *[str(get(d)) for d in by_source.values()])
    out.print(table)
    models = by_source["all"]["models"]
    if models:
        out.print("most frequent models: " + ", ".join(f"{m} ({c})" for m, c in list(models.items())[:10]))


# ---------------------------------------------------------------------------------------------------
@app.command()
def cv(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    folds: Optional[int] = typer.Option(None, "--folds", "-k", help="Number of folds (default 5)."),
    output: Path = typer.Option(Path("runs/cv"), "--output", "-o", help="Folder for oof.csv, scores.csv and config.yaml."),
    fmt: str = FORMAT_OPT,
):
    """Grouped k-fold cross-validation: out-of-fold log loss and accuracy per fold, pooled and per source,
    beside the uniform and prior baselines on the same folds."""
    run = config_from(config, overrides, model, folds)
    records, _ = read(inputs, fmt)
    result = run_cv(records, run, output)
    return result


def run_cv(records, run: RunConfig, output: Path):
    from arenapref.cv import cross_validate

    if len(records) < run.folds.n_splits:
        fail(f"{len(records)} rows cannot fill {run.folds.n_splits} folds")
    start = time.perf_counter()
    try:
        result = cross_validate(records, run)
    except ValueError as e:
        fail(str(e))
    output.mkdir(parents=True, exist_ok=True)
    result.predictions_frame().to_csv(output / "oof.csv", index=False)
    result.table.to_csv(output / "scores.csv", index=False)
    save_config(run, output / "config.yaml")
    show_table(result.table, f"{run.model.family}: {run.folds.n_splits}-fold grouped CV ({len(records)} rows, "
               f"{time.perf_counter() - start:.0f} s); lower log loss is better")
    out.print(f"out-of-fold predictions: {output / 'oof.csv'}")
    return result


@app.command()
def train(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write."),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    fmt: str = FORMAT_OPT,
    resume: bool = typer.Option(False, "--resume", help="transformer/judge: continue a killed run from its last "
                                "checkpoint (same data and config) without repeating finished steps."),
):
    """Train a model on all given rows (and their A/B swaps) and save it as a self-describing directory."""
    run = config_from(config, overrides, model)
    if resume:
        if "resume" not in type(run.model).model_fields:
            fail(f"--resume applies to families that train in steps (transformer, judge), not {run.model.family!r}")
        run.model = run.model.model_copy(update={"resume": True})
    records, _ = read(inputs, fmt)
    run_train(records, run, output)


def run_train(records, run: RunConfig, output: Path):
    from arenapref.data.record import is_labelled
    from arenapref.models import build_model
    from arenapref.progress import progress_bar

    if not is_labelled(records):
        fail("training needs labels: the input has rows without winner columns (is this a test file?)")
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"train {run.model.family} on {len(records)} rows", total=1)
        try:
            model = build_model(run.model).fit(records)
        except (ValueError, FileNotFoundError, ImportError) as e:  # settings that do not fit the data or the machine
            fail(str(e))
        bar.advance(task)
    model.save(output)
    save_config(run, output / "run.yaml")
    out.print(f"trained {run.model.family} on {len(records)} rows in {time.perf_counter() - start:.0f} s -> {output}")
    return model


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    test: List[Path] = typer.Argument(..., help="Test file(s): Kaggle test.csv or any supported format."),
    output: Path = typer.Option(Path("submission.csv"), "--output", "-o", help="Submission CSV to write."),
    swap_tta: bool = typer.Option(True, "--swap-tta/--no-swap-tta", help="Average predictions over both A/B orders."),
    batch_size: int = typer.Option(2048, help="Rows per prediction batch (progress is reported per batch)."),
    fmt: str = FORMAT_OPT,
    token_budget: Optional[int] = typer.Option(None, help="Engine models (judge, transformer): padded tokens per batch (default: the model's)."),
    work_dir: Optional[Path] = typer.Option(None, help="Engine models: store results batch by batch here (default: <output>.parts, removed when done), so --resume can finish a killed run."),
    resume: bool = typer.Option(False, "--resume", help="Engine models: continue the run whose results are in --work-dir."),
    backend: str = typer.Option("transformers", help="Engine models: transformers, ray or vllm (see docs/vllm.md)."),
    quantize: Optional[str] = typer.Option(None, help="Engine models: 8bit or 4bit weights (CUDA and bitsandbytes only)."),
):
    """Write a Kaggle submission: id,winner_model_a,winner_model_b,winner_tie, one row per test row, in order."""
    records, _ = read(test, fmt)
    run_predict(model_dir, records, output, swap_tta, batch_size, engine=dict(
        token_budget=token_budget, work_dir=work_dir, resume=resume, backend=backend, quantization=quantize))


def run_predict(model_dir: Path, records, output: Path, swap_tta: bool = True, batch_size: int = 2048,
                engine: Optional[dict] = None):
    from arenapref.models import load_model
    from arenapref.progress import progress_bar
    from arenapref.submission import write_submission

    try:
        model = load_model(model_dir)
    except (FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))
    start = time.perf_counter()
    if hasattr(model, "engine_options"):  # the engine (issue 4) batches, resumes and shows progress itself
        probs = predict_with_engine(model, records, swap_tta, output, **(engine or {}))
    else:
        parts = []
        with progress_bar() as bar:
            task = bar.add_task(f"predict {model.family}", total=len(records))
            for i in range(0, len(records), batch_size):
                chunk = records[i:i + batch_size]
                parts.append(model.predict_proba(chunk, swap_tta=swap_tta))
                bar.advance(task, len(chunk))
        probs = np.vstack(parts) if parts else np.zeros((0, 3))
    write_submission([r.id for r in records], probs, output)
    secs = time.perf_counter() - start
    out.print(f"wrote {len(records)} predictions to {output} ({len(records) / max(secs, 1e-9):.0f} pairs/s)")
    return probs


@app.command()
def grade(submission: Path = typer.Argument(..., help="Submission CSV."),
          solution: Path = typer.Argument(..., help="Solution CSV with id and the three winner columns (e.g. a labelled train.csv).")):
    """Check a submission (columns, row count, ids, range, sums) and score its log loss, as the grader does."""
    from arenapref.submission import grade as grade_submission

    try:
        result = grade_submission(submission, solution)
    except SubmissionError as e:
        fail(str(e), code=1)
    out.print(f"valid submission: {result['rows']} rows; log loss {result['log_loss']:.5f}; accuracy {result['accuracy']:.4f}")


@app.command()
def demo(
    data: Path = typer.Option(Path("../shared/data"), help="The shared data folder."),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Where models, predictions and tables go."),
    model: str = typer.Option("features", "--model", "-m", help="Model family to run."),
    folds: int = typer.Option(5, "--folds", "-k"),
):
    """The main job: CV, training and prediction of the default CPU model on the real shared sets."""
    from arenapref.demo import run_demo

    if not data.exists():
        fail(f"{data} not found: run from the repository root with shared/ beside it, or pass --data")
    run_demo(data, output, model, folds)


# --- judge, engine, estimate (issue 4) -----------------------------------------------------------------
def predict_with_engine(model, records, swap_tta: bool, output: Path, token_budget: Optional[int] = None,
                        work_dir: Optional[Path] = None, resume: bool = False, backend: str = "transformers",
                        quantization: Optional[str] = None):
    """Runs an engine model (one with `engine_options`). Results go to --work-dir batch by batch; without one, to
    <output>.parts/, which is removed once every row is scored, so a killed run resumes with the same command
    plus --resume."""
    import shutil

    from arenapref.infer.engine import SingleRowOutOfMemory
    from arenapref.infer.store import ResumeMismatch, WorkDirBusy

    default_dir = work_dir is None
    work_dir = work_dir or output.with_name(output.name + ".parts")
    if resume and not (work_dir / "manifest.json").exists():
        err.print(f"[yellow]--resume: no earlier results in {work_dir}; starting from the first row[/]")
    try:
        options = model.engine_options(work_dir=work_dir, resume=resume, backend=backend, quantization=quantization,
                                       description=f"predict {model.family}",
                                       **({"token_budget": token_budget} if token_budget else {}))
        probs = model.predict_proba(records, swap_tta=swap_tta, options=options)
    except (ResumeMismatch, WorkDirBusy, SingleRowOutOfMemory, FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted: finished batches are in {work_dir}; add --resume to finish the run[/]")
        raise typer.Exit(130)
    stats = options.stats
    if stats.get("resumed_rows"):
        err.print(f"resumed: {stats['resumed_rows']} of {stats['rows']} sequences were already scored in {work_dir}")
    if stats.get("oom_splits"):
        err.print(f"[yellow]{stats['oom_splits']} batch(es) ran out of memory and were split; a smaller "
                  "--token-budget avoids the retries[/]")
    if default_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return probs


@app.command()
def estimate(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    test: List[Path] = typer.Argument(..., help="The file(s) a prediction run would score."),
    swap_tta: bool = typer.Option(True, "--swap-tta/--no-swap-tta", help="As for predict."),
    token_budget: Optional[int] = typer.Option(None, help="As for predict (default: the model's)."),
    backend: str = typer.Option("transformers", help="As for predict; timing always uses the transformers back-end."),
    quantize: Optional[str] = typer.Option(None, help="As for predict: 8bit or 4bit (CUDA only)."),
    timed_rows: int = typer.Option(32, min=1, help="Pairs scored and timed (spread over the length range)."),
    sample_rows: int = typer.Option(512, min=1, help="Pairs tokenized to learn the file's length distribution."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    fmt: str = FORMAT_OPT,
):
    """Time a sample and project how long `arenapref predict` takes on the whole file, on this hardware with these
    settings: model loading, tokenization and scoring."""
    from arenapref.infer.engine import EngineOptions
    from arenapref.infer.estimate import estimate_run
    from arenapref.models import load_model

    records, _ = read(test, fmt)
    if not records:
        fail("the input has no rows")
    try:
        model = load_model(model_dir)
        if hasattr(model, "engine_options"):
            options = model.engine_options(backend=backend, quantization=quantize, progress=False,
                                           **({"token_budget": token_budget} if token_budget else {}))
        else:
            options = EngineOptions(backend=backend, quantization=quantize, progress=False)
        result = estimate_run(model, records, options, swap_tta=swap_tta, timed_rows=timed_rows, tokenize_rows=sample_rows)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as e:
        fail(str(e))
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return result

    def clock(seconds: float) -> str:
        seconds = int(round(seconds))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    rows = [("rows", f"{result.rows}"), ("hardware", result.hardware),
            ("settings", ", ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}" for k, v in result.settings.items()
                                   if v is not None) + f", swap TTA {'on' if swap_tta else 'off'}, backend {backend}"),
            ("measured", f"{result.pairs_per_second:.2f} pairs/s" + (f", {result.tokens_per_second:.0f} tokens/s" if result.tokens_per_second else "")
             + f" on {result.timed_rows} pairs")]
    if result.batches:
        rows += [("plan", f"{result.mean_tokens:.0f} tokens per pair (both orders), {result.batches} batches, "
                          f"{result.padded_tokens:,} padded tokens (from {result.sample_rows} tokenized pairs)")]
    rows += [("model loading", clock(result.load_seconds)), ("tokenization", clock(result.tokenize_seconds)),
             ("scoring", clock(result.score_seconds)), ("total", clock(result.total_seconds))]
    out.print(f"estimated run time of `arenapref predict {escape(str(model_dir))}` on {len(records)} rows:", highlight=False)
    table = Table(show_header=False)
    table.add_column("", justify="left")
    table.add_column("", justify="left")
    for name, value in rows:
        table.add_row(name, escape(value))
    out.print(table)
    for note in result.notes:
        err.print(f"[yellow]{escape(note)}[/]")
    return result


# --- calibrate and ensemble (issue 5) ---------------------------------------------------------------
@app.command("calibrate")
def calibrate_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`; calibration.json is stored there."),
    oof_csv: Optional[Path] = typer.Argument(None, help="oof.csv from `arenapref cv` run with the model's settings (labels and folds)."),
    target: Optional[List[Path]] = typer.Option(
        None, "--target", "-t", help="Labelled rows of the target distribution (e.g. a labelled sample of the test "
        "set): fit on the model's predictions for them instead of the OOF file. Repeatable."),
    asymmetric: bool = typer.Option(False, "--asymmetric", help="Also fit an A-vs-B bias (breaks A/B swap symmetry)."),
    folds: int = typer.Option(5, "--folds", "-k", help="Folds for the held-out report on --target rows."),
    fmt: str = FORMAT_OPT,
):
    """Fit temperature and tie bias on held-out predictions, store them in the model directory (applied by every
    later prediction), and print log loss before and after, each fold scored by a calibrator fitted on the others."""
    from arenapref.calibrate import Calibrator, calibration_table, cross_fit, save_calibration
    from arenapref.cv import score_targets
    from arenapref.data.folds import GroupedFolds
    from arenapref.data.record import LABELS, is_labelled
    from arenapref.ensemble import PredictionFileError, default_folds, read_prediction_file
    from arenapref.models import load_model

    if oof_csv is None and not target:
        fail("give an OOF file (oof.csv from `arenapref cv`) or --target data to fit the calibration on")
    try:
        model = load_model(model_dir)
    except (FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))
    symmetric = not asymmetric
    oof = None
    if oof_csv is not None:
        try:
            df = read_prediction_file(oof_csv, need_labels=True)
        except PredictionFileError as e:
            fail(str(e))
        _warn_if_other_model(oof_csv, model)
        oof = {"probs": df[list(LABELS)].to_numpy(), "targets": np.eye(3)[[LABELS.index(v) for v in df["label"]]],
               "folds": df["fold"].to_numpy(int) if "fold" in df.columns else default_folds(len(df)),
               "sources": df["source"].to_numpy() if "source" in df.columns else None}
    if target:
        records, _ = read(target, fmt)
        if not is_labelled(records):
            fail("--target rows need labels: calibration is fitted against them")
        try:
            fold_ids = GroupedFolds(folds).fold_ids(records)
        except ValueError as e:
            fail(str(e))
        model.calibration = None  # fit on what the model itself predicts, not on a previous calibration
        fit = {"probs": model.predict_proba(records), "targets": score_targets(records), "folds": fold_ids,
               "sources": np.array([r.source for r in records])}
        fitted_on = "target: " + ", ".join(str(p) for p in target)
    else:
        fit, fitted_on = oof, f"oof: {oof_csv}"
    try:
        after = cross_fit(fit["probs"], fit["targets"], fit["folds"], symmetric)
    except ValueError as e:
        fail(str(e))
    table = calibration_table(fit["targets"], fit["probs"], after, fit["folds"], fit["sources"])
    show_table(table, f"calibration on {fitted_on} ({len(after)} rows): each fold scored by a calibrator fitted on the "
               "other folds; lower log loss is better")
    calibrator = Calibrator(symmetric).fit(fit["probs"], fit["targets"])
    pooled = table[table["slice"] == "pooled"].iloc[0]
    calibrator.info |= {"fitted_on": fitted_on, "heldout_logloss_before": float(pooled["logloss before"]),
                        "heldout_logloss_after": float(pooled["logloss after"])}
    if target and oof is not None:
        moved = calibrator.transform(oof["probs"])
        show_table(calibration_table(oof["targets"], oof["probs"], moved, oof["folds"], oof["sources"]),
                   f"the same calibration on the OOF rows of {oof_csv} (not fitted on them)")
    if pooled["logloss after"] > pooled["logloss before"]:
        err.print("[yellow]calibration made held-out log loss worse; it is stored anyway (delete "
                  f"{model_dir / 'calibration.json'} to drop it)[/]")
    save_calibration(model_dir, calibrator)
    out.print(f"temperature {calibrator.temperature:.4f}, bias (A, B, tie) "
              f"{', '.join(f'{b:+.4f}' for b in calibrator.bias)} -> {model_dir / 'calibration.json'}")



def _warn_if_other_model(oof_csv: Path, model) -> None:
    """`arenapref cv` writes config.yaml beside oof.csv: say so when it describes a different model."""
    import yaml

    config_path = oof_csv.parent / "config.yaml"
    if not config_path.exists():
        return
    try:
        oof_model = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("model")
    except (OSError, yaml.YAMLError):
        return
    if isinstance(oof_model, dict) and oof_model != json.loads(model.config.model_dump_json()):
        err.print(f"[yellow]{config_path} describes a different model than {type(model).__name__} in the model "
                  "directory; calibration fitted on another model's predictions may not fit this one[/]")


@app.command("ensemble")
def ensemble_cmd(
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
    from arenapref.ensemble import PredictionFileError, ensemble, write_weights
    from arenapref.submission import write_submission

    try:
        result = ensemble(oof, test, stack=stack)
    except (PredictionFileError, ValueError) as e:
        fail(str(e))
    show_table(result.table, f"ensemble of {len(oof)} model(s): out-of-fold log loss; the blend's weights are fitted "
               "on the other folds of each fold")
    weights_path = write_weights(result, output.with_name(output.stem + ".weights.json"))
    used = "the stack is used; simplex weights for comparison" if stack else "used"
    out.print(f"weights ({used}): " + ", ".join(f"{n} {w:.4f}" for n, w in zip(result.names, result.weights))
              + f" -> {weights_path}")
    if result.test_probs is not None:
        write_submission(result.test_ids, result.test_probs, output)
        out.print(f"wrote {len(result.test_ids)} blended predictions to {output}")

# --- rank and report (issue 5) -----------------------------------------------------------------------
@app.command()
def rank(
    inputs: List[Path] = typer.Argument(..., help="Battles: any input with model names (Kaggle arena CSV, LMArena dumps, PandaLM)."),
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
    from arenapref.rank import rank as fit_ranking

    records, _ = read(inputs, fmt)
    start = time.perf_counter()
    try:
        result = fit_ranking(records, n_bootstrap=bootstrap, seed=seed, style_control=style_control, ci=ci)
    except ValueError as e:
        fail(str(e))
    table = result.table()
    shown = table[["rank", "model", "rating", "ci_low", "ci_high", "battles"]].rename(
        columns={"ci_low": f"CI {ci:.0%} low", "ci_high": f"CI {ci:.0%} high"})
    for col in shown.columns[2:5]:
        shown[col] = shown[col].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
    show_table(shown,
               f"Bradley-Terry ratings{' (style-controlled)' if style_control else ''}: {result.n_battles} battles, "
               f"{len(result.models)} models, {bootstrap} bootstrap resamples ({time.perf_counter() - start:.0f} s)")
    if result.skipped:
        err.print(f"[yellow]{result.skipped} row(s) without two different model names or a label were left out[/]")
    if result.groups > 1:
        err.print(f"[yellow]the models fall into {result.groups} groups that never met, directly or through others: "
                  "ratings are comparable only within a group[/]")
    if style_control:
        interval = f" ({ci:.0%} CI {result.style_ci[0]:.3f} to {result.style_ci[1]:.3f})" if result.style_ci else ""
        out.print(f"length coefficient: {result.style_coef:.3f} log-odds per unit of log(len A / len B){interval}; "
                  f"answering twice as long is worth {result.style_points_per_doubling:+.0f} rating points")
    matrix = result.win_rate_matrix()
    if len(matrix) <= 12:
        shown_matrix = matrix.reset_index().rename(columns={"model": "P(row beats column)"})
        show_table(shown_matrix.map(lambda v: ("" if np.isnan(v) else f"{v:.3f}") if isinstance(v, float) else v),
                   "predicted win rates (a tie counts half)")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output, index=False)
        winrate_output = winrate_output or output.with_name(f"{output.stem}-winrate.csv")
        out.print(f"ratings: {output}")
    if winrate_output is not None:
        winrate_output.parent.mkdir(parents=True, exist_ok=True)
        matrix.to_csv(winrate_output)
        out.print(f"win-rate matrix: {winrate_output}")
    return result


@app.command()
def report(
    inputs: List[Path] = typer.Argument(..., help="The labelled data the predictions are for. " + INPUTS_HELP),
    oof: Optional[List[str]] = typer.Option(None, "--oof", help="Out-of-fold predictions (oof.csv from `arenapref cv`), "
                                            "as PATH or NAME=PATH; repeatable."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write (self-contained)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory: adds swap consistency and the model's length bias."),
    bootstrap: int = typer.Option(200, "--bootstrap", "-b", min=0, help="Bootstrap resamples for the ranking intervals."),
    title: str = typer.Option("arenapref report", help="Page title."),
    fmt: str = FORMAT_OPT,
):
    """One self-contained HTML page: data overview, CV scores beside the baselines, reliability, confusion,
    log loss by length / source / turns, swap consistency, length bias and the model ranking."""
    from arenapref.report import build_report, parse_oof_arg

    records, _ = read(inputs, fmt)
    try:
        named = [parse_oof_arg(item) for item in oof or []]
        page = build_report(records, named, model_dir=model, n_bootstrap=bootstrap, title=title,
                            inputs=[str(p) for p in inputs])
    except (FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page.html, encoding="utf-8")
    for note in page.notes:
        err.print(f"[yellow]{note}[/]", highlight=False)
    out.print(f"wrote {output} ({len(page.html) / 1e6:.1f} MB; sections: {', '.join(page.sections)})")
    return page


# --- serve (issue 6) ---------------------------------------------------------------------------------
@app.command()
def serve(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the model to the network."),
    port: int = typer.Option(8000, help="Port to bind (0: any free port)."),
    model_id: Optional[str] = typer.Option(None, help="Model name in /v1/models and /classify (default: the folder name)."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Score concurrent requests together."),
    max_batch: int = typer.Option(64, help="Most pairs in one model call."),
    max_wait_ms: float = typer.Option(5.0, help="Longest a request waits for others to join its batch."),
    max_pairs: int = typer.Option(256, help="Pairs per request (413 above)."),
    max_turns: int = typer.Option(64, help="Turns per prompt/response field (422 above)."),
    max_chars: int = typer.Option(100_000, help="Characters per prompt/response field, all turns together (422 above)."),
    max_body_mb: float = typer.Option(4.0, help="Request body size in MiB (413 above)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per request, body and scoring (504 past it)."),
    token_file: Optional[Path] = typer.Option(None, help="File holding a bearer token to require (or set ARENAPREF_TOKEN)."),
    keep_alive: float = typer.Option(75.0, help="Seconds an idle keep-alive connection stays open."),
    log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
):
    """Serve a model over HTTP: POST /v1/judge, POST /classify (vLLM/SGLang shape), GET /v1/models, /healthz,
    a page at / and API docs at /docs. Access logs are JSON lines on stderr."""
    import ipaddress
    import logging

    from arenapref.models import load_model
    from arenapref.serve import require_serve_extra
    from arenapref.serve.settings import ServeSettings, resolve_token

    try:
        require_serve_extra()
    except ImportError as e:
        fail(str(e))
    import uvicorn

    from arenapref.serve.app import create_app

    # No `trace`: at that level uvicorn prints each request's scope, headers and so the token included.
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"--log-level {log_level!r}: choose debug, info, warning or error")
    try:
        token = resolve_token(token_file)
    except (OSError, ValueError) as e:
        fail(f"--token-file: {e}")
    try:
        settings = ServeSettings(
            host=host, port=port, model_id=model_id or model_dir.resolve().name, model_dir=model_dir, batching=batching,
            max_batch=max_batch, max_wait_ms=max_wait_ms, max_pairs=max_pairs, max_turns=max_turns, max_chars=max_chars,
            max_body_bytes=int(max_body_mb * 1024 * 1024), request_timeout_s=timeout, token=token)
    except Exception as e:  # pydantic ValidationError: out-of-range options
        fail(f"invalid option: {e}")
    try:
        model = load_model(model_dir)
    except (FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    serve_log = logging.getLogger("arenapref.serve")
    serve_log.handlers[:] = [handler]
    serve_log.setLevel(level)
    serve_log.propagate = False
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and token is None:
        err.print(f"[yellow]warning: serving on {host} without a token; anyone who can reach it can use the model "
                  "(set ARENAPREF_TOKEN or --token-file)[/]")
    # uvicorn's own access log is off: ours has request ids and pair counts and leaves out query strings.
    # Keep-alive outlasts clients' pool expiry (httpx: 5 s, as uvicorn's default): with equal timeouts a client
    # reuses a connection the server is closing, and the request fails with a read error.
    uvicorn.run(create_app(model, settings), host=host, port=port, access_log=False, log_level=log_level.lower(),
                timeout_keep_alive=keep_alive, timeout_graceful_shutdown=timeout + 5, server_header=False)


# --- merge (issue 3) ---------------------------------------------------------------------------------
from arenapref.models.transformer import merge_command  # noqa: E402  (torch is imported only when it runs)

app.command("merge")(merge_command)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
