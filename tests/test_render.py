"""renderer_for: what turns a run's log-mel into what a user hears (keras_timbre.vocoder.render)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile

from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel
from keras_timbre.audio.griffin_lim import griffin_lim_audio, mel_to_audio
from keras_timbre.vocoder import FrontendMismatchError
from keras_timbre.vocoder.load import PRETRAINED
from keras_timbre.vocoder.render import GriffinLimRenderer, VocoderRenderer, renderer_for, write_wavs
from testing import TINY_FRONTEND, save_tiny_vocoder

FRONTEND = TINY_FRONTEND


def features(count: int = 2, frontend: FrontendConfig = FRONTEND) -> np.ndarray:
    t = np.arange(frontend.num_samples) / frontend.sample_rate
    notes = [0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-2 * t) for f0 in (220.0, 330.0, 440.0)[:count]]
    return np.stack([numpy_log_mel(np.float32(note), frontend) for note in notes])


@pytest.fixture(scope="module")
def vocoder_file(tmp_path_factory):
    return save_tiny_vocoder(tmp_path_factory.mktemp("vocoder") / "tiny.keras", FRONTEND)


def test_griffin_lim_is_librosa_nnls_per_note_or_batched(monkeypatch):
    log_mel_db = features()
    calls = []

    def spy(note, frontend, n_iter):  # librosa's own phase draw is unseeded: check what is asked of it
        calls.append((note.shape, frontend, n_iter))
        return mel_to_audio(note, frontend, n_iter=n_iter)

    monkeypatch.setattr("keras_timbre.vocoder.render.mel_to_audio", spy)
    slow = renderer_for(FRONTEND, "griffin-lim", n_iter=4)
    assert isinstance(slow, GriffinLimRenderer) and slow.name == "Griffin-Lim (4 it.)"
    assert slow.to_audio(log_mel_db).shape == (2, FRONTEND.num_samples)
    assert calls == [(FRONTEND.feature_shape, FRONTEND, 4)] * 2
    fast = renderer_for(FRONTEND, "griffin-lim", n_iter=4, fast=True)  # seeded: the same numbers
    np.testing.assert_allclose(fast.to_audio(log_mel_db), griffin_lim_audio(log_mel_db, FRONTEND, n_iter=4))
    assert slow.to_audio(log_mel_db[:0]).shape == (0, FRONTEND.num_samples)


def test_a_vocoder_path_renders_with_that_vocoder(vocoder_file):
    renderer = renderer_for(FRONTEND, vocoder_file)
    assert isinstance(renderer, VocoderRenderer) and str(vocoder_file) in renderer.name
    log_mel_db = features()
    audio = renderer.to_audio(log_mel_db)
    assert audio.shape == (2, FRONTEND.num_samples) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, renderer.vocoder.to_audio(log_mel_db)[:, : FRONTEND.num_samples], atol=1e-6)


def test_a_longer_note_is_voiced_by_a_vocoder_of_the_same_features(vocoder_file):
    # The note's length is not a property of the features: a 2 s run is voiced by a vocoder trained on 1 s.
    longer = dataclasses.replace(FRONTEND, duration=2.0)
    audio = renderer_for(longer, vocoder_file).to_audio(features(1, longer))
    assert audio.shape == (1, longer.num_samples)


def test_a_vocoder_of_other_features_is_refused_naming_the_field(vocoder_file):
    other = dataclasses.replace(FRONTEND, n_mels=16)
    with pytest.raises(FrontendMismatchError, match="n_mels: vocoder has 32, run has 16"):
        renderer_for(other, vocoder_file)


def test_a_missing_vocoder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        renderer_for(FRONTEND, tmp_path / "nowhere.keras")


def test_default_is_the_shipped_vocoder_where_it_fits_else_griffin_lim():
    assert isinstance(renderer_for(FRONTEND), GriffinLimRenderer)  # the tests' tiny features: no vocoder fits
    assert PRETRAINED.is_file(), "the package ships its default vocoder"
    shipped = renderer_for(FrontendConfig())
    assert isinstance(shipped, VocoderRenderer) and shipped.name == "vocoder (shipped default)"
    assert renderer_for(FrontendConfig(), "default").vocoder is shipped.vocoder  # loaded once


def test_write_wavs_writes_each_note_at_the_frontends_rate(tmp_path, vocoder_file):
    renderer = renderer_for(FRONTEND, vocoder_file)
    log_mel_db = features()
    paths = write_wavs(renderer, [tmp_path / "a.wav", tmp_path / "b.wav"], log_mel_db)
    expected = renderer.to_audio(log_mel_db)
    for path, clip in zip(paths, expected):
        audio, rate = soundfile.read(path, dtype="float32")
        assert rate == FRONTEND.sample_rate
        np.testing.assert_allclose(audio, clip, atol=1e-4)  # 16-bit PCM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]  # no temporaries left


@pytest.mark.slow
def test_the_wheel_ships_the_default_vocoder_and_its_provenance(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run(command + ["-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("keras_timbre-*.whl")
    sizes = {info.filename: info.file_size for info in zipfile.ZipFile(wheel).infolist()}
    assert sizes["keras_timbre/pretrained/vocoder.keras"] == PRETRAINED.stat().st_size
    assert sizes["keras_timbre/pretrained/vocoder.keras"] < 10 * 2**20  # the budget: about 10 MB at most
    assert "keras_timbre/pretrained/README.md" in sizes  # how it was made, and NSynth's licence


def test_a_replaced_vocoder_file_is_loaded_again(tmp_path):
    import os

    path = save_tiny_vocoder(tmp_path / "voc.keras", FRONTEND)
    first = renderer_for(FRONTEND, path).vocoder
    assert renderer_for(FRONTEND, path).vocoder is first  # one load per file version
    save_tiny_vocoder(path, FRONTEND, channels=4)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # coarse file clocks
    assert renderer_for(FRONTEND, path).vocoder.channels == 4
