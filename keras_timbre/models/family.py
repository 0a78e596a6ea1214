"""`TimbreModel`: what every model of the family shares, whatever parts a variant composes.

A variant (`TimbreVAE`: the paper's four; `HierarchicalTimbreVAE`) names its
parts in `parts` and says what it takes in `INPUT_KEYS`: `("log_mel",)`, or
`("log_mel", "pitch", "velocity")` for a model conditioned on the note's pitch
and velocity. Everything else is here, meaning one thing on every variant:

- `encode(inputs)` -> `(z_mean, z_log_var)` of the code;
- `decode(code, pitch=None, velocity=None, temperature=0.0)`: the spectrogram
  rendered from the code alone (a conditioned model needs the pitch and
  velocity; `temperature` scales the draw of any latent groups);
- `reconstruct(inputs, from_code=False)`: from the posterior means, with the
  encoder's detail (skips or groups), or `from_code` from the code alone;
- `sample(n, ...)`: `decode` of codes drawn from N(0, I);
- `model_inputs(log_mel, pitch, velocity)`: the input the model takes;
- the loss (`compute_loss`, which Keras' train step calls on every backend):
  reconstruction + beta * KL + grad_weight * mel gradient + time_grad_weight *
  time gradient, plus a variant's `extra_losses`.

The model builds by one symbolic call of itself (`build`).
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_timbre.models import losses
from keras_timbre.models.legacy_weights import adopt_legacy_layout
from keras_timbre.models.training_defaults import JIT_COMPILE, default_optimizer

LOG_MEL = "log_mel"
# The temperature of a latent group's prior draw: 0 its mean, 1 the prior itself. Above 1 the groups sit
# where training never put them and the output stops being a note (+5,600 dB in 0.3), so it is refused.
MAX_TEMPERATURE = 1.0
CONDITION_KEYS = ("pitch", "velocity")


class TimbreModel(keras.Model):
    """The family's shared model: loss terms, their weights and trackers, inputs, rendering.

    Args:
        input_shape: `(n_mels, n_frames, 1)`.
        latent_dim: size of the code.
        filters: channels of the encoder blocks.
        beta: initial KL weight.
        grad_weight: initial weight of the mel-axis gradient difference loss.
        time_grad_weight: initial weight of the time-axis gradient loss.
        reconstruction: "mse" or "l1".
        free_bits: minimum KL per code dimension, nats (0 disables).
        normalization: "batch", "group" or None, in every block.
        activation: activation of every block.
        seed: seed of the model's random draws.
        **kwargs: standard `keras.Model` arguments.
    """

    INPUT_KEYS: tuple[str, ...] = (LOG_MEL,)
    # What `encode` needs of them.
    ENCODE_KEYS: tuple[str, ...] = (LOG_MEL,)
    # The configuration a run directory records of the model (config.json, "hyperparameters.model").
    RUN_KEYS: tuple[str, ...] = (
        "latent_dim",
        "filters",
        "beta",
        "grad_weight",
        "time_grad_weight",
        "free_bits",
        "reconstruction",
        "normalization",
    )

    def __init__(
        self,
        input_shape,
        latent_dim: int,
        filters,
        beta: float,
        grad_weight: float,
        time_grad_weight: float = 0.0,
        reconstruction: str = "mse",
        free_bits: float = 0.0,
        normalization: str | None = None,
        activation: str = "leaky_relu",
        seed: int | None = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        input_shape = tuple(int(d) for d in input_shape)
        filters = tuple(int(f) for f in filters)
        _check_arguments(input_shape, filters, latent_dim, beta, grad_weight, reconstruction, free_bits)
        self.spectrogram_shape = input_shape
        self.latent_dim = int(latent_dim)
        self.filters = filters
        self.reconstruction = reconstruction
        self.free_bits = float(free_bits)
        self.normalization = normalization
        self.activation = activation
        self.seed = seed
        self._initial_weights = {
            "beta": float(beta),
            "grad_weight": float(grad_weight),
            "time_grad_weight": float(time_grad_weight),
        }
        self.beta = keras.Variable(float(beta), trainable=False, dtype="float32", name="beta")
        self.grad_weight = keras.Variable(float(grad_weight), trainable=False, dtype="float32", name="grad_weight")
        self.time_grad_weight = keras.Variable(
            float(time_grad_weight), trainable=False, dtype="float32", name="time_grad_weight"
        )
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.mel_grad_tracker = keras.metrics.Mean(name="mel_grad_loss")
        self.time_grad_tracker = keras.metrics.Mean(name="time_grad_loss")

    @property
    def parts(self) -> dict[str, keras.layers.Layer]:
        """The variant's named parts (encoder, decoder path, conditioning, latent groups, ...)."""
        return {}

    @classmethod
    def settings_from_notes(cls, records, frontend) -> dict[str, Any]:
        """Constructor arguments the training notes decide (none here; a conditioned model's label ranges)."""
        return {}

    @classmethod
    def settings_from_stats(cls, stats) -> dict[str, Any]:
        """Constructor arguments the training notes' `FeatureStats` decide (none here; the hierarchical ceiling)."""
        return {}

    def run_settings(self) -> dict[str, Any]:
        """The `RUN_KEYS` of the model's config: what a run directory records of it."""
        config = self.get_config()
        return {key: config[key] for key in self.RUN_KEYS}

    @property
    def renders_beyond_code(self) -> bool:
        """Whether a reconstruction uses more than the code (skips, groups): `reconstruct(from_code=True)` differs."""
        return True

    def part_options(self) -> dict[str, Any]:
        """Options every block of every part shares: normalisation, activation, the model's dtype policy."""
        return {"normalization": self.normalization, "activation": self.activation, "dtype": self.dtype_policy}

    # ---------------------------------------------------------------- inputs
    @property
    def is_conditioned(self) -> bool:
        """Whether the model takes each note's pitch and velocity (see `INPUT_KEYS`)."""
        return CONDITION_KEYS[0] in self.INPUT_KEYS

    def model_inputs(self, log_mel, pitch=None, velocity=None):
        """What the model takes for normalised `log_mel` (batch, n_mels, n_frames, 1): the array, or a dict.

        Example:
        >>> from keras_timbre.models.timbre_vae import TimbreVAE
        >>> model = TimbreVAE(input_shape=(16, 32, 1), filters=(4, 8), latent_dim=2)
        >>> model.model_inputs(np.zeros((1, 16, 32, 1))).shape
        (1, 16, 32, 1)
        """
        if not self.is_conditioned:
            return log_mel
        if pitch is None or velocity is None:
            raise ValueError(f"{type(self).__name__} needs each note's pitch and velocity (pass the notes' records)")
        return {LOG_MEL: log_mel, "pitch": np.asarray(pitch, "float32"), "velocity": np.asarray(velocity, "float32")}

    def split_inputs(self, inputs, keys: tuple[str, ...] | None = None):
        """`(log_mel, pitch, velocity)` of the model's inputs, each None where absent.

        Raises a ValueError unless `inputs` hold `keys` (default: `INPUT_KEYS`;
        encoding needs only `ENCODE_KEYS`).
        """
        if not self.is_conditioned:
            return inputs, None, None
        keys = self.INPUT_KEYS if keys is None else keys
        if not isinstance(inputs, dict) or any(key not in inputs for key in keys):
            raise ValueError(
                f"{type(self).__name__} takes a dict with keys {keys} (log-mel, MIDI pitch, velocity), "
                f"got {type(inputs).__name__}{sorted(inputs) if isinstance(inputs, dict) else ''}"
            )
        pitch, velocity = (_vector(inputs[key]) if key in inputs else None for key in CONDITION_KEYS)
        return inputs[LOG_MEL], pitch, velocity

    def check_input_shape(self, shape) -> None:
        """Raises a ValueError naming the expected shape unless the batch shape `shape` matches."""
        shape = tuple(shape)
        expected = self.spectrogram_shape
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            hint = " (add a trailing channel axis)" if tuple(shape[1:]) == expected[:2] else ""
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"= (batch, n_mels, n_frames, channels), got {shape}{hint}. Check that the feature "
                f"FrontendConfig matches the one the model was built for."
            )

    def check_feature_shape(self, feature_shape) -> None:
        """Raises a ValueError unless a frontend's `(n_mels, n_frames)` matches the model."""
        feature_shape = tuple(feature_shape)
        if feature_shape != self.spectrogram_shape[:2]:
            raise ValueError(
                f"feature config gives (n_mels, n_frames) = {feature_shape} but the model expects "
                f"{self.spectrogram_shape[:2]}; use the FrontendConfig the model was trained with"
            )

    # ---------------------------------------------------------------- building
    def build(self, input_shape=None):
        """Builds every part by one symbolic call of the model (the shape given must be the model's)."""
        if self.built:  # built in __init__; KerasTuner's Hyperband calls build again
            return
        log_mel = keras.KerasTensor((None,) + self.spectrogram_shape)
        labels = {key: keras.KerasTensor((None,)) for key in self.INPUT_KEYS if key != LOG_MEL}
        self.call({LOG_MEL: log_mel, **labels} if labels else log_mel, training=False)
        self.built = True

    def load_own_variables(self, store):
        adopt_legacy_layout(store, self)  # a 0.1/0.2 file: its weights re-pathed for the parts
        super().load_own_variables(store)

    # ---------------------------------------------------------------- API
    def encode(self, inputs, training=False):
        """`(z_mean, z_log_var)` of the code of the model's inputs."""
        z_mean, z_log_var, _ = self.encode_all(inputs, training=training)
        return z_mean, z_log_var

    def decode(self, code, pitch=None, velocity=None, temperature: float = 0.0):
        """Normalised log-mel rendered from `code` (batch, latent_dim) alone.

        A conditioned model needs `pitch` and `velocity` (MIDI, scalars or
        (batch,)); its latent groups are at their prior means at `temperature`
        0 and drawn with their prior std scaled by `temperature` above, up to
        the model's `max_temperature` (a higher one is refused).
        """
        labels = self._labels_for(code, pitch, velocity)
        temperature = self.check_temperature(temperature)
        return self.render(ops.cast(ops.convert_to_tensor(code), "float32"), labels, temperature=temperature)

    @property
    def max_temperature(self) -> float:
        """The highest `decode` temperature the model renders (`MAX_TEMPERATURE`; a variant may say less)."""
        return MAX_TEMPERATURE

    def check_temperature(self, temperature) -> float:
        """`temperature` as a float, or a ValueError unless it is a number from 0 to `max_temperature`.

        Example:
        >>> from keras_timbre.models.timbre_vae import TimbreVAE
        >>> TimbreVAE(input_shape=(16, 16, 1), filters=(4,), latent_dim=2).check_temperature(1)
        1.0
        """
        value = float(temperature)
        if not 0.0 <= value <= self.max_temperature:  # NaN fails too
            raise ValueError(
                f"temperature must be a number from 0 to {self.max_temperature:g} for this {self.variant} model "
                f"(0: the priors' means, {self.max_temperature:g}: the highest it was trained to render), "
                f"got {temperature}"
            )
        return value

    def reconstruct(self, inputs, from_code: bool = False, use_skips: bool | None = None):
        """Deterministic reconstruction from the posterior means.

        `from_code=True` renders from the code alone (`decode(encode(x)[0], ...)`:
        skips zeroed, latent groups at their prior means); comparing both
        errors measures how much a reconstruction leans on the encoder's
        detail. `use_skips` is the 0.1 name of `not from_code`.
        """
        if use_skips is not None:
            warnings.warn("reconstruct(use_skips=...) is now reconstruct(from_code=...)", DeprecationWarning, 2)
            from_code = not use_skips
        if from_code:
            _, pitch, velocity = self.split_inputs(inputs)
            return self.render(self.encode(inputs)[0], (pitch, velocity), temperature=0.0)
        return self(inputs, training=False)["reconstruction"]

    def sample(self, n: int, pitch=None, velocity=None, temperature: float = 0.0, seed: int | None = None):
        """`n` spectrograms decoded from codes drawn from N(0, I) (at `pitch`, `velocity` if conditioned)."""
        code = keras.random.normal((int(n), self.latent_dim), seed=seed)
        return self.decode(code, pitch, velocity, temperature)

    def _labels_for(self, code, pitch, velocity):
        if not self.is_conditioned:
            if pitch is not None or velocity is not None:
                raise ValueError(f"{type(self).__name__} is not conditioned on pitch: decode(code) takes none")
            return None, None
        if pitch is None or velocity is None:
            raise ValueError(f"{type(self).__name__} renders at a pitch and velocity: decode(code, pitch, velocity)")
        batch = ops.shape(code)[0]
        return ops.ones((batch,), "float32") * _vector(pitch), ops.ones((batch,), "float32") * _vector(velocity)

    # ---------------------------------------------------------------- training
    def compile(self, optimizer=None, jit_compile=None, **kwargs):
        """`keras.Model.compile` with the family's defaults: `default_optimizer()`, `JIT_COMPILE`; no `loss`."""
        if kwargs.get("loss") is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss in compute_loss; do not pass `loss`")
        super().compile(
            optimizer=default_optimizer() if optimizer is None else optimizer,
            jit_compile=JIT_COMPILE if jit_compile is None else jit_compile,
            **kwargs,
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; with `sample_weight`, pass the target too: `fit(x, x, sample_weight=w)`."""
        _check_weights_have_target(type(self).__name__, "fit", y, kwargs.get("sample_weight"))
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`; with `sample_weight`, pass the target too (see `fit`)."""
        _check_weights_have_target(type(self).__name__, "evaluate", y, kwargs.get("sample_weight"))
        return super().evaluate(x, y, *args, **kwargs)

    def compile_from_config(self, config):
        # Restores the optimizer on load. jit_compile is resolved afresh ("auto")
        # for the loading backend: the saving backend's choice may be slow here.
        config = keras.saving.deserialize_keras_object(config)
        config.pop("jit_compile", None)
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the loss terms; updates their trackers.

        `sample_weight` (from `fit(..., sample_weight=w)`), one weight per
        example, weights every term's batch mean as Keras' losses do (see
        `keras_timbre.models.losses`); other shapes raise a ValueError.
        """
        log_mel = self.split_inputs(x)[0]
        target = log_mel if y is None else y
        if y_pred is None:
            y_pred = self(x, training=training)
        weights = None if sample_weight is None else losses.example_weights(sample_weight)
        reconstructed = y_pred["reconstruction"]
        reconstruction_term = losses.reconstruction_loss(target, reconstructed, self.reconstruction, weights)
        kl_term = self.kl_term(y_pred, weights)
        # A gradient term whose weight was 0 at construction is only measured:
        # stop_gradient spares its backward pass.
        mel_grad_term = losses.mel_gradient_loss(target, self._maybe_stop(reconstructed, "grad_weight"), weights)
        time_grad_term = losses.time_gradient_loss(target, self._maybe_stop(reconstructed, "time_grad_weight"), weights)
        terms = [
            reconstruction_term,
            ops.cast(self.beta, kl_term.dtype) * kl_term,
            ops.cast(self.grad_weight, mel_grad_term.dtype) * mel_grad_term,
            ops.cast(self.time_grad_weight, time_grad_term.dtype) * time_grad_term,
            *self.extra_losses(x, y_pred),
            *self.losses,
        ]
        self.reconstruction_tracker.update_state(reconstruction_term)
        self.kl_tracker.update_state(kl_term)
        self.mel_grad_tracker.update_state(mel_grad_term)
        self.time_grad_tracker.update_state(time_grad_term)
        # Under tf.distribute Keras sums replica gradients: return this replica's share.
        return losses.scale_loss_for_replicas(sum(terms))

    def kl_term(self, y_pred, weights):
        """The KL that `beta` weighs: the code's (a variant with latent groups adds theirs)."""
        return losses.kl_divergence(y_pred["z_mean"], y_pred["z_log_var"], self.free_bits, weights)

    def extra_losses(self, x, y_pred) -> list:
        """A variant's own loss terms beyond the family's (none here)."""
        return []

    def _maybe_stop(self, reconstructed, weight_name):
        return ops.stop_gradient(reconstructed) if self._initial_weights[weight_name] == 0 else reconstructed

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_shape": list(self.spectrogram_shape),
                "latent_dim": self.latent_dim,
                "filters": list(self.filters),
                "beta": self._initial_weights["beta"],
                "grad_weight": self._initial_weights["grad_weight"],
                "time_grad_weight": self._initial_weights["time_grad_weight"],
                "reconstruction": self.reconstruction,
                "free_bits": self.free_bits,
                "normalization": self.normalization,
                "activation": self.activation,
                "seed": self.seed,
            }
        )
        return config


def _vector(values):
    return ops.reshape(ops.cast(values, "float32"), (-1,))


def _check_weights_have_target(model: str, method: str, y, sample_weight) -> None:
    # Keras packs (x, None, w) as x alone: the weights would silently vanish.
    if y is None and sample_weight is not None:
        raise ValueError(
            f"{model}.{method}: Keras drops sample_weight when y is None; pass the target as well, "
            f"e.g. model.{method}(x, x, sample_weight=w)"
        )


def _check_arguments(input_shape, filters, latent_dim, beta, grad_weight, reconstruction, free_bits):
    """Raises a ValueError naming the first argument that cannot work."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (n_mels, n_frames, channels), got {input_shape}")
    if not filters:
        raise ValueError("filters must name at least one encoder block")
    factor = 2 ** len(filters)
    if input_shape[0] % factor or input_shape[1] % factor:
        raise ValueError(
            f"input_shape {input_shape}: n_mels and n_frames must be divisible by 2**len(filters) = {factor} "
            f"(filters={filters})"
        )
    if reconstruction not in losses.RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {losses.RECONSTRUCTIONS}, got {reconstruction!r}")
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}")
    for name, value in (("latent_dim", latent_dim), ("beta", beta), ("grad_weight", grad_weight)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
