"""Metrics of audio itself: what a listener gets, scored against the real notes' waveforms.

`keras_timbre.analysis.metrics` scores log-mel; these score rendered audio
`(notes, samples)` (or one `(samples,)`) against the real notes' waveforms of
the same shape, both at the frontend's rate. Lower is better for all three;
`docs/evaluation.md` ("Metrics of the audio") defines them:

- `reanalysed_lsd_db`: both through the frontend (`numpy_log_mel`), then
  `metrics.lsd_db` above the frontend's silence floor: what the features of
  the audio lost;
- `mr_stft_distance_db`: mean |dB difference| of STFT amplitudes at several
  FFT sizes (hop a quarter), amplitudes floored at `AMPLITUDE_FLOOR`: what the
  mel bands hide (fine harmonics, phase smearing, noise);
- `f0_error_cents`: median |f0 difference| (pYIN) over frames voiced in both.

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> frontend = FrontendConfig(n_mels=32, n_fft=512, duration=0.5)
>>> note = 0.1 * np.random.default_rng(0).standard_normal((2, frontend.num_samples)).astype(np.float32)
>>> reanalysed_lsd_db(note, note, frontend), mr_stft_distance_db(note, note)
(0.0, 0.0)
>>> round(mr_stft_distance_db(0.5 * note, note), 2)  # half the amplitude: 20 log10 2 dB
6.02
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel

STFT_SIZES = (512, 1024, 2048)
# Amplitude of a sinusoid (1 = full scale) below which an STFT bin counts as silence: -100 dB, the
# frontend's own range (its features span 100 dB). Without a floor, digital silence in the real note
# (log 0) against a renderer's faint noise would dominate the distance.
AMPLITUDE_FLOOR = 1e-5
# pYIN's frames: 128 ms at 16 kHz holds two periods of 15.6 Hz, below the lowest NSynth note's octave.
F0_FRAME_LENGTH = 2048
F0_HOP_LENGTH = 512


def _pair(audio, reference) -> tuple[np.ndarray, np.ndarray]:
    audio = np.asarray(audio, np.float32)
    reference = np.asarray(reference, np.float32)
    if audio.shape != reference.shape:
        raise ValueError(f"audio {audio.shape} and reference {reference.shape} differ in shape")
    if audio.ndim == 1:
        audio, reference = audio[None], reference[None]
    if audio.ndim != 2:
        raise ValueError(f"expected audio (notes, samples), got shape {audio.shape}")
    return audio, reference


def reanalysed_lsd_db(audio, reference, frontend: FrontendConfig) -> float:
    """LSD (dB) between the log-mel of `audio` and of `reference`, both through `frontend`, above its floor.

    Args:
        audio: Rendered audio `(notes, samples)` at `frontend.sample_rate`.
        reference: The real notes, same shape (cropped or padded to the frontend's note length, as audio).
        frontend: The features' config: `numpy_log_mel` analyses both; `floor_db` floors both.

    Returns:
        `keras_timbre.analysis.metrics.lsd_db`, mean over notes.

    Example:
    >>> frontend = FrontendConfig(n_mels=32, n_fft=512, duration=0.5)
    >>> note = 0.1 * np.random.default_rng(0).standard_normal(frontend.num_samples)
    >>> round(reanalysed_lsd_db(0.5 * note, note, frontend), 2)  # every band 6.02 dB down
    6.02
    """
    audio, reference = _pair(audio, reference)
    return lsd_db(numpy_log_mel(reference, frontend), numpy_log_mel(audio, frontend), floor_db=frontend.floor_db)


def stft_db(audio, n_fft: int, floor: float = AMPLITUDE_FLOOR) -> np.ndarray:
    """STFT amplitudes in dB re a full-scale sinusoid: `(..., 1 + n_fft // 2, frames)`.

    Centred periodic-Hann frames (zero padding), hop `n_fft // 4`; each
    magnitude scaled by 2 / sum(window), so a sinusoid of amplitude A reads
    20 log10 A at its bin whatever `n_fft`; floored at `floor`.

    Example:
    >>> tone = np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)  # on bin 32 of a 512-point FFT
    >>> round(float(stft_db(tone, 512)[32, 10]), 2), float(stft_db(np.zeros(8000), 512).max())
    (0.0, -100.0)
    """
    import librosa

    spectrum = librosa.stft(np.asarray(audio, np.float32), n_fft=n_fft, hop_length=n_fft // 4, window="hann")
    amplitude = np.abs(spectrum) * (2.0 / (n_fft / 2))  # a periodic Hann window sums to n_fft / 2
    return 20.0 * np.log10(np.maximum(amplitude, floor))


def mr_stft_distance_db(audio, reference, ffts: Sequence[int] = STFT_SIZES, floor: float = AMPLITUDE_FLOOR) -> float:
    """Multi-resolution STFT distance (dB): mean |`stft_db(audio)` - `stft_db(reference)`|, averaged over `ffts`.

    Args:
        audio: Rendered audio `(notes, samples)`.
        reference: The real notes, same shape and rate.
        ffts: FFT sizes; each uses hop `n_fft // 4`.
        floor: Amplitude floor of both (`AMPLITUDE_FLOOR`, -100 dB).

    Returns:
        The mean over resolutions of the mean over notes, bins and frames.

    Example:
    >>> note = np.random.default_rng(0).standard_normal(4000) * 0.1
    >>> round(mr_stft_distance_db(note * 10 ** (-3 / 20), note, ffts=(256,)), 2)  # 3 dB quieter
    3.0
    """
    audio, reference = _pair(audio, reference)
    distances = [np.mean(np.abs(stft_db(audio, n, floor) - stft_db(reference, n, floor))) for n in ffts]
    return float(np.mean(distances))


def f0_error_cents(
    audio,
    reference,
    sample_rate: int,
    fmin: float | Sequence[float],
    fmax: float | Sequence[float],
    frame_length: int = F0_FRAME_LENGTH,
    hop_length: int = F0_HOP_LENGTH,
) -> float:
    """Median |f0 difference| in cents over every frame (of every note) that pYIN calls voiced in both.

    pYIN (`librosa.pyin`, 0.1-semitone grid, so errors come in 10-cent steps)
    analyses each note twice: its cost is seconds per note-second, so the
    caller bounds it (a few notes, a short excerpt).

    Args:
        audio: Rendered audio `(notes, samples)` at `sample_rate`.
        reference: The real notes, same shape.
        sample_rate: Rate of both, in Hz.
        fmin: Lowest f0 pYIN considers, in Hz: one value, or one per note (e.g. an octave below its pitch).
        fmax: Highest f0, in Hz (at most `sample_rate / 2`), one value or one per note.
        frame_length: pYIN's frame; two periods of `fmin` should fit in it.
        hop_length: pYIN's hop.

    Returns:
        The median in cents, or NaN where no frame is voiced in both.

    Example:
    >>> t = np.arange(8000) / 16000
    >>> a4, b_flat4 = (np.sin(2 * np.pi * f * t) for f in (440.0, 440.0 * 2 ** (1 / 12)))
    >>> round(f0_error_cents(b_flat4, a4, 16000, fmin=220.0, fmax=880.0))  # a semitone sharp
    100
    >>> f0_error_cents(np.zeros(8000), a4, 16000, fmin=220.0, fmax=880.0)  # silence is never voiced
    nan
    """
    import librosa

    audio, reference = _pair(audio, reference)
    lows = np.broadcast_to(np.asarray(fmin, np.float64), (len(audio),))
    highs = np.broadcast_to(np.asarray(fmax, np.float64), (len(audio),))
    settings = dict(sr=sample_rate, frame_length=frame_length, hop_length=hop_length)
    errors = []
    for clip, real, low, high in zip(audio, reference, lows, highs):
        f_real, voiced_real, _ = librosa.pyin(real, fmin=float(low), fmax=float(high), **settings)
        f_clip, voiced_clip, _ = librosa.pyin(clip, fmin=float(low), fmax=float(high), **settings)
        both = voiced_real & voiced_clip & np.isfinite(f_real) & np.isfinite(f_clip)
        errors.append(np.abs(1200.0 * np.log2(f_clip[both] / f_real[both])))
    pooled = np.concatenate(errors)
    return float(np.median(pooled)) if pooled.size else float("nan")
