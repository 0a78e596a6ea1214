"""The vocoder's losses on waveforms, in `keras.ops` (float32): multi-resolution STFT and mel L1.

- `stft_magnitude`: |STFT| of `(batch, samples)` audio (centred Hann frames).
- `multi_resolution_stft_loss`: for each FFT size, spectral convergence plus
  the L1 distance of log-magnitudes (Yamamoto et al., 2020), averaged.
- `mel_l1_loss`: L1 distance of natural-log mel power at the frontend's
  FFT size, hop and filters, floored at its `log_floor`: the quantity that the
  re-analysed mel LSD scores (one unit is 4.34 dB).

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> frontend = FrontendConfig(n_mels=16, n_fft=256, hop_length=64, duration=0.25)
>>> x = np.random.default_rng(0).normal(size=(2, 4000)).astype("float32")
>>> float(mel_l1_loss(x, x, frontend)), round(float(multi_resolution_stft_loss(x, x, (128, 256))), 4)
(0.0, 0.0)
>>> bool(mel_l1_loss(x, 0.5 * x, frontend) > 0.6)
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from keras import ops

from keras_timbre.audio.frontend import FrontendConfig, mel_filters

# FFT sizes of the multi-resolution STFT loss and of the benchmark's distance (hop: a quarter).
STFT_RESOLUTIONS = (512, 1024, 2048)
# Magnitude floor of the log-magnitude term (a full-scale sine is ~n_fft / 4).
MAGNITUDE_FLOOR = 1e-3


def stft_magnitude(audio, n_fft: int, hop: int | None = None):
    """|STFT| `(batch, frames, 1 + n_fft // 2)` of float audio `(batch, samples)`."""
    audio = ops.cast(audio, "float32")
    hop = hop or n_fft // 4
    real, imag = ops.stft(audio, n_fft, hop, n_fft, window="hann", center=True)
    return ops.sqrt(ops.square(real) + ops.square(imag) + 1e-12)


def _resolution_loss(target, prediction, n_fft: int):
    target_mag, pred_mag = stft_magnitude(target, n_fft), stft_magnitude(prediction, n_fft)
    # The epsilon keeps the gradient finite where prediction and target agree (a silent crop, silence out).
    difference = ops.sqrt(ops.sum(ops.square(target_mag - pred_mag), axis=(1, 2)) + 1e-8)
    convergence = ops.mean(difference / ops.sqrt(ops.sum(ops.square(target_mag), axis=(1, 2)) + 1e-4))
    log_target = ops.log(ops.maximum(target_mag, MAGNITUDE_FLOOR))
    log_pred = ops.log(ops.maximum(pred_mag, MAGNITUDE_FLOOR))
    return convergence + ops.mean(ops.abs(log_target - log_pred))


def multi_resolution_stft_loss(target, prediction, resolutions: Sequence[int] = STFT_RESOLUTIONS):
    """Mean over FFT sizes of spectral convergence + log-magnitude L1 (scalar, float32)."""
    terms = [_resolution_loss(target, prediction, int(n_fft)) for n_fft in resolutions]
    return sum(terms) / len(terms)


def mel_l1_loss(target, prediction, frontend: FrontendConfig):
    """Mean |ln mel power (target) - ln mel power (prediction)| with the frontend's filters and floor."""
    filters = ops.convert_to_tensor(np.ascontiguousarray(mel_filters(frontend).T))  # (bins, mels)

    def log_mel(audio):
        power = ops.square(stft_magnitude(audio, frontend.n_fft, frontend.hop_length))
        return ops.log(ops.maximum(ops.matmul(power, filters), frontend.log_floor))

    return ops.mean(ops.abs(log_mel(target) - log_mel(prediction)))
