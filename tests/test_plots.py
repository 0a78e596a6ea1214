"""Figures are written, are real PNGs of sensible size, and reject bad shapes."""

import numpy as np
import pytest

from keras_timbre.analysis import plots
from keras_timbre.audio.frontend import FrontendConfig

CONFIG = FrontendConfig(n_mels=32, duration=1.0, n_fft=512, hop_length=250)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def notes(count=2):
    rng = np.random.default_rng(0)
    spec = np.full((count, 32, 64), -60.0, np.float32)
    spec[:, ::4, 10:] = -10.0
    return spec + rng.normal(0, 1, spec.shape)


def is_png(path, min_bytes=5_000, max_bytes=300_000):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and min_bytes < len(data) < max_bytes


def test_reconstruction_grid_with_zooms(tmp_path):
    target = notes()
    path = plots.plot_reconstructions(
        tmp_path / "grid.png",
        target,
        {"baseline": target - 3, "skip+grad": target},
        CONFIG,
        titles=["a", "b"],
        zoom=True,
    )
    assert is_png(path)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind


def test_reconstruction_grid_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="'bad' has shape"):
        plots.plot_reconstructions(tmp_path / "x.png", notes(), {"bad": notes(3)}, CONFIG)
    assert not (tmp_path / "x.png").exists()


def test_history_curves(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,kl_loss,val_loss,val_kl_loss\n0,3.0,1.0,3.5,1.1\n1,2.0,0.8,2.6,0.9\n")
    assert is_png(plots.plot_history(tmp_path / "curves.png", csv))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plots.plot_history(tmp_path / "c.png", tmp_path / "missing.csv")


def test_latent_pca_and_interpolation(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 8))
    families = np.repeat(["bass", "flute", "organ"], 10)
    assert is_png(plots.plot_latent_pca(tmp_path / "pca.png", z, families))
    strip = plots.plot_interpolation(tmp_path / "strip.png", notes(5), CONFIG, np.linspace(0, 1, 5))
    assert is_png(strip)
    with pytest.raises(ValueError, match="alphas"):
        plots.plot_interpolation(tmp_path / "s.png", notes(5), CONFIG, [0, 1])
