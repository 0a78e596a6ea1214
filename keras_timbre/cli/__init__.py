"""`keras-timbre` command line: a thin argparse layer over the library.

Each command group lives in its own module with a `register(subparsers)`
function that adds its sub-commands; each sub-command sets `func(args) -> int`.
Library code never imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from keras_timbre import _startup

# Usually done already by `import keras_timbre`; again here in case TensorFlow is not loaded yet.
_startup.quiet_native_logs()

# Command-group modules, in the order `--help` lists them.
_COMMAND_MODULES = ("data", "train", "evaluate", "synthesize", "explore", "search", "export")


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"keras-timbre {args.command}: error: {error}", file=sys.stderr)
        return 2
