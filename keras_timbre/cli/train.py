"""`keras-timbre train | evaluate | reconstruct | interpolate | ablation`.

Thin argparse wrappers over `keras_timbre.training`, `keras_timbre.evaluation`
and `keras_timbre.ablation`. Errors (missing run or data, unknown variant,
frontend mismatch, non-audio input) reach the dispatcher as
FileNotFoundError/ValueError and exit with status 2 and one clear line.
"""

from __future__ import annotations

import argparse
import json

from keras_timbre.cli.arguments import add_frontend_arguments, frontend_from_arguments, positive_int
from keras_timbre.models.timbre_vae import VARIANTS


def _variant(name: str) -> str:
    if name not in VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return name


def _add_training_options(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    parser.add_argument(
        "--data", help="NSynth-format data directory (default: the built-in synthetic notes, generated on first use)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=default_epochs, help="epochs per model (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="global batch size (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--beta", type=float, help="KL weight after warm-up (default: the model's)")
    parser.add_argument(
        "--grad-weight", type=float, help="mel-gradient loss weight of the grad variants (default: the model's)"
    )
    parser.add_argument("--latent-dim", type=positive_int, help="latent size (default: the model's)")
    parser.add_argument(
        "--warmup-epochs", type=int, default=5, help="epochs of linear beta warm-up (default: %(default)s)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="fraction of each instrument's pitches held out (default: %(default)s)",
    )
    parser.add_argument("--max-per-instrument", type=positive_int, help="keep at most this many notes per instrument")
    add_frontend_arguments(parser)


def _training_kwargs(args) -> dict:
    return dict(
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        beta=args.beta,
        grad_weight=args.grad_weight,
        latent_dim=args.latent_dim,
        warmup_epochs=args.warmup_epochs,
        val_fraction=args.val_fraction,
        max_per_instrument=args.max_per_instrument,
        frontend=frontend_from_arguments(args),
    )


def register(subparsers) -> None:
    from keras_timbre.training.trainer import DEFAULT_EPOCHS

    train = subparsers.add_parser(
        "train",
        help="train a TimbreVAE variant into a run directory (resumable)",
        description="Train one TimbreVAE variant. Rerun the same command after an interruption to continue "
        "from the last finished epoch.",
    )
    train.add_argument("--out", default="runs/main", help="run directory (default: %(default)s)")
    train.add_argument(
        "--variant", type=_variant, default="skip+grad", help=f"one of {', '.join(VARIANTS)} (default: %(default)s)"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the split, weights and sampling (default: %(default)s)"
    )
    train.add_argument(
        "--distribute",
        choices=("auto", "none", "data-parallel"),
        default="none",
        help="data-parallel training over local devices (default: %(default)s)",
    )
    train.add_argument(
        "--cache",
        metavar="DIR",
        help="stream log-mel from feature caches in DIR (built on first use, rebuilt when stale) "
        "instead of holding every note in memory: for data larger than RAM",
    )
    train.add_argument(
        "--figure-every",
        type=positive_int,
        default=5,
        help="draw reconstructions every N epochs (default: %(default)s)",
    )
    _add_training_options(train, DEFAULT_EPOCHS)
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="metrics of a run on held-out notes (writes metrics.json, figures, audio)",
        description="Evaluate a run on held-out notes: by default its own validation split (pitches held out "
        "per instrument). See docs/evaluation.md for the metrics.",
    )
    evaluate.add_argument("run", help="run directory written by `keras-timbre train`")
    evaluate.add_argument("--data", help="evaluate every note of this directory instead")
    evaluate.add_argument("--out", help="metrics JSON (default: RUN/metrics.json)")
    evaluate.set_defaults(func=_evaluate)

    reconstruct = subparsers.add_parser(
        "reconstruct",
        help="reconstruct one audio file through a run's model (WAV + side-by-side PNG)",
        description="Encode and decode one note; write the reconstruction as WAV (Griffin-Lim) and a "
        "side-by-side spectrogram PNG next to it.",
    )
    reconstruct.add_argument("run", help="run directory")
    reconstruct.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    reconstruct.add_argument("--out", required=True, help="output WAV; the PNG gets the same name")
    reconstruct.add_argument("--griffin-lim-iters", type=positive_int, default=64, help="(default: %(default)s)")
    reconstruct.set_defaults(func=_reconstruct)

    interpolate = subparsers.add_parser(
        "interpolate",
        help="timbre morph between two notes (figure strip + audio)",
        description="Decode points on the line between the latent means of notes A and B.",
    )
    interpolate.add_argument("run", help="run directory")
    interpolate.add_argument("a", help="first audio file")
    interpolate.add_argument("b", help="second audio file")
    interpolate.add_argument(
        "--steps", type=positive_int, default=5, help="points from A to B, both included (default: %(default)s)"
    )
    interpolate.add_argument("--out", required=True, help="output directory")
    interpolate.add_argument("--griffin-lim-iters", type=positive_int, default=64, help="(default: %(default)s)")
    interpolate.set_defaults(func=_interpolate)

    ablation = subparsers.add_parser(
        "ablation",
        help="train and evaluate the four variants on the same data, seeds and budget",
        description="The paper's 2x2 ablation: baseline, skip, grad, skip+grad with the same data, seeds, "
        "budget and held-out notes. Writes ablation.md (table), results.json, a figure grid with zooms "
        "and audio. Resumable: finished runs are reused.",
    )
    ablation.add_argument("--out", required=True, help="output directory (one run directory per variant and seed)")
    ablation.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: %(default)s)")
    ablation.add_argument("--variants", type=_variant, nargs="+", default=list(VARIANTS), help="(default: all four)")
    _add_training_options(ablation, DEFAULT_EPOCHS)
    ablation.set_defaults(func=_ablation)


def _train(args) -> int:
    import sys

    from keras_timbre.training.callbacks import NonFiniteLossError
    from keras_timbre.training.trainer import train

    try:
        train(
            args.out,
            variant=args.variant,
            seed=args.seed,
            distribute=args.distribute,
            cache=args.cache,
            figure_every=args.figure_every,
            **_training_kwargs(args),
        )
    except NonFiniteLossError as error:
        print(
            f"keras-timbre train: {error}\nThe last finished epoch is kept in {args.out}; "
            "lower --learning-rate or --beta and rerun to resume.",
            file=sys.stderr,
        )
        return 3
    return 0


def _evaluate(args) -> int:
    from keras_timbre.evaluation.evaluator import METRIC_KEYS, evaluate

    result = evaluate(args.run, data=args.data, out=args.out)
    print(json.dumps({key: result[key] for key in METRIC_KEYS}, indent=2))
    return 0


def _reconstruct(args) -> int:
    from keras_timbre.evaluation.evaluator import reconstruct_file

    wav, png = reconstruct_file(args.run, args.audio, args.out, n_iter=args.griffin_lim_iters)
    print(f"Wrote {wav} and {png}")
    return 0


def _interpolate(args) -> int:
    from keras_timbre.evaluation.evaluator import interpolate

    written = interpolate(args.run, args.a, args.b, args.out, steps=args.steps, n_iter=args.griffin_lim_iters)
    print(f"Wrote {len(written)} files to {args.out} (strip.png, step_*.wav)")
    return 0


def _ablation(args) -> int:
    from keras_timbre.evaluation.ablation import run_ablation

    report = run_ablation(args.out, seeds=args.seeds, variants=args.variants, **_training_kwargs(args))
    print(report)
    return 0
