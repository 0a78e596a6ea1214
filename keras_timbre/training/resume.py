"""Resuming a run: what its directory holds, and the per-epoch checkpoint it resumes from.

A run directory is new (no finished epoch), unfinished or finished. After each
epoch `EpochCheckpoint` writes `checkpoints/epoch-NNNN.keras` (weights,
batch-norm statistics, optimizer state) and then `checkpoints/epoch-NNNN.json`
(the epoch and the state of every `keras.random.SeedGenerator` of the model:
sampling noise and skip dropout), which marks the pair complete; older pairs
are then removed and the model is copied to `model.keras`. `read_state`
resumes from the newest complete pair, so a resumed run continues exactly
where the interrupted one stopped. The β schedule depends on the epoch only
and the data order on `(seed, epoch)` (see `keras_timbre.training.data`).

Runs written before these checkpoints existed resume from `model.keras` and
the epochs in `history.csv`, with the sampling noise restarted from its seed.

Resuming refuses any change of data, split, frontend, seed or
hyperparameter (`check_unchanged`), naming the setting; more epochs is not a
change. `clear_run` empties a run for `train(..., restart=True)`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.training import run as runs

CHECKPOINT_DIR = "checkpoints"
# The files of a run's folders that `clear_run` removes: what the package writes there.
_RUN_OUTPUTS = {CHECKPOINT_DIR: "epoch-*", "figures": "*.png", "audio": "*.wav"}
_CHECKPOINT = re.compile(r"epoch-(\d{4,})\.json")
# config.json entries that may differ on resume: the epoch budget, what the
# model reported about itself, where features are cached, the versions, and
# note counts (they follow from the data and split settings, which are compared).
_FREE_KEYS = {
    "hyperparameters.epochs",
    "hyperparameters.model",
    "feature_cache",
    "versions",
    "split.train_notes",
    "split.val_notes",
}


@dataclasses.dataclass
class RunState:
    """What a run directory holds before training.

    Attributes:
        path: The run directory.
        done: Finished epochs.
        checkpoint: The `.keras` file to resume from; None for a new run.
        rng: SeedGenerator states saved with the checkpoint (None for older runs).
        stats: The run's feature statistics, when it has finished epochs.
        restart: Clear the run in `path` before writing the new one (`clear_run`).
    """

    path: Path
    done: int = 0
    checkpoint: Path | None = None
    rng: list | None = None
    stats: FeatureStats | None = None
    restart: bool = False

    def restore(self):
        """The model at the end of epoch `done`, optimizer and random state included."""
        model = keras.saving.load_model(self.checkpoint)
        if self.rng is not None:
            for variable, value in zip(rng_variables(model), self.rng):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        return model


def rng_variables(model) -> list:
    """The state variables of the model's SeedGenerators, in a fixed order.

    They are model variables but not weights, so `model.save` leaves them out.
    """
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def completed_epochs(history_csv: Path) -> int:
    """Epochs recorded in a CSVLogger file (0 if none)."""
    if not history_csv.is_file():
        return 0
    with open(history_csv, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def read_state(path: str | os.PathLike, config: dict[str, Any], frontend: FrontendConfig) -> RunState:
    """The state of the run directory `path`, checked against the run asked for.

    Raises:
        ValueError: the directory holds a run with other settings (see `check_unchanged`).
    """
    path = Path(path)
    check_unchanged(path, config, frontend)
    latest = _latest_checkpoint(path / CHECKPOINT_DIR)
    if latest is not None:
        saved = json.loads(latest.read_text())
        state = RunState(path, int(saved["epoch"]), latest.with_suffix(".keras"), saved.get("rng"))
    elif (path / runs.MODEL_FILE).is_file() and completed_epochs(path / runs.HISTORY_FILE):
        state = RunState(path, completed_epochs(path / runs.HISTORY_FILE), path / runs.MODEL_FILE)
    else:
        return RunState(path)
    if (path / runs.STATS_FILE).is_file():
        state.stats = FeatureStats.load(path / runs.STATS_FILE)
    trim_history(path / runs.HISTORY_FILE, state.done)
    return state


def finished_epochs(path: str | os.PathLike) -> int:
    """Epochs the run directory `path` has finished, as `read_state` counts them, read without writing."""
    path = Path(path)
    latest = _latest_checkpoint(path / CHECKPOINT_DIR)
    if latest is not None:
        return int(json.loads(latest.read_text())["epoch"])
    return completed_epochs(path / runs.HISTORY_FILE) if (path / runs.MODEL_FILE).is_file() else 0


def _latest_checkpoint(folder: Path) -> Path | None:
    """The newest `epoch-NNNN.json` whose `.keras` is there too."""
    complete = [p for p in folder.glob("epoch-*.json") if _CHECKPOINT.fullmatch(p.name)]
    complete = [p for p in complete if p.with_suffix(".keras").is_file()]
    return max(complete, key=lambda p: int(_CHECKPOINT.fullmatch(p.name).group(1)), default=None)


def check_unchanged(path: Path, config: dict[str, Any], frontend: FrontendConfig) -> None:
    """Raises a one-line ValueError if `path` holds a run with other settings than `config`.

    Example:
    >>> config_changes({"seed": 0, "hyperparameters": {"epochs": 2}}, {"seed": 1, "hyperparameters": {"epochs": 9}})
    [('seed', 0, 1)]
    """
    if (path / runs.FRONTEND_FILE).is_file():
        FrontendConfig.load(path / runs.FRONTEND_FILE).check_matches(frontend, "requested frontend")
    if not (path / runs.CONFIG_FILE).is_file():
        return
    old = json.loads((path / runs.CONFIG_FILE).read_text())
    if old.get("variant") != config.get("variant"):
        raise ValueError(
            f"{path} already holds a {old.get('variant')!r} run; cannot resume it as {config.get('variant')!r}. "
            "Use another --out, or --restart to train it again from scratch."
        )
    changes = config_changes(old, config)
    if changes:
        key, before, after = changes[0]
        raise ValueError(
            f"{path} was trained with other settings, so it cannot be resumed: {key} {before!r} -> {after!r}. "
            "Rerun with the run's settings, use another --out, or --restart to train it again from scratch."
        )


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(key, old value, new value)` for every setting that differs, nested keys dotted."""
    old_flat, new_flat = _flatten(old), _flatten(json.loads(json.dumps(new)))
    if "data_fingerprint" in old_flat and "data_fingerprint" in new_flat:
        # The same notes in another folder are the same data.
        old_flat.pop("data"), new_flat.pop("data")
    elif "data" in old_flat:
        old_flat["data"] = str(Path(old_flat["data"]).resolve())
        old_flat.pop("data_fingerprint", None), new_flat.pop("data_fingerprint", None)
    keys = sorted(set(old_flat) | set(new_flat))
    return [(k, old_flat.get(k), new_flat.get(k)) for k in keys if old_flat.get(k) != new_flat.get(k)]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in _FREE_KEYS:
            continue
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def trim_history(history_csv: Path, epochs: int) -> None:
    """Drops rows after the first `epochs` (written by an epoch whose checkpoint did not finish)."""
    if completed_epochs(history_csv) <= epochs:
        return
    with open(history_csv, newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    buffer = io.StringIO()
    buffer.writelines(lines[: epochs + 1])
    atomic.write_text(history_csv, buffer.getvalue())


def clear_run(path: str | os.PathLike) -> list[Path]:
    """Removes what `train` and `evaluate` wrote in the run directory `path`; returns what it removed.

    Only a run directory (`runs.is_run_directory`) is touched, and in it only
    the run's own files: its metadata, model, history and metrics, the
    checkpoints, TensorBoard's `logs/`, and the PNGs and WAVs of `figures/`
    and `audio/`. Anything else a user put there stays, and so do the folders
    that still hold it.

    Raises:
        ValueError: `path` is not a run directory (nothing is removed).
    """
    path = Path(path)
    if not runs.is_run_directory(path):
        raise ValueError(f"--restart: {path} is not a keras-timbre run directory (no run config.json); nothing removed")
    removed = []
    for name in (
        runs.MODEL_FILE,
        runs.FRONTEND_FILE,
        runs.STATS_FILE,
        runs.HISTORY_FILE,
        runs.METRICS_FILE,
        runs.CODE_PRIOR_FILE,
    ):
        removed += _unlink_file(path / name)
    for folder, pattern in _RUN_OUTPUTS.items():
        removed += [f for item in (path / folder).glob(pattern) for f in _unlink_file(item)]
        with contextlib.suppress(OSError):  # left in place while it holds something else
            (path / folder).rmdir()
    if (path / "logs").is_dir() and not (path / "logs").is_symlink():
        shutil.rmtree(path / "logs")  # TensorBoard's own tree: events, projector files
        removed.append(path / "logs")
    return removed + _unlink_file(path / runs.CONFIG_FILE)  # last: until then a rerun still sees a run


def _unlink_file(path: Path) -> list[Path]:
    """Removes `path` if it is a regular file or a link (never what a link points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return [path]
    return []


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the resume checkpoint, then `model.keras`, after every epoch (all atomically)."""

    def __init__(self, run_path: str | os.PathLike):
        super().__init__()
        self.folder = Path(run_path) / CHECKPOINT_DIR
        self.model_path = Path(run_path) / runs.MODEL_FILE

    def on_epoch_end(self, epoch, logs=None):
        stem = self.folder / f"epoch-{epoch + 1:04d}"
        with atomic.atomic_path(stem.with_suffix(".keras")) as tmp:
            self.model.save(tmp)
        rng = [keras.ops.convert_to_numpy(v.value).tolist() for v in rng_variables(self.model)]
        atomic.write_json(stem.with_suffix(".json"), {"epoch": epoch + 1, "rng": rng})
        for old in self.folder.glob("epoch-*"):
            if old.stem != stem.name:
                old.unlink(missing_ok=True)
        with atomic.atomic_path(self.model_path) as tmp:
            shutil.copyfile(stem.with_suffix(".keras"), tmp)
