"""Nothing is lost, whatever goes wrong: full disks (RLIMIT_FSIZE in a child process, or a writer that raises
ENOSPC), unwritable output locations, kill -9 at any point of `train` (features, transformer) and of `predict`
on the engine. Each failure leaves an earlier model or submission at the output path intact, keeps finished
work (engine results, checkpoints) until its product is safely on disk, and the same command (with --resume
where it applies) ends with the outputs of an uninterrupted run.

The numbered items are those of the robustness issue (the data-reading items 6, 7, 9, 10 and 16 are tested in
tests/test_data_validation.py, the grader in tests/test_grade.py, the server in tests/test_serve.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.data.io import write_pairs
from arenapref.errors import OutputError
from arenapref.models import load_model

pytest.importorskip("torch")

FEATURES = ["--set", "model.n_estimators=40", "--set", "model.tfidf_max_features=3000", "--set", "model.n_jobs=1"]


@pytest.fixture(scope="module")
def data(pandalm_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rows = list(pandalm_records)
    return {"train": write_pairs(rows[:600], folder / "train.csv"), "test": write_pairs(rows[600:], folder / "test.csv"),
            "rows": rows}


def cli(*args, **kw):
    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    return result


def child(args, tmp_path, file_limit: int | None = None, **popen):
    """`arenapref ARGS` in a child process; with `file_limit`, no file it writes may grow past that many bytes
    (a full disk: writes fail with EFBIG)."""
    def limit():
        if file_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                        "PYTHONDONTWRITEBYTECODE": "1", "ARENAPREF_CACHE": str(tmp_path / "cache"),
                        "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "arenapref.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=limit, **popen)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def kill_when(proc, ready, timeout=180) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the condition to kill at never came"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def digest(path: Path) -> dict[str, str]:
    """File name -> content hash of a file or of every file in a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and "-" in p.name)


# --- 1. a full disk while writing a submission ----------------------------------------------------------------
def test_1_predict_on_a_full_disk_fails_cleanly_and_keeps_the_earlier_submission(data, tmp_path):
    model, sub = tmp_path / "model", tmp_path / "submission.csv"
    assert cli("train", data["train"], "-o", model, *FEATURES).exit_code == 0
    assert cli("predict", model, data["test"], "-o", sub).exit_code == 0
    good = sub.read_bytes()
    assert len(good) > 4000
    code, output = finish(child(["predict", model, data["test"], "-o", sub], tmp_path, file_limit=4000))
    assert code == 2, output
    assert "Traceback" not in output and f"cannot write submission {sub}" in output
    assert sub.read_bytes() == good  # not cut short: the earlier submission is untouched
    assert leftovers(tmp_path) == []


# --- 2. engine results are kept until the submission is safe --------------------------------------------------
@pytest.fixture(scope="module")
def tiny_transformer(tiny_checkpoints, data, tmp_path_factory):
    """A saved tiny transformer model (full fine-tune, 2 steps) and its settings."""
    root = tmp_path_factory.mktemp("tiny-transformer")
    settings = [f"model.model_path={tiny_checkpoints('llama')}", "model.max_length=64", "model.max_prompt_tokens=24",
                "model.batch_size=4", "model.finetune=full", "model.logging_steps=1", "model.learning_rate=1e-3"]
    args = [x for s in settings for x in ("--set", s)]
    result = cli("train", data["train"], "-m", "transformer", "-o", root / "model", *args, "--set", "model.max_steps=2",
                 "--set", f"model.checkpoint_dir={root / 'ck'}")
    assert result.exit_code == 0, result.output
    return root / "model", args


def test_2_engine_results_survive_a_failed_submission_write_and_resume_reuses_them(tiny_transformer, data, tmp_path,
                                                                                   monkeypatch):
    from arenapref import submission
    from arenapref.data.io import read_pairs
    from arenapref.workflows import EngineRequest, run_predict

    model, _ = tiny_transformer
    records, _ = read_pairs(data["test"], labels="ignore")
    records = records[:60]
    clean = run_predict(model, records, tmp_path / "clean.csv", engine=EngineRequest(token_budget=512), progress=False)
    out = tmp_path / "sub.csv"
    real_write = submission.write_frame

    def disk_full(*args, **kwargs):
        raise OutputError("cannot write submission: the disk is full")  # what files.write_frame raises on ENOSPC

    monkeypatch.setattr(submission, "write_frame", disk_full)
    with pytest.raises(OutputError, match="disk is full"):
        run_predict(model, records, out, engine=EngineRequest(token_budget=512), progress=False)
    parts = tmp_path / "sub.csv.parts"
    assert (parts / "manifest.json").exists() and not out.exists()  # every scored batch is still there
    monkeypatch.setattr(submission, "write_frame", real_write)
    again = run_predict(model, records, out, engine=EngineRequest(token_budget=512, resume=True), progress=False)
    assert again.stats["resumed_rows"] == again.stats["rows"] > 0  # nothing scored twice
    assert out.read_bytes() == (tmp_path / "clean.csv").read_bytes()
    assert not parts.exists()  # removed only now that the submission is written
    np.testing.assert_array_equal(again.probs, clean.probs)


def test_2_an_output_that_cannot_be_a_file_is_refused_before_any_scoring(tiny_transformer, data, tmp_path):
    model, _ = tiny_transformer
    (tmp_path / "folder").mkdir()
    result = cli("predict", model, data["test"], "-o", tmp_path / "folder")
    assert result.exit_code == 2 and "it is a folder; name a file" in result.output
    assert not (tmp_path / "folder.parts").exists()


# --- 3. checkpoints are deleted only after the model is saved -------------------------------------------------
def test_3_a_failed_save_keeps_the_checkpoints_and_resume_continues_from_them(tiny_checkpoints, data, tmp_path,
                                                                              monkeypatch):
    from arenapref.config import RunConfig, TransformerConfig
    from arenapref.data.io import read_pairs
    from arenapref.models.transformer import TransformerModel
    from arenapref.workflows import run_train

    monkeypatch.setenv("ARENAPREF_CACHE", str(tmp_path / "cache"))
    records, _ = read_pairs(data["train"])
    run = RunConfig(model=TransformerConfig(model_path=str(tiny_checkpoints("llama")), max_length=64, batch_size=4,
                                            max_steps=4, save_steps=2, finetune="full", logging_steps=1))
    real_save = TransformerModel._save_state

    def disk_full(self, directory):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TransformerModel, "_save_state", disk_full)
    with pytest.raises(OutputError, match="the disk is full"):
        run_train(records[:40], run, tmp_path / "model", progress=False)
    kept = sorted((tmp_path / "cache" / "checkpoints").glob("*/checkpoint-*"))
    assert [p.name for p in kept] == ["checkpoint-2", "checkpoint-4"]  # the run is not lost
    assert not (tmp_path / "model").exists()
    monkeypatch.setattr(TransformerModel, "_save_state", real_save)
    done = run_train(records[:40], run, tmp_path / "model", resume=True, progress=False)
    assert done.resumed_from.endswith("checkpoint-4")  # not step 0
    assert load_model(tmp_path / "model").predict_proba(records[40:44]).shape == (4, 3)
    assert not any((tmp_path / "cache" / "checkpoints").glob("*/checkpoint-*"))  # gone once the model is saved


def test_3_an_output_naming_a_file_is_refused_before_training(data, tmp_path):
    (tmp_path / "taken").write_text("a file, not a model directory")
    for command in (["train", data["train"], "-o", tmp_path / "taken"], ["cv", data["train"], "-o", tmp_path / "taken"]):
        start = time.perf_counter()
        result = cli(*command, *FEATURES)
        assert result.exit_code == 2 and "a file with that name exists; name a folder" in result.output
        assert time.perf_counter() - start < 10  # refused up front, not after the work
    assert (tmp_path / "taken").read_text() == "a file, not a model directory"


# --- 4. an existing model directory is replaced whole, or not at all ------------------------------------------
def test_4_a_failed_train_leaves_the_existing_model_intact(data, tmp_path):
    model = tmp_path / "model"
    assert cli("train", data["train"], "-o", model, *FEATURES).exit_code == 0
    before = digest(model)
    test_rows = data["rows"][600:640]
    expected = load_model(model).predict_proba(test_rows)
    # a new model whose booster file outgrows a nearly full disk
    code, output = finish(child(["train", data["train"], "-o", model, *FEATURES[:-2], "--set", "model.n_jobs=1",
                                 "--set", "model.n_estimators=120"], tmp_path, file_limit=60_000))
    assert code == 2, output
    assert "Traceback" not in output and "cannot write model directory" in output
    assert digest(model) == before  # every file of the old model, unchanged
    np.testing.assert_array_equal(load_model(model).predict_proba(test_rows), expected)
    assert leftovers(tmp_path) == []


# --- 5. a checkpoint cut short by a kill is not resumed from --------------------------------------------------
def test_5_resume_skips_a_checkpoint_a_kill_left_half_written(tiny_checkpoints, data, tmp_path):
    from transformers import TrainerCallback

    from arenapref.config import TransformerConfig
    from arenapref.data.io import read_pairs
    from arenapref.models import build_model
    from arenapref.train.trainer import COMPLETE

    class Killed(Exception):
        pass

    class KillAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise Killed

    records, _ = read_pairs(data["train"])
    config = TransformerConfig(model_path=str(tiny_checkpoints("llama")), max_length=64, batch_size=4, max_steps=6,
                               save_steps=2, finetune="full", logging_steps=1, checkpoint_dir=str(tmp_path / "ck"))
    unbroken = build_model(config.model_copy(update={"checkpoint_dir": str(tmp_path / "ck-unbroken")}))
    unbroken.fit(records[:40], progress=False)
    with pytest.raises(Killed):
        build_model(config).fit(records[:40], progress=False, callbacks=[KillAfter()])
    # what kill -9 during the save of checkpoint-6 leaves: a folder with some files and no completion marker
    half = tmp_path / "ck" / "checkpoint-6"
    shutil.copytree(tmp_path / "ck" / "checkpoint-4", half)
    (half / COMPLETE).unlink()
    (half / "optimizer.pt").unlink(missing_ok=True)
    resumed = build_model(config.model_copy(update={"resume": True})).fit(records[:40], progress=False)
    assert resumed.train_report_["resumed_from"].endswith("checkpoint-4")
    assert resumed.train_report_["global_step"] == 6
    np.testing.assert_allclose(resumed.predict_proba(records[40:44]), unbroken.predict_proba(records[40:44]), atol=1e-6)


# --- 8. a message, not a traceback ----------------------------------------------------------------------------
def test_8_unwritable_outputs_and_impossible_settings_are_one_line_messages(data, tiny_transformer, tmp_path):
    model = tmp_path / "model"
    assert cli("train", data["train"], "-o", model, *FEATURES).exit_code == 0
    cases = [
        (["predict", model, data["test"], "-o", "/proc/arenapref-no-such-place/sub.csv"], "cannot write submission"),
        (["cv", data["train"], "-o", "/proc/self/arenapref-cv", *FEATURES], "cannot write cv output folder"),
        (["predict", tiny_transformer[0], data["test"], "-o", tmp_path / "q.csv", "--quantize", "4bit"], "need a CUDA GPU"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


# --- kill -9 at any point: the same command finishes the job --------------------------------------------------
def test_kill_9_during_features_train_keeps_the_old_model_and_a_rerun_matches_an_unbroken_run(data, tmp_path):
    model, unbroken = tmp_path / "model", tmp_path / "unbroken"
    args = FEATURES + ["--set", "model.n_estimators=120", "--set", "model.early_stopping_rounds=0"]  # fixed length
    code, output = finish(child(["train", data["train"], "-o", unbroken, *args], tmp_path))  # same threads as below
    assert code == 0, output
    assert cli("train", data["train"], "-o", model, *FEATURES).exit_code == 0  # an earlier, different model
    before = digest(model)
    for delay in (2.0, 4.5):  # while starting and reading, then fitting or saving (a run takes ~5-8 s)
        proc = child(["train", data["train"], "-o", model, *args], tmp_path)
        start = time.monotonic()
        if not kill_when(proc, lambda: time.monotonic() - start > delay):
            assert proc.returncode == 0, finish(proc)[1]
            break
        after = digest(model)
        if after != before:  # killed after the new model was swapped in, while the process was exiting
            assert {k.split("/", 1)[1] for k in after} == {k.split("/", 1)[1] for k in digest(unbroken)}
            np.testing.assert_array_equal(load_model(model).predict_proba(data["rows"][600:610]),
                                          load_model(unbroken).predict_proba(data["rows"][600:610]))
        # every kill leaves one whole model: the earlier one, or (killed while exiting) the finished new one
    code, output = finish(child(["train", data["train"], "-o", model, *args], tmp_path))
    assert code == 0, output
    rows = data["rows"][600:700]
    np.testing.assert_array_equal(load_model(model).predict_proba(rows), load_model(unbroken).predict_proba(rows))
    assert leftovers(tmp_path) == []


def test_kill_9_during_engine_predict_then_resume_writes_the_unbroken_submission(tiny_transformer, data, tmp_path):
    model, _ = tiny_transformer
    clean, sub = tmp_path / "clean.csv", tmp_path / "sub.csv"
    budget = ["--token-budget", "64"]  # one sequence per batch: hundreds of batches, each stored as it finishes
    assert cli("predict", model, data["test"], "-o", clean, *budget).exit_code == 0
    sub.write_text("an earlier submission\n")
    parts = tmp_path / "sub.csv.parts" / "shards"
    proc = child(["predict", model, data["test"], "-o", sub, *budget], tmp_path)
    assert kill_when(proc, lambda: parts.is_dir() and len(list(parts.glob("*.parquet"))) >= 3), "finished too soon"
    assert sub.read_text() == "an earlier submission\n"
    code, output = finish(child(["predict", model, data["test"], "-o", sub, *budget, "--resume"], tmp_path))
    assert code == 0, output
    assert "sequences were already scored" in output
    assert sub.read_bytes() == clean.read_bytes()
    assert not parts.parent.exists()


def test_kill_9_during_transformer_train_then_resume_ends_as_an_unbroken_run(tiny_transformer, data, tmp_path):
    from arenapref.train.trainer import COMPLETE

    earlier, args = tiny_transformer
    steps = ["--set", "model.max_steps=16", "--set", "model.save_steps=4"]
    model = tmp_path / "model"
    shutil.copytree(earlier, model)  # an earlier model at the output path
    before = digest(model)
    command = ["train", data["train"], "-m", "transformer", "-o", model, *args, *steps,
               "--set", f"model.checkpoint_dir={tmp_path / 'ck'}", "--set", "model.learning_rate=2e-3"]
    proc = child(command, tmp_path)
    assert kill_when(proc, lambda: (tmp_path / "ck" / "checkpoint-8" / COMPLETE).exists()), "finished too soon"
    assert digest(model) == before
    kept = sorted(p.name for p in (tmp_path / "ck").glob("checkpoint-*"))
    code, output = finish(child(command + ["--resume"], tmp_path))
    assert code == 0, output
    assert "resumed from" in " ".join(output.split()), f"checkpoints after the kill: {kept}\n{output[-3000:]}"
    reference = tmp_path / "reference"
    result = cli("train", data["train"], "-m", "transformer", "-o", reference, *args, *steps,
                 "--set", f"model.checkpoint_dir={tmp_path / 'ck-ref'}", "--set", "model.learning_rate=2e-3")
    assert result.exit_code == 0, result.output
    rows = data["rows"][600:620]
    np.testing.assert_allclose(load_model(model).predict_proba(rows), load_model(reference).predict_proba(rows), atol=1e-6)
