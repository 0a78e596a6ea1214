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


def _separable_spectrogram(batch=2, mels=48, frames=24):
    """Harmonic peaks (a function of mel only) plus an onset (a function of time only)."""
    mel = np.where(np.arange(mels) % 6 == 0, 1.0, -1.0)[:, None]
    frame = np.where(np.arange(frames) >= 8, 1.0, -1.0)[None, :]
    return np.broadcast_to((mel + frame)[None, :, :, None], (batch, mels, frames, 1)).astype("float32")


def test_time_loss_sees_smeared_onsets_and_mel_loss_does_not():
    # Smearing time leaves every frame's bin-to-bin steps as they were.
    target = _separable_spectrogram()
    smeared = _blur(target, axis=2)
    assert float(to_numpy(losses.time_gradient_loss(target, smeared))) > 0.01
    assert float(to_numpy(losses.mel_gradient_loss(target, smeared))) == pytest.approx(0.0, abs=1e-6)


def test_mel_loss_sees_blurred_harmonics_and_time_loss_does_not():
    target = _separable_spectrogram()
    blurred = _blur(target, axis=1)
    assert float(to_numpy(losses.mel_gradient_loss(target, blurred))) > 0.1
    assert float(to_numpy(losses.time_gradient_loss(target, blurred))) == pytest.approx(0.0, abs=1e-6)


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


@pytest.mark.parametrize(
    "loss",
    [
        lambda t, p, w: losses.reconstruction_loss(t, p, "mse", sample_weight=w),
        lambda t, p, w: losses.reconstruction_loss(t, p, "l1", sample_weight=w),
        lambda t, p, w: losses.mel_gradient_loss(t, p, sample_weight=w),
        lambda t, p, w: losses.time_gradient_loss(t, p, sample_weight=w),
        lambda t, p, w: losses.kl_divergence(t[..., 0, 0], p[..., 0, 0], free_bits=0.05, sample_weight=w),
    ],
    ids=["mse", "l1", "mel_grad", "time_grad", "kl_free_bits"],
)
def test_sample_weight_weights_each_example_as_keras_losses_do(loss):
    rng = np.random.default_rng(2)
    target, prediction = (rng.normal(size=(3, 6, 5, 1)).astype("float32") for _ in range(2))
    unweighted = float(to_numpy(loss(target, prediction, None)))
    assert float(to_numpy(loss(target, prediction, np.ones(3, "float32")))) == pytest.approx(unweighted, rel=1e-5)
    # sum(w * loss) / batch: weight 3 on example 1 alone is example 1's loss.
    alone = float(to_numpy(loss(target[1:2], prediction[1:2], None)))
    weighted = float(to_numpy(loss(target, prediction, np.array([0.0, 3.0, 0.0], "float32"))))
    assert weighted == pytest.approx(alone, rel=1e-5)
    assert alone != pytest.approx(unweighted, rel=1e-3)


def test_sample_weight_must_be_one_weight_per_example():
    x = np.zeros((2, 4, 4, 1), "float32")
    with pytest.raises(ValueError, match=r"one weight per example.*got shape \(2, 4, 4, 1\)"):
        losses.reconstruction_loss(x, x, sample_weight=np.ones_like(x))
    assert tuple(losses.example_weights(np.ones((2, 1)), batch_rank=4).shape) == (2, 1, 1, 1)
