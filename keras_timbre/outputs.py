"""Output paths, checked before any work: a bad or existing output costs nothing and replaces nothing.

One rule for every command that writes a named output (`--out`): a path that
exists already is refused, unless `overwrite` is given (`--overwrite`); the new
output is then written beside it and renamed over it when complete
(`keras_timbre.atomic`), so the old one stays whole until the new one is.
A folder output is replaced only when it holds nothing but what that command
writes; a folder holding anything else is refused even with `overwrite`.
A run directory's own files (`train`, `evaluate RUN`) follow the run's rules
instead (`keras_timbre.training.run`).

Example:
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> check_output_file(folder / "recon.wav").name
'recon.wav'
>>> _ = (folder / "recon.wav").write_bytes(b"mine")
>>> check_output_file(folder / "recon.wav")
Traceback (most recent call last):
...
keras_timbre.outputs.OutputPathError: --out ... already exists; pass --overwrite to replace it
>>> check_output_file(folder / "recon.wav", overwrite=True).name
'recon.wav'
>>> check_output_file(folder)
Traceback (most recent call last):
...
keras_timbre.outputs.OutputPathError: --out ... is a directory; give a file path
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

OVERWRITE_HINT = "pass --overwrite to replace it"


class OutputPathError(ValueError):
    """An output path that cannot or may not be written (the CLI exits 2 with this one line)."""


def check_output_file(
    path: str | os.PathLike, what: str = "--out", overwrite: bool = False, suffixes: Sequence[str] = ()
) -> Path:
    """`path` as a Path, if a file may be written there.

    Args:
        path: The output file.
        what: How the message names it (the option, or "the figure beside --out,").
        overwrite: Allow replacing an existing regular file.
        suffixes: If given, the file name must end in one of these (lower case, with the dot).

    Raises:
        OutputPathError: `path` is a directory, exists (without `overwrite`) or
            is not a regular file, has another suffix, or a parent is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} {path} must end in {' or '.join(suffixes)}")
    if path.is_symlink() or path.exists():
        if not overwrite:
            raise OutputPathError(f"{what} {path} already exists; {OVERWRITE_HINT}")
        if path.is_symlink() or not path.is_file():
            raise OutputPathError(f"{what} {path} is not a regular file; it is never replaced")
    _check_parents(path, what)
    return path


def check_output_folder(
    path: str | os.PathLike, replaceable: Callable[[Path], bool], what: str = "--out", overwrite: bool = False
) -> Path:
    """`path` as a Path, if it is new or empty, or (with `overwrite`) holds only what `replaceable` accepts.

    Args:
        path: The output folder.
        replaceable: Whether an entry of the folder is one this command writes.
        what: How the message names it.
        overwrite: Allow replacing a folder that holds an earlier output of this command.

    Raises:
        OutputPathError: `path` is a file, holds files this command did not
            write, or holds an earlier output (without `overwrite`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a directory")
    _check_parents(path, what)
    entries = sorted(path.iterdir()) if path.is_dir() else []
    others = [p.name for p in entries if not replaceable(p)]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise OutputPathError(
            f"{what} {path} holds files this command did not write ({shown}); choose a new or empty directory"
        )
    if entries and not overwrite:
        raise OutputPathError(f"{what} {path} holds an earlier output; {OVERWRITE_HINT}")
    return path


def _check_parents(path: Path, what: str) -> None:
    # The nearest existing parent must be a directory; the missing ones are created on writing.
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory")
            return
