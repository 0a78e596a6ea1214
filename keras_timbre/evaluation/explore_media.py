"""Sound and pictures for the explorer page: fast log-mel inverses, compressed clips, spectrogram thumbnails.

Griffin-Lim through `keras_timbre.audio.vocoder.mel_to_audio` costs about 2 s
a note here (librosa's NNLS mel inverse dominates), far too slow for 2,200
clips. The page uses two cheaper inverses instead, both on the same
pseudo-inverse of the mel filter bank:

- `borrowed_phase_audio`: a reconstruction's magnitude with the phase of the
  note it reconstructs, one inverse STFT per note (the phase of the original
  is a good prior, so this sounds close to many Griffin-Lim iterations);
- `griffin_lim_audio`: batched Griffin-Lim for the morphs, which have no
  original to borrow a phase from.

Clips are MP3 (libsndfile's LAME encoder): every browser plays it, and a 4 s
note at 16 kHz takes about 6 KB.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig, mel_filters

# libsndfile's MP3 VBR setting: 0 best quality, 1 smallest. 0.7: ~5-6 KB per 4 s NSynth note (0.5: ~10 KB).
MP3_COMPRESSION = 0.7
THUMBNAIL_SHAPE = (32, 64)


def mel_magnitude(log_mel_db: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Linear STFT magnitudes `(..., 1 + n_fft // 2, n_frames + 1)` from dB log-mel, via the filters' pseudo-inverse.

    Example:
    >>> config = FrontendConfig(n_mels=16, duration=0.1)
    >>> mel_magnitude(np.full((2, *config.feature_shape), -20.0, np.float32), config).shape
    (2, 513, 7)
    """
    log_mel_db = np.asarray(log_mel_db, np.float32)
    power = np.power(10.0, log_mel_db / 10.0)
    # Silence was floored at log_floor: set it back to zero, not a noise bed.
    power = np.where(log_mel_db <= config.floor_db + 1e-3, 0.0, power)
    # Centred framing gives one frame more than the features keep: repeat the last.
    power = np.concatenate([power, power[..., -1:]], axis=-1)
    inverse = np.linalg.pinv(mel_filters(config))
    return np.sqrt(np.maximum(np.einsum("fm,...mt->...ft", inverse, power), 0.0)).astype(np.float32)


def borrowed_phase_audio(log_mel_db: np.ndarray, waveforms: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Audio `(N, num_samples)` for reconstructions `log_mel_db (N, mels, frames)`, with the phase of `waveforms`.

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
    return _peak_limit(audio)


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
    return _peak_limit(audio)


def _peak_limit(audio: np.ndarray) -> np.ndarray:
    # Per clip: scale down only the clips that would clip.
    peaks = np.max(np.abs(audio), axis=-1, keepdims=True) if audio.size else np.ones(audio.shape[:-1] + (1,))
    return (audio / np.maximum(peaks, 1.0)).astype(np.float32)


def mp3_base64(waveform: np.ndarray, sample_rate: int) -> str:
    """One clip as base64 MP3 (for a `data:audio/mpeg;base64,` URL).

    Example:
    >>> clip = mp3_base64(np.sin(np.linspace(0, 2000, 16000)).astype("float32"), 16000)
    >>> import soundfile
    >>> soundfile.info(io.BytesIO(base64.b64decode(clip))).format
    'MP3'
    """
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(
        buffer,
        np.clip(waveform, -1.0, 1.0),
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=MP3_COMPRESSION,
    )
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mp3_base64_many(waveforms, sample_rate: int, workers: int = 2) -> list[str]:
    """`mp3_base64` of each clip, in order, on `workers` threads (libsndfile encodes outside the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda waveform: mp3_base64(waveform, sample_rate), waveforms))


def thumbnail_base64(log_mel_db: np.ndarray, floor_db: float, shape: tuple[int, int] = THUMBNAIL_SHAPE) -> str:
    """A spectrogram as base64 uint8 `(rows, cols)`, low mels first, 0 = floor, 255 = 0 dB (or the note's peak).

    Rows and columns are block means, so the page can draw any note small and fast.

    Example:
    >>> pixels = base64.b64decode(thumbnail_base64(np.zeros((64, 128)), -60.0, (32, 64)))
    >>> len(pixels), pixels[0]
    (2048, 255)
    """
    spectrogram = np.asarray(log_mel_db, np.float32)
    rows, cols = shape
    spectrogram = _block_mean(spectrogram, rows, axis=0)
    spectrogram = _block_mean(spectrogram, cols, axis=1)
    top = max(float(spectrogram.max()), floor_db + 1.0)
    scaled = np.clip((spectrogram - floor_db) / (top - floor_db), 0.0, 1.0)
    return base64.b64encode(np.round(scaled * 255).astype(np.uint8).tobytes()).decode("ascii")


def _block_mean(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resamples `axis` to `size` by averaging equal blocks (nearest-index repeat when growing)."""
    edges = np.linspace(0, array.shape[axis], size + 1).astype(int)
    parts = [
        np.take(array, range(start, max(stop, start + 1)), axis=axis).mean(axis=axis)
        for start, stop in zip(edges[:-1], edges[1:])
    ]
    return np.stack(parts, axis=axis)
