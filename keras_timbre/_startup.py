"""A quiet start: hide TensorFlow's native start-up lines (absl, oneDNN, CUDA probing) on CPU machines.

TensorFlow writes these straight to file descriptor 2 from C++, before
`TF_CPP_MIN_LOG_LEVEL` is read, so no Python logging setting reaches them:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ...

`quiet_native_logs()` (called by `keras_timbre/__init__.py` before Keras
loads) installs an import hook: when `tensorflow` is first imported, by
whichever module, fd 2 is pointed at a temporary file for the import and for
TensorFlow's device discovery (`tf.config.list_physical_devices()`, where
cuInit runs; it does not initialise the runtime, so device configuration still
works afterwards). Then fd 2 is restored and every captured line that is not
one of the known start-up lines (`NOISE_PATTERNS`) is written back, so a real
error during the import is still seen; after that window nothing is filtered.

Library users get this too (`import keras_timbre`); only the command line
also sets `TF_CPP_MIN_LOG_LEVEL=2` (if unset), as it always has, to hide
TensorFlow's runtime info and warning lines for the rest of the process.
`KERAS_TIMBRE_VERBOSE=1`, or `--verbose` on the command line, turns all of
this off.

Example:
>>> quiet_native_logs()  # doctest: +SKIP
>>> import tensorflow  # no start-up lines  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterator

VERBOSE_ENV = "KERAS_TIMBRE_VERBOSE"
CLI_MODULES = ("keras_timbre.cli", "keras_timbre.cli.__main__")
CLI_SCRIPT = "keras-timbre"

_ABSL = r"^[IWEF]\d{4} [\d:.]+\s+\d+ "
# Lines TensorFlow prints while loading and probing devices on a machine without a GPU.
NOISE_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
        _ABSL + r"port\.cc:\d+\] oneDNN custom operations are on",
        _ABSL + r"cudart_stub\.cc:\d+\] Could not find cuda drivers",
        _ABSL + r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
        r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$",
        _ABSL + r"cuda_platform\.cc:\d+\] failed call to cuInit",
        _ABSL + r"cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",
        _ABSL + r"computation_placer\.cc:\d+\] computation placer already registered",
        r"TF-TRT Warning: Could not find TensorRT",
    )
)


def is_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's known start-up lines.

    Example:
    >>> is_noise("I0000 00:00:1.2   15 cudart_stub.cc:31] Could not find cuda drivers on your machine.")
    True
    >>> is_noise("E0000 00:00:1.2   15 my_op.cc:1] something real went wrong")
    False
    """
    return any(pattern.search(line) for pattern in NOISE_PATTERNS)


def cli_arguments() -> list[str] | None:
    """The arguments after `keras-timbre` / `python -m keras_timbre.cli`, or None if this is not the CLI.

    Read from `sys.orig_argv`: while `-m` imports the package, `sys.argv[0]` is still "-m".
    """
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if "-m" in argv:
        at = argv.index("-m")
        return argv[at + 2 :] if argv[at + 1 : at + 2] and argv[at + 1] in CLI_MODULES else None
    if sys.argv and Path(sys.argv[0]).name == CLI_SCRIPT:
        return sys.argv[1:]
    return None


def verbose_requested() -> bool:
    """`KERAS_TIMBRE_VERBOSE` is 1/true/yes/on, or the command line has `--verbose`."""
    if os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    arguments = cli_arguments()
    return arguments is not None and "--verbose" in arguments


def quiet_native_logs() -> None:
    """Hides TensorFlow's native start-up lines (see the module docstring); safe to call more than once."""
    if verbose_requested():
        return
    if cli_arguments() is not None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


@contextlib.contextmanager
def command_line_interrupts() -> Iterator[None]:
    """On the command line, Ctrl-C in the block prints "Interrupted." and exits 130 instead of a traceback.

    For what runs before the CLI's `main` can catch it: importing the package,
    which loads Keras and TensorFlow for seconds. Elsewhere the block is left alone.
    """
    try:
        yield
    except KeyboardInterrupt:
        if cli_arguments() is None:
            raise
        print("Interrupted.", file=sys.stderr)
        raise SystemExit(130) from None


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Sends fd 2 to a temporary file for the block, then writes back the lines that are not start-up noise."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        _flush_python_stderr()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line for line in capture.read().splitlines(keepends=True) if not is_noise(line.decode(errors="replace"))
            ]
            if kept:
                os.write(2, b"".join(kept))


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` with the other finders and wraps its loader in `_QuietLoader`; then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader, then device discovery, inside `filtered_stderr`; puts the real loader back."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            try:
                self._loader.exec_module(module)
                # cuInit runs here, inside the window; the runtime itself stays uninitialised.
                with contextlib.suppress(Exception):
                    module.config.list_physical_devices()
            finally:
                module.__loader__ = self._loader
                if getattr(module, "__spec__", None) is not None:
                    module.__spec__.loader = self._loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)
