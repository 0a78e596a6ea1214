"""Hyperparameter search over TimbreVAE with KerasTuner: `run_search`, the whole job.

`run_search` reads and splits the notes, runs a random, Bayesian or
Hyperband search (`keras_timbre.tuning.tuners`) of `TimbreHyperModel`
(`keras_timbre.tuning.hypermodel`) that resumes where it stopped, and writes
the trials table (`report`), a figure of the objective against β and the
gradient weight (`keras_timbre.analysis.plots.plot_objective`) and the best
model as a run directory (`best_run`). The objective is `val_lsd`
(`keras_timbre.tuning.objective`).

Pin or narrow hyperparameters with KerasTuner's own `HyperParameters`; the
entries you leave out are searched over their defaults:

Example:
>>> import keras_tuner as kt
>>> pins = kt.HyperParameters()
>>> _ = pins.Fixed("reconstruction", "l1")
>>> _ = pins.Float("beta", 1e-3, 0.1, sampling="log")
>>> result = run_search("searches/demo", tuner="random", max_trials=8, epochs=5,
...                     hyperparameters=pins)  # doctest: +SKIP
>>> result.best_run  # doctest: +SKIP
PosixPath('searches/demo/best')
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import keras_tuner as kt
import numpy as np

from keras_timbre.analysis.plots import plot_objective
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.data.locate import resolve_data
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, load_split
from keras_timbre.tuning.best_run import BEST_RUN, save_best_run
from keras_timbre.tuning.hypermodel import HYPERPARAMETERS, TimbreHyperModel, search_space
from keras_timbre.tuning.objective import DEFAULT_OBJECTIVE, check_objective
from keras_timbre.tuning.report import TRIALS_MD, trials_table, write_tables
from keras_timbre.tuning.settings import SEARCH_FILE, check_same_search, space_config, write_settings
from keras_timbre.tuning.tuners import check_tuner, make_tuner, search_role

FIGURE_FILE = "objective_vs_beta_and_grad_weight.png"
__all__ = ["BEST_RUN", "FIGURE_FILE", "SearchResult", "TimbreHyperModel", "run_search", "write_results"]


@dataclasses.dataclass
class SearchResult:
    """What `run_search` leaves behind.

    Attributes:
        out: The search directory.
        role: "single", "chief" or "worker" (distributed search).
        trials_run: Trial ids this process trained.
        rows: One dict per trial (see `report.trials_table`); empty on a worker.
        best_run: The best model's run directory, or None (worker, or no trial completed).
        best: The best trial's row, or None.
    """

    out: Path
    role: str
    trials_run: list[str]
    rows: list[dict[str, Any]]
    best_run: Path | None
    best: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class _Features:
    """The normalised training and held-out notes, their statistics, and the split for config.json."""

    x_train: np.ndarray
    x_val: np.ndarray
    stats: FeatureStats
    split: dict[str, Any]


def run_search(
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    batch_size: int = 16,
    objective_name: str = DEFAULT_OBJECTIVE,
    hyperparameters: kt.HyperParameters | None = None,
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

    `out` gets `search.json`, `tuner/` (KerasTuner's project), `trials.csv`, `trials.md`, `figures/` and `best/`, a
    run directory. Rerunning the same call continues the search; a larger `max_trials` (trials in all) extends it.
    `hyperparameters` pins (`hp.Fixed`) or narrows entries, the rest are searched. `epochs` is per trial
    (Hyperband: the most); `seed` seeds the split, the oracle and the models; `callbacks` join every trial. The
    other arguments are `keras-timbre search`'s options (docs/tuning.md).

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: bad input (data, space, objective, tuner, counts, `out`
            holding another search), all before any trial runs. RuntimeError: too many failed trials in a row.
    """
    out = _check_arguments(out, tuner, max_trials=max_trials, epochs=epochs, batch_size=batch_size)
    space = search_space(hyperparameters)  # a bad pin fails before any data is read
    role = search_role()
    frontend = frontend or FrontendConfig()
    settings = search_settings(
        tuner=tuner,
        epochs=epochs,
        batch_size=batch_size,
        objective_name=objective_name,
        space=space,
        frontend=frontend,
        filters=filters,
        data=data,
        val_fraction=val_fraction,
        max_per_instrument=max_per_instrument,
        seed=seed,
    )
    _prepare_directory(out, settings, role, overwrite)
    features = _load_features(Path(settings["data"]), frontend, val_fraction, seed, max_per_instrument)
    hypermodel = TimbreHyperModel(frontend, features.stats, filters=filters, seed=seed)
    check_objective(objective_name, hypermodel, space)
    search = make_tuner(
        hypermodel, out, tuner, objective_name, max_trials, epochs, seed, max_consecutive_failed_trials, hyperparameters
    )
    search.tensorboard_dir = str(out / "logs")
    fit_options = dict(epochs=epochs, batch_size=batch_size, callbacks=list(callbacks or []), verbose=verbose)
    return _run_trials(search, out, features, fit_options, role, settings)


def search_settings(
    tuner: str,
    epochs: int,
    batch_size: int,
    objective_name: str,
    space: kt.HyperParameters,
    frontend: FrontendConfig,
    filters: Sequence[int] | None,
    data: str | os.PathLike | None,
    val_fraction: float,
    max_per_instrument: int | None,
    seed: int,
) -> dict[str, Any]:
    """What `search.json` holds: the `run_search` arguments a resumed search must repeat, and the data's path."""
    return {
        "tuner": tuner,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "objective": objective_name,
        "space": space_config(space),
        "frontend": frontend.to_dict(),
        "filters": None if filters is None else [int(f) for f in filters],
        "data": str(resolve_data(data)),
        "val_fraction": val_fraction,
        "max_per_instrument": max_per_instrument,
        "seed": int(seed),
    }


def _check_arguments(out: str | os.PathLike, tuner: str, **counts: int) -> Path:
    check_tuner(tuner)
    for name, value in counts.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"Search directory {out} exists and is not a directory")
    return out


def _prepare_directory(out: Path, settings: dict[str, Any], role: str, overwrite: bool) -> None:
    """Deletes an old search (`overwrite`), or refuses to resume one with other settings.

    Only a search directory (one with `search.json`) is ever deleted or resumed;
    a non-empty folder without one is refused, `overwrite` or not.
    """
    is_search = (out / SEARCH_FILE).is_file()
    if role != "worker" and out.is_dir() and not is_search and any(out.iterdir()):  # a worker follows its chief
        raise ValueError(
            f"{out} holds files but no {SEARCH_FILE}: it is not a keras-timbre search, so it is neither resumed "
            "nor replaced; choose a new or empty output directory"
        )
    if overwrite and role != "worker" and is_search:
        shutil.rmtree(out)
    check_same_search(out, settings)


def _load_features(
    data: Path, frontend: FrontendConfig, val_fraction: float, seed: int, max_per_instrument: int | None
) -> _Features:
    keras.utils.set_random_seed(seed)
    train_records, train_db, val_records, val_db = load_split(data, frontend, val_fraction, seed, max_per_instrument)
    if len(val_records) == 0:
        raise ValueError(
            f"No held-out notes in {data} (val_fraction={val_fraction}): the objective needs some; "
            "raise val_fraction or use instruments with more pitches"
        )
    stats = FeatureStats.from_features(train_db)
    split = {  # the same keys as keras_timbre.training writes; `evaluate` reads them
        "method": "pitch held out per instrument",
        "val_fraction": val_fraction,
        "split_seed": seed,
        "train_notes": len(train_records),
        "val_notes": len(val_records),
    }
    return _Features(stats.to_model_input(train_db), stats.to_model_input(val_db), stats, split)


def _run_trials(
    search: kt.Tuner,
    out: Path,
    features: _Features,
    fit_options: dict[str, Any],
    role: str,
    settings: Mapping[str, Any],
) -> SearchResult:
    """Runs the trials this process gets, then (but on a worker) writes the results."""
    if role != "worker":
        write_settings(out, settings)
    split = features.split
    print(
        f"Searching ({settings['tuner']}, {search.oracle.max_trials} trials, {settings['epochs']} epochs, objective "
        f"{settings['objective']}) on {split['train_notes']} notes ({split['val_notes']} held out) from "
        f"{settings['data']}; results in {out}"
    )
    x_train, x_val = features.x_train, features.x_val
    try:
        search.search(x_train, x_train, validation_data=(x_val, x_val), shuffle=True, **fit_options)
    except RuntimeError as error:
        # KerasTuner stops the search after max_consecutive_failed_trials failures in a row.
        if role == "worker" or "consecutive failures" not in str(error):
            raise
        write_results(search, out, search.hypermodel, settings, features.split)
        raise RuntimeError(
            f"The search stopped: {search.oracle.max_consecutive_failed_trials} trials in a row failed; see "
            f"{out / TRIALS_MD} (lower the learning rate or beta range, or raise the limit)"
        ) from error
    trials_run = list(getattr(search, "trials_run", []))
    if role == "worker":
        return SearchResult(out, role, trials_run, [], None, None)
    rows, best_run, best = write_results(search, out, search.hypermodel, settings, features.split)
    return SearchResult(out, role, trials_run, rows, best_run, best)


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
    rows = trials_table(search, HYPERPARAMETERS)
    write_tables(rows, out, objective_name)
    plot_objective(out / "figures" / FIGURE_FILE, rows, objective_name)
    if not any(row.get(objective_name) is not None for row in rows):
        print(f"No trial completed ({len(rows)} failed); see {out / TRIALS_MD}")
        return rows, None, None
    best_trial = search.oracle.get_best_trials(1)[0]
    best = next(row for row in rows if row["trial"] == best_trial.trial_id)
    model = search.get_best_models(1)[0]
    best_run = save_best_run(search, out, model, hypermodel, best, settings, split)
    print(
        f"Best trial {best['trial']}: {objective_name} = {best[objective_name]:.4g}; "
        f"run directory {best_run}; table {out / TRIALS_MD}"
    )
    return rows, best_run, best
