"""Figures show what they are given: panels, titles and drawn data, checked on the Figure and on the PNG."""

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from keras_timbre.analysis import plots
from tests.testing import TINY_FRONTEND

CONFIG = TINY_FRONTEND
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def notes(count=2, seed=0):
    rng = np.random.default_rng(seed)
    spec = np.full((count, 32, 64), -60.0, np.float32)
    spec[:, ::4, 10:] = -10.0
    return spec + rng.normal(0, 1, spec.shape)


def pixels(path):
    """The PNG's RGB pixels (height, width, 3), after checking it is a PNG."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    return matplotlib.image.imread(path)[..., :3]


def drawn(ax):
    """The array a spectrogram panel shows (librosa's specshow draws one QuadMesh)."""
    (mesh,) = ax.collections
    return np.asarray(mesh.get_array())


def test_reconstruction_grid_panels_show_each_column_and_zoom(tmp_path):
    target = notes()
    columns = {"baseline": target - 3, "skip+grad": target + 1}
    figure = plots.reconstruction_figure(target, columns, CONFIG, titles=["a", "b"], zoom=True, title="held-out")
    panels = np.array(figure.axes[:-1]).reshape(6, 3)  # 2 notes x (full, high partials, onset); 3 columns
    assert figure.axes[-1].get_label() == "<colorbar>" and figure.get_suptitle() == "held-out"
    for note in range(2):
        full, high, onset = panels[3 * note : 3 * note + 3]
        assert full[0].get_title() == f"input\n{'ab'[note]}" and high[1].get_title() == "baseline (high partials)"
        for col, value in enumerate([target, target - 3, target + 1]):
            for ax in (full[col], high[col], onset[col]):
                np.testing.assert_allclose(drawn(ax).reshape(value[note].shape), value[note], atol=1e-5)
        assert high[0].get_ylim() == pytest.approx((CONFIG.fmax / 4, CONFIG.fmax * 0.8))
        assert onset[0].get_ylim() == pytest.approx((CONFIG.fmin, CONFIG.fmax / 2))
        assert onset[0].get_xlim()[1] - onset[0].get_xlim()[0] <= 0.35  # the attack, not the whole note
    plt.close(figure)


def test_reconstruction_png_is_the_grid_and_changes_with_its_input(tmp_path):
    target = notes()
    path = plots.plot_reconstructions(tmp_path / "grid.png", target, {"skip+grad": target}, CONFIG, zoom=True)
    grid = pixels(path)
    assert grid.shape[0] > 1.5 * grid.shape[1]  # six rows of two panels: taller than wide
    assert grid.std() > 0.1  # drawn spectrograms, not a blank canvas
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind
    again = plots.plot_reconstructions(tmp_path / "again.png", target, {"skip+grad": target}, CONFIG, zoom=True)
    np.testing.assert_array_equal(pixels(again), grid)
    silent = np.full_like(target, -60.0)
    other = plots.plot_reconstructions(tmp_path / "other.png", target, {"skip+grad": silent}, CONFIG, zoom=True)
    assert np.abs(pixels(other) - grid).mean() > 0.01


def test_reconstruction_grid_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="'bad' has shape"):
        plots.plot_reconstructions(tmp_path / "x.png", notes(), {"bad": notes(3)}, CONFIG)
    assert not (tmp_path / "x.png").exists()


def test_history_curves_plot_the_csv_values(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,kl_loss,val_loss,val_kl_loss\n0,3.0,1.0,3.5,1.1\n1,2.0,0.8,2.6,0.9\n")
    figure = plots.history_figure(csv)
    loss, kl = figure.axes
    assert (loss.get_title(), kl.get_title()) == ("loss", "kl loss")
    train, validation = loss.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2])
    np.testing.assert_array_equal(train.get_ydata(), [3.0, 2.0])
    np.testing.assert_array_equal(validation.get_ydata(), [3.5, 2.6])
    np.testing.assert_array_equal(kl.get_lines()[1].get_ydata(), [1.1, 0.9])
    plt.close(figure)
    assert pixels(plots.plot_history(tmp_path / "curves.png", csv)).std() > 0.05
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plots.plot_history(tmp_path / "c.png", tmp_path / "missing.csv")


def test_latent_pca_colours_each_family(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(8)[:3] * 10, 10, axis=0)
    z = centres + rng.normal(size=(30, 8))
    families = np.repeat(["bass", "flute", "organ"], 10)
    figure = plots.latent_pca_figure(z, families, title="notes of demo")
    (ax,) = figure.axes
    assert ax.get_title() == "notes of demo"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["bass", "flute", "organ"]
    clouds = [np.asarray(c.get_offsets()) for c in ax.collections]
    assert [len(c) for c in clouds] == [10, 10, 10]
    centroids = np.array([c.mean(axis=0) for c in clouds])
    spread = max(np.linalg.norm(c - c.mean(axis=0), axis=1).mean() for c in clouds)
    assert min(np.linalg.norm(a - b) for i, a in enumerate(centroids) for b in centroids[i + 1 :]) > 3 * spread
    assert ax.get_xlabel().startswith("PC 1 (") and "% of variance" in ax.get_xlabel()
    plt.close(figure)
    assert pixels(plots.plot_latent_pca(tmp_path / "pca.png", z, families)).std() > 0.05


def test_interpolation_strip_has_a_panel_per_step_and_shows_them(tmp_path):
    five = pixels(plots.plot_interpolation(tmp_path / "five.png", notes(5), CONFIG, np.linspace(0, 1, 5)))
    three = pixels(plots.plot_interpolation(tmp_path / "three.png", notes(3), CONFIG, np.linspace(0, 1, 3)))
    assert five.shape[0] == pytest.approx(three.shape[0], rel=0.05)  # one row either way
    assert five.shape[1] / three.shape[1] == pytest.approx(5 / 3, rel=0.15)  # one panel per step
    other = pixels(
        plots.plot_interpolation(tmp_path / "other.png", notes(5, seed=1) + 20, CONFIG, np.linspace(0, 1, 5))
    )
    assert other.shape == five.shape and np.abs(other - five).mean() > 0.005
    with pytest.raises(ValueError, match="alphas"):
        plots.plot_interpolation(tmp_path / "s.png", notes(5), CONFIG, [0, 1])
