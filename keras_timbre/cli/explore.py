"""`keras-timbre explore RUN --out explore.html`: the self-contained explorer page (docs/explore.md)."""

from __future__ import annotations

import argparse

from keras_timbre.cli.arguments import add_overwrite_option, add_run_argument, add_vocoder_option, positive_int


def register(subparsers) -> None:
    from keras_timbre.explorer import explore

    parser = subparsers.add_parser(
        "explore",
        help="one HTML page to look at and listen to a run's timbre codes (no server needed)",
        description="Write one self-contained HTML page: a PCA / t-SNE map of the held-out notes' timbre codes "
        "(hover names a note, click plays it and its reconstruction) and precomputed morphs between a few "
        "notes. Open it from disk in any browser. See docs/explore.md.",
    )
    add_run_argument(parser)
    parser.add_argument("--data", help="map every note of this directory instead of the run's held-out notes")
    parser.add_argument("--out", required=True, help="HTML file to write, e.g. explore.html")
    add_overwrite_option(parser)
    parser.add_argument(
        "--morph-notes",
        type=int,
        default=explore.DEFAULT_MORPH_NOTES,
        help="notes, from different families, with morphs between every pair (0: none; default: %(default)s)",
    )
    parser.add_argument(
        "--morph-steps", type=positive_int, default=explore.DEFAULT_MORPH_STEPS, help="points per morph (%(default)s)"
    )
    parser.add_argument(
        "--griffin-lim-iters",
        type=positive_int,
        default=explore.DEFAULT_GRIFFIN_LIM_ITERS,
        help="Griffin-Lim iterations, where Griffin-Lim renders the audio (default: %(default)s)",
    )
    add_vocoder_option(parser)
    parser.add_argument("--max-notes", type=positive_int, help="map only the first this many notes")
    parser.set_defaults(func=_explore)


def _explore(args: argparse.Namespace) -> int:
    from keras_timbre.explorer.explore import build_explorer

    summary = build_explorer(
        args.run,
        args.out,
        data=args.data,
        morph_notes=args.morph_notes,
        morph_steps=args.morph_steps,
        griffin_lim_iters=args.griffin_lim_iters,
        max_notes=args.max_notes,
        overwrite=args.overwrite,
        vocoder=args.vocoder,
    )
    print(summary.describe())
    return 0
