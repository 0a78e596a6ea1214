"""Estimated pitch and velocity labels (keras_timbre.data.labels) and their use by the audio-folder reader."""

import json

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.cli import main
from keras_timbre.data import SkipReport
from keras_timbre.data import read_notes
from keras_timbre.data.labels import LABELS_FILE
from keras_timbre.data.labels import estimate_pitch
from keras_timbre.data.labels import estimate_velocity
from keras_timbre.data.labels import label_notes
from keras_timbre.data.labels import read_labels

RATE = 16000
# name -> (MIDI pitch, peak amplitude); non-NSynth names, so nothing is known from them.
TONES = {"tones/a.wav": (48, 0.9), "tones/b.wav": (60, 0.3), "tones/deeper/c.flac": (69, 0.03)}


def harmonic_tone(midi, amplitude=0.5, seconds=2.0, rate=RATE):
    """Six harmonics falling as 1/k, a 20 ms attack and an exponential decay, peaking at `amplitude`."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < rate / 2)
    wave = wave * np.minimum(1.0, t / 0.02) * np.exp(-t)
    return (amplitude * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    for name, (midi, amplitude) in TONES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, harmonic_tone(midi, amplitude), RATE)
    noise = np.random.default_rng(0).normal(0.0, 0.2, 2 * RATE).astype(np.float32)
    sf.write(tmp_path / "noise.wav", noise, RATE)
    sf.write(tmp_path / "silent.wav", np.zeros(RATE, np.float32), RATE)
    # Labelled by its name (pitch 60, though it sounds 69): left alone.
    sf.write(tmp_path / "guitar_acoustic_000-060-100.wav", harmonic_tone(69), RATE)
    return tmp_path


@pytest.mark.parametrize("midi", [21, 48, 60, 69, 108])
def test_estimate_pitch_recovers_midi(midi):
    assert estimate_pitch(harmonic_tone(midi), RATE) == midi


def test_estimate_pitch_at_other_rates():
    assert estimate_pitch(harmonic_tone(57, rate=44100), 44100) == 57


def test_unpitched_and_silent_audio_has_no_pitch():
    noise = np.random.default_rng(1).normal(0.0, 0.3, RATE).astype(np.float32)
    assert estimate_pitch(noise, RATE) is None
    assert estimate_pitch(np.zeros(RATE, np.float32), RATE) is None
    assert estimate_pitch(np.zeros(10, np.float32), RATE) is None


def test_velocity_rises_with_amplitude():
    velocities = [estimate_velocity(harmonic_tone(60, a)) for a in (0.01, 0.03, 0.2, 0.5, 0.7, 1.0)]
    assert velocities == sorted(velocities) and len(set(velocities)) >= 4
    assert set(velocities) <= {25, 50, 75, 100, 127}
    assert estimate_velocity(np.zeros(100)) == 25


def test_label_notes_writes_labels_and_the_reader_applies_them(folder):
    skips = SkipReport(verbose=False)
    summary = label_notes(folder, skips=skips, progress=False)
    assert summary == {"labelled": 3, "reused": 0, "skipped": 2, "path": str(folder / LABELS_FILE)}
    labels = json.loads((folder / LABELS_FILE).read_text())
    assert sorted(labels) == sorted(TONES)
    assert {name: labels[name]["pitch"] for name in TONES} == {name: midi for name, (midi, _) in TONES.items()}
    assert (
        labels["tones/a.wav"]["velocity"]
        > labels["tones/b.wav"]["velocity"]
        > labels["tones/deeper/c.flac"]["velocity"]
    )
    assert sorted(skips.skipped) == [str(folder / "noise.wav"), str(folder / "silent.wav")]
    assert skips.reason_counts() == {"pitch cannot be estimated": 2}
    assert read_labels(folder) == labels

    records = {r.note_str: r for r in read_notes(folder, skips=SkipReport(verbose=False))}
    assert {s: records[s].pitch for s in ("a", "b", "c")} == {"a": 48, "b": 60, "c": 69}
    assert records["c"].velocity == labels["tones/deeper/c.flac"]["velocity"]
    assert (records["noise"].pitch, records["silent"].velocity) == (-1, -1)
    assert (records["guitar_acoustic_000-060-100"].pitch, records["guitar_acoustic_000-060-100"].family) == (
        60,
        "guitar",
    )

    # A re-run keeps the entries (an interrupted run resumes) and only retries the skipped notes.
    labels["tones/a.wav"] = {"pitch": 50, "velocity": 25}
    (folder / LABELS_FILE).write_text(json.dumps(labels))
    again = label_notes(folder, skips=SkipReport(verbose=False), progress=False)
    assert (again["labelled"], again["reused"], again["skipped"]) == (0, 3, 2)
    assert read_labels(folder)["tones/a.wav"] == {"pitch": 50, "velocity": 25}


def test_malformed_labels_file_is_named(folder):
    (folder / LABELS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{LABELS_FILE} is not valid JSON"):
        read_notes(folder)
    (folder / LABELS_FILE).write_text(json.dumps({"tones/a.wav": {"pitch": "C4"}}))
    with pytest.raises(ValueError, match="entry 'tones/a.wav' must be"):
        read_labels(folder)


def test_label_notes_refuses_nsynth_releases(tmp_path):
    (tmp_path / "examples.json").write_text("{}")
    with pytest.raises(ValueError, match="NSynth release"):
        label_notes(tmp_path, progress=False)


def test_make_dataset_labels_cli(folder, tmp_path, capsys):
    assert main(["make-dataset", "labels", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{folder / LABELS_FILE}: 3 note(s) labelled, 0 kept from before, 2 skipped" in out
    assert "2 file(s) skipped" in out and "silent.wav: pitch cannot be estimated" in out
    assert main(["make-dataset", "labels", str(tmp_path / "missing")]) == 2
    assert f"error: Data directory {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
