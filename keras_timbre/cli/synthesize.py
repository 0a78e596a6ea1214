"""`keras-timbre synthesize | transfer`: notes from a pitch-conditioned run (variant "hierarchical").

Thin argparse wrappers over `keras_timbre.synthesis.audio_files`. A pitch
outside the run's trained range, a velocity it was not trained on, a
paper-variant run (no pitch input) or an unreadable input file reach the
dispatcher as ValueError/FileNotFoundError and exit with status 2 and one line.
"""

from __future__ import annotations

import argparse

from keras_timbre.cli.arguments import (
    add_overwrite_option,
    add_run_argument,
    add_vocoder_option,
    positive_int,
    seed,
    temperature,
)


def add_condition_options(parser: argparse.ArgumentParser, pitch_required: bool = True) -> None:
    """--pitch and --velocity of the conditioned commands."""
    parser.add_argument(
        "--pitch", type=int, required=pitch_required, help="MIDI pitch, within the range the run was trained on"
    )
    parser.add_argument(
        "--velocity", type=int, help="MIDI velocity the run was trained on (default: 100, or the closest trained one)"
    )


def register(subparsers) -> None:
    synthesize = subparsers.add_parser(
        "synthesize",
        help="synthesise a note at a pitch from a conditioned run (WAV + spectrogram PNG)",
        description="Render a timbre code at --pitch and --velocity through a pitch-conditioned run "
        "(train --variant hierarchical): the code of an example note (--like) or a random one (--random). "
        "Writes --out (rendered by --vocoder) and a PNG of the same name.",
    )
    add_run_argument(synthesize, "run directory of a hierarchical model")
    code = synthesize.add_mutually_exclusive_group(required=True)
    code.add_argument("--like", metavar="NOTE", help="audio file whose timbre code (posterior mean) to render")
    code.add_argument(
        "--random",
        action="store_true",
        help="draw the code from the run's code prior (N(0, I) for a run without one), seeded by --seed",
    )
    add_condition_options(synthesize)
    synthesize.add_argument(
        "--temperature",
        type=temperature,
        default=0.0,
        help="scale of the latent groups' prior std, 0 to 1: 0 puts each at its prior mean, 1 draws from the "
        "prior (default: %(default)s)",
    )
    synthesize.add_argument(
        "--seed", type=seed, default=0, help="seed of --random's code, 0 to 2**32-1 (default: %(default)s)"
    )
    synthesize.add_argument("--out", required=True, help="output WAV; the PNG gets the same name")
    add_overwrite_option(synthesize)
    add_vocoder_option(synthesize)
    synthesize.add_argument(
        "--griffin-lim-iters", type=positive_int, default=64, help="where Griffin-Lim renders (default: %(default)s)"
    )
    synthesize.set_defaults(func=_synthesize)

    transfer = subparsers.add_parser(
        "transfer",
        help="re-render a note at another pitch through a conditioned run (WAV + side-by-side PNG)",
        description="Encode a note's timbre and synthesise it at --pitch (train --variant hierarchical). "
        "Writes --out (rendered by --vocoder) and a PNG of the input beside the output.",
    )
    add_run_argument(transfer, "run directory of a hierarchical model")
    transfer.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    add_condition_options(transfer)
    transfer.add_argument("--out", required=True, help="output WAV; the PNG gets the same name")
    add_overwrite_option(transfer)
    add_vocoder_option(transfer)
    transfer.add_argument(
        "--griffin-lim-iters", type=positive_int, default=64, help="where Griffin-Lim renders (default: %(default)s)"
    )
    transfer.set_defaults(func=_transfer)


def _synthesize(args) -> int:
    from keras_timbre.synthesis.audio_files import synthesize_file

    wav, png = synthesize_file(
        args.run,
        args.out,
        args.pitch,
        velocity=args.velocity,
        like=args.like,
        temperature=args.temperature,
        seed=args.seed,
        griffin_lim_iters=args.griffin_lim_iters,
        overwrite=args.overwrite,
        vocoder=args.vocoder,
    )
    print(f"Wrote {wav} and {png}")
    return 0


def _transfer(args) -> int:
    from keras_timbre.synthesis.audio_files import transfer_file

    wav, png = transfer_file(
        args.run,
        args.audio,
        args.pitch,
        args.out,
        velocity=args.velocity,
        griffin_lim_iters=args.griffin_lim_iters,
        overwrite=args.overwrite,
        vocoder=args.vocoder,
    )
    print(f"Wrote {wav} and {png}")
    return 0
