"""Building blocks of the timbre VAE: reparameterised sampling and U-Net blocks.

Every layer uses `keras.ops` only, so it runs on TensorFlow, JAX and torch, and
is registered serializable so a `.keras` file loads under any backend.
"""

from __future__ import annotations

import itertools

import keras
from keras import ops

_PACKAGE = "keras_timbre"
NORMALIZATIONS = ("batch", "group", None)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Sampling(keras.layers.Layer):
    """Draws `z = mean + exp(log_var / 2) * eps`, the reparameterisation trick.

    With `training=False` (inference, the default outside `fit`) it returns the
    mean, so encodings and reconstructions are deterministic.

    Args:
        seed: seed of the layer's `keras.random.SeedGenerator`.
        log_var_range: `(low, high)`; the log-variance is clipped to it so that
            `exp` can neither overflow nor collapse the noise to exactly zero.
            None: no clipping, for a caller that already clipped it (as
            `TimbreVAE` does, so that its KL term sees the same values).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> sampling = Sampling(seed=0)
    >>> mean, log_var = np.zeros((2, 4), "float32"), np.zeros((2, 4), "float32")
    >>> tuple(sampling([mean, log_var], training=True).shape)
    (2, 4)
    >>> float(keras.ops.max(keras.ops.abs(sampling([mean, log_var]))))
    0.0
    """

    def __init__(
        self,
        seed: int | None = None,
        log_var_range: tuple[float, float] | None = (-10.0, 10.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.seed = seed
        self.log_var_range = None if log_var_range is None else _check_range(log_var_range)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        z_mean, z_log_var = inputs
        if not training:
            return z_mean
        if self.log_var_range is not None:
            z_log_var = ops.clip(z_log_var, self.log_var_range[0], self.log_var_range[1])
        epsilon = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        log_var_range = None if self.log_var_range is None else list(self.log_var_range)
        config.update({"seed": self.seed, "log_var_range": log_var_range})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EncoderBlock(keras.layers.Layer):
    """Strided conv → normalisation → activation: halves both spatial axes.

    With a strided convolution the feature a U-Net skip carries to the decoder
    is the block's output itself (the decoder mixes it in after up-sampling to
    the same resolution), so the block returns one tensor.

    Args:
        filters: output channels.
        kernel_size: convolution kernel size.
        strides: down-sampling factor (int or pair); 2 halves mel and time.
        normalization: "batch", "group" (4 groups, or fewer if `filters` is
            not divisible by 4) or None.
        activation: any name `keras.activations.get` accepts.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> block = EncoderBlock(8)
    >>> tuple(block(np.zeros((2, 32, 64, 1), "float32")).shape)
    (2, 16, 32, 8)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int | tuple[int, int] = 2,
        normalization: str | None = "batch",
        activation: str = "leaky_relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _set_block_options(self, filters, kernel_size, normalization, activation)
        self.strides = _pair(strides)

    def build(self, input_shape):
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=self.normalization is None,
            name="conv",
            dtype=self.dtype_policy,
        )
        self.conv.build(input_shape)
        self.norm = _normalization(self.normalization, self.filters, self.dtype_policy)
        if self.norm is not None:
            self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.conv(inputs)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self._activation_fn(x)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, _ceil_div(height, self.strides[0]), _ceil_div(width, self.strides[1]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": list(self.strides),
                "normalization": self.normalization,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DecoderBlock(keras.layers.Layer):
    """Transposed-conv up-sampling → optional U-Net skip mix (`SkipMix`) → norm → act.

    Call it as `block(x)` or `block(x, skip)`. The up-sampling is a 4x4
    stride-2 transposed convolution (kernel a multiple of the stride: no
    checkerboard), computed as a sub-pixel convolution
    (`Conv2DTranspose`), which every backend runs on its fast stride-1
    kernels; with `skip_channels > 0` the encoder feature of the same
    resolution is mixed in by a 1x1 convolution over the concatenation
    `[up-sampled, skip]` (`SkipMix`: two channel matmuls, without the
    concatenated copy). This costs about a quarter of the FLOPs of nearest
    up-sampling followed by a 3x3 convolution at the output resolution.
    Without a skip (`decode(z)` from the latent alone) the skip's share is
    zero, exactly what the model sees in training when skip dropout drops the
    skips.

    Args:
        filters: output channels.
        skip_channels: channels of the encoder feature concatenated after
            up-sampling; 0 for no skip.
        kernel_size: transposed-convolution kernel size; a multiple of
            `up_sampling` avoids checkerboard artefacts; 4 with `up_sampling`
            2 is the fast sub-pixel case.
        up_sampling: up-sampling factor (int or pair).
        normalization: "batch", "group" or None (see `EncoderBlock`).
        activation: any name `keras.activations.get` accepts.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> block = DecoderBlock(4, skip_channels=8)
    >>> x, skip = np.zeros((2, 8, 16, 16), "float32"), np.ones((2, 16, 32, 8), "float32")
    >>> tuple(block(x, skip).shape)
    (2, 16, 32, 4)
    """

    def __init__(
        self,
        filters: int,
        skip_channels: int = 0,
        kernel_size: int = 4,
        up_sampling: int | tuple[int, int] = 2,
        normalization: str | None = "batch",
        activation: str = "leaky_relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _set_block_options(self, filters, kernel_size, normalization, activation)
        self.skip_channels = int(skip_channels)
        self.up_sampling = _pair(up_sampling)

    def build(self, inputs_shape, skip_shape=None):
        use_bias = self.normalization is None
        self.upsample = Conv2DTranspose(
            self.filters,
            self.kernel_size,
            strides=self.up_sampling,
            padding="same",
            use_bias=use_bias,
            name="upsample",
            dtype=self.dtype_policy,
        )
        self.upsample.build(inputs_shape)
        output_shape = self.compute_output_shape(inputs_shape)
        if self.skip_channels:
            # Named skip_conv: the weight path files saved by 0.1 (a Conv2D here) use.
            self.skip_conv = SkipMix(
                self.filters, self.skip_channels, use_bias=use_bias, name="skip_conv", dtype=self.dtype_policy
            )
            self.skip_conv.build(output_shape)
        self.norm = _normalization(self.normalization, self.filters, self.dtype_policy)
        if self.norm is not None:
            self.norm.build(output_shape)

    def call(self, inputs, skip=None, training=None):
        x = self.upsample(inputs)
        if self.skip_channels:
            if skip is not None and skip.shape[-1] != self.skip_channels:
                raise ValueError(
                    f"{self.name}: skip has {skip.shape[-1]} channels, expected skip_channels={self.skip_channels}"
                )
            x = self.skip_conv(x, skip)
        elif skip is not None:
            raise ValueError(f"{self.name} was built with skip_channels=0 but got a skip tensor")
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self._activation_fn(x)

    def compute_output_shape(self, inputs_shape, skip_shape=None):
        batch, height, width, _ = inputs_shape
        return (
            batch,
            None if height is None else height * self.up_sampling[0],
            None if width is None else width * self.up_sampling[1],
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "skip_channels": self.skip_channels,
                "kernel_size": self.kernel_size,
                "up_sampling": list(self.up_sampling),
                "normalization": self.normalization,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SkipMix(keras.layers.Layer):
    """A 1x1 convolution over the concatenation `[inputs, skip]`, without concatenating.

    Over channels the convolution is `inputs @ K_in + skip @ K_skip`; two
    matmuls spare the concatenated copy and its gradient's slices: forward +
    backward of the largest decoder block's mix takes 7 ms instead of 12 on
    the 2-core CPU (TF). Call it as `mix(x, skip)` or `mix(x)`: a missing skip
    adds nothing, exactly as concatenated zeros would.

    Its kernel has a `Conv2D`'s shape `(1, 1, in + skip_channels, filters)` and
    its variables a `Conv2D`'s order (kernel, then bias), so weights saved when
    `DecoderBlock` held a `Conv2D` here load unchanged.

    Args:
        filters: output channels.
        skip_channels: channels of the skip tensor.
        use_bias: whether to add a bias.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> mix = SkipMix(4, skip_channels=2)
    >>> tuple(mix(np.zeros((1, 8, 8, 3), "float32"), np.ones((1, 8, 8, 2), "float32")).shape)
    (1, 8, 8, 4)
    """

    def __init__(self, filters: int, skip_channels: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.skip_channels = int(skip_channels)
        self.use_bias = bool(use_bias)

    def build(self, inputs_shape, skip_shape=None):
        self.input_channels = int(inputs_shape[-1])
        kernel_shape = (1, 1, self.input_channels + self.skip_channels, self.filters)
        self.kernel = self.add_weight(shape=kernel_shape, initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias") if self.use_bias else None

    def call(self, inputs, skip=None):
        return pointwise_conv(self.kernel, self.bias, [inputs, skip], [self.input_channels, self.skip_channels])

    def compute_output_shape(self, inputs_shape, skip_shape=None):
        return tuple(inputs_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "skip_channels": self.skip_channels, "use_bias": self.use_bias})
        return config


def pointwise_conv(kernel, bias, inputs: list, channels: list[int]):
    """A 1x1 convolution (`kernel` (1, 1, sum(channels), filters)) of `inputs` concatenated along channels.

    It runs as one matmul over channels per input: on TensorFlow's CPU that
    spares the concatenated copy and its gradient's slices, and a 1x1
    `Conv2D` and its gradient take 2-3x the time of the same matmuls. An
    input of None adds nothing, exactly as concatenated zeros would; `bias`
    may be None.

    Example:
    >>> import numpy as np
    >>> kernel = np.ones((1, 1, 3, 2), "float32")
    >>> y = pointwise_conv(kernel, None, [np.ones((1, 2, 2, 1), "float32"), np.ones((1, 2, 2, 2), "float32")], [1, 2])
    >>> keras.ops.convert_to_numpy(y)[0, 0, 0].tolist()
    [3.0, 3.0]
    """
    first = inputs[0]
    filters = kernel.shape[-1]
    kernel = ops.cast(ops.reshape(kernel, (-1, filters)), first.dtype)
    kernels = ops.split(kernel, list(itertools.accumulate(channels))[:-1], axis=0) if len(channels) > 1 else [kernel]
    spatial = [first.shape[i] if first.shape[i] is not None else ops.shape(first)[i] for i in (1, 2)]
    y = None
    for x, part, width in zip(inputs, kernels, channels):
        if x is not None:
            product = ops.matmul(ops.reshape(ops.cast(x, first.dtype), (-1, width)), part)
            y = product if y is None else y + product
    if bias is not None:
        y = y + ops.cast(bias, first.dtype)
    return ops.reshape(y, (-1, spatial[0], spatial[1], filters))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` that computes the 4x4 stride-2 "same" case as a sub-pixel convolution.

    The variables, their initialisation, the config and the outputs are
    Keras' `Conv2DTranspose`'s (tests/test_layers.py checks the outputs on
    every backend), so weights saved with either load into the other; other
    kernel sizes, strides or padding fall back to Keras' implementation.
    Each output pixel pair `(2m + 1, 2m + 2)` along an axis depends on the
    inputs `(m, m + 1)` only, so the 4x4 kernel is rearranged into a 2x2 one
    with 4x the output channels, applied as a stride-1 convolution to the
    input padded by one, followed by depth-to-space and a one-pixel crop.
    XLA:CPU runs that on its fast stride-1 kernels, 5.7x faster than its own
    transposed convolution; TensorFlow (oneDNN) and torch run their own
    transposed convolution as fast or faster, so only the backends in
    `sub_pixel_backends` take the sub-pixel form.

    Example:
    >>> import numpy as np
    >>> layer = Conv2DTranspose(4, 4, strides=2, padding="same")
    >>> tuple(layer(np.zeros((2, 8, 16, 3), "float32")).shape)
    (2, 16, 32, 4)
    """

    # Kernel tap along an axis for (window tap t, output phase q): TAPS[t][q].
    TAPS = ((2, 3), (0, 1))
    # Backends that run the sub-pixel form; the others keep their own transposed convolution. Measured
    # fwd + bwd over the model's four up-samplings (benchmarks/results/blocks.md, 2-core CPU): JAX 92 ms
    # sub-pixel vs 526 native; torch 101 vs 99; TensorFlow (oneDNN) 64 vs 57.
    sub_pixel_backends = ("jax",)

    def call(self, inputs):
        sub_pixel = (self.kernel_size, self.strides, self.padding) == ((4, 4), (2, 2), "same")
        if not sub_pixel or self.dilation_rate != (1, 1) or self.data_format != "channels_last":
            return super().call(inputs)
        if keras.backend.backend() not in self.sub_pixel_backends:
            return super().call(inputs)
        x = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
        x = depth_to_space(ops.conv(x, ops.cast(self.sub_pixel_kernel(), x.dtype), padding="valid"), 2)
        size = [ops.shape(x)[0], 2 * inputs.shape[1], 2 * inputs.shape[2], self.filters]
        # ops.slice, not x[...]: TF's gradient of a strided slice is several times slower.
        x = ops.slice(x, [0, 1, 1, 0], size)
        if self.use_bias:
            x = x + ops.cast(self.bias, x.dtype)
        return x if self.activation is None else self.activation(x)

    def sub_pixel_kernel(self):
        """The `(2, 2, in, 4 * filters)` stride-1 kernel; its channel `(2 * qy + qx) * filters + f`."""
        taps = ops.convert_to_tensor(self.TAPS, "int32")
        kernel = ops.take(ops.take(self.kernel, taps, axis=0), taps, axis=2)  # (ty, qy, tx, qx, f, in)
        kernel = ops.transpose(kernel, (0, 2, 5, 1, 3, 4))  # (ty, tx, in, qy, qx, f)
        return ops.reshape(kernel, (2, 2, self.kernel.shape[-1], 4 * self.filters))


def depth_to_space(x, block_size: int):
    """`(batch, h, w, b * b * c) -> (batch, h * b, w * b, c)`: channel `(b * i + j) * c + k` to pixel `(i, j)`.

    Example:
    >>> import numpy as np
    >>> x = np.arange(4, dtype="float32").reshape(1, 1, 1, 4)
    >>> keras.ops.convert_to_numpy(depth_to_space(x, 2))[0, :, :, 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    b = block_size
    _, height, width, channels = x.shape
    x = ops.reshape(x, (-1, height, width, b, b, channels // (b * b)))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height * b, width * b, channels // (b * b)))


def _set_block_options(layer, filters: int, kernel_size: int, normalization: str | None, activation: str) -> None:
    """The options every conv block shares, checked and stored on `layer`."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    layer.filters = int(filters)
    layer.kernel_size = int(kernel_size)
    layer.normalization = normalization
    layer.activation = activation
    layer._activation_fn = keras.activations.get(activation)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * 2


def _normalization(kind: str | None, channels: int, dtype) -> keras.layers.Layer | None:
    # `dtype`: the block's policy, so a mixed-precision block normalises in its compute dtype.
    if kind == "batch":
        return keras.layers.BatchNormalization(name="norm", dtype=dtype)
    if kind == "group":
        groups = next(g for g in (4, 2, 1) if channels % g == 0)
        return keras.layers.GroupNormalization(groups=groups, name="norm", dtype=dtype)
    return None


def _check_range(log_var_range) -> tuple[float, float]:
    low, high = (float(v) for v in log_var_range)
    if not low < high:
        raise ValueError(f"log_var_range must be (low, high) with low < high, got {log_var_range}")
    return low, high


def _ceil_div(size: int | None, stride: int) -> int | None:
    # "same" padding rounds up.
    return None if size is None else -(-size // stride)
