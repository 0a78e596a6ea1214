"""TimbreVAE: the paper's convolutional beta-VAE on log-mel spectrograms, with
optional U-Net skips and a mel-axis gradient difference loss (its four variants).

A `TimbreModel` (`models/family.py`) composed of a `CodeEncoder` and a
`DecoderPath` (`models/parts.py`); the loss terms live in the family's
`compute_loss`, which Keras' own train step calls on TensorFlow, JAX and torch.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_timbre.models.family import TimbreModel
from keras_timbre.models.layers import Sampling
from keras_timbre.models.parts import CodeEncoder, DecoderPath
from keras_timbre.models.training_defaults import DEFAULT_NORMALIZATION

DEFAULT_INPUT_SHAPE = (128, 256, 1)
DEFAULT_FILTERS = (16, 32, 64, 128)
DEFAULT_LATENT_DIM = 64
DEFAULT_BETA = 1e-3
DEFAULT_GRAD_WEIGHT = 1.0
DEFAULT_SKIP_DROPOUT = 0.5
# The paper's variants: name -> (use_skips, mel-gradient loss on). Everything else (filters, latent
# size, beta, optimiser, seed) is shared so the variants differ in one thing.
VARIANTS = {
    "baseline": (False, False),
    "skip": (True, False),
    "grad": (False, True),
    "skip+grad": (True, True),
}


@keras.saving.register_keras_serializable(package="keras_timbre")
class TimbreVAE(TimbreModel):
    """Convolutional beta-VAE on normalised log-mel spectrograms.

    Encoder (`CodeEncoder`, the part named "encoder"): `len(filters)` strided
    `EncoderBlock`s, then dense heads for the posterior mean and log-variance.
    Decoder (`DecoderPath`, "decoder"): a dense layer back to the smallest
    feature map, `DecoderBlock`s that up-sample by transposed
    convolution (sub-pixel on JAX; see `layers.Conv2DTranspose`) and, with
    `use_skips`, mix in the encoder feature of the same resolution, and a final transposed convolution to one channel.

    Loss: `reconstruction + beta * KL + grad_weight * mel_gradient
    + time_grad_weight * time_gradient`. `beta`, `grad_weight` and
    `time_grad_weight` are non-trainable `keras.Variable`s, so callbacks (e.g.
    `keras_timbre.callbacks.BetaWarmup`) can schedule them during `fit`. A
    gradient term built with weight 0 (e.g. in "baseline") is still measured
    and tracked but not differentiated, which saves its backward pass; to
    schedule a gradient weight up from zero, build with a small nonzero one.

    Skip dropout: in training each example's skips are all zeroed with
    probability `skip_dropout`, so the decoder also learns to work from `z`
    alone, which `decode(z)` does (prior samples, interpolation).
    `reconstruct(x, from_code=True)` measures how much a reconstruction
    leans on the skips.

    Args:
        input_shape: `(n_mels, n_frames, 1)`; both spatial sizes must be
            divisible by `2 ** len(filters)`.
        latent_dim: size of z.
        filters: channels of the encoder blocks (the decoder mirrors them).
        use_skips: U-Net skips from encoder to decoder.
        skip_dropout: probability of dropping all skips of an example in
            training (ignored without skips).
        beta: initial KL weight.
        grad_weight: initial weight of the mel-axis gradient difference loss.
        time_grad_weight: initial weight of the time-axis gradient loss.
        reconstruction: "mse" or "l1".
        free_bits: minimum KL per latent dimension, nats (0 disables).
        normalization: "batch", "group" or None (the default; see
            `DEFAULT_NORMALIZATION`), in every block.
        activation: activation of every block.
        seed: seed of the sampling noise and skip dropout. Seed weight
            initialisation with `keras.utils.set_random_seed`.
        **kwargs: standard `keras.Model` arguments (e.g. `name`, or
            `dtype="mixed_bfloat16"`, which every sublayer takes: bf16
            compute, float32 weights, posterior and output; see
            `resolve_precision`).

    Example:
    >>> import numpy as np
    >>> model = TimbreVAE(input_shape=(32, 64, 1), latent_dim=8, filters=(4, 8))
    >>> model.compile()
    >>> x = np.random.default_rng(0).normal(size=(4, 32, 64, 1)).astype("float32")
    >>> history = model.fit(x, batch_size=2, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['kl_loss', 'loss', 'mel_grad_loss', 'reconstruction_loss', 'time_grad_loss']
    >>> tuple(model(x)["reconstruction"].shape)
    (4, 32, 64, 1)
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
        latent_dim: int = DEFAULT_LATENT_DIM,
        filters: tuple[int, ...] = DEFAULT_FILTERS,
        use_skips: bool = True,
        skip_dropout: float = DEFAULT_SKIP_DROPOUT,
        beta: float = DEFAULT_BETA,
        grad_weight: float = DEFAULT_GRAD_WEIGHT,
        normalization: str | None = DEFAULT_NORMALIZATION,
        seed: int | None = 0,
        **kwargs,
    ):
        if not 0.0 <= skip_dropout < 1.0:
            raise ValueError(f"skip_dropout must be in [0, 1), got {skip_dropout}")
        super().__init__(
            input_shape, latent_dim, filters, beta, grad_weight, normalization=normalization, seed=seed, **kwargs
        )
        self.use_skips = bool(use_skips)
        self.skip_dropout = float(skip_dropout)
        options = self.part_options()
        self.encoder = CodeEncoder(self.filters, self.latent_dim, name="encoder", **options)
        # z_log_var is clipped once, by the encoder, where both the KL term and Sampling see it.
        self.sampling = Sampling(seed=seed, log_var_range=None, name="sampling", dtype=self.dtype_policy)
        self.decoder = DecoderPath(
            self.spectrogram_shape, self.filters, skip_channels=self.use_skips, name="decoder", **options
        )
        self.dropout_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self.build()

    RUN_KEYS = TimbreModel.RUN_KEYS + ("skip_dropout", "use_skips")

    @property
    def parts(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    @property
    def renders_beyond_code(self) -> bool:
        return self.use_skips

    # ---------------------------------------------------------------- forward
    def encode_all(self, x, training=False):
        """`(z_mean, z_log_var, skips)`: the posterior and the encoder features the decoder's skips take."""
        self.check_input_shape(x.shape)
        z_mean, z_log_var, features = self.encoder(x, training=training)
        # The deepest feature is the bottleneck itself; only shallower ones skip.
        return z_mean, z_log_var, features[:-1]

    def render(self, code, labels=(None, None), temperature: float = 0.0):
        """The spectrogram of `code` alone (no skips); this model takes no labels and has no groups."""
        return self.decoder(code, training=False)

    def call(self, inputs, training=False):
        z_mean, z_log_var, skips = self.encode_all(inputs, training=training)
        z = self.sampling([z_mean, z_log_var], training=training)
        if not self.use_skips:
            skips = None
        elif training and self.skip_dropout > 0:
            batch = ops.shape(z_mean)[0]
            keep = keras.random.uniform((batch, 1, 1, 1), seed=self.dropout_seed_generator) >= self.skip_dropout
            keep = ops.cast(keep, skips[0].dtype)
            skips = [skip * keep for skip in skips]
        reconstruction = self.decoder(z, skips, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var}

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return {
            "reconstruction": (batch,) + self.spectrogram_shape,
            "z_mean": (batch, self.latent_dim),
            "z_log_var": (batch, self.latent_dim),
        }

    # ---------------------------------------------------------------- config
    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> "TimbreVAE":
        """Builds one of the paper's variants: baseline, skip, grad or skip+grad.

        The variants share every other hyperparameter; `overrides` apply to
        all (e.g. `input_shape`, `beta`, and `grad_weight`, which only the
        grad variants use).

        Example:
        >>> model = TimbreVAE.from_variant("skip", input_shape=(32, 64, 1), filters=(4, 8))
        >>> model.use_skips, float(model.grad_weight)
        (True, 0.0)
        """
        if name not in VARIANTS:
            raise ValueError(
                f"Unknown variant {name!r}; choose one of {', '.join(VARIANTS)} (the paper's; every variant: "
                f"keras_timbre.models.variants.build_model)"
            )
        use_skips, use_grad = VARIANTS[name]
        overrides.setdefault("grad_weight", DEFAULT_GRAD_WEIGHT)
        if not use_grad:
            overrides["grad_weight"] = 0.0
        overrides["use_skips"] = use_skips
        overrides.setdefault("name", f"timbre_vae_{name.replace('+', '_')}")
        return cls(**overrides)

    @property
    def variant(self) -> str:
        """The variant name this configuration corresponds to."""
        use_grad = self._initial_weights["grad_weight"] > 0
        return {v: k for k, v in VARIANTS.items()}[(self.use_skips, use_grad)]

    def get_config(self):
        config = super().get_config()
        config.update({"use_skips": self.use_skips, "skip_dropout": self.skip_dropout})
        return config
