"""Specification of `arenapref tune` (tune.py, workflows.run_tune, cli/tuning.py): an Optuna search on grouped
folds of real rows, bounded by trials and by time, whose best config `--config` loads."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.config import load_run_config
from arenapref.errors import UsageError
from arenapref.models import load_model

pytest.importorskip("optuna")

SMALL = {"n_estimators": 20, "early_stopping_rounds": 0, "tfidf_max_features": 1500, "svd_components": 6, "n_jobs": 1}


@pytest.fixture(scope="module")
def rows(pandalm_records):
    return list(pandalm_records[:160])


def small_run(**model):
    return load_run_config(overrides=[f"model.{k}={v}" for k, v in (SMALL | model).items()])


def test_tune_writes_a_best_config_that_loads_and_is_no_worse_than_the_start(rows, tmp_path):
    from arenapref.workflows import run_tune

    done = run_tune(rows, small_run(), tmp_path / "tune", trials=3, timeout=300, folds=2)
    result = done.result
    assert len(result.trials) == 3 and result.stopped_by == "trials"
    assert result.baseline_value is not None and result.best_value <= result.baseline_value
    trial0 = result.trials.iloc[0]
    assert trial0["learning_rate"] == pytest.approx(0.03) and trial0["n_estimators"] == 20  # the given config first
    loaded = load_run_config(done.files["best"])
    assert loaded == result.best and loaded.model.family == "features"
    best = result.trials.dropna(subset=["logloss"]).sort_values("logloss").iloc[0]
    assert loaded.model.num_leaves == best["num_leaves"]
    assert len(pd.read_csv(done.files["trials"])) == 3


def test_a_timeout_stops_the_search_and_no_finished_trial_is_an_error(rows):
    from arenapref.tune import tune

    with pytest.raises(UsageError, match="no trial finished within --timeout"):
        tune(rows, small_run(), trials=50, timeout=1e-6, folds=2)


def test_early_stopping_configs_search_everything_but_the_round_count(rows):
    from arenapref.tune import search_space

    assert "n_estimators" in search_space(small_run())
    assert "n_estimators" not in search_space(small_run(early_stopping_rounds=10))


def test_tune_refuses_families_without_boosting(rows):
    from arenapref.tune import tune

    with pytest.raises(UsageError, match="features and embed"):
        tune(rows, load_run_config(model="prior"), trials=1)


def test_cli_tune_then_train_with_its_config(write_pandalm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_pandalm(tmp_path / "pandalm.json", 160)
    runner = CliRunner()
    sets = [a for k, v in SMALL.items() for a in ("--set", f"model.{k}={v}")]
    result = runner.invoke(app, ["tune", str(data), "--trials", "2", "--folds", "2", "-o", "tuned", *sets])
    assert result.exit_code == 0, result.output
    assert "best config: tuned/best.yaml" in " ".join(result.output.split())
    assert yaml.safe_load((tmp_path / "tuned" / "best.yaml").read_text())["model"]["family"] == "features"
    result = runner.invoke(app, ["train", str(data), "-o", "model", "--config", "tuned/best.yaml"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "model").config == load_run_config("tuned/best.yaml").model
