"""Griffin-Lim, librosa's and the in-graph one: both invert log-mel, share the dB -> power step, stay finite."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from keras_timbre.audio import griffin_lim
from keras_timbre.audio.frontend import tf_log_mel
from keras_timbre.audio.griffin_lim import mel_to_audio, tf_mel_to_audio
from tests.testing import TINY_FRONTEND

CONFIG = TINY_FRONTEND  # features (32, 64)


def harmonic_note(f0=220.0):
    t = np.arange(CONFIG.num_samples) / CONFIG.sample_rate
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * np.exp(-3 * t)
    return (0.3 * tone).astype(np.float32)


def spectral_error(audio, target):
    """Mean |dB error| of the audio's log-mel over the loud bins of the target (the top 60 dB)."""
    loud = target > target.max() - 60.0
    return float(np.abs(tf_log_mel(audio, CONFIG).numpy() - target)[loud].mean())


def test_in_graph_griffin_lim_inverts_log_mel_as_well_as_librosa():
    target = tf_log_mel(harmonic_note()[None], CONFIG).numpy()
    ours = spectral_error(tf_mel_to_audio(target, CONFIG, n_iter=32).numpy(), target)
    no_iterations = spectral_error(tf_mel_to_audio(target, CONFIG, n_iter=0).numpy(), target)
    librosa = spectral_error(mel_to_audio(target[0], CONFIG, n_iter=32)[None], target)
    assert ours < 0.85 * no_iterations
    assert ours < 1.25 * librosa, (ours, librosa)


def test_both_vocoders_share_the_db_to_power_step():
    log_mel_db = np.random.default_rng(0).uniform(CONFIG.floor_db, 20.0, (2, *CONFIG.feature_shape))
    log_mel_db[:, :, :5] = CONFIG.floor_db  # silence before the onset
    log_mel_db = log_mel_db.astype(np.float32)
    in_numpy = griffin_lim.mel_power_frames(log_mel_db, CONFIG.floor_db)
    in_graph = griffin_lim.mel_power_frames(tf.constant(log_mel_db), CONFIG.floor_db, tnp).numpy()
    np.testing.assert_allclose(in_graph, in_numpy, rtol=1e-6)
    assert in_numpy.shape == (2, CONFIG.n_mels, CONFIG.n_frames + 1)  # the frame centred framing drops, back
    np.testing.assert_array_equal(in_numpy[..., -1], in_numpy[..., -2])
    assert np.all(in_numpy[:, :, :5] == 0.0)  # floored bins are silence, not a -60 dB noise bed
    np.testing.assert_allclose(in_numpy[:, :, 5:-1], 10.0 ** (log_mel_db[:, :, 5:] / 10.0), rtol=1e-5)


def test_absurd_levels_are_a_gain_that_peak_limiting_undoes():
    target = tf_log_mel(harmonic_note()[None], CONFIG).numpy()
    loud = target + 1e6  # 1e6 dB above: 10 ** (dB / 10) is inf in float32
    loud[target <= CONFIG.floor_db + 1e-3] = CONFIG.floor_db  # keep the silence silent
    power = griffin_lim.mel_power_frames(loud, CONFIG.floor_db)
    assert np.isfinite(power).all() and power.max() == pytest.approx(10 ** (griffin_lim.MAX_DB / 10), rel=1e-4)
    for audio in (tf_mel_to_audio(loud, CONFIG, n_iter=4).numpy()[0], mel_to_audio(loud[0], CONFIG, n_iter=4)):
        assert np.isfinite(audio).all()
        assert np.abs(audio).max() == pytest.approx(1.0, abs=1e-6)  # limited to full scale, not silenced


def test_peak_limit_is_nan_safe_and_leaves_quiet_audio_alone():
    audio = np.array([[0.5, -0.25, 0.0], [4.0, np.nan, -2.0], [np.inf, 1.0, -1.0]], np.float32)
    for xp, values in ((np, audio), (tnp, tf.constant(audio))):
        limited = np.asarray(griffin_lim.peak_limit(values, xp))
        np.testing.assert_allclose(limited, [[0.5, -0.25, 0.0], [1.0, 0.0, -0.5], [0.0, 1.0, -1.0]])


def test_mel_to_audio_refuses_non_finite_db():
    bad = np.full(CONFIG.feature_shape, -20.0, np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        mel_to_audio(bad, CONFIG)
