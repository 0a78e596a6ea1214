"""The KerasTuner tuners a search runs with, and the process's role in a distributed search.

Distributed search is KerasTuner's own: one chief process holds the oracle and
serves it over gRPC, and workers ask it for trials. Each process runs the same
call with `KERASTUNER_TUNER_ID` ("chief", "tuner0", ...),
`KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` set, and the same search
directory on shared storage.

Example:
>>> search_role()  # doctest: +SKIP
'single'
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import keras_tuner as kt

from keras_timbre import atomic
from keras_timbre.training import run as runs
from keras_timbre.tuning.objective import DEFAULT_OBJECTIVE, objective

TUNERS = ("random", "bayesian", "hyperband")
PROJECT_NAME = "tuner"
WORKER_FILE = "worker.txt"


class _TimbreTuner:
    """Mixed into the KerasTuner tuners: in each trial folder a history.csv and the
    worker's id, and TensorBoard logs in `tensorboard_dir/<trial>/execution0`."""

    tensorboard_dir: str | None = None

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        atomic.write_text(trial_dir / WORKER_FILE, f"{self.tuner_id}\n")
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


def check_tuner(tuner: str) -> None:
    """Raises a ValueError unless `tuner` names one of `TUNERS`."""
    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}; choose one of {', '.join(TUNERS)}")


def make_tuner(
    hypermodel: kt.HyperModel,
    directory: str | os.PathLike,
    tuner: str = "random",
    objective_name: str = DEFAULT_OBJECTIVE,
    max_trials: int = 10,
    epochs: int = 10,
    seed: int = 0,
    max_consecutive_failed_trials: int = 5,
    hyperparameters: kt.HyperParameters | None = None,
    project_name: str = PROJECT_NAME,
    tensorboard_dir: str | os.PathLike | None = None,
) -> kt.Tuner:
    """A KerasTuner tuner in `directory/project_name`, reloaded if it exists (`overwrite=False`).

    `hyperparameters` holds pinned (`hp.Fixed`) or narrowed entries; the
    hypermodel's other entries are searched (`tune_new_entries=True`).
    `max_trials` also caps Hyperband, whose number of trials otherwise
    follows from `epochs` (its `max_epochs`) and its reduction factor 3.
    With `tensorboard_dir`, each trial logs there (`tensorboard --logdir DIR`).
    """
    check_tuner(tuner)
    common = dict(
        hypermodel=hypermodel,
        objective=objective(objective_name),
        # A copy: the oracle adds the hypermodel's entries to the object it is given.
        hyperparameters=None if hyperparameters is None else hyperparameters.copy(),
        tune_new_entries=True,
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
