"""The synthetic default data: format, determinism, envelopes, and families a classifier tells apart."""

import json
import wave

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keras_timbre.cli import main
from keras_timbre.data import SYNTHETIC_FAMILIES
from keras_timbre.data import SkipReport
from keras_timbre.data import count_labels
from keras_timbre.data import load_features
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.data import read_notes
from keras_timbre.data import synthesize_note
from keras_timbre.data import synthetic
from keras_timbre.audio.frontend import FrontendConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    # 10 families x 4 instruments x 3 notes.
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), notes=120, seed=0, progress=False)


def test_nsynth_format(synth):
    records = read_notes(synth)
    assert len(records) == 120
    counts = count_labels(records)
    assert counts["family"] == {family: 12 for family in SYNTHETIC_FAMILIES}
    assert set(counts["source"]) == {"acoustic", "electronic"}
    assert len({r.instrument for r in records}) == 40
    entries = json.loads((synth / "examples.json").read_text())
    entry = entries[records[0].note_str]
    assert {
        "note_str",
        "pitch",
        "velocity",
        "instrument_str",
        "instrument_family_str",
        "instrument_source_str",
        "qualities",
        "sample_rate",
    } <= set(entry)
    for record in records[::7]:
        with wave.open(record.path) as file:
            assert (file.getframerate(), file.getsampwidth(), file.getnchannels(), file.getnframes()) == (
                16000,
                2,
                1,
                64000,
            )
    assert len({r.pitch for r in records}) > 30  # MIDI 28-96 across the families
    assert {r.velocity for r in records} == set(synthetic.VELOCITIES)
    for family in SYNTHETIC_FAMILIES:  # each instrument plays several pitches (pitch-held-out splits)
        instrument = next(r.instrument for r in records if r.family == family)
        assert len({r.pitch for r in records if r.instrument == instrument}) >= 3


def test_same_seed_same_bytes_other_seed_other_notes(tmp_path):
    first = make_synthetic_dataset(tmp_path / "first", notes=30, seed=0, progress=False)
    again = make_synthetic_dataset(tmp_path / "again", notes=30, seed=0, progress=False)
    other = make_synthetic_dataset(tmp_path / "other", notes=30, seed=1, progress=False)
    assert (again / "examples.json").read_bytes() == (first / "examples.json").read_bytes()
    names = sorted(p.name for p in (first / "audio").iterdir())
    assert len(names) == 30 and names == sorted(p.name for p in (again / "audio").iterdir())
    for name in names:
        assert (again / "audio" / name).read_bytes() == (first / "audio" / name).read_bytes()
    assert (other / "examples.json").read_bytes() != (first / "examples.json").read_bytes()
    assert not np.array_equal(
        synthesize_note("flute", 0, 69, 100, seed=0), synthesize_note("flute", 0, 69, 100, seed=1)
    )


def test_notes_are_held_three_seconds_then_released():
    rate = 16000
    for family in SYNTHETIC_FAMILIES:
        note = synthesize_note(family, 0, 60, 100)
        assert note.shape == (64000,) and note.dtype == np.float32
        assert np.all(np.isfinite(note)) and 0.1 < np.max(np.abs(note)) <= 0.9 + 1e-6
        held = np.sqrt(np.mean(note[int(2.5 * rate) : 3 * rate] ** 2))
        released = np.sqrt(np.mean(note[int(3.6 * rate) :] ** 2))
        assert released < 0.1 * held, family


def test_sustained_and_struck_envelopes_differ():
    rate = 16000

    def sustain_ratio(family):  # level late in the hold against just after the attack
        note = synthesize_note(family, 0, 60, 100)
        return np.std(note[int(2.5 * rate) : 3 * rate]) / np.std(note[int(0.2 * rate) : int(0.5 * rate)])

    for family in ("organ", "flute", "string", "reed"):
        assert sustain_ratio(family) > 0.7, family
    for family in ("mallet", "guitar"):
        assert sustain_ratio(family) < 0.3, family


def test_timbre_cues():
    rate = 16000

    def harmonic_levels(family, pitch=57, count=6):
        note = synthesize_note(family, 0, pitch, 100)[rate : 3 * rate]
        spectrum = np.abs(np.fft.rfft(note * np.hanning(note.size)))
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        bins = np.fft.rfftfreq(note.size, 1 / rate)
        return np.array([spectrum[np.abs(bins - k * f0) < f0 * 0.1].max() for k in range(1, count + 1)])

    reed = harmonic_levels("reed")
    assert reed[2] > 3 * reed[1] and reed[4] > 3 * reed[3]  # odd harmonics dominate
    flute, brass = harmonic_levels("flute"), harmonic_levels("brass")
    assert flute[3:].sum() / flute.sum() < brass[3:].sum() / brass.sum()  # flute is near-sinusoidal

    # Mallet partials are inharmonic: its second-strongest peak is near 3.9 f0, not at a harmonic.
    note = synthesize_note("mallet", 0, 72, 100)[: rate // 2]
    spectrum = np.abs(np.fft.rfft(note, 8 * note.size))
    bins = np.fft.rfftfreq(8 * note.size, 1 / rate)
    f0 = 440.0 * 2 ** (3 / 12)
    upper = spectrum * (bins > 1.5 * f0)
    ratio = bins[np.argmax(upper)] / f0
    assert 3.8 < ratio < 4.1 and abs(ratio - round(ratio)) > 0.04

    # Velocity: louder and brighter.
    soft, loud = synthesize_note("brass", 0, 60, 25), synthesize_note("brass", 0, 60, 127)
    assert np.max(np.abs(loud)) > 2 * np.max(np.abs(soft))

    def centroid(x):
        spectrum = np.abs(np.fft.rfft(x[rate : 2 * rate]))
        return np.sum(spectrum * np.arange(spectrum.size)) / np.sum(spectrum)

    assert centroid(loud) > 1.1 * centroid(soft)


def test_families_are_distinguishable_on_unseen_instruments(synth):
    """A linear classifier on mean/std log-mel, trained on three instruments per family, tested on the fourth."""
    config = FrontendConfig(n_mels=40, n_fft=512, hop_length=500)
    records = read_notes(synth)
    features, kept = load_features(records, config, skips=SkipReport(verbose=False))
    x = np.concatenate([features[..., 0].mean(axis=2), features[..., 0].std(axis=2)], axis=1)
    y = np.array([r.family for r in kept])
    held_out = np.array([r.instrument.endswith("_003") for r in kept])
    assert held_out.sum() == 30
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    classifier.fit(x[~held_out], y[~held_out])
    accuracy = np.mean(classifier.predict(x[held_out]) == y[held_out])
    assert accuracy >= 0.8, f"accuracy {accuracy:.2f} on held-out instruments (chance 0.10)"


def test_default_data_dir_is_generated_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIMBRE_CACHE", str(tmp_path))
    monkeypatch.setattr(synthetic, "DEFAULT_NOTES", 20)
    path = synthetic.default_data_dir()
    assert path == tmp_path / synthetic.CACHE_VERSION
    assert len(read_notes(path)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == [synthetic.CACHE_VERSION]  # no temporary left
    stamp = (path / "examples.json").stat().st_mtime_ns
    assert synthetic.default_data_dir() == path
    assert (path / "examples.json").stat().st_mtime_ns == stamp


def test_cli_make_dataset_synthetic(tmp_path, capsys):
    assert main(["make-dataset", "synthetic", "--out", str(tmp_path / "s"), "--notes", "12", "--seed", "3"]) == 0
    assert "Wrote 12 synthetic notes (seed 3)" in capsys.readouterr().out
    records = read_notes(tmp_path / "s")
    assert len(records) == 12
    assert sf.info(records[0].path).frames == 64000
    assert main(["make-dataset", "synthetic", "--out", str(tmp_path / "t"), "--notes", "0"]) == 2
    assert "notes must be >= 1" in capsys.readouterr().err
