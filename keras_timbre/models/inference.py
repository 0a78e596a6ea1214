"""A trained model applied to dB log-mel arrays: reconstructions and posterior means (numpy out)."""

from __future__ import annotations

import keras
import numpy as np

from keras_timbre.audio.stats import FeatureStats


def reconstruct_db(model, log_mel_db: np.ndarray, stats: FeatureStats, batch_size: int = 32, skips: bool = True):
    """Deterministic reconstructions in dB, optionally with the decoder's skips zeroed."""
    x = stats.to_model_input(log_mel_db)
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if skips:
            out = model(batch, training=False)["reconstruction"]
        else:
            out = model.reconstruct(batch, use_skips=False)
        outputs.append(keras.ops.convert_to_numpy(out)[..., 0])
    return stats.denormalize(np.concatenate(outputs)) if outputs else np.zeros_like(log_mel_db)


def latent_means(model, log_mel_db, stats, batch_size: int = 32):
    """`(z_mean, z_log_var)` of the posterior, as numpy arrays."""
    x = stats.to_model_input(log_mel_db)
    means, log_vars = [], []
    for start in range(0, len(x), batch_size):
        z_mean, z_log_var = model.encode(x[start : start + batch_size])
        means.append(keras.ops.convert_to_numpy(z_mean))
        log_vars.append(keras.ops.convert_to_numpy(z_log_var))
    return np.concatenate(means), np.concatenate(log_vars)
