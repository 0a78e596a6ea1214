"""`keras-timbre search`: a KerasTuner search over β, the loss weights and the model size.

A thin argparse wrapper over `keras_timbre.tuning.run_search`. Bad input (an
unknown or inverted range, a missing data directory, an objective no trial
reports, a directory holding another search) exits with status 2 and one
clear line before any trial runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from keras_timbre.cli.arguments import add_frontend_arguments, frontend_from_arguments, positive_int, seed

if TYPE_CHECKING:  # keras_tuner loads only when a search runs
    import keras_tuner as kt

_EPILOG = """\
examples:
  keras-timbre search --out searches/quick --max-trials 8 --epochs 5
  keras-timbre search --data ../shared/nsynth-mini --tuner bayesian --max-trials 30 \\
      --fix reconstruction=l1 --range beta=1e-3:0.1 --range latent_dim=32,64 --out searches/bo
  # distributed (KerasTuner's chief/worker mode; same command in every process):
  KERASTUNER_TUNER_ID=chief  KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 keras-timbre search ...
  KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 keras-timbre search ...

hyperparameters: beta, grad_weight, reconstruction, latent_dim, learning_rate,
use_skips, skip_dropout, time_grad_weight, free_bits (see docs/tuning.md)
"""


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def hyperparameters_from_arguments(fix: list[tuple[str, str]], ranges: list[tuple[str, str]]) -> "kt.HyperParameters":
    """The `kt.HyperParameters` that `--fix NAME=VALUE` (`hp.Fixed`) and `--range NAME=...` ask for.

    `--range NAME=LOW:HIGH` is an `hp.Float` on the default's scale (log for β
    and the learning rate); `--range NAME=A,B,C` an `hp.Choice`. Values take
    the type of the entry's default: true/false, an integer, a number or text.
    """
    import keras_tuner as kt

    from keras_timbre.tuning.hypermodel import default_space

    defaults = {entry.name: entry for entry in default_space().space}
    hp = kt.HyperParameters()
    given = [("--fix", name, text) for name, text in fix] + [("--range", name, text) for name, text in ranges]
    for option, name, text in given:
        if name not in defaults:
            raise ValueError(f"{option} {name}={text}: unknown hyperparameter; known: {', '.join(defaults)}")
    # The oracle draws entries in the order they are declared: declare them in the space's
    # order, so that the same options draw the same trials whatever order they are given in.
    given.sort(key=lambda option_name_text: list(defaults).index(option_name_text[1]))
    for option, name, text in given:
        if name in hp:
            raise ValueError(f"{option} {name}={text}: {name} is already pinned or ranged")
        try:
            if option == "--fix":
                hp.Fixed(name, _value(text, defaults[name]))
            else:
                _declare_range(hp, name, text, defaults[name])
        except (TypeError, ValueError) as error:  # ours, or KerasTuner's (a minimum above the maximum, ...)
            raise ValueError(f"{option} {name}={text}: {error}") from None
    return hp


def _declare_range(hp, name: str, text: str, default) -> None:
    from keras_tuner.engine.hyperparameters import Boolean, Choice, Float

    if ":" not in text:
        values = [_value(v.strip(), default) for v in text.split(",") if v.strip()]
        hp.Choice(name, list(dict.fromkeys(values)))
        return
    if isinstance(default, (Choice, Boolean)):
        raise ValueError(f"{name} is a choice; list its values, e.g. {name}=A,B")
    low, _, high = text.partition(":")
    sampling = default.sampling if isinstance(default, Float) else "linear"
    hp.Float(name, _value(low, default), _value(high, default), sampling=sampling)


def _value(text: str, default):
    """`text` as a value of the type of `default`'s values."""
    from keras_timbre.tuning.hypermodel import possible_values

    kind = type(possible_values(default)[0])
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in _TRUE
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _filters(text: str) -> tuple[int, ...]:
    try:
        filters = tuple(int(f) for f in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel counts, got {text!r}") from None
    if not filters or min(filters) < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be >= 1, got {text!r}")
    return filters


def register(subparsers) -> None:
    from keras_timbre.data.split import DEFAULT_VAL_FRACTION
    from keras_timbre.tuning.objective import DEFAULT_OBJECTIVE
    from keras_timbre.tuning.tuners import TUNERS

    parser = subparsers.add_parser(
        "search",
        help="hyperparameter search (KerasTuner) over beta, loss weights and model size",
        description=(
            "Runs, or resumes, a KerasTuner search over TimbreVAE hyperparameters. Writes\n"
            "OUT/trials.csv, OUT/trials.md, OUT/figures/objective_vs_beta_and_grad_weight.png and\n"
            "OUT/best (a run directory for `evaluate` and `export`). Rerun the same command to\n"
            "continue an interrupted search."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="search directory")
    parser.add_argument("--data", help="NSynth-format data directory (default: the built-in synthetic notes)")
    parser.add_argument("--tuner", choices=TUNERS, default="random", help="search algorithm (default: %(default)s)")
    parser.add_argument(
        "--max-trials",
        type=positive_int,
        default=10,
        help="trials in all, earlier runs included (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="epochs per trial; Hyperband: the most (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="(default: %(default)s)")
    parser.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE,
        help="metric to minimise (default: %(default)s, held-out log-spectral distance in dB)",
    )
    parser.add_argument(
        "--fix",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a hyperparameter, e.g. --fix beta=0.01 --fix use_skips=true (repeatable)",
    )
    parser.add_argument(
        "--range",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH|A,B",
        help="narrow a range, e.g. --range beta=1e-3:0.1 --range latent_dim=32,64 (repeatable)",
    )
    parser.add_argument("--filters", type=_filters, help="encoder channels, e.g. 16,32,64,128 (default: the model's)")
    add_frontend_arguments(parser)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="fraction of each instrument's pitches held out (default: %(default)s)",
    )
    parser.add_argument("--max-per-instrument", type=positive_int, help="keep at most this many notes per instrument")
    parser.add_argument(
        "--max-failures",
        type=positive_int,
        default=5,
        help="stop after this many failed trials in a row (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help="seed of the split, oracle and models (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing search in OUT first (only a keras-timbre search: a folder with search.json)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress bars")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from keras_timbre.tuning.search import run_search

    hyperparameters = hyperparameters_from_arguments(args.fix, args.range)
    try:
        result = run_search(
            args.out,
            data=args.data,
            tuner=args.tuner,
            max_trials=args.max_trials,
            epochs=args.epochs,
            batch_size=args.batch_size,
            objective_name=args.objective,
            hyperparameters=hyperparameters,
            frontend=frontend_from_arguments(args),
            filters=args.filters,
            val_fraction=args.val_fraction,
            max_per_instrument=args.max_per_instrument,
            seed=args.seed,
            max_consecutive_failed_trials=args.max_failures,
            overwrite=args.overwrite,
            verbose=0 if args.quiet else "auto",
        )
    except RuntimeError as error:  # the search stopped: too many failed trials in a row
        print(f"keras-timbre search: error: {error}", file=sys.stderr)
        return 1
    print(f"{result.role}: ran trials {', '.join(result.trials_run) or 'none'}")
    if result.role == "worker":
        return 0
    return 0 if result.best_run is not None else 1
