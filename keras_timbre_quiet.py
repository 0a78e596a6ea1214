"""A quiet start for keras-timbre: TensorFlow's native start-up lines hidden, when asked for.

TensorFlow writes these straight to file descriptor 2 from C++, before
`TF_CPP_MIN_LOG_LEVEL` is read, so no Python logging setting reaches them:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ...

`import keras_timbre` changes nothing global: a script that imports it sees
what `import keras` shows, these lines included. A script that wants them
hidden calls `quiet_start()` before anything imports TensorFlow:

>>> from keras_timbre_quiet import quiet_start  # doctest: +SKIP
>>> quiet_start()  # doctest: +SKIP
>>> import keras_timbre  # no start-up lines  # doctest: +SKIP

`quiet_start()` installs a one-shot import hook: when `tensorflow` is first
imported, fd 2 is pointed at a temporary file for the import and for
TensorFlow's device discovery (`tf.config.list_physical_devices()`, where
cuInit runs; the runtime stays uninitialised, so device configuration still
works afterwards). Then the hook removes itself, fd 2 is restored and every
captured line that is not one of the known start-up lines (`NOISE_PATTERNS`)
is written back, so a real error during the import is still seen; after that
window nothing is filtered.

The command line does the same, and also sets `TF_CPP_MIN_LOG_LEVEL=2` (if
unset) to hide TensorFlow's runtime info and warning lines: the
`keras-timbre` console script is `main` below, which starts quietly before it
imports the package; `python -m keras_timbre.cli` is recognised from
`sys.orig_argv` by `keras_timbre/__init__.py` (`start_if_command_line`)
before it loads Keras. `KERAS_TIMBRE_VERBOSE=1`, or `--verbose` on the
command line, turns all of this off.

This is a top-level module of the keras-timbre distribution, outside the
`keras_timbre` package on purpose: importing anything under `keras_timbre`
runs the package's `__init__`, which loads Keras and TensorFlow, too late to
quiet them. It imports only the standard library. `keras_timbre._startup`
is the package's name for it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

__all__ = ["quiet_start", "main"]

VERBOSE_ENV = "KERAS_TIMBRE_VERBOSE"
CLI_MODULES = ("keras_timbre.cli", "keras_timbre.cli.__main__")
CLI_SCRIPT = "keras-timbre"
# Interpreter options that take the next argument as their value (`python -W ignore -m ...`).
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")

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


def quiet_start() -> None:
    """Hides TensorFlow's native start-up lines in this process; call it before importing TensorFlow.

    Before `import tensorflow`, `import keras` (TensorFlow backend) or
    `import keras_timbre`, whichever comes first. It installs a one-shot import
    hook that captures fd 2 while TensorFlow loads and lists its devices, then
    writes back every line that is not a known start-up line; it sets no
    environment variable. Does nothing when `KERAS_TIMBRE_VERBOSE=1`; safe to
    call more than once. Called after TensorFlow is loaded it can hide nothing,
    and warns.
    """
    if verbose_requested():
        return
    if "tensorflow" in sys.modules:
        warnings.warn(
            "quiet_start() was called after TensorFlow was imported: too late to hide its start-up lines", stacklevel=2
        )
        return
    _install_finder()


def main() -> int:
    """The `keras-timbre` console script: the command line's quiet start, then `keras_timbre.cli.main`."""
    start_command_line(sys.argv[1:])
    try:
        from keras_timbre.cli import main as run_command_line
    except KeyboardInterrupt:  # while the package loads Keras and TensorFlow, for seconds
        print("Interrupted.", file=sys.stderr)
        return 130
    return run_command_line()


def start_command_line(arguments: list[str]) -> None:
    """The command line's quiet start: `quiet_start()`'s hook, and `TF_CPP_MIN_LOG_LEVEL=2` if unset.

    Nothing when `--verbose` is among `arguments` or `KERAS_TIMBRE_VERBOSE=1`.
    """
    if verbose_requested(arguments):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        _install_finder()


def start_if_command_line() -> None:
    """`start_command_line` when this process is `keras-timbre` or `python -m keras_timbre.cli`; else nothing."""
    arguments = cli_arguments()
    if arguments is not None:
        start_command_line(arguments)


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

    Read from `sys.orig_argv`: while `-m` imports the package, `sys.argv[0]` is
    still "-m". Only the interpreter's own options count: in
    `python script.py -m keras_timbre.cli` the `-m` is the script's argument.
    """
    run = _module_arguments(list(getattr(sys, "orig_argv", sys.argv)))
    if run is not None:
        module, arguments = run
        return arguments if module in CLI_MODULES else None
    if sys.argv and Path(sys.argv[0]).name == CLI_SCRIPT:
        return sys.argv[1:]
    return None


def _module_arguments(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, its arguments) of `python [options] -m module ...`, or None for a script, `-c` or no `-m`.

    Example:
    >>> _module_arguments(["python", "-W", "ignore", "-m", "keras_timbre.cli", "--help"])
    ('keras_timbre.cli', ['--help'])
    >>> _module_arguments(["python", "script.py", "-m", "keras_timbre.cli"]) is None
    True
    """
    at = 1
    while at < len(argv):
        option = argv[at]
        if option == "-m":
            return (argv[at + 1], argv[at + 2 :]) if at + 1 < len(argv) else None
        if option == "-c" or option == "-" or not option.startswith("-"):
            return None
        at += 2 if option in _OPTIONS_WITH_VALUE else 1
    return None


def verbose_requested(arguments: list[str] | None = None) -> bool:
    """`KERAS_TIMBRE_VERBOSE` is 1/true/yes/on, or the command line has `--verbose`.

    The command line is `arguments` if given, else `cli_arguments()` (None for a script).
    """
    if os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if arguments is None:
        arguments = cli_arguments()
    return arguments is not None and "--verbose" in arguments


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


def _install_finder() -> None:
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


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
