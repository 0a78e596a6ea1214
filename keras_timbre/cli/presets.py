"""`keras-timbre ship-preset RUN --name NAME`: a finished run into the package, loadable by name.

A thin wrapper over `keras_timbre.training.presets.save_preset`; a bad name, an
existing preset (without --overwrite) or an unfinished run exits 2 with one line.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ship-preset",
        help="copy a finished run into the package as a preset that every command loads by name",
        description="Write what inference needs of the finished run RUN (its model without the optimizer state, "
        "config.json, frontend.json, stats.npz, and a generated README.md) to keras_timbre/pretrained/NAME/ of "
        "the installed package, atomically; then `keras-timbre synthesize NAME ...` and "
        '`keras_timbre.load_run("NAME")` load it. keras_timbre/pretrained/README.md says how each shipped '
        "preset was made.",
    )
    parser.add_argument("run", help="finished run directory written by `keras-timbre train`")
    parser.add_argument("--name", required=True, help="the preset's name, e.g. nsynth-mini")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing preset of that name")
    parser.set_defaults(func=_ship_preset)


def _ship_preset(args: argparse.Namespace) -> int:
    from keras_timbre.training import run as runs
    from keras_timbre.training.presets import save_preset

    path = save_preset(args.run, args.name, overwrite=args.overwrite)
    size = (path / runs.MODEL_FILE).stat().st_size / 2**20
    print(f"Shipped {args.run} as preset {args.name} at {path} ({runs.MODEL_FILE}: {size:.1f} MiB, no optimizer)")
    print(f"Load it by name: keras-timbre synthesize {args.name} --random --pitch 60 --out note.wav")
    return 0
