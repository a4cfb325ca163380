"""Every examples/transformer*.yaml runs through the real command line.

Each example names its architecture in a `# architecture: <arch>` comment; the test trains it with
`arenapref train --config <example>` on a tiny random checkpoint of that architecture (test_transformer_tiny.py)
and real PandaLM rows, then `arenapref predict`s the arena quirks file with the saved model. The example's own
family choices (template, full or LoRA, LoRA targets, head, gradient checkpointing) are kept; only what a tiny
CPU run cannot do like the GPU recipe is overridden (see TINY). `cv` runs for the cheapest example.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tiny_models import ARCHS  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from arenapref.cli import app  # noqa: E402
from arenapref.data.record import LABELS  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("transformer*.yaml"))

# What a 2-core CPU run with a hidden-size-32 checkpoint needs, and nothing the example chooses for its family:
TINY = [
    "model.max_length=128",        # chat template + markers take 80 tiny-BPE tokens; 2k is slow on 2 cores
    "model.max_steps=2",
    "model.batch_size=4",          # 2 pairs + their swaps: still a full-swap batch
    "model.grad_accum=1",
    "model.quantization=none",     # 4-bit (QLoRA) needs CUDA and bitsandbytes
    "model.precision=fp32",        # half precision needs CUDA
    "model.predict_batch_size=16",
]
# The fields that make an example what it is; the saved model must still hold the example's values.
FAMILY_CHOICES = ("template", "finetune", "target_modules", "lora_r", "lora_alpha", "head", "gradient_checkpointing",
                  "swap_augment", "swap_tta", "max_prompt_tokens")


def architecture(path: Path) -> str:
    found = re.search(r"^# architecture: (\S+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"{path.name}: add a '# architecture: <arch>' comment naming one of {ARCHS}"
    return found.group(1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENAPREF_CACHE", str(tmp_path / "cache"))  # Trainer checkpoints land under the cache


@pytest.fixture
def pandalm_40(write_pandalm, tmp_path) -> Path:
    """The first 40 raw PandaLM rows (soft labels from three annotators), as a PandaLM JSON file."""
    return write_pandalm(tmp_path / "pandalm-40.json", 40)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def overrides(checkpoint: Path) -> list[str]:
    sets = [f"model.model_path={checkpoint}"] + TINY
    return [arg for s in sets for arg in ("--set", s)]


def test_every_architecture_has_exactly_one_example():
    archs = [architecture(p) for p in EXAMPLES]
    assert sorted(archs) == sorted(ARCHS), {p.name: a for p, a in zip(EXAMPLES, archs)}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_trains_with_the_cli_and_its_model_predicts_a_submission(example, tiny_checkpoints, pandalm_40, quirks_csv, tmp_path):
    model_dir = tmp_path / "model"
    result = invoke("train", pandalm_40, "-o", model_dir, "--config", example, *overrides(tiny_checkpoints(architecture(example))))
    assert "trained transformer on 40 rows" in " ".join(result.output.split())

    chosen = yaml.safe_load(example.read_text(encoding="utf-8"))["model"]
    saved = yaml.safe_load((model_dir / "run.yaml").read_text(encoding="utf-8"))["model"]
    for field in FAMILY_CHOICES:
        if field in chosen:
            assert saved[field] == chosen[field], field
    assert (model_dir / ("adapter" if chosen["finetune"] == "lora" else "model.safetensors")).exists()
    report = json.loads((model_dir / "training_report.json").read_text(encoding="utf-8"))
    assert report["global_step"] == 2

    submission = tmp_path / "submission.csv"
    invoke("predict", model_dir, quirks_csv, "-o", submission)
    with open(quirks_csv, newline="", encoding="utf-8") as f:
        ids = [row["id"] for row in csv.DictReader(f)]
    with open(submission, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ids and len(rows) == 12
    probs = np.array([[float(r[c]) for c in LABELS] for r in rows])
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)


def test_cheapest_example_cross_validates_with_the_cli(tiny_checkpoints, pandalm_40, tmp_path):
    example = next(p for p in EXAMPLES if architecture(p) == "bert")  # full fine-tuning of the smallest encoder
    out = tmp_path / "cv"
    invoke("cv", pandalm_40, "-k", 2, "-o", out, "--config", example, *overrides(tiny_checkpoints("bert")))
    with open(out / "oof.csv", newline="", encoding="utf-8") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 40 and {r["fold"] for r in oof} == {"0", "1"}
    scores = (out / "scores.csv").read_text(encoding="utf-8")
    assert "transformer" in scores and "uniform" in scores
