"""`arenapref cv | train | predict | estimate | merge`: parse, call arenapref.workflows, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from arenapref.cli.common import (
    CONFIG_OPT,
    FORMAT_OPT,
    INPUTS_HELP,
    MODEL_OPT,
    SET_OPT,
    TRUST_OPT,
    clock,
    config_from,
    out,
    read,
    show_table,
    warn,
)

BACKEND_HELP = "Sequence models (transformer, judge): transformers, ray or vllm (see docs/vllm.md)."


def cv(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    folds: Optional[int] = typer.Option(None, "--folds", "-k", min=2, help="Number of folds (default 5)."),
    output: Path = typer.Option(Path("runs/cv"), "--output", "-o", help="Folder for oof.csv, scores.csv and config.yaml."),
    fmt: str = FORMAT_OPT,
    save_oof_soft: Optional[Path] = typer.Option(None, "--save-oof-soft", help="Also write the rows with the out-of-fold "
                                                 "probabilities as soft labels (canonical CSV/parquet/JSONL): a "
                                                 "teacher's labels for `arenapref train` to distil into a student."),
):
    """Grouped k-fold cross-validation: out-of-fold log loss and accuracy per fold, pooled and per source,
    beside the uniform and prior baselines on the same folds."""
    from arenapref.workflows import run_cv

    run = config_from(config, overrides, model, folds)
    records, _ = read(inputs, fmt)
    done = run_cv(records, run, output, save_oof_soft=save_oof_soft)
    for note in done.notes:
        warn(note)
    show_table(done.result.table, f"{run.model.family}: {run.folds.n_splits}-fold grouped CV ({len(done.result.records)} rows, "
               f"{done.seconds:.0f} s); lower log loss is better")
    out.print(f"out-of-fold predictions: {done.files['oof']}")
    if save_oof_soft is not None:
        out.print(f"out-of-fold soft labels (train a student on them): {done.files['soft labels']}")
    return done.result


def train(
    inputs: List[Path] = typer.Argument(..., help=INPUTS_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write (an existing one is replaced "
                                "only once the new model is complete)."),
    model: Optional[str] = MODEL_OPT,
    config: Optional[Path] = CONFIG_OPT,
    overrides: Optional[List[str]] = SET_OPT,
    fmt: str = FORMAT_OPT,
    resume: bool = typer.Option(False, "--resume", help="transformer/judge: continue a killed run from its last "
                                "complete checkpoint (same data and config) without repeating finished steps."),
):
    """Train a model on all given rows (and their A/B swaps) and save it as a self-describing directory."""
    from arenapref.workflows import run_train

    run = config_from(config, overrides, model)
    records, _ = read(inputs, fmt)
    done = run_train(records, run, output, resume=resume)
    for note in done.notes:
        warn(note)
    if done.resumed_from:
        out.print(f"resumed from {done.resumed_from}")
    out.print(f"trained {run.model.family} on {done.rows} rows in {done.seconds:.0f} s -> {output}")
    return done.model


def predict(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    test: List[Path] = typer.Argument(..., help="Test file(s): Kaggle test.csv or any supported format."),
    output: Path = typer.Option(Path("submission.csv"), "--output", "-o", help="Submission CSV to write."),
    swap_tta: Optional[bool] = typer.Option(None, "--swap-tta/--no-swap-tta", help="Average predictions over both "
                                            "A/B orders (default: the model's own swap_tta setting)."),
    batch_size: int = typer.Option(2048, min=1, help="Tabular models: rows per prediction batch (progress per batch)."),
    fmt: str = FORMAT_OPT,
    token_budget: Optional[int] = typer.Option(None, min=1, help="Sequence models: padded tokens per batch "
                                               "(default: the model's token_budget)."),
    work_dir: Optional[Path] = typer.Option(None, help="Sequence models: store results batch by batch here (default: "
                                            "<output>.parts, removed once the submission is written), so --resume can "
                                            "finish a killed run."),
    resume: bool = typer.Option(False, "--resume", help="Sequence models: continue the run whose results are in the work dir."),
    backend: Optional[str] = typer.Option(None, help=BACKEND_HELP),
    quantize: Optional[str] = typer.Option(None, help="Sequence models: 8bit or 4bit weights (CUDA and bitsandbytes only)."),
    trust_model_code: bool = TRUST_OPT,
    soft_labels: bool = typer.Option(False, "--soft-labels", help="Write the rows themselves (canonical CSV/parquet/JSONL, "
                                     "hard labels kept) with the predictions as soft labels, to train a student on."),
    tie_rate: Optional[float] = typer.Option(None, "--tie-rate", help="The test set's known share of ties (the "
                                             "Arena's is about 0.3): predictions move from the training prior to it."),
    adapt_prior: bool = typer.Option(False, "--adapt-prior", help="Estimate the test set's tie rate from its own "
                                     "predictions (EM, P(A) = P(B)) and move the predictions to it."),
):
    """Write a Kaggle submission: id,winner_model_a,winner_model_b,winner_tie, one row per test row, in order."""
    from arenapref.workflows import EngineRequest, default_work_dir, run_predict

    engine = EngineRequest(token_budget, work_dir, resume, backend, quantize)
    # submission ids are never rewritten; soft labels keep the rows' own labels
    records, _ = read(test, fmt, labels="auto" if soft_labels else "ignore", on_id_clash="error")
    try:
        done = run_predict(model_dir, records, output, swap_tta, engine, batch_size, trust_pickle=trust_model_code,
                           soft_labels=soft_labels, tie_rate=tie_rate, adapt_prior=adapt_prior)
    except KeyboardInterrupt:
        where = work_dir or default_work_dir(output)
        warn(f"interrupted: finished batches are kept in {where}; run the same command with --resume to finish")
        raise typer.Exit(130) from None
    for note in done.notes:
        warn(note)
    if done.adaptation is not None:
        a = done.adaptation
        how = f"estimated by EM in {a.iterations} steps" if a.method == "em" else "given"
        out.print(f"tie rate {a.tie_rate:.4f} ({how}; training prior {a.train_prior[2]:.4f}): mean P(tie) "
                  f"{a.mean_tie_before:.4f} -> {a.mean_tie_after:.4f}{'' if a.applied else ' (not applied)'}")
    what = "rows with the predictions as soft labels" if soft_labels else "predictions"
    out.print(f"wrote {len(records)} {what} to {output} ({len(records) / max(done.seconds, 1e-9):.0f} pairs/s)")
    return done.probs


def estimate(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    test: List[Path] = typer.Argument(..., help="The file(s) a prediction run would score."),
    swap_tta: bool = typer.Option(True, "--swap-tta/--no-swap-tta", help="As for predict."),
    token_budget: Optional[int] = typer.Option(None, min=1, help="As for predict (default: the model's)."),
    backend: Optional[str] = typer.Option(None, help="As for predict; timing always uses the transformers back-end."),
    quantize: Optional[str] = typer.Option(None, help="As for predict: 8bit or 4bit (CUDA only)."),
    timed_rows: int = typer.Option(32, min=1, help="Pairs scored and timed (spread over the length range)."),
    sample_rows: int = typer.Option(512, min=1, help="Pairs tokenized to learn the file's length distribution."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    fmt: str = FORMAT_OPT,
    trust_model_code: bool = TRUST_OPT,
):
    """Time a sample and project how long `arenapref predict` takes on the whole file, on this hardware with these
    settings: model loading, tokenization and scoring."""
    from arenapref.errors import UsageError
    from arenapref.workflows import EngineRequest, run_estimate

    records, _ = read(test, fmt, labels="ignore", on_id_clash="error")  # submission ids are never rewritten
    if not records:
        raise UsageError("the input has no rows")
    result = run_estimate(model_dir, records, EngineRequest(token_budget, None, False, backend, quantize), swap_tta,
                          timed_rows, sample_rows, trust_pickle=trust_model_code)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return result
    settings = ", ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}" for k, v in result.settings.items()
                         if v is not None)
    rows = [("rows", f"{result.rows}"), ("hardware", result.hardware),
            ("settings", (settings + ", " if settings else "") + f"swap TTA {'on' if swap_tta else 'off'}, backend "
                         f"{backend or 'transformers'}"),
            ("measured", f"{result.pairs_per_second:.2f} pairs/s" + (f", {result.tokens_per_second:.0f} tokens/s"
                                                                      if result.tokens_per_second else "")
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
        warn(note)
    return result


def merge(
    model_dirs: List[Path] = typer.Argument(..., help="transformer model directories from `arenapref train`; "
                                            "several (one per fold) are averaged first"),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the merged checkpoint."),
):
    """Merge LoRA weights into the base model (averaging fold models first) and write a plain transformers
    checkpoint that AutoModelForSequenceClassification loads without arenapref."""
    from arenapref.workflows import run_merge

    path = run_merge(model_dirs, output)
    out.print(f"wrote a merged checkpoint to {path} (AutoModelForSequenceClassification.from_pretrained loads it; "
              f"`arenapref predict {path} ...` too)")


def register(app: typer.Typer) -> None:
    for command in (cv, train, predict, estimate, merge):
        app.command()(command)
