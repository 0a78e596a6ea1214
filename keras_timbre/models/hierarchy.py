"""Layers of the hierarchical, pitch-conditioned timbre VAE.

`PitchConditioning` turns a note's MIDI pitch and velocity into a map along
mel that says where its harmonics fall (DDSP gives its decoder f0 and loudness
for the same reason: the code then needs to carry only what remains), and
`LatentGroup` is one level of a top-down hierarchy (Ladder VAE, NVAE): a
prior from the decoder state, a posterior from the state and the encoder
feature of the same resolution, paying its own KL, in place of a U-Net skip.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_timbre.models.layers import pointwise_conv
from keras_timbre.models.losses import clip_log_var

_PACKAGE = "keras_timbre"
# NSynth's velocity scale; the conditioning sees velocity / MAX_VELOCITY.
MAX_VELOCITY = 127.0


def mel_centres(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """The mel bins' centre frequencies in Hz (librosa's, as the frontend's filters).

    Example:
    >>> [round(float(f)) for f in mel_centres(4, 0.0, 8000.0)]
    [603, 1237, 2305, 4294]
    """
    import librosa  # a second to import: only when a layer is called

    return librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax)[1:-1]


def comb_kernel(distance_hz, width_hz):
    """How much a partial `distance_hz` from a mel bin's centre counts in that bin of width `width_hz`.

    `exp(-2 (d / w) ** 2)`: the one kernel of the pitch map's comb and of `HarmonicEnvelope`.

    Example:
    >>> [round(float(k), 3) for k in keras.ops.convert_to_numpy(comb_kernel(np.array([0.0, 50.0]), 100.0))]
    [1.0, 0.607]
    """
    return ops.exp(-2.0 * ops.square(distance_hz / width_hz))


def soft_ceiling(x, ceiling, softness):
    """`ceiling - softness * softplus((ceiling - x) / softness)`: `x` well below `ceiling`, never above it.

    A smooth bound on the decoder's output (DDSP bounds its amplitudes with a
    scaled sigmoid for the same reason): what the model renders stays within
    what a real note reaches, and the gradient never vanishes.

    Example:
    >>> [round(float(v), 2) for v in keras.ops.convert_to_numpy(soft_ceiling(np.array([-5.0, 0.5, 5.0]), 1.0, 0.1))]
    [-5.0, 0.5, 1.0]
    """
    # ops.* rather than operators: a backend array on the left of a symbolic tensor would not dispatch to Keras.
    return ops.subtract(ceiling, ops.multiply(softness, ops.softplus(ops.divide(ops.subtract(ceiling, x), softness))))


def midi_to_hz(pitch):
    """MIDI pitch (tensor) to Hz, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * ops.power(2.0, (ops.cast(pitch, "float32") - 69.0) / 12.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PitchConditioning(keras.layers.Layer):
    """`(pitch, velocity)` → `(batch, n_mels, 1, 4)`: where the note's harmonics fall on the mel axis.

    For each mel bin (centre frequency `f`, width `w`, librosa's Slaney mel
    scale) the channels are: the harmonic comb, `exp(-2 (d / w) ** 2)` with `d`
    the distance in Hz to the nearest harmonic of f0 (1 where harmonics are
    closer than a bin: unresolved); the bin's height above f0 in octaves / 8;
    1 below f0; and the velocity / 127. It has no weights.

    Args:
        n_mels: mel bins of the features.
        fmin: lowest mel frequency, Hz.
        fmax: highest mel frequency, Hz.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> layer = PitchConditioning(n_mels=128, fmin=20.0, fmax=8000.0)
    >>> out = keras.ops.convert_to_numpy(layer(np.array([69.0]), np.array([100.0])))
    >>> out.shape
    (1, 128, 1, 4)
    >>> centres = layer.centre_frequencies()
    >>> comb = out[0, :, 0, 0]
    >>> bool(comb[np.argmin(abs(centres - 440))] > 0.9), bool(comb[np.argmin(abs(centres - 660))] < 0.1)
    (True, True)
    """

    CHANNELS = 4

    def __init__(self, n_mels: int = 128, fmin: float = 20.0, fmax: float = 8000.0, **kwargs):
        super().__init__(**kwargs)
        self.n_mels, self.fmin, self.fmax = int(n_mels), float(fmin), float(fmax)
        if not 0 <= self.fmin < self.fmax:
            raise ValueError(f"PitchConditioning needs 0 <= fmin < fmax, got {fmin}, {fmax}")
        self.built = True

    def centre_frequencies(self) -> np.ndarray:
        """The mel bins' centre frequencies in Hz (`mel_centres`)."""
        return mel_centres(self.n_mels, self.fmin, self.fmax)

    def call(self, pitch, velocity):
        centres = self.centre_frequencies()
        width = ops.convert_to_tensor(np.gradient(centres)[None, :], "float32")
        centres = ops.convert_to_tensor(centres[None, :], "float32")
        f0 = ops.reshape(midi_to_hz(pitch), (-1, 1))
        harmonic = centres / f0  # (batch, n_mels): bin frequency in harmonics of f0
        distance = ops.abs(harmonic - ops.maximum(ops.round(harmonic), 1.0)) * f0
        comb = ops.where(f0 < width, 1.0, comb_kernel(distance, width))
        octaves = ops.clip(ops.log2(harmonic), -2.0, 8.0) / 8.0
        below = ops.cast(harmonic < 0.75, "float32")
        loudness = ops.broadcast_to(ops.reshape(ops.cast(velocity, "float32"), (-1, 1)) / MAX_VELOCITY, ops.shape(comb))
        out = ops.stack([comb, octaves, below, loudness], axis=-1)  # (batch, n_mels, 4)
        return ops.cast(out[:, :, None, :], self.compute_dtype)

    def compute_output_shape(self, pitch_shape, velocity_shape=None):
        return (pitch_shape[0], self.n_mels, 1, self.CHANNELS)

    def get_config(self):
        config = super().get_config()
        config.update({"n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HarmonicEnvelope(keras.layers.Layer):
    """`(code, pitch)` → `(batch, n_mels, 1, 1)`: a level for each partial of f0, set by the code, placed on mel.

    A small MLP of the timbre code alone (not the pitch: the levels of the
    partials are what the code says at every pitch) gives the level of each of
    the first `harmonics` partials, bounded to ±2 (`2 tanh(x / 2)`, in the
    normalised features' units, so that a code the MLP never saw cannot ask
    for a partial far beyond the notes). Each mel bin takes the mean level of
    the partials that fall in it, weighted by the comb's kernel
    `exp(-2 (d / w) ** 2)`, and fades to 0 between resolved partials. The
    code says how loud the k-th partial is; this layer, not the decoder's
    convolutions, says where it lies at this pitch (DDSP's harmonic
    distribution, on mel). The decoder reads it as one more channel of the
    pitch map.

    Args:
        n_mels: mel bins of the features.
        fmin: lowest mel frequency, Hz.
        fmax: highest mel frequency, Hz.
        harmonics: partials whose levels the code sets.
        units: hidden units of the MLP.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> layer = HarmonicEnvelope(n_mels=32, harmonics=8)
    >>> tuple(layer(np.zeros((2, 5), "float32"), np.array([60.0, 72.0])).shape)
    (2, 32, 1, 1)
    """

    def __init__(
        self,
        n_mels: int = 128,
        fmin: float = 20.0,
        fmax: float = 8000.0,
        harmonics: int = 64,
        units: int = 128,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_mels, self.fmin, self.fmax = int(n_mels), float(fmin), float(fmax)
        self.harmonics, self.units = int(harmonics), int(units)

    def build(self, code_shape, pitch_shape=None):
        self.hidden = keras.layers.Dense(self.units, activation="leaky_relu", name="hidden", dtype=self.dtype_policy)
        self.hidden.build(tuple(code_shape))
        self.levels = keras.layers.Dense(self.harmonics, name="levels", dtype=self.dtype_policy)
        self.levels.build((None, self.units))

    def call(self, code, pitch):
        levels = 2.0 * ops.tanh(0.5 * ops.cast(self.levels(self.hidden(code)), "float32"))  # (batch, harmonics)
        centres = mel_centres(self.n_mels, self.fmin, self.fmax)
        width = ops.convert_to_tensor(np.gradient(centres)[None, :, None], "float32")
        centres = ops.convert_to_tensor(centres[None, :, None], "float32")
        partials = ops.reshape(midi_to_hz(pitch), (-1, 1, 1)) * ops.arange(1, self.harmonics + 1, dtype="float32")
        weights = comb_kernel(centres - partials, width)  # (batch, n_mels, harmonics)
        envelope = ops.sum(weights * levels[:, None, :], axis=-1) / ops.maximum(ops.sum(weights, axis=-1), 1.0)
        return ops.cast(envelope[:, :, None, None], self.compute_dtype)

    def compute_output_shape(self, code_shape, pitch_shape=None):
        return (code_shape[0], self.n_mels, 1, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_mels": self.n_mels,
                "fmin": self.fmin,
                "fmax": self.fmax,
                "harmonics": self.harmonics,
                "units": self.units,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LatentGroup(keras.layers.Layer):
    """One level of the top-down hierarchy: `h → h + merge(z_l)`, with `z_l` from the posterior or the prior.

    The prior `p(z_l | h)` is a convolution of the decoder state `h`; the
    posterior `q(z_l | h, feature)` a convolution of `h` concatenated with the
    encoder feature of the same resolution, parameterised relative to the
    prior (NVAE), so the KL starts near zero. Call it as
    `group(h, feature, prior_mask)`:

    - with `feature`, `z_l` is a posterior sample (its mean outside training),
      except in the examples where `prior_mask` (batch,) is 1, which take a
      prior draw at that example's `prior_temperature` (batch,; 0, the prior
      mean, when not given): what synthesis from the code alone decodes; the
      KL(q || p) of each example, summed over the group's dimensions, is
      returned too;
    - without `feature` (synthesis), `z_l = prior mean + temperature * prior std * noise`
      and the KL is zero.

    `return_kl_map=True` also returns the KL of each of the group's
    dimensions, `(batch, height, width, latent_channels)`, for counting its
    active units.

    Args:
        latent_channels: channels of `z_l` (it has the state's spatial size).
        kernel_size: kernel of the prior and posterior convolutions.
        seed: seed of the sampling noise.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> group = LatentGroup(2, seed=0)
    >>> h, feature = np.zeros((3, 8, 8, 4), "float32"), np.ones((3, 8, 8, 5), "float32")
    >>> out, kl = group(h, feature)
    >>> tuple(out.shape), tuple(kl.shape)
    ((3, 8, 8, 4), (3,))
    """

    def __init__(self, latent_channels: int, kernel_size: int = 3, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.latent_channels = int(latent_channels)
        self.kernel_size = int(kernel_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, h_shape, feature_shape=None):
        conv = dict(padding="same", dtype=self.dtype_policy)
        self.prior_conv = keras.layers.Conv2D(2 * self.latent_channels, self.kernel_size, name="prior", **conv)
        self.prior_conv.build(h_shape)
        self.posterior_conv = keras.layers.Conv2D(
            2 * self.latent_channels, self.kernel_size, name="posterior", kernel_initializer="zeros", **conv
        )
        feature_channels = h_shape[-1] if feature_shape is None else feature_shape[-1]
        self.posterior_conv.build(tuple(h_shape[:-1]) + (h_shape[-1] + feature_channels,))
        self.merge = keras.layers.Conv2D(h_shape[-1], 1, name="merge", dtype=self.dtype_policy)
        self.merge.build(tuple(h_shape[:-1]) + (self.latent_channels,))

    def call(
        self,
        h,
        feature=None,
        prior_mask=None,
        temperature=0.0,
        training=None,
        return_kl_map=False,
        prior_temperature=None,
    ):
        p_mean, p_log_var = _statistics(self.prior_conv, [keras.activations.leaky_relu(h)])
        if feature is None:
            z = self._prior_draw(p_mean, p_log_var, float(temperature) if temperature else None)
            kl_map = ops.zeros_like(p_mean)
        else:
            dq_mean, dq_log_var = _statistics(self.posterior_conv, [h, ops.cast(feature, h.dtype)])
            q_mean, q_log_var = p_mean + dq_mean, clip_log_var(p_log_var + dq_log_var)
            z = self._posterior_draw(q_mean, q_log_var, p_mean, p_log_var, training, prior_mask, prior_temperature)
            kl_map = gaussian_kl(q_mean, q_log_var, p_mean, p_log_var)
        kl = ops.sum(ops.reshape(kl_map, (ops.shape(kl_map)[0], -1)), axis=-1)
        h = h + pointwise_conv(self.merge.kernel, self.merge.bias, [ops.cast(z, h.dtype)], [self.latent_channels])
        return (h, kl, kl_map) if return_kl_map else (h, kl)

    def _posterior_draw(self, q_mean, q_log_var, p_mean, p_log_var, training, prior_mask, prior_temperature):
        """A posterior sample (its mean outside training), or in the `prior_mask` examples a prior draw.

        One noise map serves both: each example takes one of the two.
        """
        if not training and prior_mask is None:
            return q_mean
        mean, spread = q_mean, ops.exp(0.5 * q_log_var) if training else ops.zeros_like(q_mean)
        if prior_mask is not None:
            mask = ops.reshape(ops.cast(prior_mask, "float32"), (-1, 1, 1, 1))
            temperature = 0.0 if prior_temperature is None else ops.reshape(prior_temperature, (-1, 1, 1, 1))
            mean = mean + mask * (p_mean - mean)
            spread = spread + mask * (ops.cast(temperature, "float32") * ops.exp(0.5 * p_log_var) - spread)
        return mean + spread * keras.random.normal(ops.shape(q_mean), seed=self.seed_generator)

    def _prior_draw(self, p_mean, p_log_var, temperature):
        """`p_mean + temperature * p_std * noise`; `temperature` a float, (batch,), or None for the mean."""
        if temperature is None:
            return p_mean
        if not isinstance(temperature, float):
            temperature = ops.reshape(ops.cast(temperature, "float32"), (-1, 1, 1, 1))
        noise = keras.random.normal(ops.shape(p_mean), seed=self.seed_generator)
        return p_mean + temperature * ops.exp(0.5 * p_log_var) * noise

    def compute_output_shape(self, h_shape, feature_shape=None):
        return tuple(h_shape), (h_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update({"latent_channels": self.latent_channels, "kernel_size": self.kernel_size, "seed": self.seed})
        return config


def _statistics(conv, inputs):
    """`(mean, log_var)`, float32 (the KL needs them under mixed precision): `conv` of the `inputs` concatenated.

    A 1x1 `conv` runs as `pointwise_conv`, all its output channels at once: the
    matmuls are memory-bound, so one per half had read each input twice.
    """
    if conv.kernel_size == (1, 1):
        stats = pointwise_conv(conv.kernel, conv.bias, inputs, [x.shape[-1] for x in inputs])
    else:
        stats = conv(ops.concatenate(inputs, axis=-1))
    # ops.split, not stats[..., :c]: TF's gradient of a strided slice is several times slower on CPU.
    mean, log_var = ops.split(ops.cast(stats, "float32"), 2, axis=-1)
    return mean, clip_log_var(log_var)


def gaussian_kl(q_mean, q_log_var, p_mean, p_log_var):
    """KL(q || p) of diagonal Gaussians, per dimension, in nats.

    Example:
    >>> import numpy as np
    >>> zeros = np.zeros((2, 3), "float32")
    >>> keras.ops.convert_to_numpy(gaussian_kl(zeros + 1.0, zeros, zeros, zeros)).tolist()
    [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    """
    return 0.5 * (p_log_var - q_log_var + (ops.exp(q_log_var) + ops.square(q_mean - p_mean)) / ops.exp(p_log_var) - 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RelativeSpectrum(keras.layers.Layer):
    """`(log_mel, pitch)` → the spectrum on an axis of octaves above f0, and where it is defined.

    Each note's mel axis is resampled (linear interpolation between mel-bin
    centres) onto `n_mels` points from `low` to `high` octaves above its f0,
    so its harmonics land on the same rows whatever its pitch: what is left
    is the pattern of the harmonics' levels, the timbre. A second channel is
    1 where the grid falls inside the mel range and 0 outside (the first is 0
    there). It has no weights.

    Args:
        n_mels: mel bins of the features (and points of the grid).
        fmin: lowest mel frequency, Hz.
        fmax: highest mel frequency, Hz.
        low: lowest grid point, octaves relative to f0.
        high: highest grid point, octaves relative to f0.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> layer = RelativeSpectrum(n_mels=32)
    >>> tuple(layer(np.zeros((2, 32, 8, 1), "float32"), np.array([60.0, 72.0])).shape)
    (2, 32, 8, 2)
    """

    def __init__(
        self,
        n_mels: int = 128,
        fmin: float = 20.0,
        fmax: float = 8000.0,
        low: float = -1.0,
        high: float = 6.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_mels, self.fmin, self.fmax, self.low, self.high = (
            int(n_mels),
            float(fmin),
            float(fmax),
            float(low),
            float(high),
        )
        if not self.low < self.high:
            raise ValueError(f"RelativeSpectrum needs low < high octaves, got {low}, {high}")
        self.built = True

    def call(self, log_mel, pitch):
        centres = mel_centres(self.n_mels, self.fmin, self.fmax)
        octaves = np.log2(centres)
        spacing = ops.convert_to_tensor(
            np.maximum(np.gradient(octaves), (self.high - self.low) / self.n_mels), "float32"
        )
        grid = ops.convert_to_tensor(np.linspace(self.low, self.high, self.n_mels)[None, :, None], "float32")
        f0_octaves = ops.reshape(ops.log2(midi_to_hz(pitch)), (-1, 1, 1))
        position = ops.convert_to_tensor(octaves[None, None, :], "float32") - f0_octaves  # (batch, 1, n_mels)
        weights = ops.relu(1.0 - ops.abs(grid - position) / spacing[None, None, :])  # (batch, grid, n_mels)
        total = ops.sum(weights, axis=-1, keepdims=True)
        weights = weights / ops.maximum(total, 1e-6)
        values = ops.einsum("bgm,bmtc->bgtc", ops.cast(weights, log_mel.dtype), log_mel[..., :1])
        inside = ops.cast(total > 0.5, log_mel.dtype)[..., None]  # (batch, grid, 1, 1)
        inside = ops.broadcast_to(inside, ops.shape(values))
        return ops.concatenate([values * inside, inside], axis=-1)

    def compute_output_shape(self, log_mel_shape, pitch_shape=None):
        return tuple(log_mel_shape[:3]) + (2,)

    def get_config(self):
        config = super().get_config()
        config.update({"n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax, "low": self.low, "high": self.high})
        return config
