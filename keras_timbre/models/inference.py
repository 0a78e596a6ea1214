"""A trained model applied to dB log-mel arrays: reconstructions, codes and renderings (numpy out).

Every function works on every variant: what a model takes is asked of it
(`model.model_inputs`), and a conditioned model gets each note's pitch and
velocity from the notes' `records`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from keras_timbre.audio.stats import FeatureStats


def labels_of(records: Sequence | None) -> tuple:
    """`(pitches, velocities)` arrays of NoteRecords, or `(None, None)`."""
    if records is None:
        return None, None
    return np.array([r.pitch for r in records], "float32"), np.array([r.velocity for r in records], "float32")


def inputs_for(model, x: np.ndarray, records=None):
    """The model's input for normalised `x`: the array, or with `records`' labels the dict it takes."""
    return model.model_inputs(x, *labels_of(records))


def _batches(n: int, batch_size: int):
    return (slice(start, start + batch_size) for start in range(0, n, batch_size))


def reconstruct_db(
    model, log_mel_db: np.ndarray, stats: FeatureStats, batch_size: int = 32, from_code: bool = False, records=None
):
    """Deterministic reconstructions in dB (`from_code`: from the code alone, `model.reconstruct`)."""
    x = stats.to_model_input(log_mel_db)
    outputs = []
    for part in _batches(len(x), batch_size):
        inputs = inputs_for(model, x[part], None if records is None else records[part])
        outputs.append(keras.ops.convert_to_numpy(model.reconstruct(inputs, from_code=from_code))[..., 0])
    return stats.denormalize(np.concatenate(outputs)) if outputs else np.zeros_like(log_mel_db)


def latent_means(model, log_mel_db, stats, batch_size: int = 32, records=None):
    """`(z_mean, z_log_var)` of the posterior, as numpy arrays (a conditioned model needs the notes' `records`)."""
    x = stats.to_model_input(log_mel_db)
    means, log_vars = [], []
    for part in _batches(len(x), batch_size):
        z_mean, z_log_var = model.encode(inputs_for(model, x[part], None if records is None else records[part]))
        means.append(keras.ops.convert_to_numpy(z_mean))
        log_vars.append(keras.ops.convert_to_numpy(z_log_var))
    return np.concatenate(means), np.concatenate(log_vars)


def decode_db(
    model, codes, stats: FeatureStats, pitches=None, velocities=None, temperature: float = 0.0, batch_size=32
):
    """Log-mel (dB) rendered from `codes` (notes, latent_dim) alone (`model.decode`), at `pitches` and
    `velocities` (notes,) for a conditioned model."""
    codes = np.asarray(codes, "float32")
    labels = [
        None if v is None else np.broadcast_to(np.asarray(v, "float32"), (len(codes),)) for v in (pitches, velocities)
    ]
    outputs = []
    for part in _batches(len(codes), batch_size):
        part_labels = [None if v is None else v[part] for v in labels]
        out = model.decode(codes[part], *part_labels, temperature=temperature)
        outputs.append(keras.ops.convert_to_numpy(out)[..., 0])
    return stats.denormalize(np.concatenate(outputs))
