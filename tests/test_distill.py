"""Distillation end to end on real PandaLM rows: `cv --save-oof-soft` and `predict --soft-labels` write the canonical
file with a teacher's probabilities as soft labels (hard labels kept), and `train` on that file trains a student
on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.data.io import read_pairs
from arenapref.data.record import LABELS
from arenapref.distill import with_soft_labels, write_soft_labels
from arenapref.errors import ArenaprefError
from arenapref.models import load_model

SMALL = ["--set", "model.n_estimators=30", "--set", "model.tfidf_max_features=2000", "--set", "model.svd_components=8",
         "--set", "model.n_jobs=1"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def subset(write_pandalm, tmp_path):
    """300 raw PandaLM rows (three annotators each), as a PandaLM file."""
    return write_pandalm(tmp_path / "pandalm-300.json", 300)


def test_cv_oof_soft_labels_train_a_student(subset, tmp_path):
    teacher_csv = tmp_path / "teacher.csv"
    invoke("cv", subset, "--model", "features", *SMALL, "-k", "3", "-o", tmp_path / "cv", "--save-oof-soft", teacher_csv)
    original = read_pairs(subset)[0]
    taught = read_pairs(teacher_csv)[0]
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv")
    # the same rows, in order, with their hard labels, sources and model names; the soft labels are the OOF ones
    assert [r.id for r in taught] == [r.id for r in original] == oof["id"].tolist()
    assert [r.label for r in taught] == [r.label for r in original]
    assert [(r.source, r.model_a, r.model_b) for r in taught] == [(r.source, r.model_a, r.model_b) for r in original]
    np.testing.assert_allclose(np.array([r.soft_label for r in taught]), oof[list(LABELS)].to_numpy(), atol=1e-12)
    assert all(r.soft_label != o.soft_label for r, o in zip(taught[:20], original[:20]))  # annotator shares replaced

    invoke("train", teacher_csv, "--model", "features", *SMALL, "-o", tmp_path / "student")
    invoke("train", subset, "--model", "features", *SMALL, "-o", tmp_path / "hard")
    student, hard = load_model(tmp_path / "student"), load_model(tmp_path / "hard")
    assert student.n_train_ == len(original)
    teacher_probs = oof[list(LABELS)].to_numpy()
    # the student learned the teacher's probabilities, not the annotators' labels
    assert (np.abs(student.predict_proba(original) - teacher_probs).mean()
            < np.abs(hard.predict_proba(original) - teacher_probs).mean())


def test_predict_soft_labels_pseudo_labels_unlabelled_rows(subset, tmp_path):
    invoke("train", subset, "--model", "features", *SMALL, "-o", tmp_path / "teacher")
    rows = read_pairs(subset)[0]
    unlabelled = tmp_path / "unlabelled.csv"
    pd.DataFrame({"id": [r.id for r in rows], "prompt": [json.dumps(list(r.prompt)) for r in rows],
                  "response_a": [json.dumps(list(r.response_a)) for r in rows],
                  "response_b": [json.dumps(list(r.response_b)) for r in rows]}).to_csv(unlabelled, index=False)
    invoke("predict", tmp_path / "teacher", unlabelled, "-o", tmp_path / "submission.csv")
    result = invoke("predict", tmp_path / "teacher", unlabelled, "--soft-labels", "-o", tmp_path / "pseudo.parquet")
    assert "soft labels" in result.output
    pseudo = read_pairs(tmp_path / "pseudo.parquet")[0]
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert [r.id for r in pseudo] == submission["id"].tolist()
    assert all(r.label is None for r in pseudo)
    np.testing.assert_allclose(np.array([r.soft_label for r in pseudo]), submission[list(LABELS)].to_numpy(), atol=1e-12)
    invoke("train", tmp_path / "pseudo.parquet", "--model", "features", *SMALL, "-o", tmp_path / "student")
    # labelled input keeps its hard labels beside the teacher's
    kept = invoke("predict", tmp_path / "teacher", subset, "--soft-labels", "-o", tmp_path / "kept.csv")
    assert kept.exit_code == 0
    assert [r.label for r in read_pairs(tmp_path / "kept.csv")[0]] == [r.label for r in rows]


def test_soft_label_outputs_are_checked_before_the_work(subset, tmp_path):
    invoke("train", subset, "--model", "features", *SMALL, "-o", tmp_path / "teacher")
    for args in (["predict", tmp_path / "teacher", subset, "--soft-labels", "-o", tmp_path / "pseudo.txt"],
                 ["cv", subset, *SMALL, "-k", "3", "-o", tmp_path / "cv", "--save-oof-soft", tmp_path / "soft.txt"]):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 2 and "name it .csv, .parquet or .jsonl" in " ".join(result.output.split())
    assert not (tmp_path / "cv" / "oof.csv").exists()


def test_with_soft_labels_checks_the_probabilities(shared_data, tmp_path):
    rows = read_pairs(shared_data / "pandalm")[0][:3]
    with pytest.raises(ArenaprefError, match="shape"):
        with_soft_labels(rows, np.full((2, 3), 1 / 3))
    with pytest.raises(ArenaprefError, match="sum to 1"):
        with_soft_labels(rows, np.full((3, 3), 0.5))
    path = write_soft_labels(rows, np.full((3, 3), 1 / 3), tmp_path / "out" / "soft.jsonl")
    assert [r.soft_label for r in read_pairs(path)[0]] == [pytest.approx((1 / 3,) * 3)] * 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["soft.jsonl"]  # no temporary left behind
