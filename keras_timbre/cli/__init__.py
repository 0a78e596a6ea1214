"""`keras-timbre` command line: a thin argparse layer over the library.

Each command group lives in its own module with a `register(subparsers)`
function that adds its sub-commands; each sub-command sets `func(args) -> int`.
Library code never imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# The quiet start ran before this, as the package loaded: `keras_timbre_quiet.main` (the console
# script) or `keras_timbre/__init__.py` (`python -m keras_timbre.cli`); see docs/startup.md.
from keras_timbre import _startup, atomic

# Command-group modules, in the order `--help` lists them.
_COMMAND_MODULES = ("data", "train", "vocoder", "evaluate", "synthesize", "explore", "search", "export", "presets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-timbre",
        description="Timbre embeddings of instrument notes with a convolutional beta-VAE.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"keep TensorFlow's native start-up logs (absl, oneDNN, CUDA); same as {_startup.VERBOSE_ENV}=1",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"keras_timbre.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit status: 0, 1 (it failed, e.g. a write), 2 (bad input), 130 (Ctrl-C)."""
    command = "?"
    try:
        parser = build_parser()  # inside the try: it imports Keras, which a Ctrl-C may interrupt
        args = parser.parse_args(argv)
        command = args.command
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"keras-timbre {command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a file-size limit: one line naming the path, not a traceback
        print(f"keras-timbre {command}: error: {_os_error_line(error)}", file=sys.stderr)
        return 1


def _os_error_line(error: OSError) -> str:
    if isinstance(error, atomic.OutputWriteError) or not error.filename:
        return str(error)
    return f"{error.filename}: {error.strerror}"
