"""What each command does, as library functions: they take records and paths, return results, and raise
`ArenaprefError`s; they never print (the CLI prints, `demo` calls them too).

Every output is checked before the long work starts (a file where a folder is needed, a read-only folder) and
written atomically; work in progress (engine results, training checkpoints) is deleted only once its product
is safely on disk.

    run = load_run_config(model="features")
    cv = run_cv(records, run, Path("runs/cv"))                 # oof.csv, scores.csv, config.yaml
    trained = run_train(records, run, Path("models/features"))
    tuned = run_tune(records, run, Path("runs/tune"), trials=30, timeout=600)   # best.yaml for --config
    predicted = run_predict(Path("models/features"), test_records, Path("submission.csv"))
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.config import RunConfig, config_yaml
from arenapref.cv import CVResult, cross_validate, first_unlabelled, score_targets
from arenapref.data.overlap import find_overlaps
from arenapref.data.record import LABELS, PairRecord, split_textless
from arenapref.errors import UsageError
from arenapref.files import check_output_dir, check_output_file, write_frame, write_text
from arenapref.infer.options import BACKENDS, QUANTIZATION, EngineOptions
from arenapref.models.base import PairModel, SequenceModel, build_model, load_model


# --- cv ---------------------------------------------------------------------------------------------------------
def with_text(records: Sequence[PairRecord], what: str, notes: list[str]) -> list[PairRecord]:
    """The records a model can read: battle-log rows (model names and a winner, no texts) are left out, said in
    `notes`."""
    kept, textless = split_textless(records)
    if textless:
        notes.append(f"{len(textless)} battle-log row(s) without texts left out of {what} (they serve `rank`)")
    if not kept:
        raise UsageError(f"no rows with texts to {what.split()[0]}: the input holds battle logs only (use `arenapref rank`)")
    return kept


def overlap_note(named: dict[str, Sequence[PairRecord]], what: str) -> str | None:
    """A warning when the same pair (normalised texts, either A/B order) sits on both sides of a split."""
    report = find_overlaps(named)
    shared = sum(o.distinct for o in report.pairs.values())
    if not shared:
        return None
    worst = max(report.pairs.items(), key=lambda kv: kv[1].distinct)
    return (f"{shared} pair(s) appear in more than one {what} (e.g. {worst[1].distinct} between {worst[0][0]} and "
            f"{worst[0][1]}; texts compared case-, space- and punctuation-insensitively): held-out scores may be "
            "optimistic; `arenapref data overlap` lists them")


@dataclass
class CVRun:
    result: CVResult
    seconds: float
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def run_cv(records: Sequence[PairRecord], run: RunConfig, output: Path, progress: bool | None = True,
           save_oof_soft: Path | None = None) -> CVRun:
    """Grouped k-fold CV of `run.model` beside the baselines; writes oof.csv, scores.csv and config.yaml to
    `output` (a folder). Notes say which rows were left out and whether the same pair sits in two folds.
    `save_oof_soft`: also the rows themselves, with the out-of-fold probabilities as soft labels (canonical
    file, distill.py), to train a student on."""
    check_output_dir(output, "cv output folder")
    if save_oof_soft is not None:
        from arenapref.distill import check_soft_label_path

        check_soft_label_path(save_oof_soft)
        check_output_file(save_oof_soft, "soft labels")
    notes: list[str] = []
    records = with_text(records, "cross-validation", notes)
    start = time.perf_counter()
    result = cross_validate(records, run, show_progress=progress)
    folds = {f"fold {k}": [r for r, f in zip(records, result.fold_ids) if f == k] for k in np.unique(result.fold_ids)}
    note = overlap_note(folds, "fold")
    if note:
        notes.append(note)
    files = {"oof": output / "oof.csv", "scores": output / "scores.csv", "config": output / "config.yaml"}
    write_frame(result.predictions_frame(), files["oof"], "out-of-fold predictions")
    write_frame(result.table, files["scores"], "scores")
    write_text(files["config"], config_yaml(run), "config")
    if save_oof_soft is not None:
        from arenapref.distill import write_soft_labels

        files["soft labels"] = write_soft_labels(records, result.oof[result.family], save_oof_soft)
    return CVRun(result, time.perf_counter() - start, files, notes)


# --- train ------------------------------------------------------------------------------------------------------
@dataclass
class TrainRun:
    model: PairModel
    seconds: float
    directory: Path
    resumed_from: str | None = None
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def run_train(records: Sequence[PairRecord], run: RunConfig, output: Path, resume: bool = False,
              progress: bool | None = True) -> TrainRun:
    """Trains `run.model` on every record (and its swaps) and saves it to `output` whole: an existing model there
    is replaced only once the new one is complete. With `resume` (step-trained families), a killed run continues
    from its last complete checkpoint."""
    if resume:
        if "resume" not in type(run.model).model_fields:
            raise UsageError(f"--resume applies to families that train in steps (transformer, judge), not "
                             f"{run.model.family!r}")
        run = run.model_copy(update={"model": run.model.model_copy(update={"resume": True})})
    check_output_dir(output)
    notes: list[str] = []
    records = with_text(records, "training", notes)
    where = first_unlabelled(records)
    if where is not None:
        raise UsageError(f"training needs labels: {where} has none (is this a test file?)")
    start = time.perf_counter()
    model = build_model(run.model).fit(records, progress=progress)
    resumed = (getattr(model, "train_report_", None) or {}).get("resumed_from")
    model.save(output, extra_files={"run.yaml": config_yaml(run)})
    return TrainRun(model, time.perf_counter() - start, output, resumed, len(records), notes)


# --- tune -------------------------------------------------------------------------------------------------------
@dataclass
class TuneRun:
    result: object  # tune.TuneResult
    files: dict[str, Path]
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def run_tune(records: Sequence[PairRecord], run: RunConfig, output: Path, trials: int = 20,
             timeout: float | None = 600, folds: int = 3, seed: int = 0, progress=None) -> TuneRun:
    """Optuna search of `run.model`'s hyper-parameters on `folds` folds of `records` grouped by prompt (tune.py),
    bounded by `trials` and `timeout` seconds; writes best.yaml (a run config: `arenapref train --config` loads
    it) and trials.csv (every trial's settings and score) to `output` (a folder)."""
    from arenapref.config import save_config
    from arenapref.tune import tune

    check_output_dir(output, "tune output folder")
    notes: list[str] = []
    records = with_text(records, "tuning", notes)
    where = first_unlabelled(records)
    if where is not None:
        raise UsageError(f"tuning needs labels: {where} has none (is this a test file?)")
    result = tune(records, run, trials=trials, timeout=timeout, folds=folds, seed=seed, progress=progress)
    files = {"best": output / "best.yaml", "trials": output / "trials.csv"}
    save_config(result.best, files["best"])
    write_frame(result.trials, files["trials"], "trials")
    return TuneRun(result, files, len(records), notes + result.notes)


# --- predict ----------------------------------------------------------------------------------------------------
@dataclass
class EngineRequest:
    """The engine flags of `predict` / `estimate` as the user gave them (None / False: not given)."""

    token_budget: int | None = None
    work_dir: Path | None = None
    resume: bool = False
    backend: str | None = None
    quantization: str | None = None

    def __post_init__(self):
        if self.token_budget is not None and self.token_budget < 1:
            raise UsageError(f"--token-budget {self.token_budget}: use a positive number of padded tokens per batch")
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.quantization is not None and self.quantization not in QUANTIZATION:
            raise UsageError(f"--quantize {self.quantization!r}: choose one of {', '.join(QUANTIZATION)}")

    def given(self) -> list[str]:
        flags = {"--token-budget": self.token_budget is not None, "--work-dir": self.work_dir is not None,
                 "--resume": self.resume, "--backend": self.backend not in (None, "transformers"),
                 "--quantize": self.quantization not in (None, "none")}
        return [name for name, on in flags.items() if on]

    def check_applies(self, model: PairModel) -> None:
        if not isinstance(model, SequenceModel) and self.given():
            raise UsageError(f"{', '.join(self.given())}: engine options apply to sequence models (transformer, judge); "
                             f"the {model.family} model predicts directly")

    def options(self, model: SequenceModel, work_dir: Path | None, **extra) -> EngineOptions:
        settings = dict(work_dir=work_dir, resume=self.resume, backend=self.backend or "transformers",
                        quantization=self.quantization, **extra)
        if self.token_budget is not None:
            settings["token_budget"] = self.token_budget
        return model.engine_options(**settings)


def default_work_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


@dataclass
class PredictRun:
    probs: np.ndarray
    seconds: float
    model: PairModel
    work_dir: Path | None = None  # where engine results were kept (removed when it was the default one)
    stats: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    adaptation: object | None = None  # adapt.PriorAdaptation, with --tie-rate or --adapt-prior


def predict_records(model: PairModel, records: Sequence[PairRecord], swap_tta: bool | None = None,
                    options: EngineOptions | None = None, batch_size: int = 2048, progress: bool | None = True) -> np.ndarray:
    """predict_proba with a progress bar: a sequence model on the engine (which shows its own), a tabular model in
    batches of `batch_size` rows."""
    from arenapref.progress import progress_bar

    if isinstance(model, SequenceModel):
        if options is not None and options.progress is None:
            options.progress = progress
        return model.predict_proba(records, swap_tta=swap_tta, options=options or model.engine_options(progress=progress))
    parts = []
    with progress_bar(progress, rate="pairs") as bar:
        task = bar.add_task(f"predict {model.family}", total=len(records))
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            parts.append(model.predict_proba(chunk, swap_tta=swap_tta))
            bar.advance(task, len(chunk))
    return np.vstack(parts) if parts else np.zeros((0, 3))


def run_predict(model_dir: Path, records: Sequence[PairRecord], output: Path, swap_tta: bool | None = None,
                engine: EngineRequest | None = None, batch_size: int = 2048, trust_pickle: bool = False,
                progress: bool | None = True, soft_labels: bool = False, tie_rate: float | None = None,
                adapt_prior: bool = False) -> PredictRun:
    """A Kaggle submission for `records` (one row per record, in order) from the model in `model_dir`; with
    `soft_labels`, the records themselves as a canonical file with the predictions as soft labels (distill.py).

    Sequence models keep their results in a work dir batch by batch (default `<output>.parts`, so a killed run
    continues with `resume`); the default one is removed only after the submission is on disk. `swap_tta`
    None: the model's own setting. `tie_rate` (the test set's known share of ties) or `adapt_prior` (estimate
    it from the test rows' own predictions, by EM) moves the predictions from the model's training prior to the
    test set's (arenapref/adapt.py); `adaptation` in the result says to what."""
    from arenapref.infer.store import probe_work_dir
    from arenapref.submission import write_submission

    if tie_rate is not None and adapt_prior:
        raise UsageError("--tie-rate and --adapt-prior both set the test set's prior: give one (--tie-rate when you "
                         "know the tie rate, --adapt-prior to estimate it)")
    if tie_rate is not None and not 0 < tie_rate < 1:
        raise UsageError(f"--tie-rate {tie_rate}: give the test set's share of ties, strictly between 0 and 1")
    engine = engine or EngineRequest()
    if soft_labels:
        from arenapref.distill import check_soft_label_path

        check_soft_label_path(output)
    check_output_file(output, "soft labels" if soft_labels else "submission")
    work_dir = engine.work_dir or default_work_dir(output)
    notes = []
    if engine.resume and not (work_dir / "manifest.json").exists():
        notes.append(f"--resume: no earlier results in {work_dir}; starting from the first row")
    probe_work_dir(work_dir)  # another run using it is reported before the model loads
    model = load_model(model_dir, trust_pickle=trust_pickle)
    engine.check_applies(model)
    if (tie_rate is not None or adapt_prior) and model.train_prior_ is None:
        raise UsageError(f"{model_dir} was saved without its training prior (by an older arenapref), which "
                         "--tie-rate and --adapt-prior shift from: train it again")
    notes += unknown_source_notes(model, records)
    start = time.perf_counter()
    stats: dict = {}
    if isinstance(model, SequenceModel):
        options = engine.options(model, work_dir, progress=progress)
        probs = predict_records(model, records, swap_tta, options)
        stats = options.stats
    else:
        work_dir = None
        probs = predict_records(model, records, swap_tta, batch_size=batch_size, progress=progress)
    adaptation = None
    if (tie_rate is not None or adapt_prior) and len(records):
        from arenapref.adapt import adapt_prior as em_adapt
        from arenapref.adapt import shift_to_tie_rate

        priors = model.training_priors(records)
        probs, adaptation = (shift_to_tie_rate(probs, priors, tie_rate) if tie_rate is not None
                             else em_adapt(probs, priors))
        notes += adaptation.warnings or []
    if soft_labels:
        from arenapref.distill import write_soft_labels

        write_soft_labels(records, probs, output)
    else:
        write_submission([r.id for r in records], probs, output)
    if work_dir is not None and engine.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)  # the submission is safe: its parts are no longer needed
    if stats.get("resumed_rows"):
        notes.append(f"resumed: {stats['resumed_rows']} of {stats['rows']} sequences were already scored in {work_dir}")
    if stats.get("oom_splits"):
        notes.append(f"{stats['oom_splits']} batch(es) ran out of memory and were split; a smaller --token-budget "
                     "avoids the retries")
    return PredictRun(probs, time.perf_counter() - start, model, work_dir, stats, notes, adaptation)


def unknown_source_notes(model: PairModel, records: Sequence[PairRecord]) -> list[str]:
    """A note when a source-aware model (features, embed) predicts rows of sources it was not trained on."""
    state = getattr(model, "sources_", None)
    if state is None or state.columns == "none":
        return []
    unknown = state.unknown([r.source for r in records])
    if not unknown:
        return []
    as_what = f"as source {state.default_source!r} (default_source)" if state.default_source else "as the training pool"
    return [f"source(s) {', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''} not among the "
            f"model's training sources ({', '.join(state.sources)}): predicted {as_what}"]


# --- estimate ---------------------------------------------------------------------------------------------------
def run_estimate(model_dir: Path, records: Sequence[PairRecord], engine: EngineRequest | None = None,
                 swap_tta: bool = True, timed_rows: int = 32, sample_rows: int = 512, trust_pickle: bool = False):
    """How long `predict` would take on `records` with these settings, on this machine (estimate.Estimate)."""
    from arenapref.estimate import estimate_run

    engine = engine or EngineRequest()
    if engine.work_dir is not None or engine.resume:
        raise UsageError("--work-dir and --resume apply to predict, not estimate")
    model = load_model(model_dir, trust_pickle=trust_pickle)
    engine.check_applies(model)
    options = engine.options(model, None, progress=False) if isinstance(model, SequenceModel) else None
    return estimate_run(model, records, options, swap_tta=swap_tta, timed_rows=timed_rows, tokenize_rows=sample_rows)


# --- calibrate --------------------------------------------------------------------------------------------------
@dataclass
class CalibrationRun:
    calibrator: object
    table: object  # held-out report on the rows it was fitted on (cross-fitted)
    fitted_on: str
    oof_table: object | None = None  # with --target: the same calibration on the OOF rows
    notes: list[str] = field(default_factory=list)


def _oof_inputs(oof_csv: Path) -> dict:
    from arenapref.ensemble import default_folds
    from arenapref.predictions import read_prediction_file

    df = read_prediction_file(oof_csv, need_labels=True)
    return {"probs": df[list(LABELS)].to_numpy(), "targets": np.eye(3)[[LABELS.index(v) for v in df["label"]]],
            "folds": df["fold"].to_numpy(int) if "fold" in df.columns else default_folds(len(df)),
            "sources": df["source"].to_numpy() if "source" in df.columns else None}


def _other_model_note(oof_csv: Path, model: PairModel) -> str | None:
    """`arenapref cv` writes config.yaml beside oof.csv: say so when it describes a different model."""
    import yaml

    from arenapref.config import config_dict

    config_path = oof_csv.parent / "config.yaml"
    if not config_path.exists():
        return None
    try:
        oof_model = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("model")
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(oof_model, dict) and oof_model != config_dict(model.config):
        return (f"{config_path} describes a different model than the {model.family} model in the model directory; "
                "calibration fitted on another model's predictions may not fit this one")
    return None


def run_calibrate(model_dir: Path, oof_csv: Path | None = None, target: Sequence[PairRecord] | None = None,
                  target_name: str = "", asymmetric: bool = False, folds: int = 5,
                  trust_pickle: bool = False) -> CalibrationRun:
    """Fits temperature and tie bias on held-out predictions (the OOF file, or the model's predictions for
    labelled `target` rows), reports log loss before/after cross-fitted by fold, and stores the calibration in
    the model directory."""
    from arenapref.calibrate import calibration_table, cross_fit
    from arenapref.data.folds import GroupedFolds
    from arenapref.models.base import save_calibration
    from arenapref.models.calibration import Calibrator

    if oof_csv is None and not target:
        raise UsageError("give an OOF file (oof.csv from `arenapref cv`) or --target data to fit the calibration on")
    model = load_model(model_dir, trust_pickle=trust_pickle)
    symmetric = not asymmetric
    notes = []
    oof = None
    if oof_csv is not None:
        oof = _oof_inputs(oof_csv)
        note = _other_model_note(oof_csv, model)
        if note:
            notes.append(note)
    if target:
        where = first_unlabelled(target)
        if where is not None:
            raise UsageError(f"--target rows need labels (calibration is fitted against them): {where} has none")
        try:
            fold_ids = GroupedFolds(folds).fold_ids(target)
        except ValueError as e:
            raise UsageError(str(e)) from None
        model.calibration = None  # fit on what the model itself predicts, not on a previous calibration
        fit = {"probs": model.predict_proba(target), "targets": score_targets(target), "folds": fold_ids,
               "sources": np.array([r.source for r in target])}
        fitted_on = f"target: {target_name}"
    else:
        fit, fitted_on = oof, f"oof: {oof_csv}"
    try:
        after = cross_fit(fit["probs"], fit["targets"], fit["folds"], symmetric)
    except ValueError as e:
        raise UsageError(str(e)) from None
    table = calibration_table(fit["targets"], fit["probs"], after, fit["folds"], fit["sources"])
    calibrator = Calibrator(symmetric).fit(fit["probs"], fit["targets"])
    pooled = table[table["slice"] == "pooled"].iloc[0]
    calibrator.info |= {"fitted_on": fitted_on, "heldout_logloss_before": float(pooled["logloss before"]),
                        "heldout_logloss_after": float(pooled["logloss after"])}
    oof_table = None
    if target and oof is not None:
        oof_table = calibration_table(oof["targets"], oof["probs"], calibrator.transform(oof["probs"]), oof["folds"],
                                      oof["sources"])
    if pooled["logloss after"] > pooled["logloss before"]:
        notes.append(f"calibration made held-out log loss worse; it is stored anyway (delete "
                     f"{model_dir / 'calibration.json'} to drop it)")
    save_calibration(model_dir, calibrator)
    return CalibrationRun(calibrator, table, fitted_on, oof_table, notes)


# --- ensemble ---------------------------------------------------------------------------------------------------
def run_ensemble(oof: Sequence[Path], test: Sequence[Path] | None, output: Path, stack: bool = False):
    """Blend weights (or a stack) from OOF files, reported cross-fitted; the blended submission and the weights
    (<output stem>.weights.json) are written when test files are given."""
    from arenapref.ensemble import ensemble, write_weights
    from arenapref.submission import write_submission

    check_output_file(output, "blended submission")
    result = ensemble(oof, test, stack=stack)
    result.weights_path = write_weights(result, output.with_name(output.stem + ".weights.json"))
    if result.test_probs is not None:
        write_submission(result.test_ids, result.test_probs, output)
    return result


# --- rank and report --------------------------------------------------------------------------------------------
def _rank_outputs(output: Path | None, winrate_output: Path | None, *extra: Path | None) -> None:
    for path in (output, winrate_output, *extra):
        if path is not None:
            check_output_file(path, "ratings")


def _beside(output: Path, tag: str) -> Path:
    return output.with_name(f"{output.stem}-{tag}.csv")


def _write_ranking(result, output: Path | None, winrate_output: Path | None) -> dict[str, Path]:
    files = {}
    if output is not None:
        files["ratings"] = write_frame(result.table(), output, "ratings")
        winrate_output = winrate_output or _beside(output, "winrate")
    if winrate_output is not None:
        files["win rates"] = write_frame(result.win_rate_matrix(), winrate_output, "win-rate matrix", index=True)
    return files


def run_rank(records: Sequence[PairRecord], n_bootstrap: int = 200, seed: int = 0, style_control: bool = False,
             ci: float = 0.95, output: Path | None = None, winrate_output: Path | None = None, tie_model: str = "half",
             bootstrap_by: str = "battle", vote_shares: bool = False):
    """Bradley-Terry ratings with bootstrap intervals; ratings and win-rate matrix CSVs written when asked.
    `vote_shares`: a battle with several annotators counts their vote shares (its soft label), not the majority."""
    from arenapref.rank import battles_from_records, rank

    _rank_outputs(output, winrate_output)
    result = rank(battles_from_records(records, soft=vote_shares), n_bootstrap=n_bootstrap, seed=seed,
                  style_control=style_control, ci=ci, tie_model=tie_model, bootstrap_by=bootstrap_by)
    result.files = _write_ranking(result, output, winrate_output)
    return result


@dataclass
class JudgeRequest:
    """Who judges the battles: a trained model (`model_dir`), or, with `cross_fit` K, K models of the recipe `run`
    trained on folds of the battles that exclude the prompts each one scores."""

    model_dir: Path | None = None
    run: RunConfig | None = None
    cross_fit: int | None = None
    engine: EngineRequest | None = None
    trust_pickle: bool = False


def judge_recipe(model_dir: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The RunConfig a saved judge was trained with (its arenapref.json), `--set` overrides applied: what
    `rank --judge DIR --cross-fit K` retrains on the folds."""
    from arenapref.config import apply_overrides
    from arenapref.errors import ConfigError
    from arenapref.models.base import read_model_meta

    data = apply_overrides({"model": read_model_meta(model_dir).get("config", {})}, list(overrides))
    try:
        return RunConfig.model_validate(data)
    except Exception as e:  # noqa: BLE001 - pydantic's message names the field
        raise ConfigError(f"{model_dir}: its config with the --set overrides is invalid: {e}") from None


@dataclass
class JudgeRankRun:
    judge: object  # rank.Ranking from the judge's probabilities
    scores: object  # leaderboard.JudgeScores
    records: list[PairRecord]
    human: object | None = None  # rank.Ranking of the same battles' votes, when every battle has one
    agreement: object | None = None  # leaderboard.Agreement
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_judge_rank(records: Sequence[PairRecord], judge: JudgeRequest, n_bootstrap: int = 200, seed: int = 0,
                   style_control: bool = False, ci: float = 0.95, tie_model: str = "half", bootstrap_by: str = "prompt",
                   vote_shares: bool = False, output: Path | None = None, winrate_output: Path | None = None,
                   progress: bool | None = True) -> JudgeRankRun:
    """Ratings fitted from a judge's P(A), P(B), P(tie) for every battle (swap TTA), as fractional outcomes; when the
    battles carry votes, the human ranking of the same battles (same tie model, resamples and seed) and the
    agreement between the two. With `output`: the judge's ratings, win rates, judgements (one row per battle),
    and, with votes, the human ratings and the per-model agreement, beside it."""
    from arenapref.data.record import is_labelled
    from arenapref.leaderboard import JudgeScores, agreement, cross_fit_judge
    from arenapref.rank import battles_from_records, rank

    extra = [_beside(output, t) for t in ("judgements", "human", "agreement")] if output is not None else []
    _rank_outputs(output, winrate_output, *extra)
    notes: list[str] = []
    kept, textless = split_textless(records)
    if textless:
        notes.append(f"{len(textless)} battle-log row(s) without texts left out: a judge reads the answers")
    named = [r for r in kept if r.model_a and r.model_b and r.model_a != r.model_b]
    if len(named) < len(kept):
        notes.append(f"{len(kept) - len(named)} row(s) without two different model names left out")
    if not named:
        raise UsageError("no battles to judge: the judge needs rows with texts and two different model names")
    start = time.perf_counter()
    if judge.cross_fit:
        if judge.run is None:
            raise UsageError("--cross-fit needs a recipe to train the judges: --judge MODEL_DIR, --model or --config")
        scores = cross_fit_judge(named, judge.run.model, judge.cross_fit, seed=judge.run.folds.seed, progress=progress)
    else:
        if judge.model_dir is None:
            raise UsageError("give --judge MODEL_DIR (a trained model), or --cross-fit K to train judges on the battles")
        engine = judge.engine or EngineRequest()
        model = load_model(judge.model_dir, trust_pickle=judge.trust_pickle)
        engine.check_applies(model)
        options = engine.options(model, engine.work_dir, progress=progress) if isinstance(model, SequenceModel) else None
        t0 = time.perf_counter()
        probs = predict_records(model, named, swap_tta=True, options=options, progress=progress)
        scores = JudgeScores(probs, model.family, time.perf_counter() - t0)
    settings = dict(n_bootstrap=n_bootstrap, seed=seed, style_control=style_control, ci=ci, tie_model=tie_model,
                    bootstrap_by=bootstrap_by)
    judged = rank(battles_from_records(named, probs=scores.probs), **settings)
    done = JudgeRankRun(judged, scores, named, notes=notes)
    if is_labelled(named):
        done.human = rank(battles_from_records(named, soft=vote_shares), **settings)
        done.agreement = agreement(done.human, judged)
        notes.extend(done.agreement.notes)
        if not scores.cross_fitted:
            notes.append(f"the judge {judge.model_dir} may have been trained on these battles, which flatters its "
                         "agreement with the votes; --cross-fit K trains judges that never see the prompts they score")
    elif any(r.label is not None or r.soft_label is not None for r in named):
        notes.append("only some battles carry votes: no human ranking to compare with")
    done.seconds = time.perf_counter() - start
    done.files = _write_ranking(judged, output, winrate_output)
    if output is not None:
        done.files["judgements"] = write_frame(scores.frame(named), extra[0], "judgements")
        if done.human is not None:
            done.files["human ratings"] = write_frame(done.human.table(), extra[1], "ratings")
            done.files["agreement"] = write_frame(done.agreement.table(), extra[2], "agreement")
    return done


def run_report(records: Sequence[PairRecord], oof: Sequence[tuple[str, Path]], output: Path,
               model_dir: Path | None = None, n_bootstrap: int = 200, title: str = "arenapref report",
               inputs: Sequence[str] = (), trust_pickle: bool = False, agreements: Sequence = (),
               extra_sections: Sequence = ()):
    """One self-contained HTML page (report/), written atomically; `agreements` (name, leaderboard.Agreement)
    and `extra_sections` (report.ExtraSection) are added to it."""
    from arenapref.report import build_report

    check_output_file(output, "report")
    model = load_model(model_dir, trust_pickle=trust_pickle) if model_dir is not None else None
    page = build_report(records, oof, model=model, model_dir=model_dir, n_bootstrap=n_bootstrap, title=title,
                        inputs=inputs, agreements=agreements, extra_sections=extra_sections)
    write_text(output, page.html, "report")
    return page


def run_merge(model_dirs: Sequence[Path], output: Path) -> Path:
    """LoRA merged into the base (fold models averaged first): a plain transformers checkpoint."""
    from arenapref.models.merge import merge_model

    check_output_dir(output, "merged model directory")
    return merge_model(model_dirs, output)
