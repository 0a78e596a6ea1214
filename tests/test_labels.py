"""Estimated pitch and velocity labels (keras_timbre.data.labels) and their use by the audio-folder reader."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.cli import main
from keras_timbre.data import SkipReport
from keras_timbre.data import read_notes
from keras_timbre.data.readers import LABELS_FILE
from keras_timbre.data.labels import estimate_pitch
from keras_timbre.data.labels import estimate_velocity
from keras_timbre.data.labels import label_notes
from keras_timbre.data.readers import read_labels

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


@pytest.mark.parametrize("midi", [21, 48, 60, 69, 99, 108])
def test_estimate_pitch_recovers_midi(midi):
    # At 99 pYIN alone answers 87: three harmonics below Nyquist, and it takes the octave below.
    assert estimate_pitch(harmonic_tone(midi), RATE) == midi


def weak_fundamental_tone(midi, odd_db=-14.0, seconds=2.0, rate=RATE):
    """No fundamental, even harmonics falling as 1/k, odd ones (3, 5, ...) `odd_db` below that."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * rate)) / rate
    gains = {k: (10 ** (odd_db / 20) if k % 2 else 1.0) / k for k in range(2, 13) if k * f0 < rate / 2}
    wave = sum(gain * np.sin(2 * np.pi * k * f0 * t) for k, gain in gains.items())
    wave = wave * np.minimum(1.0, t / 0.02) * np.exp(-t)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def with_faint_octave_below(tone, midi, level_db=-46.0):
    """`tone` plus the odd harmonics of its octave below, `level_db` under its peak (as a breath or body can leave)."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(tone.size) / RATE
    faint = sum(np.sin(2 * np.pi * (k + 0.5) * f0 * t) for k in range(4)) * np.exp(-t)
    return (tone + np.abs(tone).max() * 10 ** (level_db / 20) * faint).astype(np.float32)


@pytest.mark.parametrize("midi", [36, 48, 60, 72])
def test_the_octave_is_the_one_whose_harmonics_explain_the_spectrum(midi):
    # pYIN alone takes the period of the strong even harmonics: an octave up. Their odd harmonics say otherwise.
    assert estimate_pitch(weak_fundamental_tone(midi), RATE) == midi
    # Odd harmonics 60 dB down are silence: the note is the octave above, as heard (and as pYIN says).
    assert estimate_pitch(weak_fundamental_tone(midi, odd_db=-60.0), RATE) == midi + 12
    # Partials 40+ dB under the note, an octave down, are masked: they do not pull the pitch down.
    assert estimate_pitch(with_faint_octave_below(harmonic_tone(midi), midi), RATE) == midi


# NSynth notes the plain pYIN estimate got an octave wrong (electronic basses with a weak
# fundamental) and some it got right, one per family, which the octave choice must keep.
REAL_NOTES = [
    "bass_electronic_000-029-100",
    "bass_electronic_003-029-100",
    "brass_acoustic_000-043-100",
    "flute_acoustic_001-076-100",
    "guitar_acoustic_009-051-100",
    "keyboard_acoustic_000-042-100",
    "mallet_acoustic_056-054-100",
    "organ_electronic_001-060-100",
    "reed_acoustic_000-051-100",
    "string_acoustic_006-056-100",
    "vocal_acoustic_000-050-100",
]


def test_estimated_pitch_of_real_notes_names_hidden(nsynth_mini):
    from keras_timbre.audio.io import conform_audio, read_audio

    found = [name for name in REAL_NOTES if (nsynth_mini / "audio" / f"{name}.flac").is_file()]
    if not found:
        pytest.skip("none of the notes is in this nsynth-mini")
    estimates = {}
    for name in found:  # the audio alone, as `make-dataset labels` reads it
        data, info = read_audio(nsynth_mini / "audio" / f"{name}.flac")
        estimates[name] = estimate_pitch(conform_audio(data, info.sample_rate, RATE, name=name), RATE)
    assert estimates == {name: int(name.split("-")[1]) for name in found}


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
    (folder / LABELS_FILE).write_text(json.dumps({"tones/a.wav": [60, 100]}))
    with pytest.raises(ValueError, match="entry 'tones/a.wav': must be"):
        read_labels(folder)


@pytest.mark.parametrize(
    "entry, problem",
    [
        ({"pitch": True, "velocity": 100}, "pitch True is not a MIDI number 0-127"),
        ({"pitch": 1e9, "velocity": 100}, "pitch 1000000000.0 is not a MIDI number 0-127"),
        ({"pitch": 60.5, "velocity": 100}, "pitch 60.5 is not a MIDI number 0-127"),
        ({"pitch": 128, "velocity": 100}, "pitch 128 is not a MIDI number 0-127"),
        ({"pitch": 60, "velocity": -7}, "velocity -7 is not a MIDI velocity 1-127"),
        ({"pitch": 60, "velocity": 0}, "velocity 0 is not a MIDI velocity 1-127"),
        ({"pitch": "C4", "velocity": 100}, "pitch 'C4' is not a MIDI number 0-127"),
        ({"pitch": 60}, "has no velocity"),
    ],
)
def test_bad_label_values_refuse_the_file_naming_it_and_the_entry(folder, capsys, entry, problem):
    good = {"pitch": 48, "velocity": 100}
    (folder / LABELS_FILE).write_text(json.dumps({"tones/a.wav": good, "tones/b.wav": entry, "tones/c.wav": entry}))
    expected = f"{folder / LABELS_FILE}: entry 'tones/b.wav': {problem} (and 1 more bad entries)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        read_labels(folder)
    # Listing the folder (inspect, train) stops there, with the same one line, not in training.
    assert main(["inspect", str(folder)]) == 2
    assert expected in capsys.readouterr().err


def test_whole_float_labels_are_read_as_ints(folder):
    (folder / LABELS_FILE).write_text(json.dumps({"tones/a.wav": {"pitch": 48.0, "velocity": 100}}))
    assert read_labels(folder) == {"tones/a.wav": {"pitch": 48, "velocity": 100}}


def test_label_notes_estimates_bad_entries_again(folder):
    labels = {"tones/a.wav": {"pitch": 50, "velocity": 25}, "tones/b.wav": {"pitch": 60, "velocity": -7}}
    (folder / LABELS_FILE).write_text(json.dumps(labels))
    skips = SkipReport(verbose=False)
    summary = label_notes(folder, skips=skips, progress=False)
    assert (summary["labelled"], summary["reused"]) == (2, 1)  # b and c estimated, a kept
    fixed = read_labels(folder)
    assert fixed["tones/a.wav"] == {"pitch": 50, "velocity": 25} and fixed["tones/b.wav"]["pitch"] == 60
    assert skips.change_counts() == {"re-estimated": 1}
    assert "velocity -7 is not a MIDI velocity 1-127" in skips.changes[str(folder / "tones" / "b.wav")][0]


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
