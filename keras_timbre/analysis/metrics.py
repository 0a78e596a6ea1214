"""Reconstruction and latent metrics, in numpy, on log-mel spectrograms in dB.

Every spectral metric takes `target` and `reconstruction` arrays of shape
`(notes, n_mels, n_frames)` in dB (not normalised; axis 1 is mel, low to
high, axis 2 is time) and returns the mean over notes as a Python float.
`docs/evaluation.md` defines each metric and says which direction is better.

Example:
>>> import numpy as np
>>> target = np.random.default_rng(0).normal(-30, 10, (2, 32, 64))
>>> lsd_db(target, target)
0.0
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import ndimage


def _pair(target, reconstruction, floor_db: float | None):
    target = np.asarray(target, np.float64)
    reconstruction = np.asarray(reconstruction, np.float64)
    if target.shape != reconstruction.shape:
        raise ValueError(f"target {target.shape} and reconstruction {reconstruction.shape} differ in shape")
    if target.ndim == 2:
        target, reconstruction = target[None], reconstruction[None]
    if target.ndim == 4 and target.shape[-1] == 1:
        target, reconstruction = target[..., 0], reconstruction[..., 0]
    if target.ndim != 3:
        raise ValueError(f"expected (notes, n_mels, n_frames) log-mel, got shape {target.shape}")
    if floor_db is not None:
        # Below the frontend's floor there is nothing to hear: do not score it.
        target = np.maximum(target, floor_db)
        reconstruction = np.maximum(reconstruction, floor_db)
    return target, reconstruction


def lsd_db(target, reconstruction, floor_db: float | None = None) -> float:
    """Log-spectral distance in dB: RMS over mel of the dB error, mean over frames and notes."""
    target, reconstruction = _pair(target, reconstruction, floor_db)
    per_frame = np.sqrt(np.mean((target - reconstruction) ** 2, axis=1))
    return float(per_frame.mean())


def spectral_convergence(target, reconstruction, floor_db: float | None = None) -> float:
    """||M_t - M_r||_F / ||M_t||_F on mel magnitudes (10 ** (dB / 20)), mean over notes."""
    target, reconstruction = _pair(target, reconstruction, floor_db)
    mag_t = np.power(10.0, target / 20.0)
    mag_r = np.power(10.0, reconstruction / 20.0)
    num = np.sqrt(np.sum((mag_t - mag_r) ** 2, axis=(1, 2)))
    den = np.sqrt(np.sum(mag_t**2, axis=(1, 2)))
    return float(np.mean(num / np.maximum(den, 1e-12)))


def mel_grad_error(target, reconstruction, floor_db: float | None = None) -> float:
    """Mean absolute error, in dB, between the mel-axis finite differences."""
    target, reconstruction = _pair(target, reconstruction, floor_db)
    error = np.abs(np.diff(target, axis=1) - np.diff(reconstruction, axis=1))
    return float(error.mean())


def _time_diff(spectrogram, start):
    """Finite difference along time, with the frame before the first set to `start` (silence)."""
    start = np.broadcast_to(start, spectrogram.shape[:2] + (1,))
    return np.diff(spectrogram, axis=2, prepend=start)


def onset_frames(target, attack_frames: int = 8, pre_frames: int = 2) -> np.ndarray:
    """Boolean mask (notes, n_frames): the attack window of each note.

    The onset is the frame of largest positive spectral flux (sum over mel of
    the rise in dB) in the first half of the note, counting the rise from
    silence into frame 0 (NSynth notes start at sample 0), so a crop at the
    end of the note is never taken for an onset. The window runs from
    `pre_frames` before the onset to `attack_frames` after it.
    """
    target = np.asarray(target, np.float64)
    silence = target.min(axis=(1, 2), keepdims=True)
    rise = np.maximum(_time_diff(target, silence), 0.0).sum(axis=1)  # (notes, n_frames)
    onset = np.argmax(rise[:, : max(1, target.shape[2] // 2)], axis=1)
    frames = np.arange(target.shape[2])[None, :]
    return (frames >= (onset - pre_frames)[:, None]) & (frames < (onset + attack_frames)[:, None])


def onset_error(
    target, reconstruction, floor_db: float | None = None, attack_frames: int = 8, pre_frames: int = 2
) -> float:
    """Mean absolute error, in dB, between time-axis finite differences over the attack frames."""
    target, reconstruction = _pair(target, reconstruction, floor_db)
    mask = np.broadcast_to(onset_frames(target, attack_frames, pre_frames)[:, None, :], target.shape)
    silence = target.min(axis=(1, 2), keepdims=True)
    error = np.abs(_time_diff(target, silence) - _time_diff(reconstruction, silence))
    return float(error[mask].mean())


def harmonic_contrast(spectrogram, active, window: int = 5) -> np.ndarray:
    """Per-note local peak-to-valley range along mel, in dB, mean over active frames.

    For each frame, the range `max - min` in a sliding window of `window` mel
    bins is averaged over bins: harmonics separated by valleys give a large
    range, a blurred spectrum a small one.
    """
    peaks = ndimage.maximum_filter1d(spectrogram, window, axis=1)
    valleys = ndimage.minimum_filter1d(spectrogram, window, axis=1)
    per_frame = (peaks - valleys).mean(axis=1)  # (notes, n_frames)
    return np.sum(per_frame * active, axis=1) / np.maximum(active.sum(axis=1), 1)


def active_frames(target, below_peak_db: float = 40.0) -> np.ndarray:
    """Boolean mask (notes, n_frames): frames whose loudest bin is within `below_peak_db` of the note's."""
    frame_peak = np.asarray(target).max(axis=1)
    return frame_peak >= frame_peak.max(axis=1, keepdims=True) - below_peak_db


def harmonic_contrast_ratio(target, reconstruction, floor_db: float | None = None, window: int = 5) -> float:
    """Mean peak-to-valley contrast of the reconstruction over the target's (1 is ideal, < 1 blurred)."""
    target, reconstruction = _pair(target, reconstruction, floor_db)
    active = active_frames(target)
    contrast_t = harmonic_contrast(target, active, window)
    contrast_r = harmonic_contrast(reconstruction, active, window)
    return float(np.mean(contrast_r / np.maximum(contrast_t, 1e-6)))


def kl_nats(z_mean, z_log_var) -> float:
    """KL(q(z|x) || N(0, I)) in nats, summed over latent dims, mean over notes."""
    z_mean = np.asarray(z_mean, np.float64)
    z_log_var = np.asarray(z_log_var, np.float64)
    kl = 0.5 * (np.square(z_mean) + np.exp(z_log_var) - 1.0 - z_log_var)
    return float(kl.sum(axis=-1).mean())


def active_units(z_mean, threshold: float = 0.01) -> int:
    """Latent dims whose mean varies over the data: Var_x(E[z_d | x]) > `threshold` (Burda et al.)."""
    z_mean = np.asarray(z_mean, np.float64)
    return int(np.sum(z_mean.var(axis=0) > threshold))


def linear_probe() -> Any:
    """The one linear probe, here and in `keras_timbre.analysis.probes`: standardised logistic regression.

    Returns:
        An unfitted scikit-learn pipeline.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def probe_accuracy(features, labels, folds: int = 5, seed: int = 0, probe: str = "linear") -> float:
    """Cross-validated accuracy of a probe predicting `labels` from `features`.

    Args:
        features: (notes, dims) array, e.g. the latent means.
        labels: (notes,) class labels.
        folds: Cross-validation folds (fewer if there are fewer notes).
        seed: Seed of the fold shuffle.
        probe: "linear" (standardised logistic regression) or "knn" (5 nearest neighbours).

    Returns:
        Mean held-out accuracy over folds, or NaN with fewer than 2 classes.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2 or len(labels) < 4:
        return float("nan")
    if probe == "linear":
        model = linear_probe()
    elif probe == "knn":
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(5, len(labels) - 1)))
    else:
        raise ValueError(f"probe must be 'linear' or 'knn', got {probe!r}")
    folds = max(2, min(folds, len(labels) // 2))
    if counts.min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        # Some classes (e.g. rare pitches) are too small to stratify.
        splitter = KFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes (a pitch seen once) are expected: they just score as misses.
        warnings.simplefilter("ignore", UserWarning)
        return float(np.mean(cross_val_score(model, features, labels, cv=splitter)))


def family_probe_accuracy(z_mean, families, **kwargs) -> float:
    """Cross-validated linear-probe accuracy of instrument family from the latent mean."""
    return probe_accuracy(z_mean, families, **kwargs)


def pitch_probe_accuracy(z_mean, pitches, **kwargs) -> float:
    """Cross-validated linear-probe accuracy of MIDI pitch from the latent mean (pitch leakage)."""
    return probe_accuracy(z_mean, pitches, **kwargs)


def chance_accuracy(labels) -> float:
    """Accuracy of always guessing the most common label: the floor a probe must beat."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum()) if counts.size else float("nan")


def skip_reliance(target, reconstruction, reconstruction_without_skips, floor_db: float | None = None) -> float:
    """LSD (dB) lost when the decoder's skip connections are zeroed: 0 means z carries it all."""
    return lsd_db(target, reconstruction_without_skips, floor_db) - lsd_db(target, reconstruction, floor_db)


def reconstruction_metrics(target, reconstruction, floor_db: float | None = None) -> dict[str, float]:
    """The five spectral metrics of one reconstruction, keyed by name."""
    return {
        "lsd_db": lsd_db(target, reconstruction, floor_db),
        "spectral_convergence": spectral_convergence(target, reconstruction, floor_db),
        "mel_grad_error": mel_grad_error(target, reconstruction, floor_db),
        "onset_error": onset_error(target, reconstruction, floor_db),
        "harmonic_contrast_ratio": harmonic_contrast_ratio(target, reconstruction, floor_db),
    }
