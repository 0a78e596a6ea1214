"""The log-mel frontend: one config, one feature function, its inverse.

Every model is saved with its `FrontendConfig` and `FeatureStats`, so that
training, evaluation, export and inference compute the same features.

The features are librosa's: `librosa.feature.melspectrogram` (centred,
zero-padded frames, Hann window, power 2, Slaney mel filters) followed by
`librosa.power_to_db(ref=1.0, amin=log_floor, top_db=None)`. Two
implementations compute them, both with librosa's own filter bank and both
within a small fraction of a dB of librosa (tests/test_frontend.py):
`numpy_log_mel` (strided frames, `scipy.fft.rfft` in float32, the sparse
filter bank), which the input pipeline runs per note inside its reader
threads (benchmarks/results/pipeline.md); and
`tf_log_mel` (`tf.signal.stft`), which runs inside an exported SavedModel.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel frontend.

    The defaults give (128 mels, 256 frames) for a 4 s NSynth note at 16 kHz:
    a 15.6 ms hop keeps onsets sharp, and 128 x 256 divides by 16, the
    down-sampling of a four-block encoder.

    Args:
        sample_rate: Rate, in Hz, that audio is resampled to.
        n_fft: FFT size (and window length) in samples.
        hop_length: Hop between frames in samples.
        n_mels: Number of mel bands.
        fmin: Lowest mel band edge in Hz.
        fmax: Highest mel band edge in Hz (at most `sample_rate / 2`).
        duration: Seconds per note; audio is cropped or zero-padded to it.
        log_floor: Power floor before the log: features are
            `10 * log10(max(mel_power, log_floor))` dB. Silence maps to
            `10 * log10(log_floor)`, never to -inf or NaN.

    Example:
    >>> config = FrontendConfig()
    >>> config.feature_shape
    (128, 256)
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 250
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float = 8000.0
    duration: float = 4.0
    log_floor: float = 1e-6

    def __post_init__(self):
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"Invalid FrontendConfig: {message}")

        need(int(self.sample_rate) > 0, f"sample_rate must be > 0, got {self.sample_rate}")
        need(int(self.n_fft) > 0, f"n_fft must be > 0, got {self.n_fft}")
        need(
            0 < int(self.hop_length) <= int(self.n_fft),
            f"hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}",
        )
        need(int(self.n_mels) > 0, f"n_mels must be > 0, got {self.n_mels}")
        need(0 <= self.fmin < self.fmax, f"need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}")
        need(self.fmax <= self.sample_rate / 2, f"fmax={self.fmax} is above Nyquist ({self.sample_rate / 2})")
        need(self.duration > 0, f"duration must be > 0, got {self.duration}")
        need(self.log_floor > 0, f"log_floor must be > 0, got {self.log_floor}")
        need(self.num_samples >= self.hop_length, f"duration={self.duration} s is shorter than one hop")

    @property
    def num_samples(self) -> int:
        """Samples per note after cropping or padding."""
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Frames per note: librosa's centred framing gives one more, dropped."""
        return self.num_samples // self.hop_length

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(n_mels, n_frames) of one note's log-mel."""
        return (self.n_mels, self.n_frames)

    @property
    def floor_db(self) -> float:
        """The value, in dB, of silence."""
        return float(10.0 * np.log10(self.log_floor))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FrontendConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown FrontendConfig fields: {unknown}; known: {sorted(known)}")
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the config as JSON, atomically."""
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FrontendConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No frontend config at {path}")
        return cls.from_dict(json.loads(path.read_text()))

    def check_matches(self, other: "FrontendConfig", what: str = "data") -> None:
        """Raises ValueError naming each field where `other` differs."""
        diffs = [
            f"{k}: run has {v!r}, {what} has {getattr(other, k)!r}"
            for k, v in self.to_dict().items()
            if getattr(other, k) != v
        ]
        if diffs:
            raise ValueError(f"Frontend config mismatch between the run and the {what}: " + "; ".join(diffs))


@functools.lru_cache(maxsize=16)
def mel_filters(config: FrontendConfig) -> np.ndarray:
    """librosa's Slaney mel filter bank, shape (n_mels, 1 + n_fft // 2)."""
    import librosa

    return librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    ).astype(np.float32)


def fit_to_length(waveform, num_samples: int):
    """Crops or zero-pads the last axis of a tf tensor to `num_samples`."""
    import tensorflow as tf

    waveform = waveform[..., :num_samples]
    missing = num_samples - tf.shape(waveform)[-1]
    rank = len(waveform.shape)
    paddings = [[0, 0]] * (rank - 1) + [[0, missing]]
    waveform = tf.pad(waveform, paddings)
    return tf.ensure_shape(waveform, waveform.shape[:-1].concatenate([num_samples]))


def tf_log_mel(waveform, config: FrontendConfig):
    """Log-mel of waveforms at `config.sample_rate`, as a TensorFlow graph op.

    Args:
        waveform: float32 tensor (..., samples), already at the config's rate.
            It is cropped or zero-padded to `config.num_samples`.
        config: The frontend config.

    Returns:
        float32 tensor (..., n_mels, n_frames) in dB.
    """
    import tensorflow as tf

    waveform = tf.convert_to_tensor(waveform, tf.float32)
    waveform = fit_to_length(waveform, config.num_samples)
    half = config.n_fft // 2
    rank = len(waveform.shape)
    # librosa's centred frames: zero padding of n_fft // 2 at both ends.
    padded = tf.pad(waveform, [[0, 0]] * (rank - 1) + [[half, half]])
    stft = tf.signal.stft(
        padded,
        frame_length=config.n_fft,
        frame_step=config.hop_length,
        fft_length=config.n_fft,
        window_fn=tf.signal.hann_window,  # periodic, as scipy's get_window
        pad_end=False,
    )
    stft = stft[..., : config.n_frames, :]
    power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
    filters = tf.constant(mel_filters(config).T)  # (bins, mels)
    mel = tf.tensordot(power, filters, axes=1)  # (..., frames, mels)
    log_mel_db = (10.0 / np.log(10.0)) * tf.math.log(tf.maximum(mel, config.log_floor))
    return tf.linalg.matrix_transpose(log_mel_db)


@functools.lru_cache(maxsize=16)
def _sparse_mel_filters(config: FrontendConfig):
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_filters(config))


@functools.lru_cache(maxsize=16)
def _hann_window(n_fft: int) -> np.ndarray:
    # Periodic, as scipy.signal.get_window("hann") and tf.signal.hann_window.
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def numpy_log_mel(waveform: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Log-mel of a waveform at `config.sample_rate` with numpy and scipy: `tf_log_mel` off the graph.

    Args:
        waveform: float array (samples,) or (batch, samples), already at the
            config's rate; cropped or zero-padded to `config.num_samples`.
        config: The frontend config.

    Returns:
        float32 array (..., n_mels, n_frames) in dB.

    Example:
    >>> config = FrontendConfig(duration=0.5)
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype("float32")
    >>> bool(np.allclose(numpy_log_mel(tone, config), tf_log_mel(tone, config).numpy(), atol=0.01))
    True
    """
    import scipy.fft

    waveform = np.asarray(waveform, np.float32)[..., : config.num_samples]
    half = config.n_fft // 2
    pad = [(0, 0)] * (waveform.ndim - 1) + [(half, half + config.num_samples - waveform.shape[-1])]
    padded = np.pad(waveform, pad)
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)
    frames = frames[..., : config.n_frames * config.hop_length : config.hop_length, :]
    spectrum = scipy.fft.rfft(frames * _hann_window(config.n_fft), axis=-1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)  # (..., frames, bins)
    # The filter bank is sparse (about 2 bins per mel band): fewer multiply-adds than a dense
    # matmul, and no BLAS threads competing with the pipeline's reader threads (numpy_log_mel's
    # time: benchmarks/results/pipeline.md).
    filters = _sparse_mel_filters(config)
    mel = np.stack([filters @ frame_power.T for frame_power in power.reshape(-1, *power.shape[-2:])])
    # The log in float64 (cheap at this size) puts silence at exactly `config.floor_db`.
    log_mel_db = 10.0 * np.log10(np.maximum(mel.astype(np.float64), config.log_floor))
    return log_mel_db.reshape(*power.shape[:-2], config.n_mels, -1).astype(np.float32)


def log_mel(waveform, sample_rate: int, config: FrontendConfig | None = None) -> np.ndarray:
    """Log-mel features of a waveform, exactly as the training pipeline computes them.

    Args:
        waveform: Array (samples,) or (batch, samples), or (samples, channels)
            is not accepted: downmix first (see `keras_timbre.data.load_audio`).
        sample_rate: Rate of `waveform` in Hz; resampled with librosa if it
            differs from the config's.
        config: Frontend config; the default `FrontendConfig()` if None.

    Returns:
        float32 array (..., n_mels, n_frames), in dB.

    Example:
    >>> import numpy as np
    >>> t = np.arange(16000 * 4) / 16000
    >>> log_mel(np.sin(2 * np.pi * 440 * t), 16000).shape
    (128, 256)
    """
    config = config or FrontendConfig()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim not in (1, 2):
        raise ValueError(f"waveform must be (samples,) or (batch, samples), got shape {waveform.shape}")
    if int(sample_rate) != config.sample_rate:
        import librosa

        waveform = librosa.resample(waveform, orig_sr=int(sample_rate), target_sr=config.sample_rate)
    return numpy_log_mel(waveform, config)


def librosa_log_mel(waveform: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """The same features with librosa alone: the reference, and the user's usual loop."""
    import librosa

    waveform = librosa.util.fix_length(np.asarray(waveform, np.float32), size=config.num_samples)
    mel = librosa.feature.melspectrogram(
        y=waveform,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        power=2.0,
        center=True,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=config.log_floor, top_db=None)
    return db[..., : config.n_frames].astype(np.float32)
