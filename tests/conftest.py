"""Shared fixtures for the test suite.

Real data lives read-only outside the repository, in `../shared/data` relative to the repository root
(see its README.md). Tests read it in place; they never copy it into the repository.
"""

from __future__ import annotations

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
