"""Training callbacks for TimbreVAE: β warm-up, a NaN guard and reconstruction figures.

All work on every backend: the schedule is applied in `on_epoch_begin`, when
Keras' JAX trainer re-reads variable values, so `model.beta.assign` takes
effect there too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.models.inference import reconstruct_db

SCHEDULES = ("linear", "cyclical")


def beta_schedule(
    epoch: int,
    target: float,
    warmup_epochs: int,
    schedule: str = "linear",
    cycle_epochs: int | None = None,
    ramp_fraction: float = 0.5,
) -> float:
    """β for a 0-based `epoch`.

    "linear": rises from 0 to `target` over `warmup_epochs` epochs (epoch 0
    trains with β = 0), then stays there.
    "cyclical" (Fu et al., 2019): repeats cycles of `cycle_epochs` epochs (default
    `warmup_epochs`); in each, β rises linearly over the first `ramp_fraction`
    and holds `target` for the rest.

    Example:
    >>> [round(beta_schedule(e, 1.0, 4), 2) for e in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> [round(beta_schedule(e, 1.0, 4, "cyclical"), 2) for e in range(8)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_epochs <= 0:
        return float(target)
    if schedule == "linear":
        return float(target) * min(1.0, epoch / warmup_epochs)
    cycle = cycle_epochs or warmup_epochs
    ramp = max(1, round(cycle * ramp_fraction))
    return float(target) * min(1.0, (epoch % cycle) / ramp)


class BetaWarmup(keras.callbacks.Callback):
    """Schedules `model.beta` per epoch, linearly or cyclically (see `beta_schedule`).

    The schedule depends only on the epoch index, so a run resumed by
    `keras.callbacks.BackupAndRestore` continues where it stopped. The current
    β is written to the epoch logs as `beta` (so CSVLogger records it).

    Args:
        warmup_epochs: epochs to reach the target (cycle length for
            "cyclical" unless `cycle_epochs` is given). 0 disables the schedule.
        target: final β; defaults to the β the model was built with.
        schedule: "linear" or "cyclical".
        cycle_epochs: cycle length of the cyclical schedule.
        ramp_fraction: fraction of each cycle spent rising.

    Example:
    >>> import numpy as np
    >>> from keras_timbre.models.timbre_vae import TimbreVAE
    >>> model = TimbreVAE(input_shape=(32, 64, 1), latent_dim=4, filters=(4, 8), beta=0.5)
    >>> model.compile()
    >>> x = np.zeros((4, 32, 64, 1), "float32")
    >>> h = model.fit(x, epochs=3, verbose=0, callbacks=[BetaWarmup(warmup_epochs=2)])
    >>> h.history["beta"]
    [0.0, 0.25, 0.5]
    """

    def __init__(
        self,
        warmup_epochs: int = 5,
        target: float | None = None,
        schedule: str = "linear",
        cycle_epochs: int | None = None,
        ramp_fraction: float = 0.5,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if not 0.0 < ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction}")
        self.warmup_epochs = warmup_epochs
        self.target = target
        self.schedule = schedule
        self.cycle_epochs = cycle_epochs
        self.ramp_fraction = ramp_fraction
        self._beta = None

    def _target(self) -> float:
        if self.target is not None:
            return float(self.target)
        config = self.model.get_config()
        if "beta" not in config:
            raise ValueError("BetaWarmup needs a model with a `beta` variable and config entry (a TimbreVAE)")
        return float(config["beta"])

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self.model, "beta"):
            raise ValueError("BetaWarmup needs a model with a `beta` keras.Variable (a TimbreVAE)")
        self._beta = beta_schedule(
            epoch, self._target(), self.warmup_epochs, self.schedule, self.cycle_epochs, self.ramp_fraction
        )
        self.model.beta.assign(self._beta)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._beta is not None:
            logs["beta"] = self._beta


class NonFiniteLossError(RuntimeError):
    """Raised by `NaNGuard` when the training loss becomes NaN or infinite."""


class NaNGuard(keras.callbacks.Callback):
    """Stops training on a NaN/inf loss by raising `NonFiniteLossError`.

    Unlike `keras.callbacks.TerminateOnNaN`, which lets the epoch end (so
    `ModelCheckpoint` or `BackupAndRestore` would then save the broken
    weights), this raises from the failing batch: no epoch-end callback runs,
    and every checkpoint on disk is the last good one. With `filepath`, the
    guard itself saves the model (atomically) after every epoch whose logs are
    all finite.

    Args:
        filepath: optional `.keras` path for the last good model.

    Example:
    >>> guard = NaNGuard()  # pass it to model.fit(callbacks=[guard])
    """

    def __init__(self, filepath: str | os.PathLike | None = None):
        super().__init__()
        self.filepath = None if filepath is None else os.fspath(filepath)
        self.last_good_epoch = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(keras.ops.convert_to_numpy(loss))
        if not math.isfinite(loss):
            self.model.stop_training = True
            if self.filepath and self.last_good_epoch is not None:
                kept = f"the last good model (end of epoch {self.last_good_epoch + 1}) is at {self.filepath}"
            elif self.filepath:
                kept = f"no epoch finished cleanly, so nothing was saved to {self.filepath}"
            else:
                kept = "checkpoints already on disk were left untouched"
            raise NonFiniteLossError(
                f"training loss became {loss} at epoch {self._epoch + 1}, batch {batch + 1}; training stopped "
                f"and {kept}. Try a lower learning rate, a smaller beta or grad_weight, or check the input "
                f"features for NaN/inf."
            )

    def on_epoch_end(self, epoch, logs=None):
        values = [float(keras.ops.convert_to_numpy(v)) for v in (logs or {}).values() if _is_number(v)]
        if all(math.isfinite(v) for v in values):
            self.last_good_epoch = epoch
            if self.filepath:
                with atomic.atomic_path(self.filepath) as tmp:
                    self.model.save(tmp)


def _is_number(value) -> bool:
    try:
        float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return False
    return True


class ReconstructionFigures(keras.callbacks.Callback):
    """Draws `figure_db` and the model's reconstructions every `every` epochs and after the last.

    Figures go to `folder/reconstruction_epoch_NNN.png`.

    Args:
        folder: Where the figures go.
        figure_db: Notes `(notes, n_mels, n_frames)` in dB; None draws nothing.
        titles: A title per note.
        stats: Normalisation of the model input.
        frontend: The feature config (axes of the figure).
        every: Draw every this many epochs.
        epochs: The last epoch of the run (always drawn).
        records: The notes' records (their pitch and velocity feed a conditioned model).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        figure_db,
        titles: list[str],
        stats: FeatureStats,
        frontend: FrontendConfig,
        every: int,
        epochs: int,
        records=None,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.figure_db, self.titles, self.stats, self.frontend = figure_db, titles, stats, frontend
        self.every, self.epochs, self.records = every, epochs, records

    def on_epoch_end(self, epoch, logs=None):
        from keras_timbre.analysis import plots  # matplotlib only for this callback (tests/test_layout.py)

        if self.figure_db is None or ((epoch + 1) % self.every and epoch + 1 != self.epochs):
            return
        plots.plot_reconstructions(
            self.folder / f"reconstruction_epoch_{epoch + 1:03d}.png",
            self.figure_db,
            {f"epoch {epoch + 1}": reconstruct_db(self.model, self.figure_db, self.stats, records=self.records)},
            self.frontend,
            titles=self.titles,
        )
