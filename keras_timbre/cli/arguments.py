"""Argument types and options that several command groups share."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# What numpy's and Keras' seeding take (an unsigned 32-bit integer); -1 failed deep inside numpy.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """argparse type of a --seed: an integer from 0 to `MAX_SEED`; argparse names the flag in the error.

    Example:
    >>> seed("7")
    7
    >>> seed("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer from 0 to 4294967295, got -1
    """
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text}")
    return value


def temperature(text: str) -> float:
    """argparse type of --temperature: the library's rule (`synthesis.audio_files.TEMPERATURE_RULE`), at parse time.

    Example:
    >>> temperature("0.5")
    0.5
    >>> temperature("inf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number from 0 to 1 (0: each latent group at its prior mean, ...), got inf
    """
    from keras_timbre.synthesis.audio_files import MAX_TEMPERATURE, TEMPERATURE_RULE

    return _finite_number(text, lambda value: 0 <= value <= MAX_TEMPERATURE, TEMPERATURE_RULE)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a learning rate, a duration; inf and NaN only fail much later).

    Example:
    >>> positive_float("1e-3")
    0.001
    >>> positive_float("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number > 0, got nan
    """
    return _finite_number(text, lambda value: value > 0, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a loss weight).

    Example:
    >>> non_negative_float("0")
    0.0
    >>> non_negative_float("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number >= 0, got -1
    """
    return _finite_number(text, lambda value: value >= 0, "a finite number >= 0")


def fraction(text: str) -> float:
    """argparse type: a number from 0 up to, not including, 1 (`data.split`'s rule for `--val-fraction`).

    Example:
    >>> fraction("0.15")
    0.15
    >>> fraction("1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number from 0 up to 1 (not 1 itself), got 1
    """
    return _finite_number(text, lambda value: 0 <= value < 1, "a number from 0 up to 1 (not 1 itself)")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0.

    Example:
    >>> non_negative_int("0")
    0
    >>> non_negative_int("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 0, got -1
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _finite_number(text: str, allowed, rule: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and allowed(value)):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
    return value


def add_frontend_arguments(parser: argparse.ArgumentParser) -> None:
    """--n-mels and --duration: the frontend settings worth changing from the command line."""
    parser.add_argument("--n-mels", type=positive_int, help="mel bands (default: the frontend's, 128)")
    parser.add_argument("--duration", type=positive_float, help="seconds per note (default: the frontend's, 4.0)")


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
    from keras_timbre.models.training_defaults import PRECISIONS

    parser.add_argument(
        "--data", help="NSynth-format data directory (default: the built-in synthetic notes, generated on first use)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=default_epochs, help="epochs per model (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="global batch size (default: %(default)s)")
    parser.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="Adam learning rate (default: %(default)s)"
    )
    parser.add_argument("--beta", type=non_negative_float, help="KL weight after warm-up (default: the model's)")
    parser.add_argument(
        "--grad-weight",
        type=non_negative_float,
        help="mel-gradient loss weight of the grad variants (default: the model's)",
    )
    parser.add_argument("--latent-dim", type=positive_int, help="latent size (default: the model's)")
    parser.add_argument(
        "--warmup-epochs", type=non_negative_int, default=5, help="epochs of linear beta warm-up (default: %(default)s)"
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
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


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """--overwrite: the one switch that lets a command replace an existing --out (keras_timbre.outputs)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (the new output is written beside it and renamed over it when complete)",
    )


def add_vocoder_option(parser: argparse.ArgumentParser) -> None:
    """--vocoder: what renders the command's audio (keras_timbre.vocoder.render.renderer_for)."""
    from keras_timbre.vocoder.render import CHOICES_HELP, DEFAULT

    parser.add_argument("--vocoder", default=DEFAULT, metavar="PATH|griffin-lim", help=CHOICES_HELP)


def add_run_argument(parser: argparse.ArgumentParser, what: str = "run directory written by `keras-timbre train`"):
    """The RUN positional of the commands that read a run: a run directory, or the name of a shipped preset."""
    from keras_timbre.training.run import preset_names

    shipped = ", ".join(preset_names()) or "none installed"
    parser.add_argument("run", help=f"{what}, or the name of a model shipped with the package ({shipped})")
