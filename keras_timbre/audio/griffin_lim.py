"""Log-mel back to audio: every inverse of the frontend's features.

- `mel_to_audio`: librosa's Griffin-Lim with its NNLS mel inverse (the most
  faithful, and the slowest: its time a note: docs/explore.md, "Choices, and why");
- `tf_mel_to_audio`: fast Griffin-Lim as a TensorFlow op, for the SavedModel;
- `griffin_lim_audio`: batched librosa Griffin-Lim on the filters'
  pseudo-inverse (`mel_magnitude`), for many clips (morphs, TensorBoard);
- `borrowed_phase_audio`: a reconstruction's magnitude with the phase of the
  note it reconstructs, one inverse STFT a note (the explorer page).

Both invert the frontend's features the same way: dB back to mel power (the
silence floor back to zero power, the level capped at `MAX_DB`), the extra
frame of centred framing restored, then Griffin-Lim, and each waveform
peak-limited to [-1, 1]. They differ only in how mel power goes back to linear
power (librosa solves an NNLS; the graph uses the pseudo-inverse of the filter
bank) and in the phase initialisation.

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> config = FrontendConfig(n_mels=32, duration=1.0, n_fft=512)
>>> silence = np.full(config.feature_shape, config.floor_db, np.float32)
>>> float(np.abs(mel_to_audio(silence, config, n_iter=2)).max())
0.0
"""

from __future__ import annotations


import numpy as np

from keras_timbre.audio.frontend import FrontendConfig, fit_to_length, mel_filters

# Fast Griffin-Lim momentum (Perraudin et al., 2013), librosa's default.
GRIFFIN_LIM_MOMENTUM = 0.99
# Highest level, in dB, that reaches Griffin-Lim. Full-scale audio is ~40 dB, so only absurd
# input (a decoder fed a huge z) is brought down: its audio is peak-limited anyway, and
# 10 ** (dB / 10) and Griffin-Lim's sums stay finite in float32.
MAX_DB = 120.0
# Below floor_db + this, a bin is silence (the frontend floored it), not a quiet noise bed.
SILENCE_TOLERANCE_DB = 1e-3


def mel_power_frames(log_mel_db, floor_db: float, xp=np):
    """Mel power of `log_mel_db` (..., n_mels, n_frames) with the frame centred framing dropped.

    Shared by both vocoders: `xp` is `numpy` or `tensorflow.experimental.numpy`.
    Floored bins become zero power; a note louder than `MAX_DB` is scaled down
    to it as a whole (a uniform gain, which peak limiting undoes).

    Returns:
        (..., n_mels, n_frames + 1): the last frame repeated, as centred framing
        of `num_samples` gives one frame more than the features keep.
    """
    silent = log_mel_db <= floor_db + SILENCE_TOLERANCE_DB
    excess = xp.maximum(xp.max(log_mel_db, axis=(-2, -1), keepdims=True) - MAX_DB, 0.0)
    power = xp.where(silent, 0.0, xp.power(10.0, (log_mel_db - excess) / 10.0))
    return xp.concatenate([power, power[..., -1:]], axis=-1)


def peak_limit(audio, xp=np):
    """Scales each waveform (last axis) down to a peak of 1; NaN or Inf samples become 0 first."""
    audio = xp.where(xp.isfinite(audio), audio, 0.0)
    peak = xp.max(xp.abs(audio), axis=-1, keepdims=True)
    return audio / xp.maximum(peak, 1.0)


def mel_to_audio(log_mel_db: np.ndarray, config: FrontendConfig, n_iter: int = 64) -> np.ndarray:
    """Inverts log-mel (dB, not normalised) to audio with librosa's Griffin-Lim.

    Args:
        log_mel_db: Array (n_mels, n_frames) in dB, as `log_mel` returns.
        config: The frontend config the features were computed with.
        n_iter: Griffin-Lim iterations.

    Returns:
        float32 waveform at `config.sample_rate`, peak-limited to [-1, 1].

    Raises:
        ValueError: the shape is not the config's features, or a value is NaN or Inf.
    """
    import librosa

    log_mel_db = np.asarray(log_mel_db, np.float32)
    if log_mel_db.shape[-2:] != config.feature_shape:
        raise ValueError(f"Expected log-mel of shape {config.feature_shape}, got {log_mel_db.shape}")
    if not np.isfinite(log_mel_db).all():
        raise ValueError("log_mel_db contains NaN or Inf; Griffin-Lim needs finite dB values")
    audio = librosa.feature.inverse.mel_to_audio(
        mel_power_frames(log_mel_db, config.floor_db),
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        fmin=config.fmin,
        fmax=config.fmax,
        power=2.0,
        n_iter=n_iter,
        length=config.num_samples,
    )
    return peak_limit(audio).astype(np.float32)


def tf_mel_to_audio(log_mel_db, config: FrontendConfig, n_iter: int = 32, momentum: float = GRIFFIN_LIM_MOMENTUM):
    """Inverts log-mel (dB) to audio with fast Griffin-Lim, as a TensorFlow op.

    The graph twin of `mel_to_audio`: mel power goes back to linear power
    through the pseudo-inverse of the mel filter bank (a constant, clipped at
    zero), then `n_iter` iterations of fast Griffin-Lim with `tf.signal.stft`
    and `tf.signal.inverse_stft`. The initial phase is a fixed pseudo-random
    draw, so the result is deterministic.

    Args:
        log_mel_db: float32 tensor (batch, n_mels, n_frames) in dB, not normalised.
        config: The frontend config the features were computed with.
        n_iter: Griffin-Lim iterations.
        momentum: Fast Griffin-Lim momentum; 0 gives plain Griffin-Lim.

    Returns:
        float32 tensor (batch, config.num_samples), each example peak-limited
        to [-1, 1].

    Example:
    >>> import numpy as np
    >>> from keras_timbre.audio.frontend import FrontendConfig, tf_log_mel
    >>> config = FrontendConfig(n_mels=32, duration=1.0, n_fft=512)
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)[None].astype("float32")
    >>> tf_mel_to_audio(tf_log_mel(tone, config), config, n_iter=4).shape
    TensorShape([1, 16000])
    """
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    power = mel_power_frames(tf.convert_to_tensor(log_mel_db, tf.float32), config.floor_db, tnp)
    inverse_filters = np.linalg.pinv(mel_filters(config)).T.astype(np.float32)  # (mels, bins)
    frames_power = tf.linalg.matrix_transpose(power)  # (batch, frames, mels)
    magnitude = tf.sqrt(tf.nn.relu(tf.tensordot(frames_power, tf.constant(inverse_filters), axes=1)))
    audio = _tf_griffin_lim(tf.complex(magnitude, tf.zeros_like(magnitude)), config, n_iter, momentum)
    audio = fit_to_length(audio[:, config.n_fft // 2 :], config.num_samples)
    return peak_limit(audio, tnp)


def _tf_griffin_lim(magnitude, config: FrontendConfig, n_iter: int, momentum: float):
    """Fast Griffin-Lim on a complex magnitude (batch, frames, bins): the waveform, centred frames."""
    import tensorflow as tf

    stft_args = dict(frame_length=config.n_fft, frame_step=config.hop_length, fft_length=config.n_fft)
    inverse_window = tf.signal.inverse_stft_window_fn(config.hop_length, tf.signal.hann_window)

    def stft(signal):
        return tf.signal.stft(signal, window_fn=tf.signal.hann_window, pad_end=False, **stft_args)

    def istft(spectrum):
        return tf.signal.inverse_stft(spectrum, window_fn=inverse_window, **stft_args)

    def unit_phase(spectrum):
        return spectrum / (tf.cast(tf.abs(spectrum), tf.complex64) + 1e-16)

    phase_seed = tf.constant([1234, 5678], tf.int32)
    random_phase = tf.random.stateless_uniform(tf.shape(magnitude), phase_seed, 0.0, 2.0 * np.pi)
    angles = tf.exp(tf.complex(tf.zeros_like(random_phase), random_phase))
    blend = tf.cast(momentum / (1.0 + momentum), tf.complex64)

    def step(i, angles, previous):
        rebuilt = stft(istft(magnitude * angles))
        return i + 1, unit_phase(rebuilt - blend * previous), rebuilt

    _, angles, _ = tf.while_loop(lambda i, *_: i < n_iter, step, (tf.constant(0), angles, tf.zeros_like(angles)))
    return istft(magnitude * angles)


def mel_magnitude(log_mel_db: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Linear STFT magnitudes `(..., 1 + n_fft // 2, n_frames + 1)` from dB log-mel, via the filters' pseudo-inverse.

    Example:
    >>> config = FrontendConfig(n_mels=16, duration=0.1)
    >>> mel_magnitude(np.full((2, *config.feature_shape), -20.0, np.float32), config).shape
    (2, 513, 7)
    """
    power = mel_power_frames(np.asarray(log_mel_db, np.float32), config.floor_db)
    inverse = np.linalg.pinv(mel_filters(config))
    return np.sqrt(np.maximum(np.einsum("fm,...mt->...ft", inverse, power), 0.0)).astype(np.float32)


def borrowed_phase_audio(log_mel_db: np.ndarray, waveforms: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Audio `(N, num_samples)` for reconstructions `log_mel_db (N, mels, frames)`, with the phase of `waveforms`.

    The phase of the original is a good prior: this sounds close to many
    Griffin-Lim iterations at the cost of one inverse STFT.

    Example:
    >>> config = FrontendConfig(n_mels=16, duration=0.1)
    >>> borrowed_phase_audio(np.full((1, *config.feature_shape), -20.0), np.ones((1, 1600)), config).shape
    (1, 1600)
    """
    import librosa

    stft = librosa.stft(np.asarray(waveforms, np.float32), n_fft=config.n_fft, hop_length=config.hop_length)
    phase = np.exp(1j * np.angle(stft))
    audio = librosa.istft(
        mel_magnitude(log_mel_db, config) * phase, hop_length=config.hop_length, length=config.num_samples
    )
    return peak_limit(audio).astype(np.float32)


def griffin_lim_audio(log_mel_db: np.ndarray, config: FrontendConfig, n_iter: int = 16) -> np.ndarray:
    """Audio `(N, num_samples)` for `log_mel_db (N, mels, frames)` by batched Griffin-Lim (fixed seed).

    Example:
    >>> config = FrontendConfig(n_mels=16, duration=0.1)
    >>> griffin_lim_audio(np.full((3, *config.feature_shape), -20.0), config, n_iter=2).shape
    (3, 1600)
    """
    import librosa

    audio = librosa.griffinlim(
        mel_magnitude(log_mel_db, config),
        n_iter=n_iter,
        hop_length=config.hop_length,
        n_fft=config.n_fft,
        length=config.num_samples,
        random_state=0,
    )
    return peak_limit(audio).astype(np.float32)
