"""Output paths of the evaluation commands, checked before any work: a bad --out costs nothing.

Example:
>>> check_output_file("recon.wav").name
'recon.wav'
>>> import tempfile
>>> check_output_file(tempfile.gettempdir())
Traceback (most recent call last):
...
keras_timbre.evaluation.outputs.OutputPathError: --out ... is a directory; give a file path
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


class OutputPathError(ValueError):
    """An output path that cannot be written (the CLI exits 2 with this one line)."""


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """`path` as a Path, if a file can be written there: not a directory, no file among its parents."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file path")
    _check_parents(path, what)
    return path


def check_output_folder(path: str | os.PathLike, replaceable: Callable[[Path], bool], what: str = "--out") -> Path:
    """`path` as a Path, if it is new, empty, or holds only files `replaceable` accepts (an earlier output)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a directory")
    _check_parents(path, what)
    others = sorted(p.name for p in path.iterdir() if not replaceable(p)) if path.is_dir() else []
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputPathError(
            f"{what} {path} holds files this command did not write ({shown}); choose a new or empty directory"
        )
    return path


def _check_parents(path: Path, what: str) -> None:
    # The nearest existing parent must be a directory; the missing ones are created on writing.
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory")
            return
