"""FeatureStats: the per-mel mean and standard deviation that normalise log-mel."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from keras_timbre import atomic


@dataclasses.dataclass
class FeatureStats:
    """Per-mel-bin mean and standard deviation of log-mel, from the training split.

    Example:
    >>> stats = FeatureStats(mean=np.zeros(128), std=np.ones(128))
    >>> stats.normalize(np.zeros((128, 256))).shape
    (128, 256)
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        self.mean = np.asarray(self.mean, np.float32).reshape(-1)
        self.std = np.asarray(self.std, np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")
        # A constant bin (all-silent training data) must not divide by zero.
        self.std = np.maximum(self.std, 1e-3)

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        """Stats of features (notes, n_mels, n_frames[, 1])."""
        features = np.asarray(features, np.float64)
        if features.ndim == 4:
            features = features[..., 0]
        return cls(mean=features.mean(axis=(0, 2)), std=features.std(axis=(0, 2)))

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

    def save(self, path: str | os.PathLike) -> None:
        with atomic.atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, mean=self.mean, std=self.std)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No feature statistics at {path}")
        with np.load(path) as data:
            return cls(mean=data["mean"], std=data["std"])
