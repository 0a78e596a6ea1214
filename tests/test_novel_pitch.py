"""The model-free novel-pitch rows on synthetic harmonic tones written as NSynth-named WAVs."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel
from keras_timbre.data.readers import NoteRecord
from keras_timbre.evaluation import novel_pitch

FRONTEND = FrontendConfig(duration=1.0)


def records(*names: str, folder: Path = Path("audio")) -> list[NoteRecord]:
    return [NoteRecord.from_path(folder / f"{name}.wav") for name in names]


def test_nearest_training_note_and_its_ties():
    train = records(
        "keyboard_acoustic_000-060-100",
        "keyboard_acoustic_000-064-50",
        "keyboard_acoustic_000-066-100",
        "keyboard_acoustic_000-066-75",
        "organ_electronic_001-050-100",
    )
    held = records(
        "keyboard_acoustic_000-061-100",  # 60 is nearest
        "keyboard_acoustic_000-062-100",  # 60 and 64 tie: same velocity (60)
        "keyboard_acoustic_000-062-50",  # 60 and 64 tie: same velocity (64)
        "keyboard_acoustic_000-065-100",  # 64 and 66 tie: same velocity (66, velocity 100)
        "keyboard_acoustic_000-063-25",  # 64 nearest: velocity does not beat distance
        "keyboard_acoustic_000-065-25",  # 64 and 66 tie, no same velocity: the lower pitch
        "keyboard_acoustic_000-067-80",  # 66 at two velocities: the nearer velocity (75)
        "organ_electronic_001-040-100",
        "flute_synthetic_002-060-100",  # instrument without training notes
    )
    assert novel_pitch.nearest_training_notes(train, held) == [0, 0, 1, 2, 1, 1, 3, 4, None]
    pairs = novel_pitch.novel_pitch_pairs(train, held)
    assert len(pairs) == 8
    assert pairs.held_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert pairs.train_index.tolist() == [0, 0, 1, 2, 1, 1, 3, 4]
    assert pairs.semitones.tolist() == [1, 2, -2, -1, -1, 1, 1, -10]
    assert pairs.unscored == (8,)
    empty = novel_pitch.novel_pitch_pairs(train, held[-1:])
    assert (len(empty), empty.unscored, empty.train_index.dtype) == (0, (0,), np.int64)


def harmonic_tone(pitch: int, config: FrontendConfig = FRONTEND) -> np.ndarray:
    """A decaying harmonic tone at MIDI `pitch`, partials 1/k up to 4 kHz."""
    t = np.arange(config.num_samples) / config.sample_rate
    f0 = librosa.midi_to_hz(pitch)
    ks = np.arange(1, int(4000 // f0) + 1)
    tone = np.sum(np.sin(2 * np.pi * f0 * ks[:, None] * t) / ks[:, None], axis=0)
    return (0.3 * tone * np.exp(-3.0 * t)).astype(np.float32)


def write_notes(folder: Path, names: list[str]) -> tuple[list[NoteRecord], np.ndarray]:
    """WAVs of harmonic tones at each name's pitch, and their log-mel."""
    folder.mkdir(exist_ok=True)
    notes = records(*names, folder=folder)
    for note in notes:
        soundfile.write(note.path, harmonic_tone(note.pitch), FRONTEND.sample_rate, subtype="FLOAT")
    return notes, np.stack([numpy_log_mel(harmonic_tone(note.pitch), FRONTEND) for note in notes])


def test_pitch_shift_beats_the_copy_on_harmonic_tones(tmp_path: Path):
    train, train_db = write_notes(
        tmp_path / "train", ["keyboard_synthetic_000-057-100", "keyboard_synthetic_000-064-100"]
    )
    held = records("keyboard_synthetic_000-060-100", "keyboard_synthetic_000-066-100", "bass_synthetic_009-040-100")
    held_db = np.stack([numpy_log_mel(harmonic_tone(note.pitch), FRONTEND) for note in held])
    row = novel_pitch.copy_and_shift_rows(train, train_db, held, held_db, FRONTEND)
    assert (row["notes"], row["unscored"]) == (2, 1)
    # The copy is the training note a few semitones off, scored as it is.
    copy = lsd_db(held_db[[0, 1]], train_db[[0, 1]], floor_db=FRONTEND.floor_db)
    assert row["nearest_pitch_copy_lsd_db"] == pytest.approx(copy)
    assert row["nearest_pitch_copy_lsd_db"] > 5.0
    # Moved to the right pitch, the harmonics line up: much closer than the copy.
    assert row["pitch_shift_lsd_db"] < 0.6 * row["nearest_pitch_copy_lsd_db"]
    pairs = novel_pitch.novel_pitch_pairs(train, held)
    shifted = novel_pitch.pitch_shifted_log_mel(train, pairs.train_index, pairs.semitones, FRONTEND)
    assert shifted.shape == (2, *FRONTEND.feature_shape)
    assert lsd_db(held_db[[0, 1]], shifted, FRONTEND.floor_db) == pytest.approx(row["pitch_shift_lsd_db"], rel=1e-5)


def test_zero_semitones_is_the_note_itself(tmp_path: Path):
    train, train_db = write_notes(tmp_path, ["reed_acoustic_000-060-100", "reed_acoustic_000-062-100"])
    # A held-out note at a training pitch (another velocity): no shift, so both rows are 0 dB.
    held = records("reed_acoustic_000-062-127")
    row = novel_pitch.copy_and_shift_rows(train, train_db[..., None], held, train_db[1:], FRONTEND)
    assert row == {"nearest_pitch_copy_lsd_db": 0.0, "pitch_shift_lsd_db": 0.0, "notes": 1, "unscored": 0}


def test_no_pairs_and_mismatched_inputs(tmp_path: Path):
    train, train_db = write_notes(tmp_path, ["reed_acoustic_000-060-100"])
    held = records("brass_acoustic_001-060-100")
    row = novel_pitch.copy_and_shift_rows(train, train_db, held, train_db, FRONTEND)
    assert np.isnan(row["nearest_pitch_copy_lsd_db"]) and np.isnan(row["pitch_shift_lsd_db"])
    assert (row["notes"], row["unscored"]) == (0, 1)
    with pytest.raises(ValueError, match="must match"):
        novel_pitch.copy_and_shift_rows(train, train_db, held + held, train_db, FRONTEND)


def test_pitch_shifted_log_mel_moves_each_listed_note_by_its_semitones(tmp_path: Path):
    # Swap and judge's reference moves held-out notes themselves, one file to several pitches.
    notes, notes_db = write_notes(tmp_path, ["guitar_acoustic_000-060-100", "guitar_acoustic_000-067-100"])
    shifted = novel_pitch.pitch_shifted_log_mel(notes, [0, 0, 1], [4, -5, 0], FRONTEND)
    for got, pitch in zip(shifted, (64, 55)):
        target = numpy_log_mel(harmonic_tone(pitch), FRONTEND)
        moved_wrong_way = numpy_log_mel(harmonic_tone(2 * 60 - pitch), FRONTEND)
        assert lsd_db(target, got, FRONTEND.floor_db) < 0.6 * lsd_db(moved_wrong_way, got, FRONTEND.floor_db)
    np.testing.assert_allclose(shifted[2], notes_db[1], atol=1e-4)  # 0 semitones: the note as it is
