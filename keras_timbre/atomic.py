"""Atomic file writes: a reader never sees a half-written output.

A write that fails (a full disk, a file-size limit, no permission) leaves the
old output as it was and raises `OutputWriteError`, an `OSError` whose one-line
message names the output and the system's reason:

>>> str(OutputWriteError("runs/main/model.keras", OSError(28, "No space left on device")))
'cannot write runs/main/model.keras: No space left on device'

The trained runs shipped inside the package (`PRESETS_ROOT/NAME/`, see
`keras_timbre.training.presets`) are read-only to every write here: a path
inside one is refused with an `OutputWriteError` before anything is written.
Only shipping a preset writes one, by building the whole folder and
renaming it into place (`atomic_directory(PRESETS_ROOT / NAME)`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


class OutputWriteError(OSError):
    """Writing `path` failed; the old file, if any, is untouched. `str()` is one line for the CLI."""

    def __init__(self, path: str | os.PathLike, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


# Where the package's shipped presets live: one folder per preset (keras_timbre.training.presets).
PRESETS_ROOT = Path(__file__).resolve().parent / "pretrained"


def preset_folder(path: str | os.PathLike) -> Path | None:
    """The shipped preset folder (`PRESETS_ROOT/NAME`) that `path` is or lies inside, else None.

    Example:
    >>> preset_folder(PRESETS_ROOT / "nsynth-mini" / "figures" / "a.png") == PRESETS_ROOT / "nsynth-mini"
    True
    >>> preset_folder(PRESETS_ROOT / "vocoder.keras") is None  # the root's own files are not a preset's
    True
    """
    root = PRESETS_ROOT.resolve()
    try:
        parts = Path(path).resolve().relative_to(root).parts
    except ValueError:
        return None
    return PRESETS_ROOT / parts[0] if len(parts) >= 2 or (parts and Path(path).is_dir()) else None


def check_not_in_preset(path: str | os.PathLike) -> None:
    """Raises `OutputWriteError` if `path` lies inside a shipped preset folder (they are read-only)."""
    folder = preset_folder(path)
    if folder is not None and Path(path).resolve() != folder.resolve():
        reason = (
            f"it lies inside the shipped preset {folder.name}, which is read-only "
            "(only `keras-timbre ship-preset` replaces it); write it elsewhere"
        )
        raise OutputWriteError(path, PermissionError(errno.EACCES, reason))


@contextlib.contextmanager
def _naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raises an OSError of the block as an `OutputWriteError` naming `path`."""
    try:
        yield
    except OutputWriteError:
        raise
    except (FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise  # callers tell these apart (a concurrent writer, a missing input)
    except OSError as error:
        raise OutputWriteError(path, error) from error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renames it over `path` on success.

    The temporary file lives in the same folder so that `os.replace` is a
    rename on one file system, which POSIX makes atomic. On an exception the
    temporary file is removed and `path` is left as it was.

    Example:
    >>> with atomic_path("model.keras") as tmp:  # doctest: +SKIP
    ...     model.save(tmp)
    """
    path = Path(path)
    check_not_in_preset(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real suffix: keras.saving and soundfile pick the format from it.
        suffix = path.suffix if suffix is None else suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming(path):
            yield tmp_path
            if tmp_path.is_file():
                # mkstemp makes 0600 files; give the result the usual umask-based mode.
                os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yields an empty temporary folder next to `path`; renames it to `path` on success.

    A reader sees either no `path`, the old one, or the complete new one. An
    existing empty `path` is replaced; a non-empty one only with `replace=True`
    (else `FileExistsError`, also when another writer finished first). On an
    exception the temporary folder is removed and `path` is left as it was.
    Files inside get umask-based modes (a server may run as another user).

    Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_directory(root / "out") as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in (root / "out").iterdir())
    ['a.txt']
    """
    path = Path(path)
    check_not_in_preset(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with _naming(path):
            yield tmp
            _make_readable(tmp)
            _swap_into_place(tmp, path, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(new: Path, target: Path, replace: bool) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        try:
            os.rename(new, target)
            return
        except OSError:  # another writer got there first
            if not target.exists():
                raise
    if not replace:
        raise FileExistsError(f"{target} already exists")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    try:
        os.replace(target, old / target.name)
        os.replace(new, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    umask = _umask()
    folder.chmod(0o777 & ~umask)
    for item in folder.rglob("*"):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics and configs.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
