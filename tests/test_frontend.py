"""The log-mel frontend against librosa, on real NSynth notes; silence; Griffin-Lim."""

import librosa
import numpy as np
import pytest
import soundfile as sf

from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.frontend import librosa_log_mel
from keras_timbre.audio.frontend import numpy_log_mel
from keras_timbre.audio.frontend import log_mel
from keras_timbre.audio.griffin_lim import mel_to_audio
from keras_timbre.audio.frontend import tf_log_mel
from tests.testing import TINY_FRONTEND

# Measured: at most 0.002 dB (float32 FFTs) over ten real notes; 0.5 dB is the bound.
TOLERANCE_DB = 0.01
TINY = TINY_FRONTEND


def reference_log_mel(waveform, config):
    """librosa itself (melspectrogram + power_to_db) with the frontend's parameters: the reference."""
    waveform = np.pad(waveform[: config.num_samples], (0, max(0, config.num_samples - len(waveform))))
    mel = librosa.feature.melspectrogram(
        y=waveform,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        power=2.0,
        center=True,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=config.log_floor, top_db=None)[:, : config.n_frames]


def one_note_per_family(nsynth_mini):
    files = sorted((nsynth_mini / "audio").glob("*.flac"))
    by_family = {}
    for file in files:
        by_family.setdefault(file.name.split("_")[0], file)
    return list(by_family.values())


# The pipeline's numpy log-mel and the exported graph's tf one must both be librosa's.
IMPLEMENTATIONS = {"numpy": numpy_log_mel, "tf": lambda waveform, config: tf_log_mel(waveform, config).numpy()}


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_log_mel_matches_librosa_on_real_notes(nsynth_mini, implementation):
    config = FrontendConfig()
    files = one_note_per_family(nsynth_mini)
    assert len(files) == 10
    waveforms = np.stack([sf.read(f, dtype="float32")[0] for f in files])
    ours = IMPLEMENTATIONS[implementation](waveforms, config)  # batched
    assert ours.shape == (10, 128, 256)
    for file, waveform, features in zip(files, waveforms, ours):
        reference = reference_log_mel(waveform, config)
        above_floor = reference > config.floor_db + 1e-3
        assert above_floor.mean() > 0.1, file.name
        error = np.abs(features - reference)[above_floor]
        assert error.max() < TOLERANCE_DB, f"{file.name}: max error {error.max():.4f} dB"
        # At the floor both are exactly the floor, or within the tolerance of it.
        assert np.all(np.abs(features - reference)[~above_floor] < TOLERANCE_DB + 1e-3)


def first_principles_log_mel(waveform, config):
    """Log-mel spelled out in numpy: zero-padded centred frames, periodic Hann window, |rfft|^2, mel filters, dB."""
    waveform = np.pad(waveform[: config.num_samples], (0, max(0, config.num_samples - len(waveform))))
    padded = np.pad(waveform.astype(np.float64), config.n_fft // 2)
    starts = np.arange(config.n_frames) * config.hop_length
    frames = padded[starts[:, None] + np.arange(config.n_fft)]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    filters = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )
    return 10 * np.log10(np.maximum(config.log_floor, filters @ power.T))


def test_librosa_log_mel_is_the_log_mel_spelled_out(nsynth_mini):
    """The library's librosa loop (benchmarks' baseline) against the computation written out step by step."""
    waveform = sf.read(one_note_per_family(nsynth_mini)[0], dtype="float32")[0]
    expected = first_principles_log_mel(waveform, TINY)
    above_floor = expected > TINY.floor_db + 1e-3
    assert above_floor.mean() > 0.3
    np.testing.assert_allclose(librosa_log_mel(waveform, TINY)[above_floor], expected[above_floor], atol=1e-3)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_log_mel_matches_librosa_without_data(implementation):
    """The same check on a synthetic chord, so it runs where the real notes are absent."""
    t = np.arange(TINY.num_samples) / TINY.sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 1760.0)).astype(np.float32) * 0.2
    chord[TINY.num_samples // 2 :] *= np.exp(-np.arange(TINY.num_samples - TINY.num_samples // 2) / 2000.0)
    reference = reference_log_mel(chord, TINY)
    above_floor = reference > TINY.floor_db + 1e-3
    assert above_floor.mean() > 0.3
    assert np.abs(IMPLEMENTATIONS[implementation](chord, TINY) - reference)[above_floor].max() < TOLERANCE_DB


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_silence_gives_the_floor_not_nan(implementation):
    silence = np.zeros((2, TINY.num_samples), np.float32)
    features = IMPLEMENTATIONS[implementation](silence, TINY)
    assert np.all(np.isfinite(features))
    np.testing.assert_allclose(features, TINY.floor_db, atol=1e-4)
    assert TINY.floor_db == pytest.approx(-60.0)


def test_log_mel_resamples_other_rates():
    t = np.arange(32000) / 32000.0
    tone_32k = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    tone_16k = tone_32k[::2]
    a = log_mel(tone_32k, 32000, TINY)
    b = log_mel(tone_16k, 16000, TINY)
    assert a.shape == b.shape == TINY.feature_shape
    # The 1 kHz band is the loudest in both; levels agree away from the edges.
    assert np.argmax(a[:, 10:-10].mean(axis=1)) == np.argmax(b[:, 10:-10].mean(axis=1))
    assert np.abs(a - b)[:, 10:-10].max() < 1.0


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_log_mel_crops_and_pads(implementation):
    short = np.ones(100, np.float32)
    long = np.ones(TINY.num_samples * 2, np.float32)
    compute = IMPLEMENTATIONS[implementation]
    assert compute(short, TINY).shape == TINY.feature_shape
    assert compute(long, TINY).shape == TINY.feature_shape
    # Cropping keeps the start; padding appends silence.
    np.testing.assert_allclose(compute(long, TINY), compute(long[: TINY.num_samples], TINY), atol=1e-4)
    assert np.all(compute(short, TINY)[:, -4:] == pytest.approx(TINY.floor_db))


def test_log_mel_rejects_bad_rank():
    with pytest.raises(ValueError, match="waveform must be"):
        log_mel(np.zeros((1, 2, 3)), 16000, TINY)


def test_griffin_lim_round_trip():
    t = np.arange(TINY.num_samples) / TINY.sample_rate
    note = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.3
    features = log_mel(note, TINY.sample_rate, TINY)
    audio = mel_to_audio(features, TINY, n_iter=16)
    assert audio.shape == (TINY.num_samples,)
    assert audio.dtype == np.float32
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    # Griffin-Lim loses phase, not the spectrum: the features come back close.
    again = log_mel(audio, TINY.sample_rate, TINY)
    loud = features > TINY.floor_db + 30
    assert np.median(np.abs(again - features)[loud]) < 3.0


def test_griffin_lim_of_silence_is_silent():
    audio = mel_to_audio(np.full(TINY.feature_shape, TINY.floor_db, np.float32), TINY, n_iter=4)
    assert audio.shape == (TINY.num_samples,) and np.max(np.abs(audio)) < 1e-6


def test_mel_to_audio_checks_shape():
    with pytest.raises(ValueError, match=r"Expected log-mel of shape \(32, 64\)"):
        mel_to_audio(np.zeros((16, 64)), TINY)


def test_config_round_trip_and_mismatch(tmp_path):
    TINY.save(tmp_path / "frontend.json")
    assert FrontendConfig.load(tmp_path / "frontend.json") == TINY
    assert TINY.feature_shape == (32, 64)
    with pytest.raises(ValueError, match="n_mels: run has 32, data has 128"):
        TINY.check_matches(FrontendConfig(duration=1.0, n_fft=512, hop_length=250))
    with pytest.raises(ValueError, match="above Nyquist"):
        FrontendConfig(sample_rate=8000)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        FrontendConfig.load(tmp_path / "missing.json")


def test_feature_stats_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(-30, 10, size=(5, 32, 64, 1)).astype(np.float32)
    features[:, 0] = -60.0  # a constant (silent) bin must not divide by zero
    stats = FeatureStats.from_features(features)
    normalized = stats.normalize(features[..., 0])
    assert np.all(np.isfinite(normalized))
    np.testing.assert_allclose(normalized[:, 1:].mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(stats.denormalize(normalized), features[..., 0], atol=1e-3)
    stats.save(tmp_path / "stats.npz")
    loaded = FeatureStats.load(tmp_path / "stats.npz")
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
