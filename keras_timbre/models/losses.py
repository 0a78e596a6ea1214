"""Loss terms of the timbre VAE, on normalised log-mel of shape (batch, mels, frames, 1).

Axis 1 is mel (frequency, low to high), axis 2 is time. All functions use
`keras.ops` only and return a scalar: the mean over the batch, or with
`sample_weight` (one weight per example) the weighted sum over the batch
divided by the batch size, which is how Keras' own losses reduce by default
("sum_over_batch_size"): weights of 1 give the unweighted mean, an example of
weight 2 counts twice, one of weight 0 not at all.
"""

from __future__ import annotations

import keras
from keras import ops

RECONSTRUCTIONS = ("mse", "l1")
# Every posterior and prior log-variance is clipped to this: `exp` can neither overflow nor
# collapse a variance to exactly zero.
LOG_VAR_RANGE = (-10.0, 10.0)
MEL_AXIS = 1
TIME_AXIS = 2


def clip_log_var(log_var):
    """`log_var` clipped to `LOG_VAR_RANGE`, written as two relus.

    The values and the gradient are `ops.clip`'s; on TensorFlow's CPU the
    gradient of a clip takes about 4x the time of two relus', and the latent
    groups clip maps of a million values every step.

    Example:
    >>> import numpy as np
    >>> keras.ops.convert_to_numpy(clip_log_var(np.array([-20.0, 0.5, 20.0]))).tolist()
    [-10.0, 0.5, 10.0]
    """
    low, high = LOG_VAR_RANGE
    return ops.relu(log_var - low) - ops.relu(log_var - high) + low


def example_weights(sample_weight, batch_rank: int = 1):
    """`sample_weight` as a float32 tensor of shape `(batch,) + (1,) * (batch_rank - 1)`.

    Raises a ValueError unless it holds one weight per example (shape
    `(batch,)` or `(batch, 1, ...)`): every term of the VAE's loss, the KL
    included, is a per-example quantity, so per-bin weights have no meaning.

    Example:
    >>> tuple(example_weights([[1.0], [2.0]], batch_rank=3).shape)
    (2, 1, 1)
    """
    weights = ops.convert_to_tensor(sample_weight, dtype="float32")
    if len(weights.shape) == 0 or any(d != 1 for d in weights.shape[1:]):
        raise ValueError(
            f"sample_weight must hold one weight per example, shape (batch,), got shape {tuple(weights.shape)}"
        )
    return ops.reshape(weights, (-1,) + (1,) * (batch_rank - 1))


def batch_mean(values, sample_weight=None):
    """Mean over the batch axis (0) of per-example `values`, optionally weighted per example.

    Example:
    >>> float(batch_mean([1.0, 3.0], sample_weight=[2.0, 0.0]))
    1.0
    """
    values = ops.convert_to_tensor(values)
    if sample_weight is None:
        return ops.mean(values, axis=0)
    weights = ops.cast(example_weights(sample_weight, len(values.shape)), values.dtype)
    return ops.sum(values * weights, axis=0) / ops.cast(ops.shape(values)[0], values.dtype)


def _example_mean(values, sample_weight=None):
    # Mean over every axis but the batch's, then the (weighted) batch mean.
    return batch_mean(ops.mean(values, axis=tuple(range(1, len(values.shape)))), sample_weight)


def kl_divergence(z_mean, z_log_var, free_bits: float = 0.0, sample_weight=None):
    """KL(q(z|x) || N(0, I)): summed over latent dimensions, averaged over the batch.

    With `free_bits > 0` each latent dimension's batch-averaged KL counts as at
    least `free_bits` nats (Kingma et al., 2016), so the optimiser gains nothing
    by pushing a dimension below it and the posterior does not collapse.

    Args:
        z_mean: (batch, latent_dim) posterior means.
        z_log_var: (batch, latent_dim) posterior log-variances.
        free_bits: minimum KL per latent dimension, in nats.
        sample_weight: optional `(batch,)` weights of the batch average.

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
    kl_per_dim = batch_mean(kl_per_dim, sample_weight)
    if free_bits:
        kl_per_dim = ops.maximum(kl_per_dim, free_bits)
    return ops.sum(kl_per_dim)


def reconstruction_loss(y_true, y_pred, kind: str = "mse", sample_weight=None):
    """Mean squared ("mse") or absolute ("l1") error over all bins and frames.

    Example:
    >>> import numpy as np
    >>> float(reconstruction_loss(np.ones((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)), kind="l1"))
    1.0
    """
    y_pred = ops.convert_to_tensor(y_pred)
    error = ops.convert_to_tensor(y_true, dtype=y_pred.dtype) - y_pred
    if kind == "mse":
        return _example_mean(ops.square(error), sample_weight)
    if kind == "l1":
        return _example_mean(ops.abs(error), sample_weight)
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


def gradient_difference_loss(y_true, y_pred, axis: int, sample_weight=None):
    """L1 distance between the finite differences of target and prediction along `axis`.

    Differencing is linear, so this is the finite difference of the error
    `y_true - y_pred`, which takes half the slicing work.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true, dtype=y_pred.dtype)
    return _example_mean(ops.abs(_finite_difference(y_true - y_pred, axis)), sample_weight)


def mel_gradient_loss(y_true, y_pred, sample_weight=None):
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
    return gradient_difference_loss(y_true, y_pred, MEL_AXIS, sample_weight)


def time_gradient_loss(y_true, y_pred, sample_weight=None):
    """Gradient difference loss along time (axis 2): penalises smeared onsets.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 4, 1)).astype("float32")
    >>> float(time_gradient_loss(x, x))
    0.0
    """
    return gradient_difference_loss(y_true, y_pred, TIME_AXIS, sample_weight)


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
