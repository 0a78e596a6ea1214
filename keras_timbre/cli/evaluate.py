"""`keras-timbre evaluate | reconstruct | interpolate | ablation`.

(`synthesize` and `transfer`, for pitch-conditioned runs, are in `cli.synthesize`.)

Thin argparse wrappers over `keras_timbre.evaluation`. Errors (missing run or
data, unknown variant, frontend mismatch, a --vocoder trained on other
features, non-audio input, an --out that cannot be written, checked before
any work) reach the dispatcher as FileNotFoundError/ValueError and exit with
status 2 and one clear line.
"""

from __future__ import annotations

import argparse
import json

from keras_timbre.cli.arguments import (
    add_overwrite_option,
    add_run_argument,
    add_training_options,
    add_vocoder_option,
    positive_int,
    seed,
    training_kwargs,
    variant,
)
from keras_timbre.cli.synthesize import add_condition_options
from keras_timbre.models.variants import VARIANTS


def morph_steps(text: str) -> int:
    """argparse type of --steps: an integer >= 2, with the library's message whatever the value."""
    # Imported when --steps is given, not at start-up: the module loads Keras.
    from keras_timbre.synthesis.audio_files import MIN_STEPS, STEPS_RULE

    value = int(text)
    if value < MIN_STEPS:
        raise argparse.ArgumentTypeError(f"{STEPS_RULE}, got {value}")
    return value


def register(subparsers) -> None:
    from keras_timbre.training.trainer import DEFAULT_EPOCHS

    evaluate = subparsers.add_parser(
        "evaluate",
        help="metrics of a run on held-out notes (writes metrics.json, figures, audio)",
        description="Evaluate a run on held-out notes: by default its own validation split (pitches held out "
        "per instrument), or every note of --data DIR. The reconstructions are rendered by --vocoder and "
        "scored against the real notes' audio too. See docs/evaluation.md for the metrics.",
    )
    add_run_argument(evaluate)
    evaluate.add_argument(
        "--data", help="score every note of this directory instead (not held-out notes: the model may know them)"
    )
    evaluate.add_argument(
        "--out",
        help="metrics JSON (default: RUN/metrics.json, replaced by each evaluation; required for a shipped preset, "
        "which is read-only, and then no figures or audio are written)",
    )
    add_overwrite_option(evaluate)
    add_vocoder_option(evaluate)  # renders the audio metrics' audio and RUN/audio/*.wav
    evaluate.set_defaults(func=_evaluate)

    reconstruct = subparsers.add_parser(
        "reconstruct",
        help="reconstruct one audio file through a run's model (WAV + side-by-side PNG)",
        description="Encode and decode one note; write the reconstruction as WAV (rendered by --vocoder) and a "
        "side-by-side spectrogram PNG next to it.",
    )
    add_run_argument(reconstruct, "run directory")
    reconstruct.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    reconstruct.add_argument("--out", required=True, help="output WAV; the PNG gets the same name")
    add_overwrite_option(reconstruct)
    add_vocoder_option(reconstruct)
    reconstruct.add_argument(
        "--griffin-lim-iters", type=positive_int, default=64, help="where Griffin-Lim renders (default: %(default)s)"
    )
    reconstruct.set_defaults(func=_reconstruct)

    interpolate = subparsers.add_parser(
        "interpolate",
        help="timbre morph between two notes (figure strip + audio)",
        description="Decode points on the line between the latent means of notes A and B. A pitch-conditioned "
        "run (--variant hierarchical) renders every point at --pitch (required) and --velocity.",
    )
    add_run_argument(interpolate, "run directory")
    interpolate.add_argument("a", help="first audio file")
    interpolate.add_argument("b", help="second audio file")
    interpolate.add_argument(
        "--steps", type=morph_steps, default=5, help="points from A to B, both included, >= 2 (default: %(default)s)"
    )
    interpolate.add_argument("--out", required=True, help="output directory (new, empty, or an earlier morph)")
    add_overwrite_option(interpolate)
    add_vocoder_option(interpolate)
    interpolate.add_argument(
        "--griffin-lim-iters", type=positive_int, default=64, help="where Griffin-Lim renders (default: %(default)s)"
    )
    add_condition_options(interpolate, pitch_required=False)
    interpolate.set_defaults(func=_interpolate)

    ablation = subparsers.add_parser(
        "ablation",
        help="train and evaluate the four variants on the same data, seeds and budget",
        description="The paper's 2x2 ablation: baseline, skip, grad, skip+grad with the same data, seeds, "
        "budget and held-out notes. Writes ablation.md (table), results.json, a figure grid with zooms "
        "and audio. Resumable: finished runs are reused.",
    )
    ablation.add_argument("--out", required=True, help="output directory (one run directory per variant and seed)")
    ablation.add_argument("--seeds", type=seed, nargs="+", default=[0], help="seeds (default: %(default)s)")
    ablation.add_argument(
        "--variants",
        type=variant,
        nargs="+",
        default=list(VARIANTS),
        help="the paper's four by default; add hierarchical for the variant beyond it",
    )
    add_training_options(ablation, DEFAULT_EPOCHS)
    ablation.set_defaults(func=_ablation)


def _evaluate(args) -> int:
    from keras_timbre.evaluation.evaluator import METRIC_KEYS, evaluate
    from keras_timbre.training import run as runs

    # A preset is read-only (inside the package): its metrics go to --out, and RUN/figures, RUN/audio are not made.
    preset = runs.is_preset(runs.run_directory(args.run))
    if preset and args.out is None:
        raise ValueError(
            f"{args.run} is a preset shipped with the package, which is read-only: "
            "pass --out FILE.json for its metrics (its figures and audio are not written)"
        )
    result = evaluate(
        args.run,
        data=args.data,
        out=args.out,
        overwrite=args.overwrite,
        vocoder=args.vocoder,
        write_media=not preset,
    )
    print(json.dumps({key: result[key] for key in (*METRIC_KEYS, "audio_renderer")}, indent=2))
    return 0


def _reconstruct(args) -> int:
    from keras_timbre.synthesis.audio_files import reconstruct_file

    wav, png = reconstruct_file(
        args.run, args.audio, args.out, n_iter=args.griffin_lim_iters, overwrite=args.overwrite, vocoder=args.vocoder
    )
    print(f"Wrote {wav} and {png}")
    return 0


def _interpolate(args) -> int:
    from keras_timbre.synthesis.audio_files import interpolate

    written = interpolate(
        args.run,
        args.a,
        args.b,
        args.out,
        steps=args.steps,
        n_iter=args.griffin_lim_iters,
        pitch=args.pitch,
        velocity=args.velocity,
        overwrite=args.overwrite,
        vocoder=args.vocoder,
    )
    print(f"Wrote {len(written)} files to {args.out} (strip.png, step_*.wav)")
    return 0


def _ablation(args) -> int:
    from keras_timbre.evaluation.ablation import run_ablation

    report = run_ablation(args.out, seeds=args.seeds, variants=args.variants, **training_kwargs(args))
    print(report)
    return 0
