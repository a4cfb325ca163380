"""Shared fixtures for the test suite.

Real data lives read-only outside the repository, in `../shared/data` relative to the repository root
(see its README.md). Tests read it in place; they never copy it into the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Never reach for the network from a test (model hubs included).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real preference data (`../shared/data`); skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared data folder not found at {SHARED_DATA} (expected `../shared/data` next to the repository "
            "root); tests that read real data are skipped"
        )
    return SHARED_DATA


# --- small real subsets and light model settings shared by the model, cv and cli tests -----------------


@pytest.fixture(scope="session")
def pandalm_records(shared_data) -> tuple:
    """All 999 PandaLM rows (soft labels from three annotators), read once per session; slice, don't mutate."""
    from arenapref.data.io import read_pairs

    records, _ = read_pairs(shared_data / "pandalm")
    return tuple(records)


@pytest.fixture(scope="session")
def write_pandalm(shared_data):
    """write_pandalm(path, stop, start=0): raw PandaLM rows [start:stop] (soft labels from three annotators)
    written as a PandaLM JSON file at `path`, for tests that go through a command line; returns `path`."""
    rows = json.loads((shared_data / "pandalm" / "testset-v1.json").read_text(encoding="utf-8"))

    def write(path: Path, stop: int, start: int = 0) -> Path:
        path.write_text(json.dumps(rows[start:stop]), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def llmbar_records(shared_data) -> tuple:
    """All LLMBar rows (hard labels, no ties), read once per session."""
    from arenapref.data.io import read_pairs

    records, _ = read_pairs(shared_data / "llmbar")
    return tuple(records)


@pytest.fixture(scope="session")
def quirks_csv(shared_data) -> Path:
    """The hand-written arena-format file with one example of every Kaggle quirk (12 rows)."""
    return shared_data / "arena-format" / "quirks.csv"


@pytest.fixture
def small_features_config():
    """A FeaturesConfig small enough for a test on 2 cores: a few hundred rows train in about a second."""
    from arenapref.config import FeaturesConfig

    def make(**overrides):
        settings = dict(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1) | overrides
        return FeaturesConfig(**settings)

    return make


# --- tiny random checkpoints (tests/tiny_models.py), built once per session ---------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """arch -> directory of a tiny checkpoint, built on first use and shared by the session."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    cache: dict[str, Path] = {}
    from tiny_models import build_tiny

    def get(arch: str) -> Path:
        if arch not in cache:
            cache[arch] = build_tiny(arch, root / arch)
        return cache[arch]

    return get
