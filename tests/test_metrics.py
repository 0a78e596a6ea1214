"""Metrics on known inputs: identical, mel-blurred, time-smeared spectrograms."""

import numpy as np
import pytest
from scipy import ndimage

from keras_timbre.analysis import metrics


def harmonic_notes(notes=3, n_mels=32, n_frames=64, onset=10):
    """Sharp harmonic ridges every 4 mel bins, switched on at `onset`."""
    spec = np.full((notes, n_mels, n_frames), -60.0)
    for i in range(notes):
        spec[i, i % 4 :: 4, onset + i :] = -10.0 - 2 * i
    return spec


def test_identical_is_perfect():
    target = harmonic_notes()
    assert metrics.lsd_db(target, target) == 0.0
    assert metrics.spectral_convergence(target, target) == 0.0
    assert metrics.mel_grad_error(target, target) == 0.0
    assert metrics.onset_error(target, target) == 0.0
    assert metrics.harmonic_contrast_ratio(target, target) == pytest.approx(1.0)


def test_constant_offset_lsd_is_offset():
    target = harmonic_notes()
    assert metrics.lsd_db(target, target + 3.0) == pytest.approx(3.0)
    # A constant offset keeps every gradient: only level metrics move.
    assert metrics.mel_grad_error(target, target + 3.0) == pytest.approx(0.0)
    assert metrics.spectral_convergence(target, target + 20 * np.log10(2)) == pytest.approx(1.0)


def test_mel_blur_lowers_contrast_and_raises_mel_grad_error():
    target = harmonic_notes()
    blurred = ndimage.gaussian_filter1d(target, 1.5, axis=1)
    slightly = ndimage.gaussian_filter1d(target, 0.5, axis=1)
    assert metrics.harmonic_contrast_ratio(target, blurred) < metrics.harmonic_contrast_ratio(target, slightly) < 1.0
    assert metrics.mel_grad_error(target, blurred) > metrics.mel_grad_error(target, slightly) > 0.0


def test_onset_error_looks_only_at_the_attack():
    target = harmonic_notes()
    smeared = ndimage.uniform_filter1d(target, 9, axis=2)
    assert metrics.onset_error(target, smeared) > 1.0
    # A changed tail (well after the attack) moves LSD but not the onset error.
    tail = target.copy()
    tail[:, :, 40:] -= np.linspace(0, 20, 24)
    assert metrics.lsd_db(target, tail) > 1.0
    assert metrics.onset_error(target, tail) == 0.0


def test_onset_is_never_the_crop_at_the_end():
    # A note sounding from frame 0 whose last frame jumps up (splatter of a crop): the onset is frame 0.
    target = np.full((1, 32, 64), -20.0)
    target[:, :, -1] = 0.0
    assert np.flatnonzero(metrics.onset_frames(target, attack_frames=3, pre_frames=2)[0]).tolist() == [0, 1, 2]


def test_onset_frames_finds_attack():
    target = harmonic_notes(notes=2, onset=20)
    mask = metrics.onset_frames(target, attack_frames=4, pre_frames=1)
    assert np.flatnonzero(mask[0]).tolist() == [19, 20, 21, 22, 23]
    assert np.flatnonzero(mask[1]).tolist() == [20, 21, 22, 23, 24]


def test_floor_ignores_noise_below_floor():
    target = harmonic_notes()
    noisy = target + np.where(target < -59, np.random.default_rng(0).uniform(-40, 0, target.shape), 0)
    assert metrics.lsd_db(target, noisy) > 1.0
    assert metrics.lsd_db(target, noisy, floor_db=-60.0) == 0.0


def test_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.lsd_db(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))


def test_kl_and_active_units():
    rng = np.random.default_rng(0)
    assert metrics.kl_nats(np.zeros((5, 4)), np.zeros((5, 4))) == 0.0
    assert metrics.kl_nats(np.ones((5, 4)), np.zeros((5, 4))) == pytest.approx(2.0)  # 4 * 0.5 * 1
    z = np.concatenate([rng.normal(size=(200, 3)), 1e-3 * rng.normal(size=(200, 5))], axis=1)
    assert metrics.active_units(z) == 3


def test_probes_see_separable_labels_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    separable = rng.normal(size=(120, 6)) + 4 * np.eye(6)[labels]
    noise = rng.normal(size=(120, 6))
    assert metrics.family_probe_accuracy(separable, labels) > 0.95
    assert metrics.probe_accuracy(separable, labels, probe="knn") > 0.95
    assert metrics.pitch_probe_accuracy(noise, labels) < 0.5
    assert metrics.chance_accuracy(labels) == 0.25
    assert np.isnan(metrics.probe_accuracy(noise, np.zeros(120)))


def test_skip_reliance():
    target = harmonic_notes()
    assert metrics.skip_reliance(target, target, target) == 0.0
    assert metrics.skip_reliance(target, target, target + 2.0) == pytest.approx(2.0)
