"""HierarchicalTimbreVAE: a timbre code that synthesises, conditioned on pitch and velocity.

The paper's skip+grad variant is sharp because its U-Net skips carry the
detail around the latent; decoding the code alone is then worse than the
baseline. Here every encoder-to-decoder path passes through a latent group
that pays its own KL against a prior learned from the top-down state
(`LatentGroup`), and the decoder is told the note's pitch and velocity
(`PitchCondition`), so the global code need only carry the timbre. It is a
`TimbreModel` composed of the family's parts (`models/parts.py`).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from keras_timbre.models import losses
from keras_timbre.models.family import TimbreModel
from keras_timbre.models.hierarchy import MAX_VELOCITY, HarmonicEnvelope, LatentGroup, RelativeSpectrum, soft_ceiling
from keras_timbre.models.layers import Sampling
from keras_timbre.models.parts import CodeEncoder, DecoderPath, FeatureEncoder, PitchCondition
from keras_timbre.models.timbre_vae import DEFAULT_FILTERS, DEFAULT_GRAD_WEIGHT, DEFAULT_INPUT_SHAPE
from keras_timbre.models.timbre_vae import DEFAULT_LATENT_DIM
from keras_timbre.models.training_defaults import DEFAULT_NORMALIZATION

# The code's KL weight, lower than TimbreVAE's: the code decodes better from more nats
# (docs/report.md, "Beyond the paper").
DEFAULT_BETA = 1e-4
# Latent channels of each group (one group per encoder resolution but the deepest).
DEFAULT_GROUP_CHANNELS = 4
# Minimum KL of each group, nats per example: a group pushed below it costs the same, so none collapses.
DEFAULT_GROUP_FREE_BITS = 8.0
# The groups' KL weight relative to `beta`: the code is a beta-VAE bottleneck, the groups carry detail,
# which at the code's beta (a nat costs as much as 1e-3 of the per-bin MSE) they would not.
DEFAULT_GROUP_KL_SCALE = 0.01
# Share of training examples decoded from prior draws of every group, as synthesis from the code does.
DEFAULT_PRIOR_DROPOUT = 0.5
# Those examples draw each group at a temperature uniform in [0, DEFAULT_PRIOR_TEMPERATURE]: the decoder is
# trained on every temperature synthesis may ask for (0 = the prior means, 1 = the priors themselves), and the
# priors' spread is paid for in reconstruction, so a draw at temperature 1 renders a note.
DEFAULT_PRIOR_TEMPERATURE = 1.0
# Kernel of the groups' prior and posterior convolutions: 1x1, since oneDNN's cost of a 3x3 convolution grows
# with its input channels, not its few outputs, and the groups' 3x3s took a third of a step
# (benchmarks/results/hierarchical.json); the decoder blocks around them see the neighbourhood.
DEFAULT_GROUP_KERNEL_SIZE = 1
# The groups' feature encoder's channels, as a share of the code encoder's: they feed posteriors of
# `group_channels` channels, and at full width that second encoder took an eighth of a training step.
DEFAULT_FEATURE_WIDTH = 0.5
# The code is read from the relative spectrum averaged over this many frames: a note's timbre code is
# global, and at every frame the code encoder took a fifth of a training step (docs/report.md, 0.5).
DEFAULT_CODE_TIME_POOL = 2
# Partials whose levels the code sets through `HarmonicEnvelope` (0: none): the code-alone path renders
# each partial's level where the pitch puts it instead of the decoder's blurred mean (docs/report.md, 0.7).
DEFAULT_HARMONICS = 64
# What a file saved before these settings existed was trained with (its config lacks them).
LEGACY_SETTINGS = {
    "prior_temperature": 0.0,
    "group_kernel_size": 3,
    "feature_width": 1.0,
    "code_time_pool": 1,
    "harmonics": 0,
    "output_ceiling": None,
    "output_softness": None,
}
# NSynth's range and velocity levels; a trained model stores the ones its training notes had.
DEFAULT_PITCH_RANGE = (21, 108)
DEFAULT_VELOCITIES = (25, 50, 75, 100, 127)
# The velocity `transfer`, the CLI and the export use when none is given (the closest trained one).
DEFAULT_VELOCITY = 100
INPUT_KEYS = ("log_mel", "pitch", "velocity")


@keras.saving.register_keras_serializable(package="keras_timbre")
class HierarchicalTimbreVAE(TimbreModel):
    """Pitch- and velocity-conditioned hierarchical VAE on normalised log-mel.

    Encoder: the global timbre code `z` (one vector per note) is read by
    `TimbreVAE`'s strided blocks from the note's spectrum on an axis of
    octaves above its f0 (`RelativeSpectrum`), where harmonics sit on the same
    rows at every pitch, so pitch stays out of the code; a second stack of
    blocks reads the log-mel itself for the groups' posteriors. Decoder: a
    dense layer from `[z, pitch, velocity]` to the smallest map, then at each
    resolution an up-sampling `DecoderBlock`, the pitch map
    (`PitchConditioning`, and the levels `z` sets for the first `harmonics`
    partials, placed where they fall: `HarmonicEnvelope`; folded onto that
    many mel bins) added through a 1x1 convolution, and a `LatentGroup` in
    place of the U-Net skip. The loss is TimbreVAE's
    (reconstruction, `beta` * KL, mel-gradient term) with the KL summed over
    the code and every group; each group's KL counts as at least
    `group_free_bits` nats.

    In training, a share `prior_dropout` of the examples is decoded with
    every group drawn from its prior, at a temperature uniform in
    `[0, prior_temperature]`: the path `synthesize` takes, so that the code,
    pitch and velocity alone decode well at every temperature it may ask for.

    Inputs are dicts `{"log_mel": (batch, n_mels, n_frames, 1), "pitch":
    (batch,), "velocity": (batch,)}`, MIDI numbers.

    Args:
        input_shape: `(n_mels, n_frames, 1)`.
        group_channels: latent channels of each group.
        group_free_bits: minimum KL per group, nats per example.
        group_kl_scale: weight of the groups' KL relative to the code's (`beta`).
        prior_dropout: share of examples decoded from prior draws in training.
        prior_temperature: the highest temperature of those draws (0: the prior means).
        group_kernel_size: kernel of the groups' prior and posterior convolutions.
        feature_width: channels of the groups' feature encoder, as a share of `filters`.
        code_time_pool: frames of the relative spectrum averaged into one before the code encoder.
        pitch_adversary_weight: weight of a pitch-confusion term on the code
            (a linear pitch classifier is trained on the code, and the encoder
            is pushed towards its uniform prediction); 0 disables it.
        harmonics: partials whose levels the code sets (`HarmonicEnvelope`, one more channel of the
            pitch map); 0 leaves the decoder to find them.
        output_ceiling: per mel bin, the most the output may reach (normalised units), approached
            smoothly (`soft_ceiling`); `train` sets it from the training notes' peak
            (`FeatureStats.ceiling`). None: unbounded.
        output_softness: per mel bin, the width of that ceiling's knee (normalised units).
        pitch_range: `(low, high)` MIDI pitches the model was trained on.
        velocities: velocities the model was trained on.
        mel_range: `(fmin, fmax)` of the frontend's mel filters, Hz.
        **kwargs: `TimbreVAE` arguments (`latent_dim`, `filters`, `beta`,
            `grad_weight`, ...); `use_skips` and `skip_dropout` do not apply.

    Example:
    >>> import numpy as np
    >>> model = HierarchicalTimbreVAE(input_shape=(32, 64, 1), latent_dim=8, filters=(4, 8, 8))
    >>> model.compile()
    >>> x = {"log_mel": np.zeros((4, 32, 64, 1), "float32"), "pitch": np.array([60, 62, 64, 65]),
    ...      "velocity": np.full(4, 100)}
    >>> history = model.fit(x, batch_size=2, epochs=1, verbose=0)
    >>> tuple(model.synthesize(np.zeros((1, 8), "float32"), [60], [100]).shape)
    (1, 32, 64, 1)
    """

    INPUT_KEYS = INPUT_KEYS
    ENCODE_KEYS = ("log_mel", "pitch")  # the code is read relative to the note's pitch
    RUN_KEYS = TimbreModel.RUN_KEYS + (
        "group_channels",
        "group_free_bits",
        "group_kl_scale",
        "prior_dropout",
        "prior_temperature",
        "group_kernel_size",
        "feature_width",
        "code_time_pool",
        "pitch_adversary_weight",
        "harmonics",
        "pitch_range",
        "velocities",
    )
    # The order 0.2 created its trainable layers in (its saved optimizer slots follow it).
    LEGACY_ORDER = (
        "encoder_block_",
        "z_mean",
        "z_log_var",
        "decoder_dense",
        "output_conv",
        "decoder_block_",
        "feature_block_",
        "condition_",
        "group_",
        "pitch_adversary",
    )

    def __init__(
        self,
        input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
        latent_dim: int = DEFAULT_LATENT_DIM,
        filters: tuple[int, ...] = DEFAULT_FILTERS,
        beta: float = DEFAULT_BETA,
        grad_weight: float = DEFAULT_GRAD_WEIGHT,
        group_channels: int = DEFAULT_GROUP_CHANNELS,
        group_free_bits: float = DEFAULT_GROUP_FREE_BITS,
        group_kl_scale: float = DEFAULT_GROUP_KL_SCALE,
        prior_dropout: float = DEFAULT_PRIOR_DROPOUT,
        prior_temperature: float = DEFAULT_PRIOR_TEMPERATURE,
        group_kernel_size: int = DEFAULT_GROUP_KERNEL_SIZE,
        feature_width: float = DEFAULT_FEATURE_WIDTH,
        code_time_pool: int = DEFAULT_CODE_TIME_POOL,
        pitch_adversary_weight: float = 0.0,
        harmonics: int = DEFAULT_HARMONICS,
        output_ceiling: Sequence[float] | None = None,
        output_softness: Sequence[float] | None = None,
        pitch_range: tuple[int, int] = DEFAULT_PITCH_RANGE,
        velocities: tuple[int, ...] = DEFAULT_VELOCITIES,
        mel_range: tuple[float, float] = (20.0, 8000.0),
        normalization: str | None = DEFAULT_NORMALIZATION,
        seed: int | None = 0,
        **kwargs,
    ):
        _check_conditioning(group_channels, group_free_bits, group_kl_scale, prior_dropout, pitch_range, velocities)
        _check_settings(prior_temperature, group_kernel_size, feature_width, code_time_pool, input_shape, filters)
        super().__init__(
            input_shape, latent_dim, filters, beta, grad_weight, normalization=normalization, seed=seed, **kwargs
        )
        self.group_channels = int(group_channels)
        self.group_free_bits = float(group_free_bits)
        self.group_kl_scale = float(group_kl_scale)
        self.prior_dropout = float(prior_dropout)
        self.prior_temperature = float(prior_temperature)
        self.group_kernel_size = int(group_kernel_size)
        self.feature_width = float(feature_width)
        self.code_time_pool = int(code_time_pool)
        self.pitch_adversary_weight = float(pitch_adversary_weight)
        self.harmonics = int(harmonics)
        self.output_ceiling, self.output_softness = _ceiling(output_ceiling, output_softness, input_shape[0])
        self.pitch_range = tuple(int(p) for p in pitch_range)
        self.velocities = tuple(sorted(int(v) for v in velocities))
        self.mel_range = tuple(float(f) for f in mel_range)
        self._create_parts(seed)
        self.build()

    def _create_parts(self, seed) -> None:
        """The parts, in the order 0.2 created their weights (see `LEGACY_ORDER`)."""
        dtype, options = self.dtype_policy, self.part_options()
        # The code is read from the spectrum on an axis of octaves above f0 (so pitch stays out of it);
        # the groups' features from the log-mel itself.
        self.relative_spectrum = RelativeSpectrum(
            self.spectrogram_shape[0], *self.mel_range, name="relative", dtype=dtype
        )
        self.encoder = CodeEncoder(self.filters, self.latent_dim, name="encoder", **options)
        self.sampling = Sampling(seed=seed, log_var_range=None, name="sampling", dtype=dtype)
        self.decoder = DecoderPath(self.spectrogram_shape, self.filters, name="decoder", **options)
        feature_filters = [max(1, round(f * self.feature_width)) for f in self.filters[:-1]]
        self.features = FeatureEncoder(feature_filters, name="features", **options)
        self.condition = PitchCondition(
            self.spectrogram_shape[0],
            self.mel_range,
            self.filters,
            extra_channels=1 if self.harmonics else 0,
            name="condition",
            dtype=dtype,
        )
        self.harmonic_envelope = None
        if self.harmonics:
            self.harmonic_envelope = HarmonicEnvelope(
                self.spectrogram_shape[0],
                *self.mel_range,
                harmonics=self.harmonics,
                name="harmonic_envelope",
                dtype=dtype,
            )
            self.harmonic_envelope.build((None, self.latent_dim))
        self.groups = [
            LatentGroup(
                self.group_channels,
                self.group_kernel_size,
                seed=None if seed is None else seed + 10 + i,
                name=f"group_{i}",
                dtype=dtype,
            )
            for i in range(len(self.filters) - 1)
        ]
        pitches = self.pitch_range[1] - self.pitch_range[0] + 1
        self.pitch_adversary = None
        if self.pitch_adversary_weight > 0:
            self.pitch_adversary = keras.layers.Dense(pitches, name="pitch_adversary", dtype="float32")
            self.pitch_adversary.build((None, self.latent_dim))  # only training calls it; the optimizer needs it now
        self.prior_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)
        self.group_kl_trackers = [keras.metrics.Mean(name=f"group_{i}_kl") for i in range(len(self.groups))]
        self.adversary_tracker = keras.metrics.Mean(name="pitch_adversary_loss")

    @classmethod
    def settings_from_notes(cls, records, frontend) -> dict[str, Any]:
        """The trained pitch range and velocities (from the notes' labels) and the frontend's mel range."""
        pitches = [r.pitch for r in records if r.pitch >= 0]
        velocities = sorted({r.velocity for r in records if r.velocity > 0})
        if not pitches or not velocities:
            raise ValueError(
                "the hierarchical variant needs MIDI pitch and velocity labels: none of the training notes has "
                "them (label an audio folder with `keras-timbre make-dataset labels DIR`)"
            )
        return {
            "pitch_range": [min(pitches), max(pitches)],
            "velocities": velocities,
            "mel_range": [frontend.fmin, frontend.fmax],
        }

    @classmethod
    def settings_from_stats(cls, stats) -> dict[str, Any]:
        """The output's ceiling: the training notes' peak + 1 dB (`FeatureStats.ceiling`); none without a peak."""
        bound = stats.ceiling()
        return {} if bound is None else {"output_ceiling": bound[0].tolist(), "output_softness": bound[1].tolist()}

    @property
    def parts(self):
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "features": self.features,
            "condition": self.condition,
        }

    # ---------------------------------------------------------------- forward
    def encode_all(self, inputs, training=False):
        """`(z_mean, z_log_var, features)`: the code, read relative to f0, and the groups' features."""
        x, pitch, _ = self.split_inputs(inputs, self.ENCODE_KEYS)
        self.check_input_shape(x.shape)
        relative = self.relative_spectrum(x, pitch)
        if self.code_time_pool > 1:
            relative = ops.average_pool(relative, (1, self.code_time_pool), (1, self.code_time_pool))
        z_mean, z_log_var, _ = self.encoder(relative, training=training)
        return z_mean, z_log_var, self.features(x, training=training)

    def render(self, code, labels, temperature: float = 0.0):
        """The spectrogram of `code` at `labels` = (pitch, velocity), every group from its prior."""
        output, _ = self._decode_through_groups(code, *labels, temperature=temperature)
        return output

    def _decode_through_groups(
        self,
        z,
        pitch,
        velocity,
        features=None,
        prior_mask=None,
        temperature=0.0,
        training=None,
        kl_maps=None,
        prior_temperature=None,
    ):
        """The decoder from `[z, pitch, velocity]`, conditioned and through a group at each resolution.

        Returns the output and each group's KL; a list `kl_maps` receives each
        group's KL per dimension.
        """
        scalars = ops.stack([(pitch - 64.0) / 32.0, velocity / MAX_VELOCITY], axis=-1)
        pitch_map = self.condition.pitch_map(pitch, velocity)
        kls = []

        def step(i, h):
            h = self.condition(h, pitch_map, resolution=i)
            if i == 0:
                return h
            feature = None if features is None else features[-i]
            out = self.groups[i - 1](
                h,
                feature,
                prior_mask,
                temperature=temperature,
                training=training,
                return_kl_map=kl_maps is not None,
                prior_temperature=prior_temperature,
            )
            kls.append(out[1])
            if kl_maps is not None:
                kl_maps.append(out[2])
            return out[0]

        code = ops.concatenate([ops.cast(z, "float32"), scalars], axis=-1)
        if self.harmonic_envelope is not None:
            pitch_map = ops.concatenate([pitch_map, self.harmonic_envelope(ops.cast(z, "float32"), pitch)], axis=-1)
        output = self.decoder.run(code, step, training=training)
        if self.output_ceiling is not None:
            bound = [
                ops.cast(np.reshape(v, (1, -1, 1, 1)), output.dtype)
                for v in (self.output_ceiling, self.output_softness)
            ]
            output = soft_ceiling(output, *bound)
        return output, kls

    def call(self, inputs, training=False):
        _, pitch, velocity = self.split_inputs(inputs)
        z_mean, z_log_var, features = self.encode_all(inputs, training=training)
        z = self.sampling([z_mean, z_log_var], training=training)
        prior_mask = prior_temperature = None
        if training and self.prior_dropout > 0:
            draw = keras.random.uniform(ops.shape(pitch), seed=self.prior_seed_generator)
            prior_mask = ops.cast(draw < self.prior_dropout, "float32")
            if self.prior_temperature > 0:
                prior_temperature = self.prior_temperature * keras.random.uniform(
                    ops.shape(pitch), seed=self.prior_seed_generator
                )
        reconstruction, kls = self._decode_through_groups(
            z, pitch, velocity, features, prior_mask, training=training, prior_temperature=prior_temperature
        )
        return {
            "reconstruction": reconstruction,
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "group_kl": ops.stack(kls, axis=-1),
        }

    def compute_output_shape(self, input_shape):
        batch = input_shape["log_mel"][0] if isinstance(input_shape, dict) else input_shape[0]
        code = (batch, self.latent_dim)
        return {
            "reconstruction": (batch,) + self.spectrogram_shape,
            "z_mean": code,
            "z_log_var": code,
            "group_kl": (batch, len(self.groups)),
        }

    # ---------------------------------------------------------------- API
    def synthesize(self, code, pitch, velocity, temperature: float = 0.0):
        """Log-mel (normalised) of timbre `code` (batch, latent_dim) at `pitch` and `velocity`: `decode`."""
        return self.decode(code, pitch, velocity, temperature)

    @property
    def max_temperature(self) -> float:
        """`prior_temperature`: the decoder renders the temperatures it was trained on (0 for a 0.3 file)."""
        return self.prior_temperature

    @property
    def default_velocity(self) -> int:
        """`DEFAULT_VELOCITY` if the model was trained on it, else the closest trained velocity."""
        return closest_velocity(self.velocities)

    def transfer(self, x, pitch, velocity=None, temperature: float = 0.0):
        """Re-renders notes `x` (a dict with "log_mel" and their own "pitch") at `pitch`: their code's mean there.

        `velocity` None is `default_velocity`.
        """
        code, _ = self.encode(x)
        return self.decode(code, pitch, self.default_velocity if velocity is None else velocity, temperature)

    def group_kl_maps(self, inputs):
        """Each group's KL per dimension, `[(batch, height, width, group_channels)]`, at the posterior means."""
        _, pitch, velocity = self.split_inputs(inputs)
        z_mean, _, features = self.encode_all(inputs)
        kl_maps = []
        self._decode_through_groups(z_mean, pitch, velocity, features, training=False, kl_maps=kl_maps)
        return kl_maps

    # ---------------------------------------------------------------- training
    def kl_term(self, y_pred, weights):
        """The code's KL plus `group_kl_scale` times each group's, counted as at least `group_free_bits`."""
        kl = super().kl_term(y_pred, weights)
        for i, tracker in enumerate(self.group_kl_trackers):
            group_kl = losses.batch_mean(y_pred["group_kl"][:, i], weights)
            tracker.update_state(group_kl)
            kl = kl + self.group_kl_scale * ops.maximum(group_kl, self.group_free_bits)
        return kl

    def extra_losses(self, x, y_pred) -> list:
        """The pitch adversary's loss, if it has one."""
        if self.pitch_adversary is None:
            return []
        return [self._adversary_loss(y_pred["z_mean"], self.split_inputs(x)[1])]

    def _adversary_loss(self, z_mean, pitch):
        """Trains a linear pitch classifier on the code; pushes the encoder to its uniform prediction."""
        classes = self.pitch_range[1] - self.pitch_range[0] + 1
        target = ops.one_hot(ops.cast(ops.clip(pitch - self.pitch_range[0], 0, classes - 1), "int32"), classes)
        logits = self.pitch_adversary(ops.stop_gradient(z_mean))
        classifier = ops.mean(keras.losses.categorical_crossentropy(target, logits, from_logits=True))
        kernel, bias = (ops.stop_gradient(v) for v in (self.pitch_adversary.kernel, self.pitch_adversary.bias))
        confused = ops.log_softmax(ops.matmul(z_mean, kernel) + bias, axis=-1)
        confusion = -ops.mean(confused)  # cross-entropy to the uniform distribution over pitches
        self.adversary_tracker.update_state(classifier)
        return classifier + self.pitch_adversary_weight * confusion

    @property
    def metrics(self):
        return (
            super().metrics + self.group_kl_trackers + ([self.adversary_tracker] if self.pitch_adversary_weight else [])
        )

    # ---------------------------------------------------------------- config
    @classmethod
    def from_variant(cls, name: str = "hierarchical", **overrides: Any) -> "HierarchicalTimbreVAE":
        """The "hierarchical" variant (mel-gradient loss on, like skip+grad)."""
        if name != "hierarchical":
            raise ValueError(f"{cls.__name__} builds the 'hierarchical' variant, not {name!r}")
        overrides.setdefault("name", "timbre_vae_hierarchical")
        return cls(**overrides)

    @property
    def variant(self) -> str:
        return "hierarchical"

    @classmethod
    def from_config(cls, config):
        """A saved model; one saved before `LEGACY_SETTINGS` existed keeps what it was trained with."""
        return super().from_config({**LEGACY_SETTINGS, **config})

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "group_channels": self.group_channels,
                "group_free_bits": self.group_free_bits,
                "group_kl_scale": self.group_kl_scale,
                "prior_dropout": self.prior_dropout,
                "prior_temperature": self.prior_temperature,
                "group_kernel_size": self.group_kernel_size,
                "feature_width": self.feature_width,
                "code_time_pool": self.code_time_pool,
                "pitch_adversary_weight": self.pitch_adversary_weight,
                "harmonics": self.harmonics,
                "output_ceiling": None if self.output_ceiling is None else list(self.output_ceiling),
                "output_softness": None if self.output_softness is None else list(self.output_softness),
                "pitch_range": list(self.pitch_range),
                "velocities": list(self.velocities),
                "mel_range": list(self.mel_range),
            }
        )
        return config


def _vector(values):
    return ops.reshape(ops.cast(values, "float32"), (-1,))


def closest_velocity(velocities) -> int:
    """The velocity of `velocities` closest to `DEFAULT_VELOCITY` (a tie: the louder).

    Example:
    >>> closest_velocity((25, 75, 127)), closest_velocity((90, 110))
    (75, 110)
    """
    return int(min(velocities, key=lambda v: (abs(v - DEFAULT_VELOCITY), -v)))


def _ceiling(ceiling, softness, n_mels: int):
    """`(ceiling, softness)` as float tuples of `n_mels` values (softness > 0), or `(None, None)`."""
    if ceiling is None and softness is None:
        return None, None
    values = [tuple(float(v) for v in np.ravel(x)) if x is not None else () for x in (ceiling, softness)]
    if any(len(v) != n_mels for v in values) or min(values[1]) <= 0:
        raise ValueError(
            f"output_ceiling and output_softness must both be {n_mels} values (one per mel bin), softness > 0; "
            f"got {len(values[0])} and {len(values[1])}"
        )
    return values[0], values[1]


def _check_settings(prior_temperature, group_kernel_size, feature_width, code_time_pool, input_shape, filters):
    if not 0.0 <= prior_temperature <= 1.0:
        raise ValueError(f"prior_temperature must be in [0, 1], got {prior_temperature}")
    if group_kernel_size < 1 or code_time_pool < 1 or not 0.0 < feature_width <= 1.0:
        raise ValueError(
            f"group_kernel_size and code_time_pool must be >= 1 and feature_width in (0, 1], got "
            f"{group_kernel_size}, {code_time_pool}, {feature_width}"
        )
    frames, factor = input_shape[1], code_time_pool * 2 ** len(filters)
    if frames % factor:
        raise ValueError(
            f"input_shape's {frames} frames must be a multiple of code_time_pool * 2 ** len(filters) = {factor}: "
            "choose a note duration with such a frame count, or code_time_pool=1"
        )


def _check_conditioning(
    group_channels, group_free_bits, group_kl_scale, prior_dropout, pitch_range, velocities
) -> None:
    if group_channels < 1:
        raise ValueError(f"group_channels must be >= 1, got {group_channels}")
    if group_kl_scale < 0:
        raise ValueError(f"group_kl_scale must be >= 0, got {group_kl_scale}")
    if group_free_bits < 0:
        raise ValueError(f"group_free_bits must be >= 0, got {group_free_bits}")
    if not 0.0 <= prior_dropout < 1.0:
        raise ValueError(f"prior_dropout must be in [0, 1), got {prior_dropout}")
    if len(pitch_range) != 2 or not 0 <= pitch_range[0] <= pitch_range[1] <= 127:
        raise ValueError(f"pitch_range must be (low, high) MIDI pitches within 0-127, got {pitch_range}")
    if not velocities or any(not 0 < int(v) <= 127 for v in velocities):
        raise ValueError(f"velocities must be MIDI velocities in 1-127, got {velocities}")
