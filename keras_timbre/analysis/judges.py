"""Judges trained on real notes, and the Fréchet distance in one judge's features: what a generator renders, scored.

A generator is judged by what it renders, not by its distance to one real
note (a blurred mean wins that): classifiers fit on the real training notes
name each rendered note's pitch and instrument family, and the Fréchet
distance compares the distribution of rendered notes with that of real ones
in the family judge's penultimate features (GANSynth's protocol, in-domain).

- `PitchClassifier` (from `keras_timbre.analysis.probes`, re-exported): the
  pitch judge.
- `FamilyJudge`: the instrument-family judge, a one-hidden-layer MLP on
  level-free features; `embed` gives its hidden-layer activations.
- `frechet_distance(features_a, features_b)`: the FID formula on any two
  feature sets; `family_fd(judge, rendered_db, real_db)` on the family
  judge's embeddings of two sets of log-mels.

`docs/evaluation.md` defines the metrics built on them. Every function takes
numpy arrays of log-mel in dB, `(notes, n_mels, n_frames)`.

Example:
>>> import numpy as np
>>> a = np.random.default_rng(0).normal(size=(200, 2))
>>> round(frechet_distance(a, a), 6)
0.0
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from keras_timbre.analysis.probes import PitchClassifier, _notes, judged_accuracy, mfcc_statistics

__all__ = ["PitchClassifier", "FamilyJudge", "frechet_distance", "family_fd"]


class FamilyJudge:
    """An instrument-family classifier on log-mel in dB, fit on real notes: the ruler for rendered notes' timbre.

    Features of a note, all relative to the note's own peak so that its level
    does not matter (a rendered note's level is checked apart, e.g. by
    `sample_max_db` in `keras_timbre.evaluation.code_metrics`):

    - the `PitchClassifier` spectrum: the mean over active frames (loudest bin
      within 40 dB of the note's peak) of each frame's spectrum relative to
      that frame's loudest bin, floored `range_db` below it (`n_mels` numbers);
    - MFCC mean and std over time (`probes.mfcc_statistics`, 20 coefficients)
      of the note's log-mel relative to its peak, floored `range_db` below it
      (40 numbers);
    - a coarse temporal envelope: each frame's loudest bin relative to the
      note's peak, floored `range_db` below it, averaged over `segments` equal
      spans of time (`segments` numbers, fewer for shorter notes).

    They are standardised, then fed to scikit-learn's `MLPClassifier`: one
    ReLU hidden layer of `hidden` units, L2 `alpha`, Adam for at most
    `max_iter` epochs (stopping when the training loss stops falling), fixed
    `random_state`, so a fit is deterministic on CPU. `embed` returns the
    hidden layer's activations, the feature space of `family_fd`.

    Args:
        hidden: Units of the hidden layer.
        range_db: Depth, in dB below the peak, of every feature's spectrum.
        segments: Spans of the temporal envelope.
        max_iter: Most training epochs.
        alpha: L2 penalty of the MLP.
        seed: The MLP's `random_state`.

    Example:
    >>> bins, rng = np.arange(32)[:, None], np.random.default_rng(0)
    >>> def note(k):  # harmonics every `k` mel bins, with a little noise
    ...     return np.where(bins % k == 0, -10.0, -50.0) + rng.normal(0, 1, (32, 16))
    >>> notes = np.stack([note(k) for k in (3, 5) * 10])
    >>> judge = FamilyJudge(hidden=16).fit(notes, ["brass", "flute"] * 10)
    >>> judge.predict(np.stack([note(5), note(3)])).tolist()
    ['flute', 'brass']
    >>> judge.embed(notes).shape
    (20, 16)
    """

    def __init__(
        self,
        hidden: int = 128,
        range_db: float = 80.0,
        segments: int = 8,
        max_iter: int = 300,
        alpha: float = 1e-3,
        seed: int = 0,
    ):
        self.hidden = int(hidden)
        self.range_db = float(range_db)
        self.segments = int(segments)
        self.max_iter = int(max_iter)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.scaler = None
        self.model = None

    def features(self, log_mel_db) -> np.ndarray:
        """(notes, n_mels + 40 + segments): the level-free features above, float64."""
        log_mel_db = _notes(log_mel_db)
        spectrum = PitchClassifier(self.range_db).features(log_mel_db)
        relative = np.maximum(log_mel_db - log_mel_db.max(axis=(1, 2), keepdims=True), -self.range_db)
        mfcc = mfcc_statistics(relative)
        frame_peaks = relative.max(axis=1)  # (notes, n_frames)
        spans = np.array_split(np.arange(frame_peaks.shape[1]), min(self.segments, frame_peaks.shape[1]))
        envelope = np.stack([frame_peaks[:, span].mean(axis=1) for span in spans], axis=1)
        return np.concatenate([spectrum, mfcc, envelope], axis=1)

    def fit(self, log_mel_db, families) -> "FamilyJudge":
        """Fits on (notes, n_mels, n_frames) dB log-mels and their families (2 families at least)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        from sklearn.preprocessing import StandardScaler

        features = self.features(log_mel_db)
        families = np.asarray(families).reshape(-1)
        if len(features) != len(families):
            raise ValueError(f"{len(features)} notes but {len(families)} families")
        if np.unique(families).size < 2:
            raise ValueError(f"FamilyJudge needs notes of 2 families or more, got {np.unique(families).tolist()}")
        self.scaler = StandardScaler().fit(features)
        model = MLPClassifier(
            hidden_layer_sizes=(self.hidden,), alpha=self.alpha, max_iter=self.max_iter, random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the budget, by design
            self.model = model.fit(self.scaler.transform(features), families)
        return self

    def _standardised(self, log_mel_db) -> np.ndarray:
        if self.model is None:
            raise ValueError("FamilyJudge is not fit: call fit(log_mel_db, families) first")
        return self.scaler.transform(self.features(log_mel_db))

    def predict(self, log_mel_db) -> np.ndarray:
        """The family of each note, (notes,); only families seen in `fit` can be predicted."""
        x = self._standardised(log_mel_db)  # refuses an unfit judge
        return np.asarray(self.model.predict(x))

    def accuracy(self, log_mel_db, families) -> float:
        """Fraction of notes whose predicted family is `families`; NaN for no notes."""
        return judged_accuracy(self.predict, log_mel_db, families, "families")

    def embed(self, log_mel_db) -> np.ndarray:
        """(notes, hidden) float64: the hidden layer's ReLU activations, the judge's penultimate features."""
        x = self._standardised(log_mel_db)
        return np.maximum(x @ self.model.coefs_[0] + self.model.intercepts_[0], 0.0)


def _feature_rows(features: Any, name: str) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2:
        raise ValueError(f"{name} must be (rows, dims), got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"{name} needs 2 rows or more for a covariance, got {len(features)}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return features


def frechet_distance(features_a, features_b, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fit to two feature sets (the FID formula).

    `‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)`, with `μ`, `Σ` the mean and
    sample covariance (`ddof=1`) of each set, `ridge` added to each diagonal
    (covariances of fewer rows than dimensions are singular), the matrix root
    by `scipy.linalg.sqrtm` and its real part kept; never below 0.

    Args:
        features_a: (rows, dims), e.g. `FamilyJudge.embed` of rendered notes.
        features_b: (rows, dims) of the same width, e.g. of real notes.
        ridge: Added to the diagonal of both covariances.

    Returns:
        The distance, in squared feature units (0 for identical sets).

    Raises:
        ValueError: fewer than 2 rows in either set, different widths, or
            non-finite features.

    Example:
    >>> a = np.random.default_rng(0).normal(size=(5000, 2))
    >>> round(frechet_distance(a, a + [3.0, 4.0]), 3)  # identical covariances: the squared mean shift
    25.0
    """
    from scipy import linalg

    a, b = _feature_rows(features_a, "features_a"), _feature_rows(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a has {a.shape[1]} dims but features_b {b.shape[1]}: they must match")
    ridge_matrix = float(ridge) * np.eye(a.shape[1])
    cov_a = np.atleast_2d(np.cov(a, rowvar=False)) + ridge_matrix
    cov_b = np.atleast_2d(np.cov(b, rowvar=False)) + ridge_matrix
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    shift = a.mean(axis=0) - b.mean(axis=0)
    distance = shift @ shift + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return float(max(distance, 0.0))


def family_fd(judge: FamilyJudge, rendered_db, real_db) -> float:
    """`frechet_distance` of `judge.embed` of rendered notes and of real ones (each 2 notes or more).

    Example:
    >>> bins, rng = np.arange(32)[:, None], np.random.default_rng(0)
    >>> notes = np.stack([np.where(bins % k == 0, -10.0, -50.0) + rng.normal(0, 1, (32, 16)) for k in (3, 5) * 10])
    >>> judge = FamilyJudge(hidden=16).fit(notes, ["brass", "flute"] * 10)
    >>> family_fd(judge, notes, notes)
    0.0
    """
    return frechet_distance(judge.embed(rendered_db), judge.embed(real_db))
