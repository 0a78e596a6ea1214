"""Hyperparameter search over TimbreVAE with KerasTuner.

`TimbreHyperModel` is a `keras_tuner.HyperModel` whose space covers β, the
mel-gradient loss weight, the reconstruction loss, the latent size, the
learning rate, skips and skip dropout. Any of them can be narrowed
(`ranges`) or pinned (`fixed`). `run_search` is the whole job: it reads and
splits the notes, runs a random, Bayesian or Hyperband search that resumes
where it stopped, and writes a table of trials, a figure of the objective
against β and the gradient weight, and the best model as a run directory.

The objective is `val_lsd`: the log-spectral distance, in dB, between the
held-out notes and their reconstructions. It does not depend on β, on the
loss weights or on the reconstruction loss, so trials with different values
of them are compared on the same scale; the training loss, which includes
β·KL, is not (see docs/tuning.md).

Distributed search is KerasTuner's own: one chief process holds the oracle
and serves it over gRPC, and workers ask it for trials. Each process runs the
same call with `KERASTUNER_TUNER_ID` ("chief", "tuner0", ...),
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set, and the same `out`
directory on shared storage.

Example:
>>> result = run_search("searches/demo", tuner="random", max_trials=8, epochs=5,
...                     fixed={"reconstruction": "l1"})  # doctest: +SKIP
>>> result.best_run  # doctest: +SKIP
PosixPath('searches/demo/best')
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

import keras
import keras_tuner as kt

from keras_timbre import atomic
from keras_timbre.data.split import DEFAULT_VAL_FRACTION
from keras_timbre.training import run as runs
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig

DEFAULT_OBJECTIVE = "val_lsd"
TUNERS = ("random", "bayesian", "hyperband")
PROJECT_NAME = "tuner"
SEARCH_FILE = "search.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
FIGURE_FILE = "objective_vs_beta_and_grad_weight.png"
BEST_RUN = "best"


@dataclasses.dataclass(frozen=True)
class Range:
    """A float hyperparameter sampled between `low` and `high` (inclusive).

    Example:
    >>> Range(1e-4, 1.0, log=True)
    Range(low=0.0001, high=1.0, log=True)
    """

    low: float
    high: float
    log: bool = False


# Every name is a TimbreVAE constructor argument except `learning_rate` (Adam).
# A Range is searched, a tuple is a choice, a plain value is fixed unless a
# `ranges` entry opens it up.
DEFAULT_SPACE: dict[str, Any] = {
    "beta": Range(1e-4, 1.0, log=True),
    "grad_weight": Range(0.0, 2.0),
    "reconstruction": ("mse", "l1"),
    "latent_dim": (16, 32, 64, 128),
    "learning_rate": Range(1e-4, 3e-3, log=True),
    "use_skips": (False, True),
    "skip_dropout": Range(0.0, 0.75),
    "time_grad_weight": 0.0,
    "free_bits": 0.0,
}
# Only sampled when its parent takes one of these values.
CONDITIONS = {"skip_dropout": ("use_skips", (True,))}
# Objectives that change with these hyperparameters cannot rank trials that differ in them.
OBJECTIVE_DEPENDS_ON = {
    "loss": ("beta", "grad_weight", "time_grad_weight", "reconstruction", "free_bits"),
    "reconstruction_loss": ("reconstruction",),
    "kl_loss": ("latent_dim", "free_bits"),
}


def resolve_space(ranges: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default space with `ranges` narrowing (or opening) entries and `fixed` pinning them.

    Args:
        ranges: name -> `(low, high)` (or a `Range`) for a float, or a list
            of values for a choice (`reconstruction`, `latent_dim`,
            `use_skips`). A float range keeps the default's log sampling.
        fixed: name -> one value.

    Raises:
        ValueError: naming an unknown hyperparameter, a minimum above its
            maximum, a value of the wrong type, or a name both fixed and ranged.

    Example:
    >>> space = resolve_space(ranges={"beta": (1e-3, 0.1)}, fixed={"reconstruction": "l1"})
    >>> space["beta"], space["reconstruction"]
    (Range(low=0.001, high=0.1, log=True), 'l1')
    """
    ranges, fixed = dict(ranges or {}), dict(fixed or {})
    for what, names in (("ranges", ranges), ("fixed", fixed)):
        unknown = sorted(set(names) - set(DEFAULT_SPACE))
        if unknown:
            raise ValueError(
                f"Unknown hyperparameter(s) in {what}: {', '.join(unknown)}; " f"known: {', '.join(DEFAULT_SPACE)}"
            )
    both = sorted(set(ranges) & set(fixed))
    if both:
        raise ValueError(f"Hyperparameter(s) both fixed and given a range: {', '.join(both)}")
    space = dict(DEFAULT_SPACE)
    for name, value in ranges.items():
        space[name] = _range_spec(name, value)
    for name, value in fixed.items():
        space[name] = _coerce(name, value)
    # Let KerasTuner's own checks run now (min above max, log of 0), before any trial.
    _declare(kt.HyperParameters(), space)
    return space


def _kind(name: str) -> type:
    default = DEFAULT_SPACE[name]
    if isinstance(default, Range):
        return float
    if isinstance(default, tuple):
        return type(default[0])
    return type(default)


def _coerce(name: str, value: Any) -> Any:
    """One value of hyperparameter `name`, checked against its type and allowed values."""
    kind = _kind(name)
    default = DEFAULT_SPACE[name]
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError(f"Hyperparameter {name} must be true or false, got {value!r}")
    if kind is str:
        allowed = default if isinstance(default, tuple) else None
        if allowed is not None and value not in allowed:
            raise ValueError(f"Hyperparameter {name} must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Hyperparameter {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"Hyperparameter {name} must be a finite number >= 0, got {value!r}")
    if kind is int:
        if number != int(number) or number < 1:
            raise ValueError(f"Hyperparameter {name} must be a positive integer, got {value!r}")
        return int(number)
    return number


def _range_spec(name: str, value: Any) -> Any:
    default = DEFAULT_SPACE[name]
    if isinstance(value, Range):
        low, high, log = value.low, value.high, value.log
    elif isinstance(default, tuple):
        values = [value] if isinstance(value, (str, int, float)) else list(value)
        if not values:
            raise ValueError(f"Hyperparameter {name}: the list of values is empty")
        choices = tuple(dict.fromkeys(_coerce(name, v) for v in values))
        return choices[0] if len(choices) == 1 else choices
    else:
        if isinstance(value, (str, bytes)) or len(value) != 2:
            raise ValueError(f"Hyperparameter {name}: a range is (low, high), got {value!r}")
        low, high = value
        log = default.log if isinstance(default, Range) else False
    low, high = _coerce(name, low), _coerce(name, high)
    if low > high:
        raise ValueError(f"Hyperparameter {name}: minimum {low} is above maximum {high}")
    if log and low <= 0:
        raise ValueError(f"Hyperparameter {name} is sampled on a log scale; its minimum must be > 0, got {low}")
    return low if low == high else Range(low, high, log)


def _declare_one(hp: kt.HyperParameters, name: str, spec: Any):
    if isinstance(spec, Range):
        return hp.Float(name, spec.low, spec.high, sampling="log" if spec.log else "linear")
    if isinstance(spec, tuple):
        if set(spec) == {False, True}:
            return hp.Boolean(name, default=True)
        return hp.Choice(name, list(spec))
    return hp.Fixed(name, spec)


def _declare(hp: kt.HyperParameters, space: Mapping[str, Any]) -> dict[str, Any]:
    """Registers `space` in `hp` and returns this trial's values (None for inactive ones)."""
    values = {}
    for name, spec in space.items():
        if name in CONDITIONS:
            continue
        values[name] = _declare_one(hp, name, spec)
    for name, (parent, parent_values) in CONDITIONS.items():
        with hp.conditional_scope(parent, list(parent_values)):
            values[name] = _declare_one(hp, name, space[name])
    return values


def variant_of(hyperparameters: Mapping[str, Any]) -> str:
    """The paper's variant a set of hyperparameters belongs to (skips on/off, gradient loss on/off).

    Example:
    >>> variant_of({"use_skips": True, "grad_weight": 0.0})
    'skip'
    """
    skips = bool(hyperparameters.get("use_skips"))
    grad = float(hyperparameters.get("grad_weight") or 0.0) > 0
    return {(False, False): "baseline", (True, False): "skip", (False, True): "grad", (True, True): "skip+grad"}[
        (skips, grad)
    ]


class TimbreHyperModel(kt.HyperModel):
    """A KerasTuner HyperModel of `TimbreVAE`, reporting `val_lsd` (dB) every epoch.

    `build(hp)` returns a compiled, built model (TimbreVAE builds its weights
    in its constructor), so `tuner.get_best_models()` can load checkpoints
    into it. `fit` adds the `val_lsd` metric and stops a trial whose loss
    turns NaN, which KerasTuner then records as failed.

    Args:
        frontend: The feature config; fixes the model's input shape.
        stats: Feature statistics of the training split (to compute LSD in dB).
        ranges: See `resolve_space`.
        fixed: See `resolve_space`.
        filters: Encoder channels; TimbreVAE's default if None.
        seed: Seed of the sampling noise and skip dropout.

    Example:
    >>> hypermodel = TimbreHyperModel(FrontendConfig(n_mels=32, duration=1.0),
    ...                               stats, fixed={"beta": 0.01})  # doctest: +SKIP
    >>> tuner = kt.RandomSearch(hypermodel, objective=objective(), max_trials=4)  # doctest: +SKIP
    >>> tuner.search(x_train, x_train, validation_data=(x_val, x_val), epochs=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        frontend: FrontendConfig,
        stats: FeatureStats,
        ranges: Mapping[str, Any] | None = None,
        fixed: Mapping[str, Any] | None = None,
        filters: Sequence[int] | None = None,
        seed: int = 0,
        name: str = "timbre_vae",
    ):
        super().__init__(name=name)
        if stats.n_mels != frontend.n_mels:
            raise ValueError(f"stats have {stats.n_mels} mel bins, the frontend has {frontend.n_mels}")
        self.frontend = frontend
        self.stats = stats
        self.space = resolve_space(ranges, fixed)
        self.filters = None if filters is None else tuple(int(f) for f in filters)
        self.seed = int(seed)

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        _declare(hp, self.space)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        from keras_timbre.models.timbre_vae import TimbreVAE, default_optimizer

        values = _declare(hp, self.space)
        learning_rate = values.pop("learning_rate")
        if values["skip_dropout"] is None:  # inactive without skips
            values["skip_dropout"] = 0.0
        if self.filters is not None:
            values["filters"] = self.filters
        # The same seed for every trial: a trial's result depends on its hyperparameters
        # only, not on the trials before it, and a resumed search matches an unbroken one.
        keras.utils.set_random_seed(self.seed)
        model = TimbreVAE(input_shape=(*self.frontend.feature_shape, 1), seed=self.seed, name=self.name, **values)
        model.compile(optimizer=default_optimizer(learning_rate))
        # Checkpoints hold the optimizer's slots too: create them so they load.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, validation_data=None, callbacks=None, **kwargs):
        if validation_data is None:
            raise kt.errors.FatalValueError(f"TimbreHyperModel needs validation_data to report {DEFAULT_OBJECTIVE}")
        held_out = validation_data[0] if isinstance(validation_data, (tuple, list)) else validation_data
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            LogSpectralDistance(held_out, self.stats, self.frontend.floor_db),
            *(callbacks or []),
        ]
        history = model.fit(*args, validation_data=validation_data, callbacks=callbacks, **kwargs)
        bad = [epoch for epoch, value in enumerate(history.history.get("loss", [])) if not np.isfinite(value)]
        if bad:
            # FailedTrialError: KerasTuner records the trial as failed, without retries, and goes on.
            epoch = bad[0] + 1 + kwargs.get("initial_epoch", 0)
            raise kt.errors.FailedTrialError(
                f"Trial diverged: the training loss became NaN or infinite in epoch {epoch} "
                f"(hyperparameters {hp.values})"
            )
        return history


class LogSpectralDistance(keras.callbacks.Callback):
    """Adds `val_lsd` to the epoch logs: LSD in dB between held-out notes and their reconstructions.

    The reconstruction is deterministic (the posterior mean, with skips), so
    the value depends only on the weights, not on β or the loss weights.

    Args:
        held_out: Normalised features `(notes, n_mels, n_frames, 1)`, or a
            `tf.data.Dataset` of them (or of `(features, ...)` tuples).
        stats: The statistics the features were normalised with.
        floor_db: Values below this are clipped to it before comparing
            (silence is not scored).
        name: Key added to the logs.
        batch_size: Notes per model call (for arrays).
    """

    def __init__(
        self,
        held_out,
        stats: FeatureStats,
        floor_db: float | None = None,
        name: str = DEFAULT_OBJECTIVE,
        batch_size: int = 32,
    ):
        super().__init__()
        self.held_out = held_out
        self.stats = stats
        self.floor_db = floor_db
        self.name = name
        self.batch_size = batch_size

    def _batches(self) -> Iterable[np.ndarray]:
        if hasattr(self.held_out, "as_numpy_iterator"):
            for batch in self.held_out.as_numpy_iterator():
                yield batch[0] if isinstance(batch, (tuple, list)) else batch
        else:
            x = np.asarray(self.held_out, np.float32)
            for start in range(0, len(x), self.batch_size):
                yield x[start : start + self.batch_size]

    def on_epoch_end(self, epoch, logs=None):
        from keras_timbre.analysis.metrics import lsd_db

        total, count = 0.0, 0
        for x in self._batches():
            reconstruction = keras.ops.convert_to_numpy(self.model(x, training=False)["reconstruction"])
            target_db = self.stats.denormalize(x[..., 0])
            reconstruction_db = self.stats.denormalize(reconstruction[..., 0])
            total += lsd_db(target_db, reconstruction_db, floor_db=self.floor_db) * len(x)
            count += len(x)
        if logs is not None and count:
            logs[self.name] = total / count


def objective(name: str = DEFAULT_OBJECTIVE) -> kt.Objective:
    """The search objective, always minimised (errors and losses)."""
    return kt.Objective(name, direction="min")


def check_objective(name: str, hypermodel: TimbreHyperModel) -> None:
    """Raises a ValueError, before any trial, if no trial would report `name` or it cannot rank trials.

    Trials report the model's metrics (`loss`, `reconstruction_loss`, ... and
    their `val_` forms) and `val_lsd`. An objective that changes with a
    searched hyperparameter (the total loss changes with β) is refused.
    """
    model = hypermodel.build(kt.HyperParameters())
    metric_names = [m.name for m in model.metrics]
    del model
    keras.backend.clear_session()
    reported = [DEFAULT_OBJECTIVE] + [prefix + n for n in metric_names for prefix in ("val_", "")]
    if name not in reported:
        raise ValueError(f"No trial reports the objective {name!r}; trials report: {', '.join(reported)}")
    base = name[len("val_") :] if name.startswith("val_") else name
    searched = [n for n in OBJECTIVE_DEPENDS_ON.get(base, ()) if isinstance(hypermodel.space[n], (Range, tuple))]
    if searched:
        raise ValueError(
            f"The objective {name!r} changes with {', '.join(searched)}, which the search varies, so it "
            f"cannot compare trials; use {DEFAULT_OBJECTIVE!r} or fix {', '.join(searched)}"
        )


class _TimbreTuner:
    """Mixed into the KerasTuner tuners: in each trial folder a history.csv and the
    worker's id, and TensorBoard logs in `tensorboard_dir/<trial>/execution0`."""

    tensorboard_dir: str | None = None

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        atomic.write_text(trial_dir / "worker.txt", f"{self.tuner_id}\n")
        self.trials_run = [*getattr(self, "trials_run", []), trial.trial_id]
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(keras.callbacks.CSVLogger(str(trial_dir / runs.HISTORY_FILE), append=True))
        if self.tensorboard_dir:
            # On TensorFlow KerasTuner moves it to <trial>/execution0 and adds the HParams
            # dashboard; on the other backends it leaves it alone, so point it there here.
            log_dir = Path(self.tensorboard_dir)
            if keras.backend.backend() != "tensorflow":
                log_dir = log_dir / trial.trial_id / "execution0"
            callbacks.append(keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0))
        return super().run_trial(trial, *args, callbacks=callbacks, **kwargs)


class RandomSearch(_TimbreTuner, kt.RandomSearch):
    pass


class BayesianOptimization(_TimbreTuner, kt.BayesianOptimization):
    pass


class Hyperband(_TimbreTuner, kt.Hyperband):
    pass


def make_tuner(
    hypermodel: TimbreHyperModel,
    directory: str | os.PathLike,
    tuner: str = "random",
    objective_name: str = DEFAULT_OBJECTIVE,
    max_trials: int = 10,
    epochs: int = 10,
    seed: int = 0,
    max_consecutive_failed_trials: int = 5,
    project_name: str = PROJECT_NAME,
    tensorboard_dir: str | os.PathLike | None = None,
) -> kt.Tuner:
    """A KerasTuner tuner in `directory/project_name`, reloaded if it exists (`overwrite=False`).

    `max_trials` also caps Hyperband, whose number of trials otherwise
    follows from `epochs` (its `max_epochs`) and its reduction factor 3.
    With `tensorboard_dir`, each trial logs there (`tensorboard --logdir DIR`).
    """
    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}; choose one of {', '.join(TUNERS)}")
    common = dict(
        hypermodel=hypermodel,
        objective=objective(objective_name),
        seed=seed + 1,  # KerasTuner draws a random seed for seed=0
        directory=str(directory),
        project_name=project_name,
        overwrite=False,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
    )
    if tuner == "random":
        search = RandomSearch(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        # KerasTuner's default, 3 random points per dimension, would spend a short search on random trials.
        search = BayesianOptimization(max_trials=max_trials, num_initial_points=max(2, max_trials // 3), **common)
    else:
        search = Hyperband(max_epochs=epochs, factor=3, **common)
        search.oracle.max_trials = max_trials
    search.tensorboard_dir = None if tensorboard_dir is None else str(tensorboard_dir)
    return search


@dataclasses.dataclass
class SearchResult:
    """What `run_search` leaves behind.

    Attributes:
        out: The search directory.
        role: "single", "chief" or "worker" (distributed search).
        trials_run: Trial ids this process trained.
        rows: One dict per trial (see `trials_table`); empty on a worker.
        best_run: The best model's run directory, or None (worker, or no trial completed).
        best: The best trial's row, or None.
    """

    out: Path
    role: str
    trials_run: list[str]
    rows: list[dict[str, Any]]
    best_run: Path | None
    best: dict[str, Any] | None


def search_role() -> str:
    """ "single", or "chief" / "worker" when KerasTuner's distributed variables are set.

    KerasTuner's rule: with `KERASTUNER_ORACLE_IP` set, a process whose
    `KERASTUNER_TUNER_ID` contains "chief" serves the oracle; the others are workers.
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if not os.environ.get(v)]
    if missing:
        raise ValueError(f"KERASTUNER_ORACLE_IP is set, so distributed search needs {' and '.join(missing)} too")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def run_search(
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    batch_size: int = 16,
    objective_name: str = DEFAULT_OBJECTIVE,
    ranges: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    frontend: FrontendConfig | None = None,
    filters: Sequence[int] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    max_per_instrument: int | None = None,
    seed: int = 0,
    max_consecutive_failed_trials: int = 5,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    overwrite: bool = False,
    verbose: int | str = "auto",
) -> SearchResult:
    """Runs (or resumes) a hyperparameter search and writes its results to `out`.

    `out` gets `search.json` (the search's settings), `tuner/` (KerasTuner's
    project: one folder per trial), `trials.csv` and `trials.md`,
    `figures/objective_vs_beta_and_grad_weight.png`, and `best/`, a run
    directory that `keras-timbre evaluate` and `export` accept. Rerunning the
    same call continues the search; raising `max_trials` extends it.

    Args:
        out: Search directory.
        data: NSynth-format data; None for the built-in synthetic set.
        tuner: "random", "bayesian" or "hyperband".
        max_trials: Number of trials (in all, counting those of earlier runs).
        epochs: Epochs per trial (Hyperband: the most any trial gets).
        batch_size: Batch size.
        objective_name: `val_lsd` (default) or a model metric such as
            `val_reconstruction_loss` (only if it does not vary with the space).
        ranges: Narrowed ranges, see `resolve_space`.
        fixed: Pinned hyperparameters, see `resolve_space`.
        frontend: Feature config; `FrontendConfig()` if None.
        filters: Encoder channels; TimbreVAE's default if None.
        val_fraction: Fraction of each instrument's pitches held out.
        max_per_instrument: Keep at most this many notes per instrument.
        seed: Seed of the split, the oracle and the models.
        max_consecutive_failed_trials: Stop after this many failed trials in a row.
        callbacks: More Keras callbacks for every trial (copied per trial).
        overwrite: Delete an existing search in `out` first.
        verbose: Keras `fit` verbosity.

    Raises:
        FileNotFoundError: `data` does not exist.
        ValueError: a bad space, objective, tuner name or count, or `out`
            holding a different search; all raised before any trial runs.
    """
    from keras_timbre.data.locate import resolve_data
    from keras_timbre.data.split import load_split

    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}; choose one of {', '.join(TUNERS)}")
    for name, value in (("max_trials", max_trials), ("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"Search directory {out} exists and is not a directory")
    space = resolve_space(ranges, fixed)  # fail on a bad space before reading any data
    role = search_role()
    data_path = resolve_data(data)
    frontend = frontend or FrontendConfig()
    settings = {
        "tuner": tuner,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "objective": objective_name,
        "space": {name: _jsonable(spec) for name, spec in space.items()},
        "frontend": frontend.to_dict(),
        "filters": None if filters is None else [int(f) for f in filters],
        "data": str(data_path),
        "val_fraction": val_fraction,
        "max_per_instrument": max_per_instrument,
        "seed": int(seed),
    }
    if overwrite and role != "worker" and out.exists():
        shutil.rmtree(out)
    _check_same_search(out, settings)

    keras.utils.set_random_seed(seed)
    train_records, train_db, val_records, val_db = load_split(
        data_path, frontend, val_fraction, seed, max_per_instrument
    )
    if len(val_records) == 0:
        raise ValueError(
            f"No held-out notes in {data_path} (val_fraction={val_fraction}): the objective needs some; "
            "raise val_fraction or use instruments with more pitches"
        )
    stats = FeatureStats.from_features(train_db)
    x_train = stats.to_model_input(train_db)
    x_val = stats.to_model_input(val_db)
    hypermodel = TimbreHyperModel(frontend, stats, ranges=ranges, fixed=fixed, filters=filters, seed=seed)
    check_objective(objective_name, hypermodel)
    if role != "worker":
        atomic.write_json(out / SEARCH_FILE, settings)

    print(
        f"Searching ({tuner}, {max_trials} trials, {epochs} epochs, objective {objective_name}) on "
        f"{len(train_records)} notes ({len(val_records)} held out) from {data_path}; results in {out}"
    )
    search = make_tuner(
        hypermodel,
        out,
        tuner,
        objective_name,
        max_trials,
        epochs,
        seed,
        max_consecutive_failed_trials,
        tensorboard_dir=out / "logs",
    )
    split = {  # the same keys as keras_timbre.training writes; `evaluate` reads them
        "method": "pitch held out per instrument",
        "val_fraction": val_fraction,
        "split_seed": seed,
        "train_notes": len(train_records),
        "val_notes": len(val_records),
    }
    try:
        search.search(
            x_train,
            x_train,
            validation_data=(x_val, x_val),
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            callbacks=list(callbacks or []),
            verbose=verbose,
        )
    except RuntimeError as error:
        # KerasTuner stops the search after max_consecutive_failed_trials failures in a row.
        if role == "worker" or "consecutive failures" not in str(error):
            raise
        write_results(search, out, hypermodel, settings, split)
        raise RuntimeError(
            f"The search stopped: {max_consecutive_failed_trials} trials in a row failed; see {out / TRIALS_MD} "
            "(lower the learning rate or beta range, or raise the limit)"
        ) from error
    trials_run = list(getattr(search, "trials_run", []))
    if role == "worker":
        return SearchResult(out, role, trials_run, [], None, None)
    rows, best_run, best = write_results(search, out, hypermodel, settings, split)
    return SearchResult(out, role, trials_run, rows, best_run, best)


def _jsonable(spec: Any) -> Any:
    if isinstance(spec, Range):
        return dataclasses.asdict(spec)
    if isinstance(spec, (tuple, list)):
        return list(spec)
    return spec


def _check_same_search(out: Path, settings: dict[str, Any]) -> None:
    path = out / SEARCH_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = json.loads(json.dumps(settings))
    diffs = []
    for key in sorted(set(old) | set(new)):
        before, now = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(now, dict):  # name the entries that differ
            diffs += [
                f"{key}.{k}: {before.get(k)!r} before, {now.get(k)!r} now"
                for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)
            ]
        elif before != now:
            diffs.append(f"{key}: {before!r} before, {now!r} now")
    if diffs:
        raise ValueError(
            f"{out} holds a different search ({'; '.join(diffs)}). Rerun with the same settings to resume "
            "it (only --max-trials may grow), or use another output directory or --overwrite"
        )


def trials_table(search: kt.Tuner, space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial: id, status, every hyperparameter, the objective, its best epoch, worker, error."""
    rows = []
    oracle = search.oracle
    names = list(space)
    for trial_id in sorted(oracle.trials, key=lambda t: int(t) if t.isdigit() else t):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        extra = sorted(k for k in values if k not in space)  # Hyperband's tuner/epochs etc.
        worker_file = Path(search.get_trial_dir(trial_id)) / "worker.txt"
        score = trial.score if trial.status == "COMPLETED" else None
        row = {"trial": trial_id, "status": trial.status}
        row.update({name: values.get(name) for name in names + extra})
        row[oracle.objective.name] = None if score is None or not np.isfinite(score) else float(score)
        # Hyperband's promoted trials count epochs from their parent's.
        row["best_epoch"] = None if score is None else int(trial.best_step) + 1 + values.get("tuner/initial_epoch", 0)
        row["worker"] = worker_file.read_text().strip() if worker_file.is_file() else None
        row["error"] = _last_line(trial.message) if trial.status != "COMPLETED" else None
        rows.append(row)
    return rows


def _last_line(message: str | None) -> str | None:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else None


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(rows: list[dict[str, Any]], out: Path, objective_name: str) -> None:
    """`trials.csv` (in trial order) and `trials.md` (best first, failed trials last)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    atomic.write_text(out / TRIALS_CSV, buffer.getvalue())

    ranked = sorted(rows, key=lambda r: (r.get(objective_name) is None, r.get(objective_name) or 0.0))
    md_columns = [c for c in columns if c != "error"]
    lines = [
        f"# Search results: {len(rows)} trials, objective {objective_name} (lower is better)",
        "",
        "| " + " | ".join(md_columns) + " |",
        "|" + "|".join("---" for _ in md_columns) + "|",
    ]
    lines += ["| " + " | ".join(_format(row.get(c)) for c in md_columns) + " |" for row in ranked]
    failed = [row for row in rows if row["status"] != "COMPLETED"]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {row['trial']}: {row['error'] or row['status']}" for row in failed]
    atomic.write_text(out / TRIALS_MD, "\n".join(lines) + "\n")


def plot_objective(rows: list[dict[str, Any]], path: Path, objective_name: str) -> Path:
    """Objective against β (log axis) and against the mel-gradient weight, one point per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [r for r in rows if r.get(objective_name) is not None]
    failed = [r for r in rows if r.get(objective_name) is None]
    best = min(done, key=lambda r: r[objective_name]) if done else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, name, label in ((axes[0], "beta", "β (KL weight)"), (axes[1], "grad_weight", "mel-gradient weight")):
        for reconstruction, color in (("mse", "tab:blue"), ("l1", "tab:orange")):
            for skips, marker in ((True, "o"), (False, "s")):
                group = [
                    r for r in done if r.get("reconstruction") == reconstruction and bool(r.get("use_skips")) == skips
                ]
                if group:
                    ax.scatter(
                        [r[name] for r in group],
                        [r[objective_name] for r in group],
                        c=color,
                        marker=marker,
                        alpha=0.8,
                        label=f"{reconstruction}, {'skips' if skips else 'no skips'}",
                    )
        if best is not None:
            ax.scatter(
                [best[name]],
                [best[objective_name]],
                s=250,
                facecolors="none",
                edgecolors="k",
                linewidths=1.5,
                label=f"best (trial {best['trial']})",
            )
        if failed:
            top = max((r[objective_name] for r in done), default=1.0)
            ax.scatter(
                [r[name] for r in failed],
                [top] * len(failed),
                marker="x",
                c="tab:red",
                label="failed (NaN), drawn at the top",
            )
        if name == "beta":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # unlabelled minor ticks
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{objective_name} (lower is better)")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{len(rows)} trials, {len(done)} completed")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def write_results(
    search: kt.Tuner,
    out: str | os.PathLike,
    hypermodel: TimbreHyperModel,
    settings: Mapping[str, Any],
    split: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], Path | None, dict[str, Any] | None]:
    """Writes the tables, the figure and the best model's run directory; returns `(rows, best_run, best_row)`."""
    out = Path(out)
    objective_name = search.oracle.objective.name
    rows = trials_table(search, hypermodel.space)
    write_tables(rows, out, objective_name)
    plot_objective(rows, out / "figures" / FIGURE_FILE, objective_name)
    done = [r for r in rows if r.get(objective_name) is not None]
    if not done:
        print(f"No trial completed ({len(rows)} failed); see {out / TRIALS_MD}")
        return rows, None, None
    best_trial = search.oracle.get_best_trials(1)[0]
    best = next(r for r in rows if r["trial"] == best_trial.trial_id)
    model = search.get_best_models(1)[0]
    best_run = _save_best_run(search, out, model, hypermodel, best, settings, split)
    print(
        f"Best trial {best['trial']}: {objective_name} = {best[objective_name]:.4g}; "
        f"run directory {best_run}; table {out / TRIALS_MD}"
    )
    return rows, best_run, best


def _save_best_run(search, out: Path, model, hypermodel, best: dict, settings, split) -> Path:
    values = {k: v for k, v in best.items() if k in hypermodel.space and v is not None}
    objective_name = search.oracle.objective.name
    config = runs.run_config(
        variant_of(values),
        {
            **values,
            "epochs": best["best_epoch"],
            "batch_size": settings["batch_size"],
            "warmup_epochs": 0,
            "max_per_instrument": settings["max_per_instrument"],
        },
        settings["data"],
        dict(split),
        settings["seed"],
    )
    config["search"] = {
        "trial": best["trial"],
        "objective": objective_name,
        "value": best[objective_name],
        "tuner": settings["tuner"],
        "search_dir": str(out),
    }
    # Build the new run beside the old one, then swap: the best variant may have changed.
    final = out / BEST_RUN
    staging = out / f".{BEST_RUN}.new"
    shutil.rmtree(staging, ignore_errors=True)
    runs.create_run(staging, hypermodel.frontend, hypermodel.stats, config)
    runs.save_model(staging, model)
    history = Path(search.get_trial_dir(best["trial"])) / runs.HISTORY_FILE
    if history.is_file():
        shutil.copyfile(history, staging / runs.HISTORY_FILE)
    old = out / f".{BEST_RUN}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
