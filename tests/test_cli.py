"""Specification of the `arenapref` command line, driven through typer's CliRunner.

Every command runs inside tmp_path (the working directory is changed there, so file names in messages are
short); real data is read in place from the shared folder, and small subsets are written under tmp_path.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.config import RunConfig
from arenapref.data.io import read_pairs
from arenapref.data.record import LABELS
from arenapref.models import load_model

SMALL = ["--set", "model.n_estimators=20", "--set", "model.tfidf_max_features=2000", "--set", "model.svd_components=8",
         "--set", "model.n_jobs=1"]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone (every run of whitespace becomes one space)."""
    return " ".join(text.split())


def assert_clean_failure(result, code=None):
    """Failed through `fail` (typer.Exit / SystemExit), not through an uncaught exception and its traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@pytest.fixture
def pandalm_subset(write_pandalm, tmp_path):
    """The first 240 raw PandaLM rows, written as a PandaLM JSON file in tmp_path."""
    return write_pandalm(tmp_path / "pandalm-subset.json", 240)


@pytest.fixture
def quirks_ids(quirks_csv):
    with open(quirks_csv, newline="", encoding="utf-8") as f:
        return [row["id"] for row in csv.DictReader(f)]


# ------------------------------------------------------------------------------------------------ data


def test_data_validate_quirks_exits_0(runner, quirks_csv):
    result = invoke(runner, "data", "validate", quirks_csv)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "12 readable rows; 0 error(s)" in text


def write_bad_csv(path):
    header = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABELS]
    rows = [
        ["1", "m1", "m2", '["Hi"]', '["Hello"]', '["Hey"]', "1", "0", "0"],  # fine
        ["2", "m1", "m2", '["Hi"', '["Hello"]', '["Hey"]', "1", "0", "0"],  # broken JSON in prompt
        ["3", "m1", "m2", '["Hi"]', '["Hello"]', '["Hey"]', "1", "1", "0"],  # labels not one-hot
        ["1", "m1", "m2", '["Hi"]', '["Hello"]', '["Hey"]', "0", "1", "0"],  # duplicate id
        ["5", "m1", "m2", '["Hi"]', '"just a string"', '["Hey"]', "0", "0", "1"],  # response_a not a list
        ["6", "m1", "m2", '["Hi"]', '["Hello"]', '["Hey"]', "yes", "0", "0"],  # label not a number
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_data_validate_malformed_csv_reports_every_problem(runner, in_tmp):
    write_bad_csv(in_tmp / "bad.csv")
    result = invoke(runner, "data", "validate", "bad.csv")
    assert_clean_failure(result, code=1)
    text = flat(result.output)
    expected = [
        ("row 2", "field 'prompt'", "not valid JSON"),
        ("row 3", "winner_model_a,winner_model_b,winner_tie", "one-hot"),
        ("row 4", "field 'id'", "duplicate id"),
        ("row 5", "field 'response_a'", "list"),
        ("row 6", "field 'winner_model_a'", "0 or 1"),
    ]
    for row, field, what in expected:
        line = next((ln for ln in result.output.replace("\n", " ").split("bad.csv, ") if ln.startswith(row + ",")), None)
        assert line is not None, f"no problem reported for {row}: {text}"
        assert field in line and what in line, line
    assert "row 1," not in text
    assert "1 readable rows; 5 error(s)" in text


def test_data_stats_prints_rows_and_tie_rate(runner, quirks_csv):
    result = invoke(runner, "data", "stats", quirks_csv)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows_line = next(ln for ln in lines if ln.strip(" │|").startswith("rows"))
    assert "12" in rows_line
    tie_line = next(ln for ln in lines if "tie rate" in ln)
    assert "0.333" in tie_line


def test_data_stats_json(runner, quirks_csv):
    result = invoke(runner, "data", "stats", "--json", quirks_csv)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["all"]["rows"] == 12
    assert stats["all"]["tie_rate"] == pytest.approx(1 / 3)
    assert stats["all"]["labelled"] == 12


def test_data_stats_json_per_source(runner, quirks_csv, pandalm_subset):
    result = invoke(runner, "data", "stats", "--json", quirks_csv, pandalm_subset)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["all"]["rows"] == 252
    assert stats["quirks"]["rows"] == 12 and stats["pandalm"]["rows"] == 240


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_data_import_writes_a_canonical_file_that_reads_back_equal(runner, quirks_csv, pandalm_subset, in_tmp, suffix):
    target = in_tmp / f"canonical.{suffix}"
    result = invoke(runner, "data", "import", quirks_csv, pandalm_subset, "-o", target)
    assert result.exit_code == 0, result.output
    assert "wrote 252 rows" in flat(result.output)
    original, _ = read_pairs([quirks_csv, pandalm_subset])
    again, _ = read_pairs(target)
    assert [r.id for r in again] == [r.id for r in original]
    assert again == original  # turns, labels, soft labels, model names and sources
    assert any(r.soft_label is not None and max(r.soft_label) < 1 for r in again)


def test_data_import_of_a_broken_file_fails_cleanly(runner, in_tmp):
    write_bad_csv(in_tmp / "bad.csv")
    result = invoke(runner, "data", "import", "bad.csv", "-o", "out.csv")
    assert_clean_failure(result)
    assert "row 2" in flat(result.output)
    assert not (in_tmp / "out.csv").exists()


def test_error_messages_quote_user_data_literally(runner, in_tmp):
    """A cell that looks like rich markup is shown as written, not eaten as a style or crashing the printer."""
    with open(in_tmp / "markup.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "response_a", "response_b", *LABELS])
        w.writerow(["1", '["Hi"]', '"[/bold] oops [red]x"', '["Hey"]', "1", "0", "0"])
    result = invoke(runner, "data", "import", "markup.csv", "-o", "out.csv")
    assert_clean_failure(result)
    assert "[/bold] oops [red]x" in result.output


# -------------------------------------------------------------------------------------------------- cv


def test_cv_writes_oof_scores_and_config(runner, pandalm_subset, in_tmp):
    result = invoke(runner, "cv", pandalm_subset, "-k", 3, *SMALL, "-o", "cv-out")
    assert result.exit_code == 0, result.output
    out = in_tmp / "cv-out"
    oof = pd.read_csv(out / "oof.csv", dtype={"id": str})
    records, _ = read_pairs(pandalm_subset)
    assert len(oof) == len(records) == 240
    assert oof["id"].tolist() == [r.id for r in records]
    assert set(oof["fold"]) == {0, 1, 2}
    np.testing.assert_allclose(oof[list(LABELS)].sum(axis=1), 1.0, atol=1e-9)
    scores = pd.read_csv(out / "scores.csv")
    assert scores["slice"].tolist() == ["fold 0", "fold 1", "fold 2", "pooled"]
    for col in ("uniform logloss", "prior logloss", "features logloss"):
        assert col in scores.columns
    assert scores["uniform logloss"].iloc[-1] == pytest.approx(math.log(3), abs=1e-12)
    config = RunConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    assert config.folds.n_splits == 3
    assert config.model.family == "features" and config.model.n_estimators == 20
    assert config.model.tfidf_max_features == 2000


def test_cv_with_more_folds_than_prompts_fails_cleanly(runner, quirks_csv):
    result = invoke(runner, "cv", quirks_csv, "-k", 50, "-o", "cv-out")
    assert_clean_failure(result)
    assert "folds" in flat(result.output)


# ---------------------------------------------------------------------------- train, predict, grade


@pytest.fixture
def trained_model_dir(runner, pandalm_subset, in_tmp):
    result = invoke(runner, "train", pandalm_subset, "-o", "model", *SMALL)
    assert result.exit_code == 0, result.output
    return in_tmp / "model"


def test_train_writes_a_model_directory(trained_model_dir):
    meta = json.loads((trained_model_dir / "arenapref.json").read_text())
    assert meta["family"] == "features" and meta["labels"] == list(LABELS) and meta["n_train"] == 240
    assert (trained_model_dir / "config.yaml").exists() and (trained_model_dir / "run.yaml").exists()
    assert load_model(trained_model_dir).config.n_estimators == 20


def test_train_predict_grade_on_quirks(runner, trained_model_dir, quirks_csv, quirks_ids, in_tmp):
    result = invoke(runner, "predict", trained_model_dir, quirks_csv, "-o", "submission.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(in_tmp / "submission.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", *LABELS]
    assert len(sub) == 12
    assert sub["id"].tolist() == quirks_ids  # file order, ids kept as written (4294947231 included)
    probs = sub[list(LABELS)].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    records, _ = read_pairs(quirks_csv)
    np.testing.assert_allclose(probs, load_model(trained_model_dir).predict_proba(records), atol=1e-8)

    graded = invoke(runner, "grade", "submission.csv", quirks_csv)
    assert graded.exit_code == 0, graded.output
    text = flat(graded.output)
    assert "valid submission: 12 rows" in text and "log loss" in text
    from arenapref.submission import grade

    assert f"log loss {grade(in_tmp / 'submission.csv', quirks_csv)['log_loss']:.5f}" in text


def test_predict_without_swap_tta(runner, trained_model_dir, quirks_csv, in_tmp):
    result = invoke(runner, "predict", trained_model_dir, quirks_csv, "--no-swap-tta", "-o", "plain.csv")
    assert result.exit_code == 0, result.output
    records, _ = read_pairs(quirks_csv)
    probs = pd.read_csv(in_tmp / "plain.csv")[list(LABELS)].to_numpy()
    np.testing.assert_allclose(probs, load_model(trained_model_dir).predict_proba(records, swap_tta=False), atol=1e-8)


def test_grade_of_a_broken_submission_exits_1_with_the_reason(runner, quirks_csv, quirks_ids, in_tmp):
    rows = [[i, 0.2, 0.3, 0.5] for i in quirks_ids[:-1]]  # one row short
    with open(in_tmp / "short.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", *LABELS], *rows])
    result = invoke(runner, "grade", "short.csv", quirks_csv)
    assert_clean_failure(result, code=1)
    text = flat(result.output)
    assert "error:" in text and "11 rows" in text and "12" in text

    rows = [[i, 0.2, 0.3, 0.5] for i in quirks_ids]
    rows[4][1] = 0.9  # sums to 1.7
    with open(in_tmp / "sums.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", *LABELS], *rows])
    result = invoke(runner, "grade", "sums.csv", quirks_csv)
    assert_clean_failure(result, code=1)
    assert "sum to 1" in flat(result.output) and quirks_ids[4] in flat(result.output)


def test_predict_with_a_non_model_dir_fails_clearly(runner, quirks_csv, in_tmp):
    (in_tmp / "not-a-model").mkdir()
    result = invoke(runner, "predict", "not-a-model", quirks_csv, "-o", "sub.csv")
    assert_clean_failure(result)
    text = flat(result.output)
    assert "not an arenapref model directory" in text and "arenapref.json" in text
    assert not (in_tmp / "sub.csv").exists()


def test_train_on_unlabelled_rows_fails_clearly(runner, quirks_csv, in_tmp):
    df = pd.read_csv(quirks_csv, dtype=str, keep_default_na=False).drop(columns=list(LABELS))
    df.to_csv(in_tmp / "test.csv", index=False)
    result = invoke(runner, "train", "test.csv", "-o", "model")
    assert_clean_failure(result)
    assert "labels" in flat(result.output)


# --------------------------------------------------------------------------------------------- config


def test_bad_set_key_is_an_invalid_config(runner, quirks_csv):
    for command in (["train", quirks_csv, "-o", "model"], ["cv", quirks_csv, "-o", "cv-out"]):
        result = invoke(runner, *command, "--set", "model.no_such_field=1")
        assert_clean_failure(result)
        text = flat(result.output)
        assert "invalid config" in text and "no_such_field" in text
        assert "[type=extra_forbidden" in text  # pydantic's reason, not swallowed as rich markup


def test_set_without_equals_sign_is_refused_naming_the_flag(runner, quirks_csv):
    result = invoke(runner, "train", quirks_csv, "-o", "model", "--set", "model.n_estimators")
    assert_clean_failure(result)
    assert "--set 'model.n_estimators' must look like key=value" in flat(result.output)


def test_bad_set_value_type_is_an_invalid_config(runner, quirks_csv):
    result = invoke(runner, "train", quirks_csv, "-o", "model", "--set", "model.n_estimators=many")
    assert_clean_failure(result)
    assert "invalid config" in flat(result.output) and "n_estimators" in flat(result.output)


CONFIG_YAML = """\
model:
  family: features
  n_estimators: 25
  early_stopping_rounds: 0
  tfidf_max_features: 1500
  svd_components: 6
  n_jobs: 1
folds:
  n_splits: 3
"""

CONFIG_TOML = """\
[model]
family = "features"
n_estimators = 25
early_stopping_rounds = 0
tfidf_max_features = 1500
svd_components = 6
n_jobs = 1

[folds]
n_splits = 3
"""


@pytest.mark.parametrize("name,text", [("run.yaml", CONFIG_YAML), ("run.toml", CONFIG_TOML)])
def test_config_file_loads_and_set_overrides_it(runner, pandalm_subset, in_tmp, name, text):
    (in_tmp / name).write_text(text)
    result = invoke(runner, "train", pandalm_subset, "-o", "from-file", "--config", name)
    assert result.exit_code == 0, result.output
    model = load_model(in_tmp / "from-file")
    assert (model.config.n_estimators, model.config.tfidf_max_features, model.config.svd_components) == (25, 1500, 6)
    assert model.booster_.current_iteration() == 25 and model.config.early_stopping_rounds == 0
    run = RunConfig.model_validate(yaml.safe_load((in_tmp / "from-file" / "run.yaml").read_text()))
    assert run.folds.n_splits == 3

    result = invoke(runner, "train", pandalm_subset, "-o", "overridden", "-c", name, "--set", "model.n_estimators=12")
    assert result.exit_code == 0, result.output
    model = load_model(in_tmp / "overridden")
    assert model.config.n_estimators == 12  # the override beats the file
    assert model.config.tfidf_max_features == 1500  # the rest still comes from the file
    assert model.booster_.current_iteration() == 12


def test_model_option_contradicting_the_config_file_is_refused_not_dropped(runner, pandalm_subset, in_tmp):
    """--model prior with a features config would silently drop the file's whole model section: refused."""
    (in_tmp / "run.yaml").write_text(CONFIG_YAML)
    result = invoke(runner, "train", pandalm_subset, "-o", "prior-model", "-c", "run.yaml", "--model", "prior")
    assert_clean_failure(result)
    assert "--model prior contradicts run.yaml" in flat(result.output) and "'features'" in flat(result.output)
    assert not (in_tmp / "prior-model").exists()
    same = invoke(runner, "train", pandalm_subset, "-o", "features-model", "-c", "run.yaml", "--model", "features")
    assert same.exit_code == 0, same.output
    assert load_model(in_tmp / "features-model").config.n_estimators == 25


def test_config_file_with_an_unknown_key_is_an_invalid_config(runner, quirks_csv, in_tmp):
    (in_tmp / "bad.toml").write_text('[model]\nfamily = "features"\nn_trees = 5\n')
    result = invoke(runner, "train", quirks_csv, "-o", "model", "-c", "bad.toml")
    assert_clean_failure(result)
    assert "invalid config" in flat(result.output) and "n_trees" in flat(result.output)


# ----------------------------------------------------------------------------------------------- help

HELP = [
    ([], "Predict which of two chatbot answers people prefer"),
    (["data"], "Import, validate and describe preference data"),
    (["data", "import"], "canonical arena format"),
    (["data", "validate"], "Report every problem in the input"),
    (["data", "stats"], "tie rate"),
    (["cv"], "Grouped k-fold cross-validation"),
    (["train"], "Train a model on all given rows"),
    (["predict"], "Write a Kaggle submission"),
    (["grade"], "Check a submission"),
    (["demo"], "The main job"),
]


@pytest.mark.parametrize("command,phrase", HELP, ids=[" ".join(c) or "arenapref" for c, _ in HELP])
def test_help_describes_each_command(runner, command, phrase):
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Usage" in text
    assert phrase in text


def test_top_level_help_lists_the_commands(runner):
    output = invoke(runner, "--help").output
    # the names in the Commands panel, one per line ("│ cv   Grouped k-fold ..."), not words anywhere in the text
    listed = set(re.findall(r"^│ ([a-z][a-z-]*) {2,}", output.split("Commands")[-1], re.M))
    expected = {"data", "cv", "train", "predict", "estimate", "merge", "grade", "calibrate", "ensemble", "rank",
                "report", "serve", "demo"}
    assert expected <= listed, output
    assert "--version" in output


def test_resume_is_refused_for_families_that_do_not_train_in_steps(runner, tmp_path, shared_data):
    result = invoke(runner, "train", shared_data / "arena-format" / "quirks.csv", "-o", tmp_path / "m", "--resume")
    assert_clean_failure(result, code=2)
    assert "--resume applies to families that train in steps" in flat(result.output)
    assert not (tmp_path / "m").exists()


def test_merge_command_is_registered(runner):
    result = invoke(runner, "merge", "--help")
    assert result.exit_code == 0
    assert "plain transformers checkpoint" in flat(result.output)


# ----------------------------------------------------------------------------- what a model directory may hold
class _Exploit:
    """Unpickling this creates a file: what a hostile model folder could do on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_model_state_is_refused_unless_trusted(runner, pandalm_subset, quirks_csv, in_tmp):
    """A features model directory from arenapref 0.1 held a joblib pickle, which runs code on load. A crafted one
    is refused with a message (nothing runs); --trust-model-code is the explicit way to load such a folder."""
    import joblib

    assert invoke(runner, "train", pandalm_subset, "-o", "model", "--set", "model.n_estimators=10",
                  "--set", "model.n_jobs=1").exit_code == 0
    model = in_tmp / "model"
    for name in ("text_features.json", "text_features.npz"):
        (model / name).unlink()
    marker = in_tmp / "pwned"
    joblib.dump({"tfidf": _Exploit(str(marker)), "svd": None}, model / "text_features.joblib")
    for command in (["predict", model, quirks_csv, "-o", "sub.csv"], ["calibrate", model, "--target", quirks_csv]):
        result = invoke(runner, *command)
        assert_clean_failure(result, code=2)
        assert "is a pickle" in flat(result.output) and "--trust-model-code" in flat(result.output)
        assert not marker.exists()  # nothing from the folder ran
    result = invoke(runner, "predict", model, quirks_csv, "-o", "sub.csv", "--trust-model-code")
    assert marker.exists()  # trusted explicitly: the pickle was loaded (and here, ran its payload)
    assert not (in_tmp / "sub.csv").exists() or result.exit_code == 0


def test_no_model_directory_load_reads_a_pickle():
    """No joblib/pickle load remains on any path that reads a model directory, except behind trust_pickle."""
    src = Path(__file__).resolve().parents[1] / "src" / "arenapref"
    hits = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if any(call in line for call in ("joblib.load", "pickle.load", "torch.load", "allow_pickle=True"))]
    assert hits == ["models/features.py:" + str(next(i for i, line in enumerate(
        (src / "models" / "features.py").read_text().splitlines(), 1) if "joblib.load" in line))]


# ------------------------------------------------------------------------ flags that do not apply are refused
@pytest.mark.parametrize("flags,message", [
    (["--resume"], "--resume"), (["--work-dir", "parts"], "--work-dir"), (["--token-budget", "512"], "--token-budget"),
    (["--quantize", "4bit"], "--quantize"), (["--backend", "ray"], "--backend"),
])
def test_engine_flags_are_refused_for_a_tabular_model(runner, pandalm_subset, quirks_csv, flags, message):
    assert invoke(runner, "train", pandalm_subset, "-o", "model", "--set", "model.n_estimators=5").exit_code == 0
    result = invoke(runner, "predict", "model", quirks_csv, "-o", "sub.csv", *flags)
    assert_clean_failure(result, code=2)
    assert message in flat(result.output) and "apply to sequence models" in flat(result.output)
    assert not Path("sub.csv").exists()


@pytest.mark.parametrize("flags,message", [(["--backend", "bogus"], "--backend 'bogus'"),
                                           (["--token-budget", "0"], "--token-budget")])
def test_impossible_engine_values_are_refused(runner, pandalm_subset, quirks_csv, flags, message):
    assert invoke(runner, "train", pandalm_subset, "-o", "model", "--set", "model.n_estimators=5").exit_code == 0
    result = invoke(runner, "predict", "model", quirks_csv, "-o", "sub.csv", *flags)
    assert_clean_failure(result, code=2)
    assert message in flat(result.output)


def test_early_stopping_refuses_checkpoints_that_miss_the_evals(runner, quirks_csv):
    result = invoke(runner, "train", quirks_csv, "-o", "m", "-m", "transformer", "--set", "model.eval_fraction=0.2",
                    "--set", "model.early_stopping_patience=2", "--set", "model.eval_steps=40")
    assert_clean_failure(result, code=2)
    assert "save_steps (50) must be a multiple of eval_steps (40)" in flat(result.output)


def test_predict_uses_the_models_own_swap_tta_unless_told(runner, pandalm_subset, quirks_csv):
    """A model trained with swap_tta: false predicts one order, as `serve` does; --swap-tta overrides."""
    from arenapref.data.io import read_pairs

    assert invoke(runner, "train", pandalm_subset, "-o", "model", "--set", "model.n_estimators=20",
                  "--set", "model.swap_tta=false").exit_code == 0
    records, _ = read_pairs(quirks_csv, labels="ignore")
    model = load_model("model")
    for flags, tta in (([], False), (["--swap-tta"], True)):
        assert invoke(runner, "predict", "model", quirks_csv, "-o", "sub.csv", *flags).exit_code == 0
        sub = pd.read_csv("sub.csv")
        np.testing.assert_allclose(sub[list(LABELS)].to_numpy(), model.predict_proba(records, swap_tta=tta), atol=1e-8)
    one = model.predict_proba(records, swap_tta=False)
    assert np.abs(one - model.predict_proba(records, swap_tta=True)).max() > 1e-4  # the two differ: not vacuous
