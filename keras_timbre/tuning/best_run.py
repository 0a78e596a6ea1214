"""The best trial as a run directory, `OUT/best`, that `keras-timbre evaluate` and `export` accept.

It is built in a temporary folder and renamed into place
(`keras_timbre.atomic.atomic_directory`), so a reader sees the old best run or
the new one, never a mix: the best trial, and with it the variant, may change
when a search is extended.

Example:
>>> save_best_run(search, "searches/demo", model, hypermodel, best_row, settings, split)  # doctest: +SKIP
PosixPath('searches/demo/best')
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import keras
import keras_tuner as kt

from keras_timbre import atomic
from keras_timbre.data.readers import notes_fingerprint, read_notes
from keras_timbre.training import run as runs
from keras_timbre.tuning.hypermodel import HYPERPARAMETERS, TimbreHyperModel, variant_of

BEST_RUN = "best"


def best_run_config(
    best: Mapping[str, Any], objective_name: str, settings: Mapping[str, Any], split: Mapping[str, Any], search_dir: str
) -> dict[str, Any]:
    """The run's config.json: the best trial's hyperparameters, its split, and where it came from."""
    values = {k: v for k, v in best.items() if k in HYPERPARAMETERS and v is not None}
    config = runs.run_config(
        variant_of(values),
        {
            **values,
            "epochs": best["best_epoch"],
            "batch_size": settings["batch_size"],
            "warmup_epochs": 0,
            "max_per_instrument": settings["max_per_instrument"],
        },
        str(Path(settings["data"]).resolve()),
        dict(split),
        settings["seed"],
        # Lets `evaluate` find the notes from any directory, and notice if they changed.
        notes_fingerprint(read_notes(settings["data"])),
    )
    config["search"] = {
        "trial": best["trial"],
        "objective": objective_name,
        "value": best[objective_name],
        "tuner": settings["tuner"],
        "search_dir": search_dir,
    }
    return config


def save_best_run(
    search: kt.Tuner,
    out: str | os.PathLike,
    model: keras.Model,
    hypermodel: TimbreHyperModel,
    best: Mapping[str, Any],
    settings: Mapping[str, Any],
    split: Mapping[str, Any],
) -> Path:
    """Writes `out/best` (model, frontend, stats, config, the trial's history.csv), replacing an older one."""
    config = best_run_config(best, search.oracle.objective.name, settings, split, str(out))
    final = Path(out) / BEST_RUN
    with atomic.atomic_directory(final, replace=True) as staging:
        runs.create_run(staging, hypermodel.frontend, hypermodel.stats, config)
        runs.save_model(staging, model)
        history = Path(search.get_trial_dir(best["trial"])) / runs.HISTORY_FILE
        if history.is_file():
            shutil.copyfile(history, staging / runs.HISTORY_FILE)
    return final
