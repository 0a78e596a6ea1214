"""`keras-timbre train`: a thin argparse wrapper over `keras_timbre.training.trainer.train`.

Errors (missing data, unknown variant, a resume with other settings) reach the
dispatcher as FileNotFoundError/ValueError and exit with status 2 and one clear
line; so does a run directory locked by another `train` (naming its PID).
"""

from __future__ import annotations

from keras_timbre.cli.arguments import (
    add_training_options,
    add_vocoder_option,
    positive_int,
    seed,
    training_kwargs,
    variant,
)
from keras_timbre.models.variants import ALL_VARIANTS


def register(subparsers) -> None:
    from keras_timbre.training.trainer import DEFAULT_EPOCHS

    train = subparsers.add_parser(
        "train",
        help="train a TimbreVAE variant into a run directory (resumable)",
        description="Train one TimbreVAE variant. Rerun the same command after an interruption to continue "
        "from the last finished epoch, exactly as an unbroken run would; ask for more --epochs to train a "
        "finished run on. Resuming with other data, split, frontend or hyperparameters is refused (exit 2); "
        "--restart trains the run again from scratch. One train at a time per --out (a second exits 2).",
    )
    train.add_argument("--out", default="runs/main", help="run directory (default: %(default)s)")
    train.add_argument(
        "--variant", type=variant, default="skip+grad", help=f"one of {', '.join(ALL_VARIANTS)} (default: %(default)s)"
    )
    train.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the split (unless --split-seed), weights, data order and sampling (default: %(default)s)",
    )
    train.add_argument(
        "--split-seed",
        type=seed,
        help="seed of the choice of held-out pitches, to share validation notes between seeds (default: --seed)",
    )
    train.add_argument(
        "--restart",
        action="store_true",
        help="train from scratch instead of resuming: once the new run's data and settings are checked, remove "
        "what the earlier run wrote in --out (only in a keras-timbre run directory, only its own files)",
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
    add_training_options(train, DEFAULT_EPOCHS)
    add_vocoder_option(train)  # TensorBoard's audio
    train.set_defaults(func=_train)


def _train(args) -> int:
    import sys

    from keras_timbre.training.callbacks import NonFiniteLossError
    from keras_timbre.training.lock import RunLockedError
    from keras_timbre.training.trainer import train

    try:
        train(
            args.out,
            variant=args.variant,
            seed=args.seed,
            split_seed=args.split_seed,
            restart=args.restart,
            distribute=args.distribute,
            cache=args.cache,
            figure_every=args.figure_every,
            vocoder=args.vocoder,
            **training_kwargs(args),
        )
    except RunLockedError as error:
        print(f"keras-timbre train: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(
            f"keras-timbre train: {error}\nThe last finished epoch is kept in {args.out}; "
            "lower --learning-rate or --beta and rerun to resume.",
            file=sys.stderr,
        )
        return 3
    return 0
