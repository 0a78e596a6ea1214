"""The named parts every model of the family is composed of.

- `CodeEncoder`: strided `EncoderBlock`s, then dense heads for the code's
  posterior mean and log-variance; it also returns each block's output (the
  features that U-Net skips or latent groups read).
- `FeatureEncoder`: strided blocks only (the hierarchical variant's second
  stack, read by its latent groups).
- `DecoderPath`: a dense layer back to the smallest map, up-sampling
  `DecoderBlock`s (with skip channels where the variant has skips) and a final
  transposed convolution; a variant adds its own work at every resolution
  through `step` (conditioning and latent groups).
- `PitchCondition`: the pitch/velocity map (`PitchConditioning`) added to the
  decoder state at each resolution through a 1x1 convolution.

Sublayers are created in `__init__` (in the order 0.1 and 0.2 created them: a
seed gives `TimbreVAE` the same initial weights as before) and built in
`build()`, by one symbolic call of the part; a model builds its parts by one symbolic call of itself.
Sublayer names are those of 0.1 and 0.2, so their saved weights find their
layers (`models/legacy_weights.py`).

Example:
>>> import numpy as np
>>> encoder = CodeEncoder(filters=(4, 8), latent_dim=3)
>>> z_mean, z_log_var, features = encoder(np.zeros((2, 16, 32, 1), "float32"))
>>> tuple(z_mean.shape), [tuple(f.shape) for f in features]
((2, 3), [(2, 8, 16, 4), (2, 4, 8, 8)])
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops

from keras_timbre.models.hierarchy import PitchConditioning
from keras_timbre.models.layers import Conv2DTranspose, DecoderBlock, EncoderBlock
from keras_timbre.models.losses import clip_log_var

_PACKAGE = "keras_timbre"


def _block_options(layer) -> dict:
    return {"normalization": layer.normalization, "activation": layer.activation, "dtype": layer.dtype_policy}


def _run_blocks(blocks, x, training):
    features = []
    for block in blocks:
        x = block(x, training=training)
        features.append(x)
    return features


def _build_by_call(layer, input_shape) -> None:
    """Builds `layer`'s sublayers by calling it once on a symbolic input of `input_shape`."""
    layer.call(keras.KerasTensor(tuple(input_shape), dtype=layer.compute_dtype))


def _downsampled(shape, filters: Sequence[int]) -> list[tuple]:
    """The output shape of each strided block (each halves both spatial axes)."""
    shapes, (batch, height, width) = [], tuple(shape[:3])
    for f in filters:
        height, width = (None if height is None else -(-height // 2)), (None if width is None else -(-width // 2))
        shapes.append((batch, height, width, int(f)))
    return shapes


class _BlockStack(keras.layers.Layer):
    """Options shared by the encoders: filters of each block, normalisation, activation."""

    def __init__(
        self, filters: Sequence[int], normalization: str | None = None, activation: str = "leaky_relu", **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.normalization = normalization
        self.activation = activation

    def get_config(self):
        config = super().get_config()
        config.update(
            {"filters": list(self.filters), "normalization": self.normalization, "activation": self.activation}
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureEncoder(_BlockStack):
    """Strided `EncoderBlock`s; returns the output of every block, shallowest first.

    Args:
        filters: channels of each block.
        normalization: "batch", "group" or None.
        activation: activation of every block.
        block_name: blocks are named `{block_name}_{i}`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> [tuple(f.shape) for f in FeatureEncoder((4, 8))(np.zeros((1, 8, 8, 1), "float32"))]
    [(1, 4, 4, 4), (1, 2, 2, 8)]
    """

    def __init__(self, filters: Sequence[int], block_name: str = "feature_block", **kwargs):
        super().__init__(filters, **kwargs)
        self.block_name = block_name

    def build(self, input_shape):
        self.blocks = [
            EncoderBlock(f, name=f"{self.block_name}_{i}", **_block_options(self)) for i, f in enumerate(self.filters)
        ]
        _build_by_call(self, input_shape)

    def call(self, x, training=None):
        return _run_blocks(self.blocks, x, training)

    def compute_output_shape(self, input_shape):
        return _downsampled(input_shape, self.filters)

    def get_config(self):
        return {**super().get_config(), "block_name": self.block_name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CodeEncoder(_BlockStack):
    """Strided `EncoderBlock`s and the code's posterior heads: `x -> (z_mean, z_log_var, features)`.

    The posterior is float32 under a mixed-precision policy (the KL needs it)
    and its log-variance is clipped to `LOG_VAR_RANGE` once, here, where the
    KL and the sampling both see it. `features` are the blocks' outputs.

    Args:
        filters: channels of each block.
        latent_dim: size of the code.
        normalization: "batch", "group" or None.
        activation: activation of every block.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, filters: Sequence[int], latent_dim: int, **kwargs):
        super().__init__(filters, **kwargs)
        self.latent_dim = int(latent_dim)
        options = _block_options(self)
        self.blocks = [EncoderBlock(f, name=f"encoder_block_{i}", **options) for i, f in enumerate(self.filters)]
        self.flatten = keras.layers.Flatten(name="flatten", dtype=self.dtype_policy)
        self.z_mean = keras.layers.Dense(self.latent_dim, name="z_mean", dtype=self.dtype_policy)
        self.z_log_var = keras.layers.Dense(self.latent_dim, name="z_log_var", dtype=self.dtype_policy)

    def build(self, input_shape):
        _build_by_call(self, input_shape)

    def call(self, x, training=None):
        features = _run_blocks(self.blocks, x, training)
        flat = self.flatten(features[-1])
        z_mean = ops.cast(self.z_mean(flat), "float32")
        z_log_var = clip_log_var(ops.cast(self.z_log_var(flat), "float32"))
        return z_mean, z_log_var, features

    def compute_output_shape(self, input_shape):
        code = (input_shape[0], self.latent_dim)
        return code, code, _downsampled(input_shape, self.filters)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DecoderPath(keras.layers.Layer):
    """`code -> spectrogram`: dense to the smallest map, up-sampling blocks, a last transposed convolution.

    Call it as `decoder(z, skips)`. With `skip_channels`, block `i` mixes in
    `skips[-(i + 1)]` (the encoder feature of its resolution) when `skips` are
    given. `decoder.run(z, step)` runs `step(i, h)` on the decoder state at
    the bottleneck (`i` = 0) and after each block (`i` = 1, 2, ...), which
    returns the new state: a variant's conditioning and latent groups go there.

    Args:
        output_shape: `(n_mels, n_frames, channels)` of the output.
        filters: the encoder's filters; the blocks mirror all but the deepest.
        skip_channels: whether the blocks take U-Net skips.
        normalization: "batch", "group" or None.
        activation: activation of every block.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> decoder = DecoderPath(output_shape=(16, 32, 1), filters=(4, 8))
    >>> tuple(decoder(np.zeros((2, 3), "float32")).shape)
    (2, 16, 32, 1)
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        filters: Sequence[int],
        skip_channels: bool = False,
        normalization: str | None = None,
        activation: str = "leaky_relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spectrogram_shape = tuple(int(d) for d in output_shape)
        self.filters = tuple(int(f) for f in filters)
        self.skip_channels = bool(skip_channels)
        self.normalization = normalization
        self.activation = activation
        factor = 2 ** len(self.filters)
        self.bottleneck_shape = (
            self.spectrogram_shape[0] // factor,
            self.spectrogram_shape[1] // factor,
            self.filters[-1],
        )
        dtype = self.dtype_policy
        self.decoder_dense = keras.layers.Dense(
            self.bottleneck_shape[0] * self.bottleneck_shape[1] * self.filters[-1],
            activation=self.activation,
            name="decoder_dense",
            dtype=dtype,
        )
        self.decoder_reshape = keras.layers.Reshape(self.bottleneck_shape, name="decoder_reshape", dtype=dtype)
        # Block i up-samples to the resolution of encoder block -(i + 2).
        self.blocks = [
            DecoderBlock(
                f, skip_channels=f if self.skip_channels else 0, name=f"decoder_block_{i}", **_block_options(self)
            )
            for i, f in enumerate(reversed(self.filters[:-1]))
        ]
        self.output_conv = Conv2DTranspose(
            self.spectrogram_shape[-1], 4, strides=2, padding="same", name="output_conv", dtype=dtype
        )

    def build(self, z_shape):
        self._forward(keras.KerasTensor(tuple(z_shape), dtype=self.compute_dtype), None, None, None)

    def call(self, z, skips=None, training=None):
        return self._forward(z, skips, None, training)

    def run(self, z, step: Callable, training=None):
        """The path with `step(i, h)` at each resolution (see the class docstring).

        A plain method, not `__call__`: in a symbolic call Keras computes a
        layer's output shape instead of running it, and `step` must run.
        """
        if not self.built:
            self.build(tuple(z.shape))
        return self._forward(z, None, step, training)

    def _forward(self, z, skips, step, training):
        h = self.decoder_reshape(self.decoder_dense(z))
        h = h if step is None else step(0, h)
        for i, block in enumerate(self.blocks):
            h = block(h, None if skips is None else skips[-(i + 1)], training=training)
            h = h if step is None else step(i + 1, h)
        return ops.cast(self.output_conv(h), "float32")

    def compute_output_shape(self, z_shape):
        return (z_shape[0],) + self.spectrogram_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_shape": list(self.spectrogram_shape),
                "filters": list(self.filters),
                "skip_channels": self.skip_channels,
                "normalization": self.normalization,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PitchCondition(keras.layers.Layer):
    """The note's pitch and velocity added to a decoder state: `(h, pitch_map) -> h + conv1x1(map folded)`.

    `pitch_map(pitch, velocity)` is `PitchConditioning`'s harmonic-comb map
    along the mel axis; at a state with fewer mel rows it is folded onto them
    (each row takes its mel bins as channels), projected by the 1x1
    convolution of that `resolution` (0 at the bottleneck) and broadcast
    over time.

    Args:
        n_mels: mel bins of the features.
        mel_range: `(fmin, fmax)` of the frontend's mel filters, Hz.
        filters: the encoder's filters; one projection per decoder resolution.
        extra_channels: channels a variant appends to the pitch map (the hierarchical variant's
            `HarmonicEnvelope`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> condition = PitchCondition(n_mels=16, mel_range=(20.0, 8000.0), filters=(4, 8))
    >>> pitch_map = condition.pitch_map(np.array([60.0]), np.array([100.0]))
    >>> tuple(condition(np.zeros((1, 4, 8, 8), "float32"), pitch_map, resolution=0).shape)
    (1, 4, 8, 8)
    """

    def __init__(
        self, n_mels: int, mel_range: Sequence[float], filters: Sequence[int], extra_channels: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        self.extra_channels = int(extra_channels)
        self.n_mels = int(n_mels)
        self.mel_range = tuple(float(f) for f in mel_range)
        self.filters = tuple(int(f) for f in filters)
        self.conditioning = PitchConditioning(
            self.n_mels, *self.mel_range, name="conditioning", dtype=self.dtype_policy
        )

    def build(self, h_shape):
        # One 1x1 projection per decoder resolution: the bottleneck's, then each block's.
        self.projections = [
            keras.layers.Conv2D(f, 1, name=f"condition_{i}", dtype=self.dtype_policy)
            for i, f in enumerate(reversed(self.filters))
        ]
        for i, projection in enumerate(self.projections):  # resolution i has n_mels / 2 ** (depth - i) rows
            rows = self.n_mels // 2 ** (len(self.filters) - i)
            projection.build(
                (None, rows, 1, (PitchConditioning.CHANNELS + self.extra_channels) * (self.n_mels // rows))
            )

    def pitch_map(self, pitch, velocity):
        return self.conditioning(pitch, velocity)

    def call(self, h, pitch_map, resolution=0):
        n_bins = h.shape[1]
        fold = self.n_mels // n_bins
        folded = ops.reshape(pitch_map, (-1, n_bins, 1, pitch_map.shape[-1] * fold))
        return h + self.projections[resolution](folded)

    def compute_output_shape(self, h_shape, pitch_map_shape=None):
        return tuple(h_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_mels": self.n_mels,
                "mel_range": list(self.mel_range),
                "filters": list(self.filters),
                "extra_channels": self.extra_channels,
            }
        )
        return config
