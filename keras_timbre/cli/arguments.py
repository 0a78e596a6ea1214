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


def variant(name: str) -> str:
    """argparse type: one of the paper's variants."""
    from keras_timbre.models.variants import check_variant

    try:
        return check_variant(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_training_options(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    """The data, budget and hyperparameter options of `train` and `ablation`."""
    from keras_timbre.models.timbre_vae import PRECISIONS

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
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision: auto = mixed_bfloat16 on TensorFlow and torch where the CPU has native bf16 "
        "(AVX512-BF16, AMX; 1.3-1.6x faster training, quality within the seed spread), else float32 "
        "(default: %(default)s)",
    )
    add_frontend_arguments(parser)


def training_kwargs(args) -> dict:
    """`train()` keyword arguments from the options `add_training_options` adds."""
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
        precision=args.precision,
        frontend=frontend_from_arguments(args),
    )
