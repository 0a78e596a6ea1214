"""The audio metrics: zero for the note itself, known dB for known gains, cents for a known detune, floors."""

import numpy as np
import pytest

from keras_timbre.analysis import audio_metrics
from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel

FRONTEND = FrontendConfig(n_mels=32, n_fft=512, hop_length=128, duration=0.5)
RATE = FRONTEND.sample_rate
SEMITONE_CENTS = 100.0


def harmonic_tone(f0: float, seconds: float = 0.5, partials: int = 5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, partials + 1))).astype(np.float32)


@pytest.fixture(scope="module")
def notes():
    # A noisy harmonic tone and plain noise: every STFT bin and mel band far above the floors.
    rng = np.random.default_rng(0)
    noise = 0.05 * rng.standard_normal((2, FRONTEND.num_samples)).astype(np.float32)
    return noise + np.stack([harmonic_tone(330.0), np.zeros(FRONTEND.num_samples, np.float32)])


def test_the_note_itself_scores_zero(notes):
    assert audio_metrics.reanalysed_lsd_db(notes, notes, FRONTEND) == 0.0
    assert audio_metrics.mr_stft_distance_db(notes, notes) == 0.0
    tone = harmonic_tone(220.0)
    assert audio_metrics.f0_error_cents(tone, tone, RATE, fmin=110.0, fmax=440.0) == 0.0


@pytest.mark.parametrize("gain_db", [-6.0, -20.0, 3.0])
def test_a_gain_reads_as_its_db(notes, gain_db):
    louder = notes * np.float32(10 ** (gain_db / 20))
    assert audio_metrics.mr_stft_distance_db(louder, notes) == pytest.approx(abs(gain_db), abs=0.02)
    assert audio_metrics.reanalysed_lsd_db(louder, notes, FRONTEND) == pytest.approx(abs(gain_db), abs=0.02)


def test_the_reanalysed_lsd_is_lsd_db_of_the_frontend_features(notes):
    rng = np.random.default_rng(1)
    other = notes + 0.02 * rng.standard_normal(notes.shape).astype(np.float32)
    expected = lsd_db(numpy_log_mel(notes, FRONTEND), numpy_log_mel(other, FRONTEND), floor_db=FRONTEND.floor_db)
    assert audio_metrics.reanalysed_lsd_db(other, notes, FRONTEND) == pytest.approx(expected)
    assert expected > 0.1


def test_below_the_floors_silence_is_silence():
    silence = np.zeros((1, FRONTEND.num_samples), np.float32)
    hiss = 1e-8 * np.random.default_rng(2).standard_normal(silence.shape).astype(np.float32)
    assert audio_metrics.mr_stft_distance_db(hiss, silence) == 0.0
    assert audio_metrics.reanalysed_lsd_db(hiss, silence, FRONTEND) == 0.0
    # Against silence, a tone is scored from the floor (-100 dB), not from log 0.
    distance = audio_metrics.mr_stft_distance_db(harmonic_tone(440.0)[None], silence)
    assert 0.0 < distance < 100.0


def test_stft_db_reads_a_sinusoid_at_its_amplitude_at_every_fft_size():
    t = np.arange(RATE) / RATE
    for n_fft in audio_metrics.STFT_SIZES:
        bin_hz = RATE / n_fft
        tone = 0.5 * np.sin(2 * np.pi * 40 * bin_hz * t)  # exactly on bin 40
        level = audio_metrics.stft_db(tone, n_fft)[40, 8:-8]
        assert np.allclose(level, 20 * np.log10(0.5), atol=0.01), n_fft


def test_each_resolution_counts_equally(notes):
    other = notes * 0.5 + 0.01
    single = [audio_metrics.mr_stft_distance_db(other, notes, ffts=(n,)) for n in (512, 2048)]
    assert audio_metrics.mr_stft_distance_db(other, notes, ffts=(512, 2048)) == pytest.approx(np.mean(single))
    assert single[0] != pytest.approx(single[1])  # the offset's bins differ with the resolution


@pytest.mark.parametrize("cents", [SEMITONE_CENTS, -SEMITONE_CENTS, 2 * SEMITONE_CENTS])
def test_a_detuned_note_reads_as_its_detune_in_cents(cents):
    real = harmonic_tone(220.0)
    detuned = harmonic_tone(220.0 * 2 ** (cents / 1200))
    error = audio_metrics.f0_error_cents(detuned, real, RATE, fmin=110.0, fmax=880.0)
    assert error == pytest.approx(abs(cents), abs=10.0)  # pYIN's grid: 10 cents


def test_f0_bounds_may_be_given_per_note():
    real = np.stack([harmonic_tone(110.0), harmonic_tone(880.0)])
    sharp = np.stack([harmonic_tone(110.0 * 2 ** (1 / 12)), harmonic_tone(880.0 * 2 ** (1 / 12))])
    error = audio_metrics.f0_error_cents(sharp, real, RATE, fmin=[55.0, 440.0], fmax=[220.0, 1760.0])
    assert error == pytest.approx(SEMITONE_CENTS, abs=10.0)


def test_no_frame_voiced_in_both_is_nan():
    silence = np.zeros(FRONTEND.num_samples, np.float32)
    assert np.isnan(audio_metrics.f0_error_cents(silence, harmonic_tone(220.0), RATE, fmin=110.0, fmax=440.0))


def test_shapes_must_match(notes):
    with pytest.raises(ValueError, match=r"differ in shape"):
        audio_metrics.mr_stft_distance_db(notes[:, :-1], notes)
    with pytest.raises(ValueError, match=r"expected audio \(notes, samples\)"):
        audio_metrics.reanalysed_lsd_db(notes[None], notes[None], FRONTEND)
