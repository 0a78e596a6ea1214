"""The vocoder's layers, losses and model (keras_timbre.vocoder), on tiny shapes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel
from keras_timbre.vocoder import FrontendMismatchError, Vocoder, load_vocoder
from keras_timbre.vocoder import losses
from keras_timbre.vocoder.load import save_for_inference
from keras_timbre.vocoder.layers import ConvNeXtBlock, ISTFTHead, VocosBackbone, hann_window, overlap_add_istft
from testing import TINY_FRONTEND, LayerTestCase, to_numpy

FRONTEND = TINY_FRONTEND  # (32 mels, 64 frames), n_fft 512, hop 250: 1 s at 16 kHz
FRAMES = FRONTEND.n_frames


def tones(count: int = 4, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic notes with a decay, float32 (count, samples)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FRONTEND.sample_rate)) / FRONTEND.sample_rate
    notes = []
    for _ in range(count):
        f0 = rng.uniform(110, 440)
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
        notes.append(0.3 * note * np.exp(-2.0 * t))
    return np.asarray(notes, np.float32)


def tiny_vocoder(**kwargs) -> Vocoder:
    keras.utils.set_random_seed(0)
    return Vocoder(FRONTEND, channels=16, num_blocks=1, **kwargs)


class TestLayers(LayerTestCase):
    def test_convnext_block(self):
        self.run_layer_test(
            ConvNeXtBlock,
            {"channels": 8, "intermediate": 12, "kernel_size": 5},
            [np.random.default_rng(0).normal(size=(2, FRAMES, 8)).astype("float32")],
            (2, FRAMES, 8),
            expected_num_trainable_weights=9,
        )

    def test_backbone(self):
        log_mel = np.random.default_rng(0).uniform(-60, 20, (2, FRONTEND.n_mels, FRAMES)).astype("float32")
        self.run_layer_test(
            VocosBackbone,
            {"channels": 8, "num_blocks": 2, "frontend": FRONTEND.to_dict()},
            [log_mel],
            (2, FRAMES, 8),
            expected_num_trainable_weights=6 + 2 * 9,
        )

    def test_istft_head(self):
        rng = np.random.default_rng(0)
        hidden = rng.normal(size=(2, FRAMES, 8)).astype("float32")
        log_mel = rng.uniform(-60, 20, (2, FRONTEND.n_mels, FRAMES)).astype("float32")
        self.run_layer_test(
            ISTFTHead,
            {"frontend": FRONTEND.to_dict()},
            [hidden, log_mel],
            (2, FRAMES * FRONTEND.hop_length),
            expected_num_trainable_weights=4,
        )


@pytest.mark.backend
def test_overlap_add_inverts_a_centred_stft():
    x = np.random.default_rng(1).normal(size=(2, 8000)).astype("float32")
    n_fft, hop = 512, 250  # a hop that does not divide the FFT size
    padded = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)])
    steps = 8000 // hop
    frames = np.stack([padded[:, t * hop : t * hop + n_fft] for t in range(steps)], axis=1) * hann_window(n_fft)
    spectrum = np.fft.rfft(frames, axis=-1)
    y = to_numpy(
        overlap_add_istft(
            spectrum.real.astype("float32"), spectrum.imag.astype("float32"), n_fft, hop, hann_window(n_fft)
        )
    )
    assert y.shape == (2, steps * hop)
    # Exact wherever a later frame also covers the sample (the last frame's second half has no partner).
    np.testing.assert_allclose(y[:, : (steps - 1) * hop], x[:, : (steps - 1) * hop], atol=1e-4)


@pytest.mark.backend
def test_untrained_head_follows_the_level_of_the_features():
    # The magnitude starts at the filter bank's pseudo-inverse: 20 dB less in, a tenth of the amplitude out.
    features = numpy_log_mel(tones(2), FRONTEND)
    model = tiny_vocoder()
    loud, quiet = to_numpy(model(features)), to_numpy(model(features - 20.0))
    assert loud.shape == (2, FRONTEND.num_samples)
    ratio = np.sqrt(np.mean(quiet**2) / np.mean(loud**2))
    assert 0.07 < ratio < 0.14


def test_losses_are_zero_on_the_target_and_measure_a_gain():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2, 16000)).astype("float32")
    assert float(losses.mel_l1_loss(noise, noise, FRONTEND)) == 0.0
    assert float(losses.multi_resolution_stft_loss(noise, noise)) < 1e-3
    # Half the amplitude is a quarter of the power: ln 4 in every (loud) mel bin.
    assert float(losses.mel_l1_loss(noise, 0.5 * noise, FRONTEND)) == pytest.approx(np.log(4.0), rel=1e-3)
    assert float(losses.multi_resolution_stft_loss(noise, 0.5 * noise)) == pytest.approx(0.5 + np.log(2.0), rel=1e-2)


def test_silent_crops_have_finite_gradients():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient checked under TensorFlow")
    model = tiny_vocoder()
    silence = np.full((2, FRONTEND.n_mels, 16), FRONTEND.floor_db, np.float32)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(silence, np.zeros((2, 16 * 250), np.float32), model(silence))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(np.isfinite(g.numpy()).all() for g in gradients)


def test_fit_lowers_the_loss():
    audio = tones(4)
    features = numpy_log_mel(audio, FRONTEND)[:, :, :24]  # aligned crops: frames [0, 24), samples [0, 24 hops)
    audio = audio[:, : 24 * FRONTEND.hop_length]
    model = tiny_vocoder()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(features, audio, batch_size=4, epochs=15, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert history["mel_loss"][-1] < history["mel_loss"][0]
    assert set(history) >= {"loss", "mel_loss", "stft_loss"}


@pytest.mark.backend
def test_to_audio_and_a_save_load_round_trip_give_identical_audio(tmp_path):
    features = numpy_log_mel(tones(3), FRONTEND)
    model = tiny_vocoder()
    audio = model.to_audio(features)
    assert audio.shape == (3, FRONTEND.num_samples) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    np.testing.assert_allclose(model.to_audio(features[:1]), audio[:1], atol=1e-5)  # batching changes nothing
    model.save(tmp_path / "voc.keras")
    loaded = load_vocoder(tmp_path / "voc.keras")
    assert isinstance(loaded, Vocoder) and loaded.frontend == FRONTEND
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.to_audio(features), audio)
    # The copy that ships: no optimizer state, a smaller file, the same audio.
    model.compile()
    model.fit(features, np.zeros((3, FRONTEND.num_samples), np.float32), epochs=1, verbose=0)
    model.save(tmp_path / "trained.keras")
    shipped = save_for_inference(tmp_path / "trained.keras", tmp_path / "shipped.keras")
    assert shipped.stat().st_size < 0.6 * (tmp_path / "trained.keras").stat().st_size
    np.testing.assert_array_equal(load_vocoder(shipped).to_audio(features), model.to_audio(features))


def test_a_mismatched_frontend_is_a_one_line_error():
    model = tiny_vocoder()
    with pytest.raises(FrontendMismatchError, match="32 mels"):
        model.to_audio(np.zeros((1, 128, FRAMES), np.float32))
    with pytest.raises(FrontendMismatchError, match="n_mels: vocoder has 32, run has 128") as caught:
        model.check_frontend(FrontendConfig())
    assert "\n" not in str(caught.value)
    model.check_frontend(FRONTEND)  # the same features pass


def test_load_vocoder_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocoder at"):
        load_vocoder(tmp_path)
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="not a keras_timbre Vocoder"):
        load_vocoder(tmp_path / "other.keras")


def test_default_model_fits_the_shipping_budget():
    model = Vocoder()
    assert model.frontend == FrontendConfig()
    assert model.num_weight_bytes <= 10 * 2**20
