"""Probes and feature anchors with honest protocols, in numpy, scikit-learn and librosa.

`keras_timbre.analysis.metrics.probe_accuracy` cross-validates over shuffled
notes, so its test folds hold notes of instruments (and pitches) the probe
was fit on. The probes here never score a note on what the probe saw:

- `group_probe_accuracy`: k-fold over instruments (`GroupKFold`), so every
  fold is scored on instruments absent from its training folds (the family
  probe on unseen instruments).
- `transfer_probe_accuracy`: fit on one set, scored on another (the pitch
  probe: fit on training-split codes, scored on held-out-split codes).
- `mfcc_statistics`: the anchor that needs no learning, MFCC mean and std.
- `PitchClassifier` and `sample_pitch_accuracy`: a pitch recogniser fit on
  real log-mels, the measuring instrument for generated samples.

`docs/evaluation.md` defines each metric. Every function takes numpy arrays.

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> labels = np.repeat([0, 1], 20)
>>> features = labels[:, None] + rng.normal(0, 0.1, (40, 3))
>>> transfer_probe_accuracy(features[::2], labels[::2], features[1::2], labels[1::2])
1.0
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from keras_timbre.analysis.metrics import active_frames
from keras_timbre.analysis.metrics import linear_probe


def _fit_score(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> float:
    """Accuracy on the test set of a linear probe fit on the training set.

    A training set of one class (a fold where the other classes all fell in
    the test part) predicts that class everywhere.
    """
    classes = np.unique(train_labels)
    if classes.size == 1:
        return float(np.mean(test_labels == classes[0]))
    with warnings.catch_warnings():
        # A class seen once in training is expected: it just scores as misses.
        warnings.simplefilter("ignore", UserWarning)
        model = linear_probe().fit(train_features, train_labels)
        return float(model.score(test_features, test_labels))


def _features_and_labels(features: Any, labels: Any, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"{what}features must be (notes, dims), got shape {features.shape}")
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} {what}feature rows but {len(labels)} labels")
    return features, labels


def transfer_probe_accuracy(train_features, train_labels, test_features, test_labels) -> float:
    """Accuracy of a linear probe fit on one set and scored on another.

    Args:
        train_features: (notes, dims) the probe is fit on, e.g. the latent
            means of the training split.
        train_labels: (notes,) their labels, e.g. MIDI pitch.
        test_features: (notes, dims) it is scored on, e.g. held-out codes.
        test_labels: (notes,) their labels; a label absent from training is a miss.

    Returns:
        Accuracy on the test set, or NaN when the training labels hold fewer
        than 2 classes or either set is empty.

    Example:
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> transfer_probe_accuracy(x, [0, 0, 1, 1], x[::-1], [1, 1, 0, 0])
    1.0
    >>> transfer_probe_accuracy(x, [0, 0, 0, 0], x, [0, 0, 1, 1])
    nan
    """
    train_features, train_labels = _features_and_labels(train_features, train_labels, "training ")
    test_features, test_labels = _features_and_labels(test_features, test_labels, "test ")
    if len(test_labels) == 0 or np.unique(train_labels).size < 2:
        return float("nan")
    return _fit_score(train_features, train_labels, test_features, test_labels)


def group_probe_accuracy(features, labels, groups, folds: int = 5) -> float:
    """Accuracy of a linear probe k-folded over groups: each fold scored on groups it never saw.

    With `groups` the instrument names and `labels` the families, it measures
    whether the code carries family beyond the identity of instruments seen.

    Args:
        features: (notes, dims), e.g. the latent means.
        labels: (notes,) class labels, e.g. instrument families.
        groups: (notes,) group of each note, e.g. instrument names; a group's
            notes are all in the same fold (scikit-learn's `GroupKFold`).
        folds: Number of folds, capped at the number of groups.

    Returns:
        Mean accuracy over folds, or NaN with fewer than 2 groups or classes.

    Example:
    >>> x = np.array([[0.0], [0.2], [1.0], [1.2], [0.1], [1.1]])
    >>> group_probe_accuracy(x, [0, 0, 1, 1, 0, 1], ["a", "a", "b", "b", "c", "c"], folds=3)
    1.0
    """
    from sklearn.model_selection import GroupKFold

    features, labels = _features_and_labels(features, labels)
    groups = np.asarray(groups)
    if len(groups) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    n_groups = np.unique(groups).size
    if n_groups < 2 or np.unique(labels).size < 2:
        return float("nan")
    splitter = GroupKFold(n_splits=min(int(folds), n_groups))
    scores = [
        _fit_score(features[train], labels[train], features[test], labels[test])
        for train, test in splitter.split(features, labels, groups)
    ]
    return float(np.mean(scores))


def _notes(log_mel_db) -> np.ndarray:
    """(notes, n_mels, n_frames) float64 from one note, a batch, or a batch with a channel axis."""
    log_mel_db = np.asarray(log_mel_db, np.float64)
    if log_mel_db.ndim == 4 and log_mel_db.shape[-1] == 1:
        log_mel_db = log_mel_db[..., 0]
    if log_mel_db.ndim == 2:
        log_mel_db = log_mel_db[None]
    if log_mel_db.ndim != 3:
        raise ValueError(f"expected (notes, n_mels, n_frames) log-mel in dB, got shape {log_mel_db.shape}")
    return log_mel_db


def mfcc_statistics(log_mel_db, n_mfcc: int = 20) -> np.ndarray:
    """MFCC mean and standard deviation over time of each note: a timbre feature that needs no learning.

    Args:
        log_mel_db: (notes, n_mels, n_frames) log-mel in dB (librosa's
            `power_to_db`, as the frontend computes it).
        n_mfcc: Coefficients per frame (`librosa.feature.mfcc(S=..., n_mfcc=...)`).

    Returns:
        float64 (notes, 2 * n_mfcc): the `n_mfcc` means, then the `n_mfcc` stds.

    Example:
    >>> mfcc_statistics(np.full((3, 64, 10), -30.0)).shape
    (3, 40)
    """
    import librosa

    mfcc = librosa.feature.mfcc(S=_notes(log_mel_db), n_mfcc=int(n_mfcc))  # (notes, n_mfcc, n_frames)
    return np.concatenate([mfcc.mean(axis=2), mfcc.std(axis=2)], axis=1)


class PitchClassifier:
    """A MIDI-pitch recogniser on log-mel in dB, fit on real notes: the ruler for generated samples.

    Features of a note: the mean, over its active frames (loudest bin within
    40 dB of the note's peak, `metrics.active_frames`), of each frame's
    spectrum relative to that frame's loudest bin, floored `range_db` below
    it. They ignore the note's level, so a quiet sample is judged by its
    pitch alone. The classifier is the standardised logistic regression of the
    probes. On nsynth-mini, fit on the training split of
    `split_notes(records, 0.15, seed=0)` and scored on its held-out split
    (pitches that instrument never played in training) it is exact on
    0.886 of the notes (0.859 and 0.856 with split seeds 1 and 2).

    Args:
        range_db: Depth, in dB below each frame's peak, of the spectrum kept.

    Example:
    >>> bins = np.arange(64)[:, None]
    >>> notes = np.stack([np.where(bins % k == 0, -10.0, -60.0) * np.ones((1, 8)) for k in (3, 4, 5, 3, 4, 5)])
    >>> PitchClassifier().fit(notes, [60, 62, 64, 60, 62, 64]).predict(notes[:3]).tolist()
    [60, 62, 64]
    """

    def __init__(self, range_db: float = 60.0):
        self.range_db = float(range_db)
        self.model = None

    def features(self, log_mel_db) -> np.ndarray:
        """(notes, n_mels): the level-free mean spectrum over active frames."""
        log_mel_db = _notes(log_mel_db)
        active = active_frames(log_mel_db).astype(np.float64)
        weights = active / np.maximum(active.sum(axis=1, keepdims=True), 1.0)
        relative = np.maximum(log_mel_db - log_mel_db.max(axis=1, keepdims=True), -self.range_db)
        return np.einsum("nmf,nf->nm", relative, weights)

    def fit(self, log_mel_db, pitches) -> "PitchClassifier":
        """Fits on (notes, n_mels, n_frames) dB log-mels and their MIDI pitches (2 pitches at least)."""
        features, pitches = _features_and_labels(self.features(log_mel_db), np.asarray(pitches, np.int64))
        if np.unique(pitches).size < 2:
            raise ValueError(f"PitchClassifier needs notes of 2 pitches or more, got {np.unique(pitches).tolist()}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.model = linear_probe().fit(features, pitches)
        return self

    def predict(self, log_mel_db) -> np.ndarray:
        """MIDI pitch (int64, (notes,)) of each note; only pitches seen in `fit` can be predicted."""
        if self.model is None:
            raise ValueError("PitchClassifier is not fit: call fit(log_mel_db, pitches) first")
        return np.asarray(self.model.predict(self.features(log_mel_db)), np.int64)

    def accuracy(self, log_mel_db, pitches) -> float:
        """Fraction of notes whose predicted pitch is exactly `pitches`; NaN for no notes."""
        return judged_accuracy(self.predict, log_mel_db, np.asarray(pitches, np.int64), "pitches")


def judged_accuracy(predict, log_mel_db, labels, name: str) -> float:
    """Fraction of notes (notes, n_mels, n_frames) that `predict` labels exactly `labels`; NaN for no notes.

    Example:
    >>> judged_accuracy(lambda notes: np.zeros(len(notes)), np.zeros((4, 2, 3)), [0, 0, 1, 0], "labels")
    0.75
    """
    labels = np.asarray(labels).reshape(-1)
    log_mel_db = _notes(log_mel_db)
    if len(log_mel_db) != len(labels):
        raise ValueError(f"{len(log_mel_db)} notes but {len(labels)} {name}")
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(predict(log_mel_db) == labels))


def sample_pitch_accuracy(classifier: PitchClassifier, samples_db, requested_pitches) -> float:
    """Fraction of generated samples that `classifier` recognises at exactly the pitch they were asked for.

    Args:
        classifier: A `PitchClassifier` fit on real training notes; report its
            accuracy on real held-out notes beside this number.
        samples_db: (samples, n_mels, n_frames) generated log-mel in dB.
        requested_pitches: (samples,) the MIDI pitch each sample was generated at.

    Returns:
        Exact-pitch accuracy in [0, 1], NaN for no samples.

    Example:
    >>> bins = np.arange(64)[:, None]
    >>> notes = np.stack([np.where(bins % k == 0, -10.0, -60.0) * np.ones((1, 8)) for k in (3, 4, 3, 4)])
    >>> classifier = PitchClassifier().fit(notes, [60, 62, 60, 62])
    >>> sample_pitch_accuracy(classifier, notes[:2] - 20.0, [60, 64])
    0.5
    """
    return classifier.accuracy(samples_db, requested_pitches)
