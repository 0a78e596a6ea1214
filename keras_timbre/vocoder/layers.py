"""The vocoder's layers, in `keras.ops` only (tensorflow, jax and torch).

- `ConvNeXtBlock`: depthwise convolution over frames, LayerNorm, a pointwise
  MLP (GELU) and a layer-scaled residual, as in ConvNeXt and Vocos.
- `VocosBackbone`: the frontend's dB log-mel frames to hidden frames: a fixed
  rescaling of the dB values, an embedding convolution, LayerNorm,
  `ConvNeXtBlock`s and a final LayerNorm.
- `ISTFTHead`: hidden frames to a waveform. It predicts, per frame and STFT
  bin, a log-magnitude *correction* to the magnitude that the mel filter
  bank's pseudo-inverse gives (so an untrained head already has the right
  spectral envelope) and a phase, then inverts the STFT by overlap-add
  (`overlap_add_istft`), with the frontend's own window, FFT size and hop.

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> frontend = FrontendConfig(n_mels=16, n_fft=256, hop_length=64, duration=0.25).to_dict()
>>> hidden = VocosBackbone(channels=8, num_blocks=1, frontend=frontend)(np.zeros((2, 16, 62), "float32"))
>>> tuple(hidden.shape)
(2, 62, 8)
>>> tuple(ISTFTHead(frontend=frontend)(hidden, np.zeros((2, 16, 62), "float32")).shape)
(2, 3968)
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_timbre.audio.frontend import FrontendConfig, mel_filters

# Highest log-magnitude the head may produce (e**7 ~ 1100: a full-scale sine at n_fft 2048 is ~500).
MAX_LOG_MAGNITUDE = 7.0
# Smallest magnitude of the pseudo-inverse prior (its log is the head's starting point).
PRIOR_FLOOR = 1e-5
# Highest dB value the vocoder reads (as `keras_timbre.audio.griffin_lim.MAX_DB`).
MAX_DB = 120.0


def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window of the frontend (scipy's `get_window("hann")`), float32.

    Example:
    >>> hann_window(4).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _overlap_add(frames, hop: int):
    """Sums frames `(batch, T, L)` placed `hop` apart: `(batch, (T + k - 1) * hop)`, k = ceil(L / hop)."""
    length = frames.shape[-1]
    k = int(math.ceil(length / hop))
    frames = ops.pad(frames, [[0, 0], [0, 0], [0, k * hop - length]])
    batch, steps = ops.shape(frames)[0], ops.shape(frames)[1]
    chunks = ops.reshape(frames, (batch, steps, k, hop))
    total = None
    for j in range(k):
        shifted = ops.pad(chunks[:, :, j, :], [[0, 0], [j, k - 1 - j], [0, 0]])
        total = shifted if total is None else total + shifted
    return ops.reshape(total, (batch, -1))


def overlap_add_istft(real, imag, n_fft: int, hop: int, window: np.ndarray):
    """Inverse of a centred STFT: `(batch, T, 1 + n_fft // 2)` real and imaginary parts to `(batch, T * hop)`.

    Frame `t` is centred on sample `t * hop`, as the frontend's (librosa's)
    centred framing; the overlap-added frames are divided by the summed
    squared window, so an STFT with `window` inverts exactly (away from the
    last frame). Works for any hop, not only divisors of `n_fft`.

    Example:
    >>> x = np.random.default_rng(0).normal(size=(1, 4000)).astype("float32")
    >>> padded = np.pad(x, [(0, 0), (128, 128)])
    >>> frames = np.stack([padded[:, t * 100 : t * 100 + 256] for t in range(40)], axis=1) * hann_window(256)
    >>> spectrum = np.fft.rfft(frames, axis=-1)
    >>> y = overlap_add_istft(spectrum.real.astype("float32"), spectrum.imag.astype("float32"), 256, 100,
    ...                       hann_window(256))
    >>> bool(np.abs(ops.convert_to_numpy(y)[0, :3800] - x[0, :3800]).max() < 1e-4)
    True
    """
    frames = ops.irfft((real, imag), fft_length=n_fft)
    window = ops.convert_to_tensor(window, dtype=frames.dtype)
    audio = _overlap_add(frames * window, hop)
    steps = ops.shape(real)[1]
    envelope = _overlap_add(ops.ones((1, steps, 1), frames.dtype) * ops.square(window), hop)
    start = n_fft // 2
    end = start + steps * hop
    envelope = ops.maximum(envelope[:, start:end], 1e-8)
    return audio[:, start:end] / envelope


def db_to_mel_power(log_mel_db, floor_db: float):
    """The frontend's dB back to mel power, as the Griffin-Lim inverses do: the floor becomes 0 power."""
    log_mel_db = ops.minimum(log_mel_db, MAX_DB)
    power = ops.power(10.0, log_mel_db / 10.0)
    return ops.where(log_mel_db <= floor_db + 1e-3, ops.zeros_like(power), power)


@keras.saving.register_keras_serializable(package="keras_timbre")
class ConvNeXtBlock(keras.layers.Layer):
    """A ConvNeXt block over frames `(batch, T, channels)`, shape-preserving.

    Args:
        channels: Width of the input and output.
        intermediate: Width of the pointwise MLP; None for 3 x channels.
        kernel_size: Frames the depthwise convolution sees.
        layer_scale: Initial value of the residual branch's per-channel scale.
        **kwargs: `keras.layers.Layer` arguments (name, dtype).

    Example:
    >>> block = ConvNeXtBlock(channels=4, intermediate=8)
    >>> tuple(block(np.ones((2, 10, 4), "float32")).shape)
    (2, 10, 4)
    """

    def __init__(
        self, channels: int, intermediate: int | None = None, kernel_size: int = 7, layer_scale: float = 0.1, **kwargs
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.intermediate = int(intermediate) if intermediate else 3 * self.channels
        self.kernel_size = int(kernel_size)
        self.layer_scale = float(layer_scale)

    def build(self, input_shape):
        dtype = self.dtype_policy
        self.depthwise = keras.layers.DepthwiseConv1D(self.kernel_size, padding="same", dtype=dtype, name="depthwise")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="norm")
        self.expand = keras.layers.Dense(self.intermediate, dtype=dtype, name="expand")
        self.project = keras.layers.Dense(self.channels, dtype=dtype, name="project")
        self.depthwise.build(input_shape)
        self.norm.build(input_shape)
        self.expand.build(input_shape)
        self.project.build(tuple(input_shape[:-1]) + (self.intermediate,))
        self.gamma = self.add_weight(
            shape=(self.channels,),
            initializer=keras.initializers.Constant(self.layer_scale),
            name="gamma",
        )

    def call(self, inputs):
        x = self.norm(self.depthwise(inputs))
        x = self.project(ops.gelu(self.expand(x)))
        return inputs + ops.cast(self.gamma, x.dtype) * x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            channels=self.channels,
            intermediate=self.intermediate,
            kernel_size=self.kernel_size,
            layer_scale=self.layer_scale,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_timbre")
class VocosBackbone(keras.layers.Layer):
    """dB log-mel `(batch, n_mels, T)` to hidden frames `(batch, T, channels)`.

    Args:
        channels: Hidden width.
        num_blocks: `ConvNeXtBlock`s.
        frontend: `FrontendConfig.to_dict()` of the features it reads.
        intermediate: MLP width of each block; None for 3 x channels.
        kernel_size: Depthwise kernel (frames) of the embedding and the blocks.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        channels: int,
        num_blocks: int,
        frontend: dict,
        intermediate: int | None = None,
        kernel_size: int = 7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.num_blocks = int(num_blocks)
        self.frontend = FrontendConfig.from_dict(dict(frontend)).to_dict()
        self.intermediate = int(intermediate) if intermediate else 3 * self.channels
        self.kernel_size = int(kernel_size)
        self._floor_db = FrontendConfig.from_dict(self.frontend).floor_db

    def build(self, input_shape):
        dtype = self.dtype_policy
        frames_shape = (input_shape[0], input_shape[2], input_shape[1])
        hidden_shape = (input_shape[0], input_shape[2], self.channels)
        self.embed = keras.layers.Conv1D(self.channels, self.kernel_size, padding="same", dtype=dtype, name="embed")
        self.embed.build(frames_shape)
        self.input_norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="input_norm")
        self.input_norm.build(hidden_shape)
        self.blocks = []
        for i in range(self.num_blocks):
            block = ConvNeXtBlock(
                self.channels,
                self.intermediate,
                self.kernel_size,
                layer_scale=1.0 / max(self.num_blocks, 1),
                dtype=dtype,
                name=f"block_{i}",
            )
            block.build(hidden_shape)
            self.blocks.append(block)
        self.output_norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="output_norm")
        self.output_norm.build(hidden_shape)

    def call(self, log_mel_db):
        # dB to about [0, 5]: the floor at 0, a loud note near 5.
        x = (ops.minimum(ops.cast(log_mel_db, self.compute_dtype), MAX_DB) - self._floor_db) / 20.0
        x = self.input_norm(self.embed(ops.transpose(x, (0, 2, 1))))
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], self.channels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            channels=self.channels,
            num_blocks=self.num_blocks,
            frontend=dict(self.frontend),
            intermediate=self.intermediate,
            kernel_size=self.kernel_size,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_timbre")
class ISTFTHead(keras.layers.Layer):
    """Hidden frames `(batch, T, C)` and their dB log-mel `(batch, n_mels, T)` to audio `(batch, T * hop)`.

    The magnitude is `exp(log(prior) + correction)`, `prior` the filter
    bank's pseudo-inverse of the mel power (clipped at 0), `correction` a
    linear map of the hidden frames initialised to zero; the phase is another
    linear map, as in Vocos. The STFT (the frontend's n_fft, hop and Hann
    window) is inverted by `overlap_add_istft`, in float32 whatever the
    dtype policy; the audio is returned in the layer's compute dtype.

    Args:
        frontend: `FrontendConfig.to_dict()`: FFT size, hop, mel filters.
        use_prior: Start from the pseudo-inverse magnitude (False: the
            correction is the whole log-magnitude).
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, frontend: dict, use_prior: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.frontend = FrontendConfig.from_dict(dict(frontend)).to_dict()
        self.use_prior = bool(use_prior)
        config = FrontendConfig.from_dict(self.frontend)
        self.n_fft, self.hop = config.n_fft, config.hop_length
        self.bins = config.n_fft // 2 + 1
        self._inverse = np.linalg.pinv(mel_filters(config)).T.astype(np.float32)  # (n_mels, bins)
        self._window = hann_window(config.n_fft)
        self._floor_db = config.floor_db

    def build(self, hidden_shape, log_mel_db_shape=None):
        dtype = self.dtype_policy
        self.magnitude = keras.layers.Dense(self.bins, kernel_initializer="zeros", dtype=dtype, name="magnitude")
        self.phase = keras.layers.Dense(self.bins, dtype=dtype, name="phase")
        self.magnitude.build(hidden_shape)
        self.phase.build(hidden_shape)

    def spectrum(self, hidden, log_mel_db):
        """`(magnitude, phase)`, each float32 `(batch, T, 1 + n_fft // 2)`: the STFT the head inverts."""
        correction = ops.cast(self.magnitude(hidden), "float32")
        phase = ops.cast(self.phase(hidden), "float32")
        if self.use_prior:
            power = db_to_mel_power(ops.cast(log_mel_db, "float32"), self._floor_db)
            linear = ops.matmul(ops.transpose(power, (0, 2, 1)), ops.convert_to_tensor(self._inverse))
            prior = ops.log(ops.sqrt(ops.maximum(linear, 0.0)) + PRIOR_FLOOR)
            correction = correction + prior
        return ops.exp(ops.minimum(correction, MAX_LOG_MAGNITUDE)), phase

    def call(self, hidden, log_mel_db):
        magnitude, phase = self.spectrum(hidden, log_mel_db)
        audio = overlap_add_istft(
            magnitude * ops.cos(phase), magnitude * ops.sin(phase), self.n_fft, self.hop, self._window
        )
        return ops.cast(audio, self.compute_dtype)

    def compute_output_shape(self, hidden_shape, log_mel_db_shape=None):
        steps = hidden_shape[1]
        return (hidden_shape[0], None if steps is None else steps * self.hop)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(frontend=dict(self.frontend), use_prior=self.use_prior)
        return config
