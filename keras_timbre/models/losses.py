"""Loss terms of the timbre VAE, on normalised log-mel of shape (batch, mels, frames, 1).

Axis 1 is mel (frequency, low to high), axis 2 is time. All functions use
`keras.ops` only and return a scalar: the mean over the batch.
"""

from __future__ import annotations

import keras
from keras import ops

RECONSTRUCTIONS = ("mse", "l1")
MEL_AXIS = 1
TIME_AXIS = 2


def kl_divergence(z_mean, z_log_var, free_bits: float = 0.0):
    """KL(q(z|x) || N(0, I)): summed over latent dimensions, averaged over the batch.

    With `free_bits > 0` each latent dimension's batch-averaged KL counts as at
    least `free_bits` nats (Kingma et al., 2016), so the optimiser gains nothing
    by pushing a dimension below it and the posterior does not collapse.

    Args:
        z_mean: (batch, latent_dim) posterior means.
        z_log_var: (batch, latent_dim) posterior log-variances.
        free_bits: minimum KL per latent dimension, in nats.

    Returns:
        Scalar KL in nats per example.

    Example:
    >>> import numpy as np
    >>> float(kl_divergence(np.zeros((4, 8), "float32"), np.zeros((4, 8), "float32")))
    0.0
    """
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}")
    z_mean = ops.convert_to_tensor(z_mean)
    z_log_var = ops.convert_to_tensor(z_log_var, dtype=z_mean.dtype)
    kl_per_dim = -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
    kl_per_dim = ops.mean(kl_per_dim, axis=0)
    if free_bits:
        kl_per_dim = ops.maximum(kl_per_dim, free_bits)
    return ops.sum(kl_per_dim)


def reconstruction_loss(y_true, y_pred, kind: str = "mse"):
    """Mean squared ("mse") or absolute ("l1") error over all bins and frames.

    Example:
    >>> import numpy as np
    >>> float(reconstruction_loss(np.ones((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)), kind="l1"))
    1.0
    """
    y_pred = ops.convert_to_tensor(y_pred)
    error = ops.convert_to_tensor(y_true, dtype=y_pred.dtype) - y_pred
    if kind == "mse":
        return ops.mean(ops.square(error))
    if kind == "l1":
        return ops.mean(ops.abs(error))
    raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {kind!r}")


def _finite_difference(x, axis: int):
    shape = list(ops.shape(x))
    if isinstance(shape[axis], int) and shape[axis] < 2:
        raise ValueError(f"a gradient loss needs at least 2 entries along axis {axis}, got shape {x.shape}")
    # Two `ops.slice` calls instead of `x[:, 1:] - x[:, :-1]` (what `ops.diff`
    # does): on TensorFlow the gradient of a Python-style slice is
    # StridedSliceGrad, ~5x slower on CPU than the Pad that `tf.slice` gets,
    # which made this loss ~7 ms of a ~140 ms training step
    # (benchmarks/results/training.md).
    shape[axis] = shape[axis] - 1
    start = [0] * len(shape)
    later = list(start)
    later[axis] = 1
    return ops.slice(x, later, shape) - ops.slice(x, start, shape)


def gradient_difference_loss(y_true, y_pred, axis: int):
    """L1 distance between the finite differences of target and prediction along `axis`.

    Differencing is linear, so this is the finite difference of the error
    `y_true - y_pred`, which takes half the slicing work.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true, dtype=y_pred.dtype)
    return ops.mean(ops.abs(_finite_difference(y_true - y_pred, axis)))


def mel_gradient_loss(y_true, y_pred):
    """Gradient difference loss along mel (axis 1): penalises blurred harmonics.

    A reconstruction smoothed across frequency keeps the mean level (so MSE
    barely notices) but loses the steep bin-to-bin steps of harmonic peaks,
    which this term measures directly.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 4, 1)).astype("float32")
    >>> float(mel_gradient_loss(x, x))
    0.0
    """
    return gradient_difference_loss(y_true, y_pred, MEL_AXIS)


def time_gradient_loss(y_true, y_pred):
    """Gradient difference loss along time (axis 2): penalises smeared onsets.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 4, 1)).astype("float32")
    >>> float(time_gradient_loss(x, x))
    0.0
    """
    return gradient_difference_loss(y_true, y_pred, TIME_AXIS)


def scale_loss_for_replicas(loss):
    """Divides a model's `compute_loss` total by the replicas of a `tf.distribute` strategy.

    Under `tf.distribute`, Keras sums the replicas' gradients, so the loss each
    replica returns must be its share of the global mean: Keras' own
    `keras.losses.Loss` objects divide by the number of replicas, and a
    hand-written `compute_loss` must do the same, or the gradients (and the
    reported loss) grow with the number of replicas. On JAX and torch, and
    outside a strategy, it returns `loss` unchanged.

    Example:
    >>> float(scale_loss_for_replicas(keras.ops.convert_to_tensor(2.0)))
    2.0
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return keras.ops.multiply(loss, keras.ops.cast(1.0 / replicas, loss.dtype))
