"""FeatureStats: the per-mel mean and standard deviation that normalise log-mel, and the notes' peak."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_timbre import atomic

# How far above the training notes' peak (dB) a rendered note may reach before it is no note at all.
BEYOND_RANGE_MARGIN_DB = 6.0
# A bounded decoder's ceiling lies this far above the training peak, its knee this wide (dB).
CEILING_MARGIN_DB = 1.0
CEILING_SOFTNESS_DB = 1.0


@dataclasses.dataclass
class FeatureStats:
    """Per-mel-bin mean and standard deviation of log-mel, from the training split, and its loudest bin.

    `peak_db` is the loudest value of any training note (None in files
    written before it was kept): what a rendered note may reach
    (`beyond_range`).

    Example:
    >>> stats = FeatureStats(mean=np.zeros(128), std=np.ones(128))
    >>> stats.normalize(np.zeros((128, 256))).shape
    (128, 256)
    """

    mean: np.ndarray
    std: np.ndarray
    peak_db: float | None = None

    def __post_init__(self):
        self.mean = np.asarray(self.mean, np.float32).reshape(-1)
        self.std = np.asarray(self.std, np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")
        # A constant bin (all-silent training data) must not divide by zero.
        self.std = np.maximum(self.std, 1e-3)
        self.peak_db = None if self.peak_db is None else float(self.peak_db)

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        """Stats of features (notes, n_mels, n_frames[, 1])."""
        features = np.asarray(features)
        return cls.accumulate([features], n_mels=features.shape[1])

    @classmethod
    def accumulate(cls, batches: Iterable, n_mels: int) -> "FeatureStats":
        """Stats streamed over batches of features (see `FeatureStatsAccumulator.add`).

        Example:
        >>> batches = [np.full((2, 3, 4), 1.0), np.full((2, 3, 4), 3.0)]
        >>> FeatureStats.accumulate(batches, n_mels=3).mean.tolist()
        [2.0, 2.0, 2.0]
        """
        accumulator = FeatureStatsAccumulator(n_mels)
        for batch in batches:
            accumulator.add(batch)
        return accumulator.result()

    @property
    def n_mels(self) -> int:
        return int(self.mean.shape[0])

    def normalize(self, log_mel_db):
        """(..., n_mels, n_frames) dB -> zero-mean, unit-variance per mel bin."""
        return (log_mel_db - self.mean[:, None]) / self.std[:, None]

    def to_model_input(self, log_mel_db) -> np.ndarray:
        """dB log-mel (notes, mels, frames) -> normalised float32 model input (notes, mels, frames, 1)."""
        return self.normalize(np.asarray(log_mel_db, np.float32))[..., None].astype(np.float32)

    def denormalize(self, features):
        """Inverse of `normalize`."""
        return features * self.std[:, None] + self.mean[:, None]

    def ceiling(self) -> tuple[np.ndarray, np.ndarray] | None:
        """`(ceiling, softness)` per mel bin in normalised units: the training peak + `CEILING_MARGIN_DB`, and a
        knee `CEILING_SOFTNESS_DB` wide (`hierarchy.soft_ceiling`); None without `peak_db`.

        Example:
        >>> stats = FeatureStats(mean=np.array([0.0, 10.0]), std=np.array([10.0, 5.0]), peak_db=29.0)
        >>> [v.tolist() for v in stats.ceiling()]
        [[3.0, 4.0], [0.10000000149011612, 0.20000000298023224]]
        """
        if self.peak_db is None:
            return None
        ceiling = self.peak_db + CEILING_MARGIN_DB
        return (ceiling - self.mean) / self.std, CEILING_SOFTNESS_DB / self.std

    def beyond_range(self, log_mel_db, margin_db: float = BEYOND_RANGE_MARGIN_DB) -> np.ndarray:
        """(notes,) bool: notes louder than `peak_db` by more than `margin_db` somewhere, or not finite.

        No real note goes there (the training notes peak at `peak_db`); a bin
        below the frontend's floor is only silence, rendered as such. With no
        `peak_db` only finiteness is checked.

        Example:
        >>> stats = FeatureStats(mean=np.zeros(2), std=np.ones(2), peak_db=30.0)
        >>> notes = np.stack([np.full((2, 3), 20.0), np.full((2, 3), 5600.0), np.full((2, 3), -90.0)])
        >>> stats.beyond_range(notes).tolist()
        [False, True, False]
        """
        db = np.asarray(log_mel_db, np.float64).reshape(len(log_mel_db), -1)
        beyond = ~np.isfinite(db).all(axis=1)
        if self.peak_db is not None:
            beyond |= np.where(np.isfinite(db), db, -np.inf).max(axis=1) > self.peak_db + margin_db
        return beyond

    def save(self, path: str | os.PathLike) -> None:
        peak = {} if self.peak_db is None else {"peak_db": np.float64(self.peak_db)}
        with atomic.atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, mean=self.mean, std=self.std, **peak)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No feature statistics at {path}")
        with np.load(path) as data:
            peak = float(data["peak_db"]) if "peak_db" in data.files else None
            return cls(mean=data["mean"], std=data["std"], peak_db=peak)


class FeatureStatsAccumulator:
    """Per-mel-bin sums of log-mel over any number of batches: the one place stats are computed.

    Sums are float64, so millions of float32 frames add up without drift.

    Args:
        n_mels: Mel bins of the features.

    Example:
    >>> accumulator = FeatureStatsAccumulator(n_mels=2)
    >>> accumulator.add(np.array([[[0.0, 2.0], [1.0, 1.0]]]))  # (notes, mels, frames)
    >>> stats = accumulator.result()
    >>> stats.mean.tolist(), stats.std.tolist()
    ([1.0, 1.0], [1.0, 0.0010000000474974513])
    """

    def __init__(self, n_mels: int):
        self.n_mels = int(n_mels)
        self.sum = np.zeros(self.n_mels, np.float64)
        self.sum_squares = np.zeros(self.n_mels, np.float64)
        self.notes = 0
        self.frames = 0
        self.peak = -np.inf

    def add(self, features) -> None:
        """Adds `(notes, n_mels, n_frames[, 1])` features, or `(features, labels)`, or one `(n_mels, n_frames)` note."""
        if isinstance(features, (tuple, list)):
            features = features[0]
        x = np.asarray(features, np.float64)
        if x.ndim == 4:
            x = x[..., 0]
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"expected features (notes, {self.n_mels}, frames[, 1]), got shape {np.shape(features)}")
        self.sum += x.sum(axis=(0, 2))
        self.sum_squares += np.square(x).sum(axis=(0, 2))
        self.peak = max(self.peak, float(x.max())) if x.size else self.peak
        self.notes += x.shape[0]
        self.frames += x.shape[0] * x.shape[2]

    def result(self) -> FeatureStats:
        """The mean and standard deviation of everything added.

        Raises:
            ValueError: Nothing was added.
        """
        if self.frames == 0:
            raise ValueError("No features to compute statistics from: every note was skipped")
        mean = self.sum / self.frames
        std = np.sqrt(np.maximum(self.sum_squares / self.frames - np.square(mean), 0.0))
        return FeatureStats(mean=mean, std=std, peak_db=self.peak)
