"""HierarchicalTimbreVAE: a timbre code that synthesises, conditioned on pitch and velocity.

The paper's skip+grad variant is sharp because its U-Net skips carry the
detail around the latent; decoding the code alone is then worse than the
baseline. Here every encoder-to-decoder path passes through a latent group
that pays its own KL against a prior learned from the top-down state
(`LatentGroup`), and the decoder is told the note's pitch and velocity
(`PitchConditioning`), so the global code need only carry the timbre.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_timbre.models import losses
from keras_timbre.models.hierarchy import PitchConditioning
from keras_timbre.models.hierarchy import RelativeSpectrum
from keras_timbre.models.layers import EncoderBlock
from keras_timbre.models.hierarchy import LatentGroup
from keras_timbre.models.layers import DecoderBlock
from keras_timbre.models.timbre_vae import DEFAULT_INPUT_SHAPE
from keras_timbre.models.timbre_vae import LOG_VAR_RANGE
from keras_timbre.models.timbre_vae import TimbreVAE

# The code's KL weight. Lower than TimbreVAE's 1e-3: on nsynth-mini (2 s, 20 epochs, seed 0) 1e-3 left
# the code 25 nats and decoding from it 5.7 dB LSD, 1e-4 gave 71 nats and 5.5 dB; 1e-5 (with the pitch
# adversary) 6.9 dB (docs/report.md, "Beyond the paper").
DEFAULT_BETA = 1e-4
# Latent channels of each group (one group per encoder resolution but the deepest).
DEFAULT_GROUP_CHANNELS = 4
# Minimum KL of each group, nats per example: a group pushed below it costs the same, so none collapses.
DEFAULT_GROUP_FREE_BITS = 8.0
# The groups' KL weight relative to `beta`: the code is a beta-VAE bottleneck, the groups carry detail,
# which at the code's beta (a nat costs as much as 1e-3 of the per-bin MSE) they would not.
DEFAULT_GROUP_KL_SCALE = 0.01
# Share of training examples decoded from the prior means of every group, as synthesis from the code does.
DEFAULT_PRIOR_DROPOUT = 0.5
# NSynth's range and velocity levels; a trained model stores the ones its training notes had.
DEFAULT_PITCH_RANGE = (21, 108)
DEFAULT_VELOCITIES = (25, 50, 75, 100, 127)
# The velocity `transfer`, the CLI and the export use when none is given (the closest trained one).
DEFAULT_VELOCITY = 100
INPUT_KEYS = ("log_mel", "pitch", "velocity")


@keras.saving.register_keras_serializable(package="keras_timbre")
class HierarchicalTimbreVAE(TimbreVAE):
    """Pitch- and velocity-conditioned hierarchical VAE on normalised log-mel.

    Encoder: the global timbre code `z` (one vector per note) is read by
    `TimbreVAE`'s strided blocks from the note's spectrum on an axis of
    octaves above its f0 (`RelativeSpectrum`), where harmonics sit on the same
    rows at every pitch, so pitch stays out of the code; a second stack of
    blocks reads the log-mel itself for the groups' posteriors. Decoder: a
    dense layer from `[z, pitch, velocity]` to the smallest map, then at each
    resolution an up-sampling `DecoderBlock`, the pitch map
    (`PitchConditioning`, folded onto that many mel bins) added through a 1x1
    convolution, and a `LatentGroup` in place of the U-Net skip. The loss is TimbreVAE's
    (reconstruction, `beta` * KL, mel-gradient term) with the KL summed over
    the code and every group; each group's KL counts as at least
    `group_free_bits` nats.

    In training, a share `prior_dropout` of the examples is decoded with
    every group at its prior mean, the path `synthesize` takes, so that the
    code, pitch and velocity alone decode well.

    Inputs are dicts `{"log_mel": (batch, n_mels, n_frames, 1), "pitch":
    (batch,), "velocity": (batch,)}`, MIDI numbers.

    Args:
        input_shape: `(n_mels, n_frames, 1)`.
        group_channels: latent channels of each group.
        group_free_bits: minimum KL per group, nats per example.
        group_kl_scale: weight of the groups' KL relative to the code's (`beta`).
        prior_dropout: share of examples decoded from the prior means in training.
        pitch_adversary_weight: weight of a pitch-confusion term on the code
            (a linear pitch classifier is trained on the code, and the encoder
            is pushed towards its uniform prediction); 0 disables it.
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

    def __init__(
        self,
        input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
        group_channels: int = DEFAULT_GROUP_CHANNELS,
        group_free_bits: float = DEFAULT_GROUP_FREE_BITS,
        group_kl_scale: float = DEFAULT_GROUP_KL_SCALE,
        prior_dropout: float = DEFAULT_PRIOR_DROPOUT,
        pitch_adversary_weight: float = 0.0,
        pitch_range: tuple[int, int] = DEFAULT_PITCH_RANGE,
        velocities: tuple[int, ...] = DEFAULT_VELOCITIES,
        mel_range: tuple[float, float] = (20.0, 8000.0),
        **kwargs,
    ):
        _check_conditioning(group_channels, group_free_bits, group_kl_scale, prior_dropout, pitch_range, velocities)
        # Set before TimbreVAE.__init__, which creates the layers from them.
        self.group_channels = int(group_channels)
        self.group_free_bits = float(group_free_bits)
        self.group_kl_scale = float(group_kl_scale)
        self.prior_dropout = float(prior_dropout)
        self.pitch_adversary_weight = float(pitch_adversary_weight)
        self.pitch_range = tuple(int(p) for p in pitch_range)
        self.velocities = tuple(sorted(int(v) for v in velocities))
        self.mel_range = tuple(float(f) for f in mel_range)
        kwargs.setdefault("beta", DEFAULT_BETA)
        kwargs.pop("use_skips", None)
        kwargs.pop("skip_dropout", None)
        super().__init__(input_shape=input_shape, use_skips=False, skip_dropout=0.0, **kwargs)

    def _create_layers(self, input_shape, filters, normalization, activation, seed) -> None:
        super()._create_layers(input_shape, filters, normalization, activation, seed)
        dtype = self.dtype_policy
        block_kwargs = {"normalization": normalization, "activation": activation, "dtype": dtype}
        self.decoder_blocks = [
            DecoderBlock(f, name=f"decoder_block_{i}", **block_kwargs) for i, f in enumerate(reversed(filters[:-1]))
        ]
        self.conditioning = PitchConditioning(input_shape[0], *self.mel_range, name="conditioning", dtype=dtype)
        # The code is read from the spectrum on an axis of octaves above f0 (so pitch stays out of it);
        # the groups' features from the log-mel itself.
        self.relative_spectrum = RelativeSpectrum(input_shape[0], *self.mel_range, name="relative", dtype=dtype)
        self.feature_blocks = [
            EncoderBlock(f, name=f"feature_block_{i}", **block_kwargs) for i, f in enumerate(filters[:-1])
        ]
        # One 1x1 projection of the pitch map per decoder resolution: the bottleneck's, then each block's.
        self.condition_projections = [
            keras.layers.Conv2D(f, 1, name=f"condition_{i}", dtype=dtype) for i, f in enumerate(reversed(filters))
        ]
        self.groups = [
            LatentGroup(
                self.group_channels, seed=None if seed is None else seed + 10 + i, name=f"group_{i}", dtype=dtype
            )
            for i in range(len(filters) - 1)
        ]
        pitches = self.pitch_range[1] - self.pitch_range[0] + 1
        self.pitch_adversary = None
        if self.pitch_adversary_weight > 0:
            self.pitch_adversary = keras.layers.Dense(pitches, name="pitch_adversary", dtype="float32")
        self.prior_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)
        self.group_kl_trackers = [keras.metrics.Mean(name=f"group_{i}_kl") for i in range(len(self.groups))]
        self.adversary_tracker = keras.metrics.Mean(name="pitch_adversary_loss")

    def build(self, input_shape):
        if self.built:
            return
        shape = (None,) + self.spectrogram_shape[:2] + (2,)  # RelativeSpectrum: values and where defined
        features = []
        for block in self.encoder_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
            features.append(shape)
        feature_shape = (None,) + self.spectrogram_shape
        for i, block in enumerate(self.feature_blocks):
            block.build(feature_shape)
            feature_shape = block.compute_output_shape(feature_shape)
            features[i] = feature_shape
        flat = self.flatten.compute_output_shape(shape)
        self.z_mean_dense.build(flat)
        self.z_log_var_dense.build(flat)
        self.decoder_dense.build((None, self.latent_dim + 2))
        if self.pitch_adversary is not None:
            self.pitch_adversary.build((None, self.latent_dim))
        shape = (None,) + self._bottleneck_shape
        for i, projection in enumerate(self.condition_projections):
            projection.build(self._condition_shape(shape))
            if i == len(self.decoder_blocks):
                break
            self.decoder_blocks[i].build(shape)
            shape = self.decoder_blocks[i].compute_output_shape(shape)
            self.groups[i].build(shape, features[-(i + 2)])
        self.output_conv.build(shape)
        self.built = True

    def _condition_shape(self, state_shape):
        fold = self.spectrogram_shape[0] // state_shape[1]
        return (None, state_shape[1], 1, PitchConditioning.CHANNELS * fold)

    # ---------------------------------------------------------------- inputs
    def _unpack(self, inputs):
        if not isinstance(inputs, dict) or any(key not in inputs for key in INPUT_KEYS):
            raise ValueError(
                f"{type(self).__name__} takes a dict with keys {INPUT_KEYS} (log-mel, MIDI pitch, velocity), "
                f"got {type(inputs).__name__}{sorted(inputs) if isinstance(inputs, dict) else ''}"
            )
        return inputs["log_mel"], self._vector(inputs["pitch"]), self._vector(inputs["velocity"])

    @staticmethod
    def _vector(values):
        return ops.reshape(ops.cast(ops.convert_to_tensor(values), "float32"), (-1,))

    def _condition(self, condition_map, projection, state):
        """The pitch map folded onto the state's mel bins, projected, broadcast over time."""
        n_bins = state.shape[1]
        fold = self.spectrogram_shape[0] // n_bins
        folded = ops.reshape(condition_map, (-1, n_bins, 1, PitchConditioning.CHANNELS * fold))
        return state + projection(folded)

    # ---------------------------------------------------------------- forward
    def _decode_conditioned(
        self, z, pitch, velocity, features=None, prior_mask=None, temperature=0.0, training=None, kl_maps=None
    ):
        """Decoder state from `[z, pitch, velocity]` through every group; returns (output, per-group KL).

        A list `kl_maps` receives each group's KL per dimension.
        """
        scalars = ops.stack([(pitch - 64.0) / 32.0, velocity / 127.0], axis=-1)
        h = self.decoder_reshape(self.decoder_dense(ops.concatenate([ops.cast(z, "float32"), scalars], axis=-1)))
        condition_map = self.conditioning(pitch, velocity)
        h = self._condition(condition_map, self.condition_projections[0], h)
        kls = []
        for i, (block, group) in enumerate(zip(self.decoder_blocks, self.groups)):
            h = self._condition(condition_map, self.condition_projections[i + 1], block(h, training=training))
            feature = None if features is None else features[-(i + 1)]
            h, kl, kl_map = group(
                h, feature, prior_mask, temperature=temperature, training=training, return_kl_map=True
            )
            kls.append(kl)
            if kl_maps is not None:
                kl_maps.append(kl_map)
        return ops.cast(self.output_conv(h), "float32"), kls

    def call(self, inputs, training=False):
        x, pitch, velocity = self._unpack(inputs)
        z_mean, z_log_var, features = self._encode(x, training=training, pitch=pitch)
        z = self.sampling([z_mean, z_log_var], training=training)
        prior_mask = None
        if training and self.prior_dropout > 0:
            draw = keras.random.uniform(ops.shape(pitch), seed=self.prior_seed_generator)
            prior_mask = ops.cast(draw < self.prior_dropout, "float32")
        reconstruction, kls = self._decode_conditioned(z, pitch, velocity, features, prior_mask, training=training)
        return {
            "reconstruction": reconstruction,
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "group_kl": ops.stack(kls, axis=-1),
        }

    def compute_output_shape(self, input_shape):
        batch = input_shape["log_mel"][0] if isinstance(input_shape, dict) else input_shape[0]
        shapes = super().compute_output_shape((batch,) + self.spectrogram_shape)
        return {**shapes, "group_kl": (batch, len(self.groups))}

    # ---------------------------------------------------------------- API
    def _encode(self, x, training=None, pitch=None):
        if pitch is None:
            raise ValueError(f"{type(self).__name__} reads the code relative to the note's pitch: pass it")
        self.check_input_shape(x.shape)
        h = self.relative_spectrum(x, pitch)
        for block in self.encoder_blocks:
            h = block(h, training=training)
        flat = self.flatten(h)
        z_mean = ops.cast(self.z_mean_dense(flat), "float32")
        z_log_var = ops.clip(ops.cast(self.z_log_var_dense(flat), "float32"), *LOG_VAR_RANGE)
        features, h = [], x
        for block in self.feature_blocks:
            h = block(h, training=training)
            features.append(h)
        return z_mean, z_log_var, features

    def encode(self, x, training=False):
        """`(mean, log_var)` of the timbre code of notes `x`: a dict with "log_mel" and "pitch"."""
        log_mel, pitch = (x["log_mel"], self._vector(x["pitch"])) if isinstance(x, dict) else (x, None)
        z_mean, z_log_var, _ = self._encode(log_mel, training=training, pitch=pitch)
        return z_mean, z_log_var

    def synthesize(self, code, pitch, velocity, temperature: float = 0.0):
        """Log-mel (normalised) of timbre `code` (batch, latent_dim) at `pitch` and `velocity` (MIDI, (batch,)).

        Every group is at its prior mean at `temperature` 0; above, each is
        sampled with its prior's std scaled by `temperature`.
        """
        pitch, velocity = self._broadcast(code, pitch), self._broadcast(code, velocity)
        output, _ = self._decode_conditioned(code, pitch, velocity, temperature=temperature, training=False)
        return output

    def sample(self, n: int, pitch, velocity, temperature: float = 0.0, seed: int | None = None):
        """`n` notes from the prior: codes from N(0, I), groups as in `synthesize` at `temperature`."""
        code = keras.random.normal((int(n), self.latent_dim), seed=seed)
        return self.synthesize(
            code, ops.ones((int(n),)) * self._vector(pitch), ops.ones((int(n),)) * self._vector(velocity), temperature
        )

    @property
    def default_velocity(self) -> int:
        """`DEFAULT_VELOCITY` if the model was trained on it, else the closest trained velocity."""
        return closest_velocity(self.velocities)

    def transfer(self, x, pitch, velocity=None, temperature: float = 0.0):
        """Re-renders notes `x` (a dict with "log_mel" and their own "pitch") at `pitch`: their code's mean there.

        `velocity` None is `default_velocity`.
        """
        code, _ = self.encode(x)
        return self.synthesize(code, pitch, self.default_velocity if velocity is None else velocity, temperature)

    def decode(self, z, training=False):
        raise ValueError(
            f"{type(self).__name__} needs a pitch and velocity to decode: use synthesize(code, pitch, velocity)"
        )

    def reconstruct(self, x, use_skips: bool = True):
        """Reconstruction from the posterior means (`use_skips=False`: from the code alone, as `synthesize`)."""
        log_mel, pitch, velocity = self._unpack(x)
        if not use_skips:
            return self.synthesize(self.encode(x)[0], pitch, velocity)
        return self(x, training=False)["reconstruction"]

    def group_kl_maps(self, inputs):
        """Each group's KL per dimension, `[(batch, height, width, group_channels)]`, at the posterior means."""
        x, pitch, velocity = self._unpack(inputs)
        z_mean, _, features = self._encode(x, training=False, pitch=pitch)
        kl_maps = []
        self._decode_conditioned(z_mean, pitch, velocity, features, training=False, kl_maps=kl_maps)
        return kl_maps

    def _broadcast(self, code, values):
        values = self._vector(values)
        return ops.ones((ops.shape(code)[0],), "float32") * values

    # ---------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """TimbreVAE's terms with the KL over the code and every group; updates the trackers."""
        log_mel, pitch, _ = self._unpack(x)
        if y_pred is None:
            y_pred = self(x, training=training)
        total = super().compute_loss(log_mel, y, y_pred, sample_weight, training)
        if self.pitch_adversary_weight > 0:
            total = total + losses.scale_loss_for_replicas(self._adversary_loss(y_pred["z_mean"], pitch))
        return total

    def _kl_term(self, y_pred, weights):
        """The code's KL plus `group_kl_scale` times each group's, counted as at least `group_free_bits`."""
        kl = super()._kl_term(y_pred, weights)
        for i, tracker in enumerate(self.group_kl_trackers):
            group_kl = losses.batch_mean(y_pred["group_kl"][:, i], weights)
            tracker.update_state(group_kl)
            kl = kl + self.group_kl_scale * ops.maximum(group_kl, self.group_free_bits)
        return kl

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
        overrides.setdefault("name", "timbre_vae_hierarchical")
        return cls(**overrides)

    @property
    def variant(self) -> str:
        return "hierarchical"

    def get_config(self):
        config = super().get_config()
        for key in ("use_skips", "skip_dropout"):
            config.pop(key)
        config.update(
            {
                "group_channels": self.group_channels,
                "group_free_bits": self.group_free_bits,
                "group_kl_scale": self.group_kl_scale,
                "prior_dropout": self.prior_dropout,
                "pitch_adversary_weight": self.pitch_adversary_weight,
                "pitch_range": list(self.pitch_range),
                "velocities": list(self.velocities),
                "mel_range": list(self.mel_range),
            }
        )
        return config


def closest_velocity(velocities) -> int:
    """The velocity of `velocities` closest to `DEFAULT_VELOCITY` (a tie: the louder).

    Example:
    >>> closest_velocity((25, 75, 127)), closest_velocity((90, 110))
    (75, 110)
    """
    return int(min(velocities, key=lambda v: (abs(v - DEFAULT_VELOCITY), -v)))


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
