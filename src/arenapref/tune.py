"""Hyper-parameter search for the boosted families (features, embed) with Optuna (the `tune` extra).

    result = tune(records, load_run_config(), trials=30, timeout=600)
    save_config(result.best, "runs/tune/best.yaml")     # `arenapref train ... --config runs/tune/best.yaml`

Each trial is one config (the given one with some settings drawn from SPACE), scored by log loss on k folds of the
training rows grouped by prompt (GroupedFolds, the same folds for every trial; hard labels, as `cv` scores). The
first trial is the given config itself, so the best one is never worse than it on these folds. The search is
bounded twice: at most `trials` trials, and no trial starts after `timeout` seconds; a trial still running then
stops at its next fold (pruned), so a run overshoots the timeout by one fold's fit at most. Trials whose first
folds score worse than the median of earlier trials at the same fold are pruned (Optuna's MedianPruner).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.config import RunConfig
from arenapref.cv import score_targets
from arenapref.data.folds import GroupedFolds
from arenapref.data.record import PairRecord
from arenapref.errors import UsageError, require_extra
from arenapref.metrics import log_loss
from arenapref.models import build_model

# name -> (kind, low, high, log scale): the settings a trial draws; the rest stay as given
SPACE: dict[str, tuple[str, float, float, bool]] = {
    "learning_rate": ("float", 0.01, 0.2, True),
    "num_leaves": ("int", 4, 63, True),
    "min_child_samples": ("int", 5, 200, True),
    "feature_fraction": ("float", 0.2, 1.0, False),
    "lambda_l2": ("float", 1e-3, 100.0, True),
    "svd_components": ("int", 8, 64, True),
}
# drawn only when the config runs a fixed number of rounds (without early stopping, which picks it)
ROUNDS = ("int", 50, 1500, True)
FAMILIES = ("features", "embed")


@dataclass
class TuneResult:
    best: RunConfig
    best_value: float
    baseline_value: float | None  # the given config's score on the same folds (None: its trial was cut short)
    trials: pd.DataFrame  # one row per trial: number, state, log loss, seconds, the drawn settings
    seconds: float
    folds: int
    stopped_by: str  # "trials" or "timeout"
    notes: list[str] = field(default_factory=list)


def search_space(run: RunConfig) -> dict[str, tuple[str, float, float, bool]]:
    """SPACE (and the round count, without early stopping), each range widened to hold the given value, so the
    first trial is exactly the given config."""
    space = dict(SPACE)
    if not run.model.early_stopping_rounds:
        space["n_estimators"] = ROUNDS
    return {name: (kind, min(low, getattr(run.model, name)), max(high, getattr(run.model, name)), log)
            for name, (kind, low, high, log) in space.items()}


def _draw(trial, space) -> dict:
    out = {}
    for name, (kind, low, high, log) in space.items():
        if kind == "int":
            out[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            out[name] = trial.suggest_float(name, low, high, log=log)
    return out


def tune(records: Sequence[PairRecord], run: RunConfig, trials: int = 20, timeout: float | None = 600,
         folds: int = 3, seed: int = 0, progress=None) -> TuneResult:
    """Searches `search_space(run)` around `run.model` on `folds` grouped folds of `records`.

    Args:
        records: labelled pairs (texts, not battle logs).
        run: the starting config (its model must be features or embed); its values are trial 0.
        trials: most trials in all (the starting config counts as one).
        timeout: seconds after which no trial starts and a running one stops at its next fold (None: no limit).
        folds: inner folds, grouped by prompt.
        seed: of the folds and of the sampler.
        progress: a callable(trial_number, value_or_None, best_value) after each trial, or None.
    Returns:
        TuneResult, `best` a RunConfig whose model holds the best trial's settings.
    """
    require_extra("tune", "optuna", what="`arenapref tune`")
    import optuna

    if run.model.family not in FAMILIES:
        raise UsageError(f"tune searches the {' and '.join(FAMILIES)} families, not {run.model.family!r} "
                         "(set --model features or embed)")
    if trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout {timeout}: give a positive number of seconds")
    records = list(records)
    try:
        fold_ids = GroupedFolds(folds, seed).fold_ids(records)
    except ValueError as e:
        raise UsageError(str(e)) from None
    y = score_targets(records)
    space = search_space(run)
    start = time.perf_counter()
    deadline = None if timeout is None else start + timeout
    cut_short: set[int] = set()

    def objective(trial) -> float:
        config = run.model.model_copy(update=_draw(trial, space))
        config = type(config).model_validate(config.model_dump())  # checked like a config file
        oof = np.zeros((len(records), 3))
        for k in range(folds):
            if deadline is not None and time.perf_counter() > deadline:
                cut_short.add(trial.number)
                raise optuna.TrialPruned("timeout")
            train = [records[i] for i in np.flatnonzero(fold_ids != k)]
            held = np.flatnonzero(fold_ids == k)
            oof[held] = build_model(config).fit(train, progress=False).predict_proba([records[i] for i in held])
            done = fold_ids <= k
            trial.report(log_loss(y[done], oof[done]), k)
            if k < folds - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return log_loss(y, oof)

    def after(study, trial) -> None:
        if progress is not None:
            best = study.best_value if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) else None
            progress(trial.number, trial.value, best)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    study.enqueue_trial({name: getattr(run.model, name) for name in space})
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[after], gc_after_trial=False)
    seconds = time.perf_counter() - start
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    notes = []
    if not complete:
        raise UsageError(f"no trial finished within --timeout {timeout:g} s (one trial fits {folds} folds): give more "
                         "time, or fewer --folds")
    best_trial = min(complete, key=lambda t: t.value)
    first = study.trials[0]
    baseline = first.value if first.state == optuna.trial.TrialState.COMPLETE else None
    if baseline is None:
        notes.append("the starting config's own trial did not finish, so the best config is not compared with it")
    best = run.model_copy(update={"model": run.model.model_copy(update=best_trial.params)})
    best = RunConfig.model_validate(best.model_dump())
    rows = [{"trial": t.number, "state": "cut short (timeout)" if t.number in cut_short else t.state.name.lower(),
             "logloss": t.value, "seconds": (t.duration.total_seconds() if t.duration else None), **t.params}
            for t in study.trials]
    stopped = "timeout" if len(study.trials) < trials else "trials"
    return TuneResult(best, float(best_trial.value), baseline, pd.DataFrame(rows), seconds, folds, stopped, notes)
