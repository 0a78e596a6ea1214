"""`keras-timbre train-vocoder`: a thin argparse wrapper over `keras_timbre.training.vocoder.train_vocoder`.

Errors (missing data, a resume with other settings, a locked run directory)
exit with status 2 and one line, as `keras-timbre train`'s do.
"""

from __future__ import annotations

from keras_timbre.cli.arguments import (
    add_frontend_arguments,
    fraction,
    frontend_from_arguments,
    positive_float,
    positive_int,
    seed,
)


def register(subparsers) -> None:
    from keras_timbre.training import vocoder as defaults

    parser = subparsers.add_parser(
        "train-vocoder",
        help="train a neural vocoder (log-mel to audio) into a run directory (resumable)",
        description="Train a Vocos-style vocoder on waveform crops of real notes (held-out pitches and one "
        "instrument per family left out). Rerun the same command after an interruption to continue from the "
        "last finished epoch exactly; ask for more --epochs to train a finished run on. Resuming with other "
        "data or settings is refused (exit 2); --restart trains again from scratch. One trainer per --out.",
    )
    parser.add_argument("--data", help="NSynth-format data directory (default: the built-in synthetic set)")
    parser.add_argument("--out", required=True, help="run directory of the vocoder")
    parser.add_argument(
        "--epochs", type=positive_int, default=defaults.DEFAULT_EPOCHS, help="total epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        default=defaults.DEFAULT_STEPS_PER_EPOCH,
        help="batches per epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.DEFAULT_BATCH_SIZE,
        help="crops per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--crop-frames",
        type=positive_int,
        default=defaults.DEFAULT_CROP_FRAMES,
        help="feature frames per training crop (default: %(default)s, 1 s at the default hop)",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=defaults.DEFAULT_LEARNING_RATE,
        help="Adam (default: %(default)s)",
    )
    parser.add_argument(
        "--lr-halving-epochs",
        type=positive_float,
        help="halve the learning rate every N epochs, smoothly (default: constant)",
    )
    parser.add_argument(
        "--channels", type=positive_int, default=defaults.DEFAULT_CHANNELS, help="backbone width (default: %(default)s)"
    )
    parser.add_argument(
        "--blocks", type=positive_int, default=defaults.DEFAULT_BLOCKS, help="ConvNeXt blocks (default: %(default)s)"
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=defaults.DEFAULT_VAL_FRACTION,
        help="share of each instrument's pitches held out (default: %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of weights, crops and split (default: %(default)s)")
    parser.add_argument("--max-notes", type=positive_int, help="train on at most this many notes")
    parser.add_argument(
        "--audio-every",
        type=positive_int,
        default=5,
        help="TensorBoard audio and re-analysed LSD of held-out notes every N epochs (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="TensorFlow intra- and inter-op threads (default: TensorFlow's choice)"
    )
    parser.add_argument("--restart", action="store_true", help="train from scratch instead of resuming")
    parser.add_argument(
        "--init-from",
        metavar="VOC",
        help="start from this vocoder's weights (a .keras file or a train-vocoder run): a fine-tuning run",
    )
    add_frontend_arguments(parser)
    parser.set_defaults(func=_train_vocoder)


def _train_vocoder(args) -> int:
    import sys

    from keras_timbre.training.lock import RunLockedError
    from keras_timbre.training.vocoder import set_threads, train_vocoder

    set_threads(args.threads)
    try:
        train_vocoder(
            args.data,
            args.out,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            crop_frames=args.crop_frames,
            learning_rate=args.learning_rate,
            lr_halving_epochs=args.lr_halving_epochs,
            channels=args.channels,
            num_blocks=args.blocks,
            frontend=frontend_from_arguments(args),
            val_fraction=args.val_fraction,
            seed=args.seed,
            max_notes=args.max_notes,
            audio_every=args.audio_every,
            restart=args.restart,
            init_from=args.init_from,
        )
    except RunLockedError as error:
        print(f"keras-timbre train-vocoder: error: {error}", file=sys.stderr)
        return 2
    return 0
