"""Argument types and options that several command groups share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_frontend_arguments(parser: argparse.ArgumentParser) -> None:
    """--n-mels and --duration: the frontend settings worth changing from the command line."""
    parser.add_argument("--n-mels", type=positive_int, help="mel bands (default: the frontend's, 128)")
    parser.add_argument("--duration", type=float, help="seconds per note (default: the frontend's, 4.0)")


def frontend_from_arguments(args: argparse.Namespace):
    """The FrontendConfig the options ask for, or None for the default."""
    from keras_timbre.audio.frontend import FrontendConfig

    overrides = {k: v for k, v in (("n_mels", args.n_mels), ("duration", args.duration)) if v is not None}
    return FrontendConfig(**overrides) if overrides else None
