"""TimbreVAE: a convolutional beta-VAE on log-mel spectrograms, with optional
U-Net skips and a mel-axis gradient difference loss (the paper's four variants).

The loss terms live in `compute_loss`, which Keras' own train step calls on
TensorFlow, JAX and torch alike; there is no backend-specific training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import ops

from keras_timbre.models import losses
from keras_timbre.models.layers import Conv2DTranspose
from keras_timbre.models.layers import DecoderBlock
from keras_timbre.models.layers import EncoderBlock
from keras_timbre.models.layers import Sampling
from keras_timbre.models.variants import VARIANTS, check_variant

DEFAULT_INPUT_SHAPE = (128, 256, 1)
DEFAULT_FILTERS = (16, 32, 64, 128)
DEFAULT_LATENT_DIM = 64
DEFAULT_BETA = 1e-3
DEFAULT_GRAD_WEIGHT = 1.0
DEFAULT_SKIP_DROPOUT = 0.5
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_CLIPNORM = 1.0
LOG_VAR_RANGE = (-10.0, 10.0)

# `compile()` passes jit_compile="auto", which Keras resolves per backend in
# `Trainer._resolve_auto_jit_compile` (keras/src/trainers/trainer.py, Keras 3.15):
# torch -> False (eager); TensorFlow -> False on a CPU-only machine or under a
# tf.distribute strategy, else XLA; JAX -> jit. That is what we measured fastest
# on the 2-core CPU (benchmarks/results/training.md: TF 168 samples/s without XLA
# vs 107 with; JAX 75 jitted vs 33 op-by-op; torch 94 eager vs 83 compiled).
JIT_COMPILE = "auto"
# No normalisation by default. On nsynth-mini's held-out pitches (skip+grad, 20 epochs, 2 seeds,
# docs/report.md) it gave lower LSD than BatchNorm (1.44 vs 1.56-1.75 dB) and equal mel-gradient
# error, but a worse onset error (2.82 vs 2.09-2.16 dB); it trains faster where BatchNorm's
# element-wise work is a large share: TensorFlow in bfloat16 1.5x, torch 1.2x
# (benchmarks/results/training.md). Files saved with "batch" keep it (it is in their config).
DEFAULT_NORMALIZATION = None
# `train(precision=...)` / `keras-timbre train --precision`: the model's dtype policy, or "auto".
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Backends whose CPU training "auto" runs in mixed_bfloat16 where the CPU has bf16 dot products
# (AVX512-BF16 or AMX): TensorFlow (oneDNN) and torch gain from it; XLA:CPU (JAX) loses
# (benchmarks/results/training.md).
BF16_BACKENDS = ("tensorflow", "torch")


def resolve_precision(precision: str = "auto") -> str:
    """The dtype policy name `precision` stands for on this machine and backend.

    "auto" gives "mixed_bfloat16" for CPU training on the backends in
    `BF16_BACKENDS` when the CPU reports native bf16 (`avx512_bf16` or
    `amx_bf16` in /proc/cpuinfo), else "float32". Reconstruction quality in
    bfloat16 stayed within the seed spread of float32 (docs/report.md).

    Example:
    >>> resolve_precision("float32")
    'float32'
    >>> resolve_precision("auto") in ("float32", "mixed_bfloat16")
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if keras.backend.backend() not in BF16_BACKENDS or _has_accelerator():
        return "float32"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _has_accelerator() -> bool:
    # Only CPU training was measured; on a GPU keep float32.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    import torch

    return torch.cuda.is_available()


def default_optimizer(learning_rate: float = DEFAULT_LEARNING_RATE) -> keras.optimizers.Optimizer:
    """Adam with gradient-norm clipping, the optimiser `TimbreVAE.compile` uses by default."""
    return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=DEFAULT_CLIPNORM)


@keras.saving.register_keras_serializable(package="keras_timbre")
class TimbreVAE(keras.Model):
    """Convolutional beta-VAE on normalised log-mel spectrograms.

    Encoder: `len(filters)` strided `EncoderBlock`s, then dense heads for the
    posterior mean and log-variance. Decoder: a dense layer back to the
    smallest feature map, `DecoderBlock`s that up-sample by transposed
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
    `reconstruct(x, use_skips=False)` measures how much a reconstruction
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
        time_grad_weight: float = 0.0,
        reconstruction: str = "mse",
        free_bits: float = 0.0,
        normalization: str | None = DEFAULT_NORMALIZATION,
        activation: str = "leaky_relu",
        seed: int | None = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        input_shape = tuple(int(d) for d in input_shape)
        filters = tuple(int(f) for f in filters)
        _check_arguments(input_shape, filters, latent_dim, skip_dropout, beta, grad_weight, reconstruction, free_bits)

        self.spectrogram_shape = input_shape
        self.latent_dim = int(latent_dim)
        self.filters = filters
        self.use_skips = bool(use_skips)
        self.skip_dropout = float(skip_dropout)
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

        self._create_layers(input_shape, filters, normalization, activation, seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.mel_grad_tracker = keras.metrics.Mean(name="mel_grad_loss")
        self.time_grad_tracker = keras.metrics.Mean(name="time_grad_loss")
        self.build((None,) + input_shape)

    def _create_layers(self, input_shape, filters, normalization, activation, seed) -> None:
        """The encoder, posterior heads, sampling and decoder sublayers (built by `build`)."""
        # Every sublayer takes the model's dtype policy: TimbreVAE(dtype="mixed_bfloat16") trains in bf16.
        dtype = self.dtype_policy
        block_kwargs = {"normalization": normalization, "activation": activation, "dtype": dtype}
        self.encoder_blocks = [
            EncoderBlock(f, name=f"encoder_block_{i}", **block_kwargs) for i, f in enumerate(filters)
        ]
        self.flatten = keras.layers.Flatten(name="flatten", dtype=dtype)
        self.z_mean_dense = keras.layers.Dense(self.latent_dim, name="z_mean", dtype=dtype)
        self.z_log_var_dense = keras.layers.Dense(self.latent_dim, name="z_log_var", dtype=dtype)
        # z_log_var is clipped once, in `_encode`, where both the KL term and Sampling see it.
        self.sampling = Sampling(seed=seed, log_var_range=None, name="sampling", dtype=dtype)
        factor = 2 ** len(filters)
        self._bottleneck_shape = (input_shape[0] // factor, input_shape[1] // factor, filters[-1])
        self.decoder_dense = keras.layers.Dense(
            self._bottleneck_shape[0] * self._bottleneck_shape[1] * filters[-1],
            activation=activation,
            name="decoder_dense",
            dtype=dtype,
        )
        self.decoder_reshape = keras.layers.Reshape(self._bottleneck_shape, name="decoder_reshape", dtype=dtype)
        # Decoder block i up-samples to the resolution of encoder block -(i+2).
        self.decoder_blocks = [
            DecoderBlock(
                f,
                skip_channels=f if self.use_skips else 0,
                name=f"decoder_block_{i}",
                **block_kwargs,
            )
            for i, f in enumerate(reversed(filters[:-1]))
        ]
        self.output_conv = Conv2DTranspose(
            input_shape[-1], 4, strides=2, padding="same", name="output_conv", dtype=dtype
        )
        self.dropout_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    # ---------------------------------------------------------------- building
    def build(self, input_shape):
        self.check_input_shape(input_shape)
        if self.built:  # built in __init__; KerasTuner's Hyperband calls build again
            return
        shape = (None,) + self.spectrogram_shape
        for block in self.encoder_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        flat = self.flatten.compute_output_shape(shape)
        self.z_mean_dense.build(flat)
        self.z_log_var_dense.build(flat)
        self.decoder_dense.build((None, self.latent_dim))
        shape = (None,) + self._bottleneck_shape
        for block in self.decoder_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.output_conv.build(shape)
        self.built = True

    def check_input_shape(self, shape) -> None:
        """Raises a ValueError naming the expected shape unless `shape` matches.

        `shape` is a batch shape `(batch, n_mels, n_frames, 1)`; the batch size
        may be anything.
        """
        shape = tuple(shape)
        expected = self.spectrogram_shape
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            hint = " (add a trailing channel axis)" if tuple(shape[1:]) == expected[:2] else ""
            raise ValueError(
                f"TimbreVAE expects input of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) = "
                f"(batch, n_mels, n_frames, channels), got {shape}{hint}. Check that the feature "
                f"FrontendConfig matches the one the model was built for."
            )

    def check_feature_shape(self, feature_shape) -> None:
        """Raises a ValueError unless a frontend's `(n_mels, n_frames)` matches the model.

        Example:
        >>> model = TimbreVAE(input_shape=(32, 64, 1), filters=(4, 8), latent_dim=4)
        >>> model.check_feature_shape((32, 64))
        """
        feature_shape = tuple(feature_shape)
        if feature_shape != self.spectrogram_shape[:2]:
            raise ValueError(
                f"feature config gives (n_mels, n_frames) = {feature_shape} but the model expects "
                f"{self.spectrogram_shape[:2]}; use the FrontendConfig the model was trained with"
            )

    # ---------------------------------------------------------------- forward
    def _encode(self, x, training=None):
        self.check_input_shape(x.shape)
        skips = []  # with strided blocks, each block's output is the skip feature of its resolution
        for block in self.encoder_blocks:
            x = block(x, training=training)
            skips.append(x)
        flat = self.flatten(x)
        # float32 posterior and output under a mixed-precision policy: the KL and losses need it.
        z_mean = ops.cast(self.z_mean_dense(flat), "float32")
        z_log_var = ops.clip(ops.cast(self.z_log_var_dense(flat), "float32"), LOG_VAR_RANGE[0], LOG_VAR_RANGE[1])
        # The deepest feature is the bottleneck itself; only shallower ones skip.
        return z_mean, z_log_var, skips[:-1]

    def _decode(self, z, skips=None, training=None):
        x = self.decoder_reshape(self.decoder_dense(z))
        for i, block in enumerate(self.decoder_blocks):
            skip = skips[-(i + 1)] if (self.use_skips and skips is not None) else None
            x = block(x, skip, training=training)
        return ops.cast(self.output_conv(x), "float32")

    def encode(self, x, training=False):
        """Returns `(z_mean, z_log_var)` of the posterior for spectrograms `x`."""
        z_mean, z_log_var, _ = self._encode(x, training=training)
        return z_mean, z_log_var

    def decode(self, z, training=False):
        """Decodes latents `z` (batch, latent_dim) to spectrograms, without skips."""
        return self._decode(z, None, training=training)

    def reconstruct(self, x, use_skips: bool = True):
        """Deterministic reconstruction from the posterior mean.

        With `use_skips=False` the skips are zeroed, as in `decode(encode(x)[0])`;
        comparing both errors measures how much the model relies on the skips.
        """
        z_mean, _, skips = self._encode(x, training=False)
        return self._decode(z_mean, skips if use_skips else None, training=False)

    def call(self, inputs, training=False):
        z_mean, z_log_var, skips = self._encode(inputs, training=training)
        z = self.sampling([z_mean, z_log_var], training=training)
        if training and self.use_skips and self.skip_dropout > 0:
            batch = ops.shape(z_mean)[0]
            keep = keras.random.uniform((batch, 1, 1, 1), seed=self.dropout_seed_generator) >= self.skip_dropout
            keep = ops.cast(keep, skips[0].dtype)
            skips = [skip * keep for skip in skips]
        reconstruction = self._decode(z, skips, training=training)
        return {"reconstruction": reconstruction, "z_mean": z_mean, "z_log_var": z_log_var}

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return {
            "reconstruction": (batch,) + self.spectrogram_shape,
            "z_mean": (batch, self.latent_dim),
            "z_log_var": (batch, self.latent_dim),
        }

    # ---------------------------------------------------------------- training
    def compile(self, optimizer=None, jit_compile=None, **kwargs):
        """`keras.Model.compile` with this model's defaults.

        `optimizer` defaults to `default_optimizer()` (Adam, clipnorm 1.0) and
        `jit_compile` to "auto" (see `JIT_COMPILE`), which Keras resolves for
        the running backend. Pass no `loss`: the VAE's loss terms are built in.
        """
        if kwargs.get("loss") is not None:
            raise ValueError("TimbreVAE computes its own loss in compute_loss; do not pass `loss` to compile")
        super().compile(
            optimizer=default_optimizer() if optimizer is None else optimizer,
            jit_compile=JIT_COMPILE if jit_compile is None else jit_compile,
            **kwargs,
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; with `sample_weight`, pass the target too: `fit(x, x, sample_weight=w)`."""
        _check_weights_have_target("fit", y, kwargs.get("sample_weight"))
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`; with `sample_weight`, pass the target too (see `fit`)."""
        _check_weights_have_target("evaluate", y, kwargs.get("sample_weight"))
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
        target = x if y is None else y
        if y_pred is None:
            y_pred = self(x, training=training)
        weights = None if sample_weight is None else losses.example_weights(sample_weight)
        reconstructed = y_pred["reconstruction"]
        reconstruction_term = losses.reconstruction_loss(target, reconstructed, self.reconstruction, weights)
        kl_term = self._kl_term(y_pred, weights)
        # A gradient term whose weight was 0 at construction is only measured:
        # stop_gradient spares its backward pass (~0.5M-element ops per term).
        mel_grad_term = losses.mel_gradient_loss(target, self._maybe_stop(reconstructed, "grad_weight"), weights)
        time_grad_term = losses.time_gradient_loss(target, self._maybe_stop(reconstructed, "time_grad_weight"), weights)
        terms = [
            reconstruction_term,
            ops.cast(self.beta, kl_term.dtype) * kl_term,
            ops.cast(self.grad_weight, mel_grad_term.dtype) * mel_grad_term,
            ops.cast(self.time_grad_weight, time_grad_term.dtype) * time_grad_term,
        ]
        if self.losses:
            terms.extend(self.losses)
        total = sum(terms)
        self.reconstruction_tracker.update_state(reconstruction_term)
        self.kl_tracker.update_state(kl_term)
        self.mel_grad_tracker.update_state(mel_grad_term)
        self.time_grad_tracker.update_state(time_grad_term)
        # Under tf.distribute Keras sums replica gradients: return this replica's share.
        return losses.scale_loss_for_replicas(total)

    def _kl_term(self, y_pred, weights):
        """The KL that `beta` weighs: the code's (a hierarchical model adds its groups')."""
        return losses.kl_divergence(y_pred["z_mean"], y_pred["z_log_var"], self.free_bits, weights)

    def _maybe_stop(self, reconstructed, weight_name):
        return ops.stop_gradient(reconstructed) if self._initial_weights[weight_name] == 0 else reconstructed

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
        if check_variant(name) not in VARIANTS:
            raise ValueError(f"{name!r} is not one of the paper's variants; build it with models.variants.build_model")
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
        config.update(
            {
                "input_shape": list(self.spectrogram_shape),
                "latent_dim": self.latent_dim,
                "filters": list(self.filters),
                "use_skips": self.use_skips,
                "skip_dropout": self.skip_dropout,
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


def _check_weights_have_target(method: str, y, sample_weight) -> None:
    # Keras packs (x, None, w) as x alone: the weights would silently vanish.
    if y is None and sample_weight is not None:
        raise ValueError(
            f"TimbreVAE.{method}: Keras drops sample_weight when y is None; pass the target as well, "
            f"e.g. model.{method}(x, x, sample_weight=w)"
        )


def _check_arguments(input_shape, filters, latent_dim, skip_dropout, beta, grad_weight, reconstruction, free_bits):
    """Raises a ValueError naming the first `TimbreVAE` argument that cannot work."""
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
    if not 0.0 <= skip_dropout < 1.0:
        raise ValueError(f"skip_dropout must be in [0, 1), got {skip_dropout}")
    if free_bits < 0:
        raise ValueError(f"free_bits must be >= 0, got {free_bits}")
    for name, value in (("latent_dim", latent_dim), ("beta", beta), ("grad_weight", grad_weight)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
