"""Log-mel back to audio: Griffin-Lim."""

from __future__ import annotations

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig


def mel_to_audio(log_mel_db: np.ndarray, config: FrontendConfig, n_iter: int = 64) -> np.ndarray:
    """Inverts log-mel (dB, not normalised) to audio with librosa's Griffin-Lim.

    Args:
        log_mel_db: Array (n_mels, n_frames) in dB, as `log_mel` returns.
        config: The frontend config the features were computed with.
        n_iter: Griffin-Lim iterations.

    Returns:
        float32 waveform at `config.sample_rate`, peak-limited to [-1, 1].
    """
    import librosa

    log_mel_db = np.asarray(log_mel_db, np.float32)
    if log_mel_db.shape[-2:] != config.feature_shape:
        raise ValueError(f"Expected log-mel of shape {config.feature_shape}, got {log_mel_db.shape}")
    power = np.power(10.0, log_mel_db / 10.0)
    # Silence was floored at log_floor: set it back to zero, not a noise bed.
    power = np.where(log_mel_db <= config.floor_db + 1e-3, 0.0, power)
    # Centred framing of num_samples gives one frame more than we keep: repeat the last.
    power = np.concatenate([power, power[..., -1:]], axis=-1)
    audio = librosa.feature.inverse.mel_to_audio(
        power,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        fmin=config.fmin,
        fmax=config.fmax,
        power=2.0,
        n_iter=n_iter,
        length=config.num_samples,
    )
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    return audio.astype(np.float32)
