"""Where the notes are: a data path given by the user, or the built-in synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

from keras_timbre.data.synthetic import default_data_dir


def check_data_dir(data: str | os.PathLike) -> Path:
    """Returns the data directory as a Path, or raises naming the missing path."""
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"Data path {path} does not exist")
    return path


def resolve_data(data: str | os.PathLike | None) -> Path:
    """The data directory: `data`, or the built-in synthetic set (generated on first use)."""
    if data is not None:
        return check_data_dir(data)
    return Path(default_data_dir())
