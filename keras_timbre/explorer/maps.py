"""2-D maps of timbre codes for the explorer page: PCA and t-SNE, scaled into the unit square."""

from __future__ import annotations

import numpy as np

# t-SNE needs more points than ~3 x perplexity; below this the page shows PCA under the t-SNE name.
MIN_TSNE_NOTES = 5
TSNE_ITERATIONS = 500


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """The first two principal components of `codes (N, D)`, zero-padded when D or N allow fewer.

    Example:
    >>> codes = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 1.0, 1.0]])
    >>> pca_2d(codes).shape
    (3, 2)
    """
    codes = np.asarray(codes, np.float64)
    centred = codes - codes.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))


def tsne_2d(codes: np.ndarray, seed: int = 0) -> np.ndarray:
    """sklearn's t-SNE of `codes (N, D)` (PCA start, perplexity at most 30); PCA for fewer than 5 notes."""
    codes = np.asarray(codes, np.float64)
    if len(codes) < MIN_TSNE_NOTES:
        return pca_2d(codes)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(codes) - 1) / 3.0))
    # 500 iterations (sklearn's default is 1000): the map has settled by then, at half the time.
    # sklearn's own "pca" start, computed here so that 1-D codes work too (its PCA asks for 2 features).
    start = pca_2d(codes)
    start = start / max(float(np.std(start[:, 0])), 1e-12) * 1e-4
    tsne = TSNE(n_components=2, perplexity=perplexity, init=start, max_iter=TSNE_ITERATIONS, random_state=seed)
    return tsne.fit_transform(codes)


def unit_square(points: np.ndarray) -> np.ndarray:
    """Scales `points (N, 2)` into [0, 1]^2 with one scale for both axes (keeps the map's shape).

    Example:
    >>> unit_square(np.array([[0.0, 0.0], [4.0, 2.0]])).tolist()
    [[0.0, 0.25], [1.0, 0.75]]
    """
    points = np.asarray(points, np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    span = float(max((high - low).max(), 1e-12))
    centre_offset = (span - (high - low)) / 2.0
    return (points - low + centre_offset) / span


def note_maps(codes: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """`{"pca": (N, 2), "tsne": (N, 2)}` in the unit square."""
    return {"pca": unit_square(pca_2d(codes)), "tsne": unit_square(tsne_2d(codes, seed))}
