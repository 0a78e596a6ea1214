"""Sound and pictures for the explorer page: compressed clips and spectrogram thumbnails.

The clips come from the run's renderer (`keras_timbre.vocoder.render`).

Clips are MP3 (libsndfile's LAME encoder): every browser plays it, and a 4 s
note at 16 kHz takes about 6 KB.
"""

from __future__ import annotations

import base64
import io

import numpy as np

# libsndfile's MP3 VBR setting: 0 best quality, 1 smallest. 0.7: ~5-6 KB per 4 s NSynth note (0.5: ~10 KB).
MP3_COMPRESSION = 0.7
THUMBNAIL_SHAPE = (32, 64)


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
