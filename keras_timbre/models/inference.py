"""A trained model applied to dB log-mel arrays: reconstructions, codes and synthesis (numpy out)."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from keras_timbre.audio.stats import FeatureStats


def is_conditioned_model(model) -> bool:
    """Whether `model` takes pitch and velocity (a `HierarchicalTimbreVAE`)."""
    return hasattr(model, "synthesize")


def model_input(model, x: np.ndarray, pitches=None, velocities=None):
    """`x` (normalised), or for a conditioned model the dict with the notes' pitches and velocities."""
    if not is_conditioned_model(model):
        return x
    if pitches is None or velocities is None:
        raise ValueError(f"{type(model).__name__} needs each note's pitch and velocity (pass the notes' records)")
    return {"log_mel": x, "pitch": np.asarray(pitches, "float32"), "velocity": np.asarray(velocities, "float32")}


def labels_of(records: Sequence | None) -> tuple:
    """`(pitches, velocities)` arrays of NoteRecords, or `(None, None)`."""
    if records is None:
        return None, None
    return np.array([r.pitch for r in records], "float32"), np.array([r.velocity for r in records], "float32")


def reconstruct_db(
    model, log_mel_db: np.ndarray, stats: FeatureStats, batch_size: int = 32, skips: bool = True, records=None
):
    """Deterministic reconstructions in dB, optionally with the decoder's skips zeroed.

    For a conditioned model `records` give the notes' pitches and velocities,
    and `skips=False` decodes from the code alone (every group at its prior mean).
    """
    x = stats.to_model_input(log_mel_db)
    pitches, velocities = labels_of(records)
    outputs = []
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        inputs = model_input(model, x[part], *(None if v is None else v[part] for v in (pitches, velocities)))
        out = model(inputs, training=False)["reconstruction"] if skips else model.reconstruct(inputs, use_skips=False)
        outputs.append(keras.ops.convert_to_numpy(out)[..., 0])
    return stats.denormalize(np.concatenate(outputs)) if outputs else np.zeros_like(log_mel_db)


def latent_means(model, log_mel_db, stats, batch_size: int = 32, records=None):
    """`(z_mean, z_log_var)` of the posterior, as numpy arrays (a conditioned model needs the notes' `records`)."""
    x = stats.to_model_input(log_mel_db)
    pitches, velocities = labels_of(records)
    means, log_vars = [], []
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        labels = (None, None) if pitches is None else (pitches[part], velocities[part])
        z_mean, z_log_var = model.encode(model_input(model, x[part], *labels))
        means.append(keras.ops.convert_to_numpy(z_mean))
        log_vars.append(keras.ops.convert_to_numpy(z_log_var))
    return np.concatenate(means), np.concatenate(log_vars)


def synthesize_db(model, codes, pitches, velocities, stats: FeatureStats, temperature: float = 0.0, batch_size=32):
    """Log-mel (dB) of timbre `codes` (notes, latent_dim) at `pitches` and `velocities` (notes,)."""
    codes = np.asarray(codes, "float32")
    pitches = np.broadcast_to(np.asarray(pitches, "float32"), (len(codes),))
    velocities = np.broadcast_to(np.asarray(velocities, "float32"), (len(codes),))
    outputs = []
    for start in range(0, len(codes), batch_size):
        part = slice(start, start + batch_size)
        out = model.synthesize(codes[part], pitches[part], velocities[part], temperature=temperature)
        outputs.append(keras.ops.convert_to_numpy(out)[..., 0])
    return stats.denormalize(np.concatenate(outputs))
