"""Bounded cost: a file's header cannot make reading it cost more than its bytes allow (issue 20, item 3).

Rates no recording has are refused, channel counts too; the resampler only
sees the source frames the requested length needs; decoding stops at a budget
of samples set by the file's size, whatever its header promises.
"""

import tracemalloc

import librosa
import numpy as np
import pytest
import soundfile as sf
from test_fuzz_audio import silent_flac
from test_fuzz_audio import wav_bytes
from test_fuzz_audio import with_streaminfo

from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import load_audio
from keras_timbre.audio.io import probe_audio
from keras_timbre.audio.io import read_audio

RATE = 16000
NOTE_SAMPLES = 4 * RATE


def noise(frames, channels=1, seed=0):
    return (np.random.default_rng(seed).standard_normal((frames, channels)) * 0.1).astype(np.float32)


def pcm16(samples):
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def traced_peak(function):
    """(result, peak bytes numpy and Python allocated while `function()` ran)."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("rate", [1, 999, 384001, 2**31 - 1])
def test_rates_outside_1000_to_384000_hz_are_refused_on_every_path(tmp_path, rate):
    path = tmp_path / "note.wav"
    path.write_bytes(wav_bytes(pcm16(noise(200)), rate))
    message = f"{path}: unsupported sample rate: {rate} Hz (accepted 1,000 to 384,000 Hz)"
    for read in (probe_audio, read_audio, lambda p: load_audio(p, RATE, NOTE_SAMPLES)):
        with pytest.raises(AudioError) as error:
            read(path)
        assert str(error.value) == message
    with pytest.raises(AudioError) as error:  # a TFRecord note's `sample_rate` feature
        conform_audio(noise(200), rate, RATE, NOTE_SAMPLES, name="notes.tfrecord#x")
    assert str(error.value) == f"notes.tfrecord#x: unsupported sample rate: {rate} Hz (accepted 1,000 to 384,000 Hz)"


def test_the_accepted_rate_range_includes_its_ends(tmp_path):
    for rate in (1000, 384000):
        sf.write(tmp_path / f"{rate}.wav", noise(rate // 10)[:, 0], rate, subtype="PCM_16")
        assert probe_audio(tmp_path / f"{rate}.wav").sample_rate == rate
        assert load_audio(tmp_path / f"{rate}.wav", RATE, NOTE_SAMPLES).shape == (NOTE_SAMPLES,)
    path = tmp_path / "1hz.wav"
    path.write_bytes(wav_bytes(pcm16(noise(8000)), 1))  # the 16 KB file: 2 GB and 12 s before
    with pytest.raises(AudioError, match="unsupported sample rate: 1 Hz"):
        load_audio(path, RATE, NOTE_SAMPLES)


def test_more_than_64_channels_are_refused(tmp_path):
    data = noise(100, 65)
    path = tmp_path / "65.wav"
    path.write_bytes(wav_bytes(pcm16(data), RATE, channels=65))
    for read in (probe_audio, read_audio):
        with pytest.raises(AudioError) as error:
            read(path)
        assert str(error.value) == f"{path}: too many channels: 65 (accepted 1 to 64)"
    path.write_bytes(wav_bytes(pcm16(data[:, :64]), RATE, channels=64))
    decoded, info = read_audio(path)
    assert info.channels == 64 and decoded.shape == (100, 64)
    np.testing.assert_allclose(load_audio(path, RATE), decoded.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [1000, 44100, 384000])
def test_only_the_frames_needed_are_resampled(rate):
    """A long note is cropped before it is resampled: the same samples, at the cost of the output's length."""
    seconds = 60 if rate < 384000 else 12
    data = noise(rate * seconds)
    waveform, peak = traced_peak(lambda: conform_audio(data, rate, RATE, NOTE_SAMPLES))
    prefix = librosa.resample(data[: rate * 6, 0], orig_sr=rate, target_sr=RATE)[:NOTE_SAMPLES]
    np.testing.assert_allclose(waveform, prefix, atol=1e-6)  # 6 s resampled: 2 s past any filter's reach
    assert peak < 8 * NOTE_SAMPLES * 4, f"{peak / 2**20:.1f} MiB to resample to 4 s"  # 8 waveforms of 4 s


def test_a_claimed_frame_count_costs_nothing(tmp_path):
    """A FLAC header promising 10^9 frames (4 GB of float32, allocated up front before) in a 14 KB file."""
    path = tmp_path / "claims.flac"
    flac = tmp_path / "note.flac"
    sf.write(flac, noise(8000), RATE, subtype="PCM_16")
    path.write_bytes(with_streaminfo(flac.read_bytes(), frames=10**9))
    assert probe_audio(path).frames == 10**9

    def attempt():
        with pytest.raises(AudioError) as error:
            read_audio(path)
        return str(error.value)

    message, peak = traced_peak(attempt)
    assert message == f"{path}: corrupt audio (Internal psf_fseek() failed.)"  # libsndfile, past the 8000 frames
    assert peak < 5 * 2**20  # at most the decode budget of a 14 KB file: 2^20 samples, 4 MiB


def test_decoding_stops_at_a_budget_set_by_the_file_size(tmp_path):
    """Two minutes of 8-channel silence fit in 16 KB of FLAC; decoding keeps 2^20 samples, not 15 million."""
    path = tmp_path / "silence.flac"
    path.write_bytes(silent_flac(120, 8))
    assert path.stat().st_size < 2**20 // 16 and probe_audio(path).frames == 120 * RATE
    (data, info), peak = traced_peak(lambda: read_audio(path))
    assert data.shape == (2**20 // 8, 8) and info.frames == 120 * RATE and not np.any(data)
    assert peak < 5 * 2**20
    assert np.array_equal(load_audio(path, RATE, NOTE_SAMPLES), np.zeros(NOTE_SAMPLES, np.float32))
    # A bigger file earns a bigger budget, 16 samples per byte: all of a real note is read.
    sf.write(tmp_path / "note.flac", noise(40 * RATE, 2), RATE, subtype="PCM_16")
    data, info = read_audio(tmp_path / "note.flac")
    assert data.shape == (40 * RATE, 2) == (info.frames, info.channels)
