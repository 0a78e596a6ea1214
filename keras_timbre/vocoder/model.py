"""`Vocoder`: the frontend's dB log-mel to a waveform, a Vocos-style Keras model.

A `VocosBackbone` (ConvNeXt blocks over frames) feeds an `ISTFTHead` that
corrects the filter bank's pseudo-inverse magnitude, predicts the phase and
inverts the STFT (see `keras_timbre.vocoder.layers`). The model knows the
`FrontendConfig` of the features it reads (`frontend`); `to_audio` refuses
features of another shape. Its loss, in `compute_loss`, is the mel L1 loss
plus the multi-resolution STFT loss against the real waveform
(`keras_timbre.vocoder.losses`), so `fit` takes `(log_mel_db, waveform)`
pairs: features `(batch, n_mels, T)` in dB, audio `(batch, T * hop)`.

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> frontend = FrontendConfig(n_mels=16, n_fft=256, hop_length=64, duration=0.25)
>>> vocoder = Vocoder(frontend, channels=8, num_blocks=1)
>>> vocoder.to_audio(np.full((3, 16, 62), -20.0, np.float32)).shape  # 62 frames of 64 samples
(3, 3968)
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.griffin_lim import peak_limit
from keras_timbre.vocoder import losses
from keras_timbre.vocoder.layers import ISTFTHead, VocosBackbone

DEFAULT_CHANNELS = 192
DEFAULT_BLOCKS = 6
DEFAULT_MEL_WEIGHT = 2.0
DEFAULT_STFT_WEIGHT = 1.0
DEFAULT_LEARNING_RATE = 1e-3
# XLA on TensorFlow's CPU: 1.74 s a training step instead of 0.45 (batch 16 of 1 s crops, one core).
JIT_COMPILE = {"tensorflow": False}
# The vocoder is convolutional over frames: a note's length does not change what a frame means.
NOTE_LENGTH_FIELDS = ("duration",)


class FrontendMismatchError(ValueError):
    """Features whose shape or frontend differ from the vocoder's."""


def as_frontend(frontend: FrontendConfig | dict | None) -> FrontendConfig:
    """A `FrontendConfig` from a config, its dict, or None (the default frontend)."""
    if frontend is None:
        return FrontendConfig()
    if isinstance(frontend, FrontendConfig):
        return frontend
    return FrontendConfig.from_dict(dict(frontend))


@keras.saving.register_keras_serializable(package="keras_timbre")
class Vocoder(keras.Model):
    """The frontend's dB log-mel `(batch, n_mels, T)` to audio `(batch, T * hop)`.

    Args:
        frontend: The features' `FrontendConfig` (or its dict); None for the default.
        channels: Backbone width.
        num_blocks: ConvNeXt blocks.
        intermediate: MLP width of a block; None for 3 x channels.
        kernel_size: Frames a depthwise convolution sees.
        use_prior: Start the magnitude from the filter bank's pseudo-inverse.
        mel_weight: Weight of the mel L1 loss.
        stft_weight: Weight of the multi-resolution STFT loss.
        stft_resolutions: FFT sizes of the multi-resolution STFT loss.
        **kwargs: `keras.Model` arguments (name, dtype).
    """

    def __init__(
        self,
        frontend: FrontendConfig | dict | None = None,
        channels: int = DEFAULT_CHANNELS,
        num_blocks: int = DEFAULT_BLOCKS,
        intermediate: int | None = None,
        kernel_size: int = 7,
        use_prior: bool = True,
        mel_weight: float = DEFAULT_MEL_WEIGHT,
        stft_weight: float = DEFAULT_STFT_WEIGHT,
        stft_resolutions: Sequence[int] = losses.STFT_RESOLUTIONS,
        **kwargs,
    ):
        kwargs.setdefault("name", "vocoder")
        super().__init__(**kwargs)
        self.frontend = as_frontend(frontend)
        self.channels, self.num_blocks, self.kernel_size = int(channels), int(num_blocks), int(kernel_size)
        self.intermediate = int(intermediate) if intermediate else 3 * self.channels
        self.use_prior = bool(use_prior)
        self.mel_weight, self.stft_weight = float(mel_weight), float(stft_weight)
        self.stft_resolutions = tuple(int(n) for n in stft_resolutions)
        frontend_dict = self.frontend.to_dict()
        self.backbone = VocosBackbone(
            self.channels,
            self.num_blocks,
            frontend_dict,
            self.intermediate,
            self.kernel_size,
            dtype=self.dtype_policy,
            name="backbone",
        )
        self.head = ISTFTHead(frontend_dict, use_prior=self.use_prior, dtype=self.dtype_policy, name="head")
        self.mel_tracker = keras.metrics.Mean(name="mel_loss")
        self.stft_tracker = keras.metrics.Mean(name="stft_loss")
        self.build((None, self.frontend.n_mels, None))

    def build(self, input_shape):
        self.backbone.build(input_shape)
        hidden_shape = self.backbone.compute_output_shape(input_shape)
        self.head.build(hidden_shape, input_shape)
        self.built = True

    def call(self, log_mel_db, training=False):
        return self.head(self.backbone(log_mel_db), log_mel_db)

    def compute_output_shape(self, input_shape):
        steps = input_shape[2]
        return (input_shape[0], None if steps is None else steps * self.frontend.hop_length)

    # ------------------------------------------------------------------ training
    def compile(self, optimizer=None, jit_compile=None, **kwargs):
        """`keras.Model.compile` with Adam (clipnorm 1) at `DEFAULT_LEARNING_RATE` by default; no `loss`.

        `jit_compile` defaults to `JIT_COMPILE` for the backend ("auto" where not listed).
        """
        if kwargs.get("loss") is not None:
            raise ValueError("Vocoder computes its own loss in compute_loss; do not pass `loss` to compile")
        if optimizer is None:
            optimizer = keras.optimizers.Adam(DEFAULT_LEARNING_RATE, clipnorm=1.0)
        if jit_compile is None:
            jit_compile = JIT_COMPILE.get(keras.backend.backend(), "auto")
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def compile_from_config(self, config):
        # jit_compile is resolved afresh for the loading backend, as TimbreVAE's.
        config = keras.saving.deserialize_keras_object(config)
        config.pop("jit_compile", None)
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`mel_weight` x mel L1 + `stft_weight` x multi-resolution STFT, against the waveform `y`.

        Both terms are batch means in float32; `sample_weight` is not supported.
        """
        if sample_weight is not None:
            raise ValueError("Vocoder.compute_loss takes no sample_weight")
        if y_pred is None:
            y_pred = self(x, training=training)
        target, prediction = ops.cast(y, "float32"), ops.cast(y_pred, "float32")
        mel_term = losses.mel_l1_loss(target, prediction, self.frontend)
        stft_term = losses.multi_resolution_stft_loss(target, prediction, self.stft_resolutions)
        self.mel_tracker.update_state(mel_term)
        self.stft_tracker.update_state(stft_term)
        total = self.mel_weight * mel_term + self.stft_weight * stft_term
        if self.losses:
            total = total + sum(self.losses)
        return total

    # ------------------------------------------------------------------ inference
    def check_features(self, log_mel_db: np.ndarray) -> np.ndarray:
        """`log_mel_db` as float32 `(notes, n_mels, n_frames)`, or a one-line `FrontendMismatchError`."""
        features = np.asarray(log_mel_db, np.float32)
        if features.ndim == 2:
            features = features[None]
        if features.ndim == 4 and features.shape[-1] == 1:
            features = features[..., 0]
        if features.ndim != 3 or features.shape[1] != self.frontend.n_mels:
            raise FrontendMismatchError(
                f"the vocoder reads (notes, {self.frontend.n_mels} mels, frames) log-mel in dB "
                f"(frontend {self.frontend.to_dict()}), got shape {features.shape}"
            )
        return features

    def check_frontend(self, frontend: FrontendConfig | dict, what: str = "run") -> None:
        """Raises a one-line `FrontendMismatchError` naming each field where `frontend` differs from the vocoder's.

        Example:
        >>> Vocoder(FrontendConfig(n_mels=16, duration=0.1), channels=4, num_blocks=1).check_frontend(
        ...     FrontendConfig(n_mels=32, duration=0.1))
        Traceback (most recent call last):
        ...
        keras_timbre.vocoder.model.FrontendMismatchError: this vocoder cannot voice the run's features: \
n_mels: vocoder has 16, run has 32
        """
        other = as_frontend(frontend)
        diffs = [
            f"{key}: vocoder has {value!r}, {what} has {getattr(other, key)!r}"
            for key, value in self.frontend.to_dict().items()
            if key not in NOTE_LENGTH_FIELDS and getattr(other, key) != value
        ]
        if diffs:
            raise FrontendMismatchError(f"this vocoder cannot voice the {what}'s features: " + "; ".join(diffs))

    def to_audio(self, log_mel_db: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Audio `(notes, n_frames * hop)` float32 for dB log-mel `(notes, n_mels, n_frames)`.

        Every waveform is peak-limited to [-1, 1], as the Griffin-Lim inverses'
        (`keras_timbre.audio.griffin_lim.peak_limit`).
        """
        features = self.check_features(log_mel_db)
        if len(features) == 0:
            return np.zeros((0, features.shape[2] * self.frontend.hop_length), np.float32)
        parts = []
        for start in range(0, len(features), batch_size):
            batch = features[start : start + batch_size]
            parts.append(np.asarray(ops.convert_to_numpy(self._predict_batch(batch)), np.float32))
        return peak_limit(np.concatenate(parts)).astype(np.float32)

    def _predict_batch(self, batch: np.ndarray):
        """One batch through the model, compiled once per input shape where the backend allows it."""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if getattr(self, "_tf_predict", None) is None:
                self._tf_predict = tf.function(lambda x: self(x, training=False), reduce_retracing=True)
            return self._tf_predict(tf.constant(batch))
        if keras.backend.backend() == "jax":
            import jax

            if getattr(self, "_jax_predict", None) is None:
                self._jax_predict = jax.jit(self._stateless_predict)
            return self._jax_predict([v.value for v in self.trainable_variables + self.non_trainable_variables], batch)
        if keras.backend.backend() == "torch":
            import torch

            with torch.no_grad():
                return self(ops.convert_to_tensor(batch), training=False)
        return self(batch, training=False)

    def _stateless_predict(self, values, batch):
        trainable = values[: len(self.trainable_variables)]
        non_trainable = values[len(self.trainable_variables) :]
        output, _ = self.stateless_call(trainable, non_trainable, batch, training=False)
        return output

    @property
    def num_weight_bytes(self) -> int:
        """Bytes of the model's weights (float32 unless the dtype policy says otherwise)."""
        return int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in self.weights))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            frontend=self.frontend.to_dict(),
            channels=self.channels,
            num_blocks=self.num_blocks,
            intermediate=self.intermediate,
            kernel_size=self.kernel_size,
            use_prior=self.use_prior,
            mel_weight=self.mel_weight,
            stft_weight=self.stft_weight,
            stft_resolutions=list(self.stft_resolutions),
        )
        return config
