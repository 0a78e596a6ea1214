"""Shared fixtures. Tests run under the backend named by KERAS_BACKEND."""

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def nsynth_mini_dir() -> Path:
    """../shared/nsynth-mini beside the checkout, or $KERAS_TIMBRE_NSYNTH_MINI."""
    return Path(os.environ.get("KERAS_TIMBRE_NSYNTH_MINI", REPO_ROOT.parent / "shared" / "nsynth-mini"))


@pytest.fixture(scope="session")
def nsynth_mini() -> Path:
    path = nsynth_mini_dir()
    if not (path / "audio").is_dir():
        pytest.skip(f"real NSynth notes not found at {path}")
    return path
