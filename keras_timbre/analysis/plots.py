"""Every figure keras-timbre draws, with matplotlib (Agg) and librosa.display axes.

Each `plot_*` function takes arrays (log-mel in dB, as the frontend computes
them), draws one figure and writes it atomically to `path` as PNG; the
`*_figure` functions behind them return the matplotlib Figure itself.

Example:
>>> import numpy as np
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> config = FrontendConfig(n_mels=32, duration=1.0, n_fft=512, hop_length=250)
>>> spec = np.full((1, 32, 64), -60.0)
>>> figure = reconstruction_figure(spec, {"skip+grad": spec}, config, title="one silent note")
>>> len(figure.axes), figure.get_suptitle()  # input and skip+grad, and the colour bar
(3, 'one silent note')
>>> plot_reconstructions("recon.png", spec, {"skip+grad": spec}, config)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from keras_timbre import atomic  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig  # noqa: E402
from keras_timbre.analysis.metrics import onset_frames  # noqa: E402

DPI = 80


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Writes `figure` as PNG atomically and closes it."""
    path = Path(path)
    with atomic.atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    plt.close(figure)
    return path


def _specshow(ax, log_mel_db, config: FrontendConfig, vmin: float, vmax: float, **kwargs):
    import librosa.display

    image = librosa.display.specshow(
        np.asarray(log_mel_db),
        ax=ax,
        sr=config.sample_rate,
        hop_length=config.hop_length,
        n_fft=config.n_fft,
        x_axis="time",
        y_axis="mel",
        fmin=config.fmin,
        fmax=config.fmax,
        vmin=vmin,
        vmax=vmax,
        cmap="magma",
        **kwargs,
    )
    # librosa's default time ticks overlap in small panels.
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    ax.tick_params(labelsize=8)
    return image


def _as_notes(spectrograms) -> np.ndarray:
    spectrograms = np.asarray(spectrograms, np.float32)
    if spectrograms.ndim == 4:
        spectrograms = spectrograms[..., 0]
    if spectrograms.ndim == 2:
        spectrograms = spectrograms[None]
    if spectrograms.ndim != 3:
        raise ValueError(f"expected log-mel (notes, n_mels, n_frames), got shape {spectrograms.shape}")
    return spectrograms


def plot_reconstructions(path: str | os.PathLike, targets, reconstructions, config, **options: Any) -> Path:
    """Writes `reconstruction_figure(targets, reconstructions, config, **options)` to `path` (PNG).

    `options`: `titles` (one label per note), `zoom` (add the high-partials and
    onset rows), `title` (of the whole figure); see `reconstruction_figure`.
    """
    return save_figure(reconstruction_figure(targets, reconstructions, config, **options), path)


def reconstruction_figure(
    targets,
    reconstructions: Mapping[str, np.ndarray],
    config: FrontendConfig,
    titles: Sequence[str] | None = None,
    zoom: bool = False,
    title: str | None = None,
):
    """A grid: one row per note (input, then each reconstruction in columns).

    With `zoom=True`, each note gets two more rows: the high-frequency
    partials (fmax / 4 to 0.8 fmax, first 1.5 s) and the onset
    (0.05 s before to 0.3 s after the attack, below fmax / 2).

    Args:
        targets: (notes, n_mels, n_frames) input log-mel in dB.
        reconstructions: Name -> array of the same shape (e.g. one per variant).
        config: Frontend config (for the time and mel axes).
        titles: Optional label per note (e.g. its note name).
        zoom: Add the high-frequency and onset zoom rows.
        title: Optional title of the whole figure (e.g. which notes these are).

    Returns:
        The matplotlib Figure (`save_figure` writes and closes it).
    """
    columns = _grid_columns(targets, reconstructions)
    targets = columns["input"]
    views = ["full", "high partials", "onset"] if zoom else ["full"]
    rows = len(targets) * len(views)
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(3.2 * len(columns), 2.4 * rows), squeeze=False, constrained_layout=True
    )
    vmax = float(targets.max())
    vmin = max(float(targets.min()), vmax - 80.0)
    onsets = np.argmax(onset_frames(targets, attack_frames=1, pre_frames=0), axis=1)
    image = None
    for note in range(len(targets)):
        label = titles[note] if titles is not None else f"note {note}"
        onset_s = onsets[note] * config.hop_length / config.sample_rate
        for v, view in enumerate(views):
            for col, (name, value) in enumerate(columns.items()):
                ax = axes[note * len(views) + v, col]
                image = _specshow(ax, value[note], config, vmin, vmax)
                _zoom(ax, view, config, onset_s)
                ax.set_title(
                    f"{name}" + (f" ({view})" if view != "full" else f"\n{label}" if col == 0 else ""), fontsize=9
                )
                if col:
                    ax.set_ylabel("")
                if v < len(views) - 1 or note < len(targets) - 1:
                    ax.set_xlabel("")
    figure.colorbar(image, ax=axes, format="%+.0f dB", shrink=0.6)
    if title:
        figure.suptitle(title)
    return figure


def _grid_columns(targets, reconstructions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"input": targets, name: reconstruction, ...}, each (notes, n_mels, n_frames) of one shape."""
    targets = _as_notes(targets)
    columns = {"input": targets}
    columns.update({name: _as_notes(value) for name, value in reconstructions.items()})
    for name, value in columns.items():
        if value.shape != targets.shape:
            raise ValueError(f"reconstruction {name!r} has shape {value.shape}, input has {targets.shape}")
    return columns


def _zoom(ax, view: str, config: FrontendConfig, onset_s: float) -> None:
    if view == "high partials":
        ax.set_ylim(config.fmax / 4, config.fmax * 0.8)
        ax.set_xlim(0, min(1.5, config.duration))
    elif view == "onset":
        ax.set_ylim(config.fmin, config.fmax / 2)
        ax.set_xlim(max(0.0, onset_s - 0.05), min(config.duration, onset_s + 0.3))


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a Keras CSVLogger file as float arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No training history at {path}")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no epochs")
    return {
        key: np.array([float(row[key]) if row[key] not in ("", None) else np.nan for row in rows]) for key in rows[0]
    }


def plot_history(path: str | os.PathLike, history_csv: str | os.PathLike) -> Path:
    """Writes `history_figure(history_csv)` to `path` (PNG)."""
    return save_figure(history_figure(history_csv), path)


def history_figure(history_csv: str | os.PathLike):
    """Training curves: one panel per loss term, training and validation (a matplotlib Figure)."""
    history = read_history(history_csv)
    epochs = history.get("epoch", np.arange(len(next(iter(history.values())))))
    terms = [k for k in history if k != "epoch" and not k.startswith("val_") and k not in ("learning_rate", "lr")]
    terms = [k for k in terms if np.isfinite(history[k]).any()]
    if not terms:
        raise ValueError(f"{history_csv} has no loss columns")
    columns = min(3, len(terms))
    rows = -(-len(terms) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[len(terms) :]:
        ax.axis("off")
    for ax, term in zip(axes.flat, terms):
        ax.plot(epochs + 1, history[term], marker=".", label="train")
        if f"val_{term}" in history:
            ax.plot(epochs + 1, history[f"val_{term}"], marker=".", label="validation")
        ax.set_title(term.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    with_validation = [ax for ax, term in zip(axes.flat, terms) if f"val_{term}" in history]
    (with_validation or [axes.flat[0]])[0].legend()
    return figure


def plot_latent_pca(path: str | os.PathLike, z_mean, families: Sequence[str], title: str = "") -> Path:
    """Writes `latent_pca_figure(z_mean, families, title)` to `path` (PNG)."""
    return save_figure(latent_pca_figure(z_mean, families, title), path)


def latent_pca_figure(z_mean, families: Sequence[str], title: str = ""):
    """The latent means projected on their first two principal components, coloured by family (a Figure)."""
    from sklearn.decomposition import PCA

    z_mean = np.asarray(z_mean, np.float64)
    families = np.asarray(families)
    if len(z_mean) != len(families):
        raise ValueError(f"{len(z_mean)} latent rows but {len(families)} family labels")
    pca = PCA(n_components=2).fit(z_mean)
    points = pca.transform(z_mean)
    figure, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for i, family in enumerate(sorted(set(families.tolist()))):
        chosen = families == family
        ax.scatter(points[chosen, 0], points[chosen, 1], s=14, color=cmap(i % 10), label=family, alpha=0.8)
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
    ax.set_title(title or "Latent means (PCA) by instrument family")
    ax.legend(fontsize=8, markerscale=1.5, loc="best")
    return figure


def plot_interpolation(
    path: str | os.PathLike,
    spectrograms,
    config: FrontendConfig,
    alphas: Sequence[float],
    names: Sequence[str] = ("A", "B"),
) -> Path:
    """A strip of decoded spectrograms from note A (alpha 0) to note B (alpha 1)."""
    spectrograms = _as_notes(spectrograms)
    if len(alphas) != len(spectrograms):
        raise ValueError(f"{len(spectrograms)} spectrograms but {len(alphas)} alphas")
    figure, axes = plt.subplots(
        1, len(spectrograms), figsize=(2.6 * len(spectrograms), 2.8), squeeze=False, constrained_layout=True
    )
    vmax = float(spectrograms.max())
    vmin = max(float(spectrograms.min()), vmax - 80.0)
    for i, (ax, alpha) in enumerate(zip(axes[0], alphas)):
        image = _specshow(ax, spectrograms[i], config, vmin, vmax)
        ax.set_title(
            f"α={alpha:.2f}" + (f"\n{names[0]}" if i == 0 else f"\n{names[1]}" if i == len(alphas) - 1 else "\n"),
            fontsize=9,
        )
        if i:
            ax.set_ylabel("")
    figure.colorbar(image, ax=axes, format="%+.0f dB", shrink=0.8)
    return save_figure(figure, path)


def plot_objective(path: str | os.PathLike, trials: Sequence[Mapping], objective_name: str) -> Path:
    """A search's objective against β (log axis) and against the mel-gradient weight, one point per trial.

    `trials` are rows with `trial`, `beta`, `grad_weight`, `reconstruction`,
    `use_skips` and the objective (None for a failed trial, drawn as a red
    cross at the top). Colour: reconstruction loss; square: no skips; circled: the best.
    """
    done = [t for t in trials if t.get(objective_name) is not None]
    failed = [t for t in trials if t.get(objective_name) is None]
    best = min(done, key=lambda t: t[objective_name]) if done else None
    top = max((t[objective_name] for t in done), default=1.0)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    for ax, name, label in ((axes[0], "beta", "β (KL weight)"), (axes[1], "grad_weight", "mel-gradient weight")):
        for reconstruction, color in (("mse", "tab:blue"), ("l1", "tab:orange")):
            for skips, marker in ((True, "o"), (False, "s")):
                group = [
                    t for t in done if t.get("reconstruction") == reconstruction and bool(t.get("use_skips")) == skips
                ]
                if group:
                    ax.scatter(
                        [t[name] for t in group],
                        [t[objective_name] for t in group],
                        c=color,
                        marker=marker,
                        alpha=0.8,
                        label=f"{reconstruction}, {'skips' if skips else 'no skips'}",
                    )
        if best is not None:
            circle = dict(s=250, facecolors="none", edgecolors="k", linewidths=1.5)
            ax.scatter([best[name]], [best[objective_name]], label=f"best (trial {best['trial']})", **circle)
        if failed:
            cross = dict(marker="x", c="tab:red", label="failed (NaN), drawn at the top")
            ax.scatter([t[name] for t in failed], [top] * len(failed), **cross)
        if name == "beta":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # unlabelled minor ticks
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{objective_name} (lower is better)")
    axes[1].legend(fontsize=7, loc="best")
    figure.suptitle(f"{len(trials)} trials, {len(done)} completed")
    return save_figure(figure, path)


def plot_spectrogram_grid(
    path: str | os.PathLike,
    cells: Sequence[Sequence[np.ndarray | None]],
    config: FrontendConfig,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
) -> Path:
    """A grid of log-mel spectrograms (dB) on one colour scale; a None cell is left blank ("none").

    For the synthesis figures: a pitch ladder (rows: synthesised, real),
    prior samples (rows: samples, columns: pitches).
    """
    filled = [np.asarray(c) for row in cells for c in row if c is not None]
    if not filled:
        raise ValueError("plot_spectrogram_grid needs at least one spectrogram")
    vmax = float(max(c.max() for c in filled))
    vmin = max(float(min(c.min() for c in filled)), vmax - 80.0)
    rows, columns = len(cells), max(len(row) for row in cells)
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns, 2.2 * rows), squeeze=False, constrained_layout=True
    )
    image = None
    for r, row in enumerate(cells):
        for c in range(columns):
            ax = axes[r][c]
            cell = row[c] if c < len(row) else None
            if cell is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="0.5")
                ax.set_xticks([]), ax.set_yticks([])
            else:
                image = _specshow(ax, cell, config, vmin, vmax)
            ax.set_title(column_labels[c] if r == 0 else "", fontsize=9)
            ax.set_ylabel(row_labels[r] if c == 0 else "", fontsize=9)
            if r < rows - 1:
                ax.set_xlabel("")
    if image is not None:
        figure.colorbar(image, ax=axes, format="%+.0f dB", shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)
