"""One `train` at a time per run directory: an advisory lock file holding the trainer's PID.

`RUN/.train.lock` is locked with `fcntl.flock` while a `train` call runs and
holds that process's PID. The kernel drops the lock when the process ends, so
a lock file left by a killed trainer (its PID no longer alive) never blocks a
resume: only a lock that is actually held does. The file itself is left in
place (emptied) on release; removing it would let two trainers lock two
different files of the same name.

Example:
>>> import tempfile
>>> run_dir = Path(tempfile.mkdtemp())
>>> with lock_run(run_dir):
...     holder_pid(run_dir) == os.getpid()
True
>>> holder_pid(run_dir) is None
True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from keras_timbre.training.run import LOCK_FILE


class RunLockedError(RuntimeError):
    """Another live process is training into the same run directory."""


def holder_pid(run_path: str | os.PathLike) -> int | None:
    """The PID written in the run's lock file, or None if there is none (held or not)."""
    try:
        text = (Path(run_path) / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def lock_run(run_path: str | os.PathLike) -> Iterator[Path]:
    """Holds the run directory's lock for the `with` block (creating the directory).

    Raises:
        RunLockedError: naming the PID of the process that holds the lock.
    """
    run_path = Path(run_path)
    run_path.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLockedError(
                f"{run_path} is in use by another train process (PID {holder}); wait for it to finish "
                "or stop it, or train into another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield run_path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
