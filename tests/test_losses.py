"""Loss terms on known inputs, on every backend."""

import numpy as np
import pytest

from keras_timbre.models import losses
from tests.testing import to_numpy

pytestmark = pytest.mark.backend


def _blur(x, axis, width=2.0):
    """Gaussian blur along `axis` (edge-padded), in numpy."""
    radius = int(3 * width)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / width) ** 2)
    kernel /= kernel.sum()
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(x, pad, mode="edge")
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded).astype("float32")


def _harmonic_spectrogram(batch=2, mels=48, frames=24):
    """Sharp harmonic peaks every 6 mel bins, a note starting at frame 8."""
    mel = np.arange(mels)[:, None]
    frame = np.arange(frames)[None, :]
    spec = np.where(mel % 6 == 0, 1.0, -1.0) * np.where(frame >= 8, 1.0, 0.2) - 0.5
    return np.broadcast_to(spec[None, :, :, None], (batch, mels, frames, 1)).astype("float32")


def test_kl_of_standard_normal_is_zero():
    zeros = np.zeros((5, 7), "float32")
    assert float(to_numpy(losses.kl_divergence(zeros, zeros))) == pytest.approx(0.0, abs=1e-7)


def test_kl_known_value_sums_dims_and_averages_batch():
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 * (mu^2 + s^2 - 1 - log s^2)
    mean = np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0]], "float32")
    log_var = np.array([[0.0, np.log(4.0), 0.0], [0.0, np.log(4.0), 0.0]], "float32")
    per_dim_0 = [0.5, 0.5 * (4 - 1 - np.log(4)), 2.0]
    per_dim_1 = [0.5, 0.5 * (4 - 1 - np.log(4)), 0.0]
    expected = (sum(per_dim_0) + sum(per_dim_1)) / 2
    assert float(to_numpy(losses.kl_divergence(mean, log_var))) == pytest.approx(expected, rel=1e-5)


def test_free_bits_floor_each_dimension():
    mean = np.zeros((4, 3), "float32")
    mean[:, 0] = 2.0  # dimension 0 carries KL 2.0; the others none
    kl = float(to_numpy(losses.kl_divergence(mean, np.zeros((4, 3), "float32"), free_bits=0.5)))
    assert kl == pytest.approx(2.0 + 0.5 + 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="free_bits"):
        losses.kl_divergence(mean, mean, free_bits=-1.0)


def test_gradient_losses_are_zero_for_identical_inputs():
    x = np.random.default_rng(0).normal(size=(2, 16, 12, 1)).astype("float32")
    assert float(to_numpy(losses.mel_gradient_loss(x, x))) == 0.0
    assert float(to_numpy(losses.time_gradient_loss(x, x))) == 0.0


def test_mel_blur_scores_worse_than_a_sharp_spectrogram_with_the_same_mse():
    target = _harmonic_spectrogram()
    blurred = _blur(target, axis=1)
    mse_blurred = float(to_numpy(losses.reconstruction_loss(target, blurred)))
    # A sharp reconstruction that is off by a constant level has the same MSE...
    sharp = target + np.float32(np.sqrt(mse_blurred))
    assert float(to_numpy(losses.reconstruction_loss(target, sharp))) == pytest.approx(mse_blurred, rel=1e-4)
    # ...but only the blurred one loses the bin-to-bin steps of the harmonics.
    mel_blurred = float(to_numpy(losses.mel_gradient_loss(target, blurred)))
    mel_sharp = float(to_numpy(losses.mel_gradient_loss(target, sharp)))
    assert mel_sharp == pytest.approx(0.0, abs=1e-6)
    assert mel_blurred > 0.1


def test_time_loss_sees_smeared_onsets_and_mel_loss_does_not():
    target = _harmonic_spectrogram()
    smeared = _blur(target, axis=2)
    assert float(to_numpy(losses.time_gradient_loss(target, smeared))) > 0.01
    # The peaks sit at the same bins in every frame: blurring time keeps the mel steps'
    # pattern, so the mel term grows far less than the time term.
    assert float(to_numpy(losses.mel_gradient_loss(target, smeared))) < float(
        to_numpy(losses.time_gradient_loss(target, smeared))
    )


def test_reconstruction_kinds():
    ones, zeros = np.ones((2, 4, 4, 1), "float32"), np.zeros((2, 4, 4, 1), "float32")
    assert float(to_numpy(losses.reconstruction_loss(2 * ones, zeros, "mse"))) == pytest.approx(4.0)
    assert float(to_numpy(losses.reconstruction_loss(2 * ones, zeros, "l1"))) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="reconstruction must be one of"):
        losses.reconstruction_loss(ones, zeros, "huber")


def test_gradient_loss_needs_two_entries():
    x = np.zeros((1, 1, 4, 1), "float32")
    with pytest.raises(ValueError, match="at least 2 entries along axis 1"):
        losses.mel_gradient_loss(x, x)


@pytest.mark.parametrize("loss, axis", [(losses.mel_gradient_loss, 1), (losses.time_gradient_loss, 2)])
def test_gradient_losses_match_numpy_finite_differences(loss, axis):
    rng = np.random.default_rng(1)
    target, prediction = (rng.normal(size=(3, 10, 7, 1)).astype("float32") for _ in range(2))
    expected = np.mean(np.abs(np.diff(target, axis=axis) - np.diff(prediction, axis=axis)))
    assert float(to_numpy(loss(target, prediction))) == pytest.approx(expected, rel=1e-5)
