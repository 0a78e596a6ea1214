"""The search objective: `val_lsd`, the held-out log-spectral distance in dB, and its checks.

`val_lsd` does not depend on β, on the loss weights or on the reconstruction
loss, so trials with different values of them are compared on the same scale;
the training loss, which includes β·KL, is not (see docs/tuning.md).

Example:
>>> objective().name, objective().direction
('val_lsd', 'min')
"""

from __future__ import annotations

from typing import Iterable

import keras
import keras_tuner as kt
import numpy as np

from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.tuning.settings import varied

DEFAULT_OBJECTIVE = "val_lsd"
# Objectives that change with these hyperparameters cannot rank trials that differ in them.
OBJECTIVE_DEPENDS_ON = {
    "loss": ("beta", "grad_weight", "time_grad_weight", "reconstruction", "free_bits"),
    "reconstruction_loss": ("reconstruction",),
    "kl_loss": ("latent_dim", "free_bits"),
}


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


def check_objective(name: str, hypermodel: kt.HyperModel, space: kt.HyperParameters) -> None:
    """Raises a ValueError, before any trial, if no trial would report `name` or it cannot rank trials.

    Trials report the model's metrics (`loss`, `reconstruction_loss`, ... and
    their `val_` forms) and `val_lsd`. An objective that changes with an entry
    `space` varies (the total loss changes with β) is refused. Building the
    model once with `space`'s defaults also lets TimbreVAE refuse a bad pin.
    """
    model = hypermodel.build(space.copy())
    metric_names = [m.name for m in model.metrics]
    del model
    keras.backend.clear_session()
    reported = [DEFAULT_OBJECTIVE] + [prefix + n for n in metric_names for prefix in ("val_", "")]
    if name not in reported:
        raise ValueError(f"No trial reports the objective {name!r}; trials report: {', '.join(reported)}")
    base = name[len("val_") :] if name.startswith("val_") else name
    searched = [n for n in OBJECTIVE_DEPENDS_ON.get(base, ()) if n in varied(space)]
    if searched:
        raise ValueError(
            f"The objective {name!r} changes with {', '.join(searched)}, which the search varies, so it "
            f"cannot compare trials; use {DEFAULT_OBJECTIVE!r} or fix {', '.join(searched)}"
        )
