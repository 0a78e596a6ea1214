"""The model-free rows of the novel-pitch metric: copy the nearest training pitch, or pitch-shift it.

A held-out note is an instrument at a pitch it never played in training
(`keras_timbre.data.split_notes` holds out pitches per instrument). Its
partner is that instrument's training note of nearest pitch. Two baselines
need no model:

- `nearest_pitch_copy_lsd_db`: the partner's log-mel, copied as it is.
- `pitch_shift_lsd_db`: the partner's waveform moved to the held-out pitch by
  `librosa.effects.pitch_shift`, then turned into log-mel by the frontend.

Both are scored with `keras_timbre.analysis.metrics.lsd_db` (floored at the
frontend's silence) against the held-out note's log-mel. `novel_pitch_pairs`
gives the same partners to the rows that need a model.

Example:
>>> from keras_timbre.data.readers import NoteRecord
>>> train = [NoteRecord.from_path(f"flute_acoustic_000-{p:03d}-100.wav") for p in (60, 64)]
>>> held = [NoteRecord.from_path("flute_acoustic_000-063-100.wav")]
>>> pairs = novel_pitch_pairs(train, held)
>>> pairs.train_index.tolist(), pairs.semitones.tolist()
([1], [-1])
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Sequence

import numpy as np

from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.frontend import numpy_log_mel
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import read_audio
from keras_timbre.data.readers import NoteRecord


@dataclasses.dataclass(frozen=True)
class NovelPitchPairs:
    """Held-out notes and their nearest-pitch training partners, one entry per scored note.

    Args:
        held_index: (pairs,) index into the held-out records.
        train_index: (pairs,) index into the training records of the partner.
        semitones: (pairs,) held-out pitch minus the partner's pitch.
        unscored: Indices of held-out notes whose instrument has no training note.
    """

    held_index: np.ndarray
    train_index: np.ndarray
    semitones: np.ndarray
    unscored: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.held_index.size)


def nearest_training_notes(train_records: Sequence[NoteRecord], held_records: Sequence[NoteRecord]) -> list[int | None]:
    """For each held-out note, the index of its instrument's training note of nearest pitch.

    Ties in pitch distance go to the note of the same velocity, then to the
    lower pitch, then to the nearer velocity, then to the first in `train_records`.

    Returns:
        One index into `train_records` per held-out note, None where the
        instrument has no training note.

    Example:
    >>> from keras_timbre.data.readers import NoteRecord
    >>> train = [NoteRecord.from_path(n) for n in ("a_b_0-059-100.wav", "a_b_0-061-100.wav", "a_b_0-061-50.wav")]
    >>> held = [NoteRecord.from_path(n) for n in ("a_b_0-060-100.wav", "a_b_0-060-50.wav", "c_d_0-060-100.wav")]
    >>> nearest_training_notes(train, held)
    [0, 2, None]
    """
    by_instrument = defaultdict(list)
    for index, record in enumerate(train_records):
        by_instrument[record.instrument].append(index)
    nearest = []
    for held in held_records:
        candidates = by_instrument.get(held.instrument)
        if not candidates:
            nearest.append(None)
            continue

        def key(index: int, held: NoteRecord = held) -> tuple:
            note = train_records[index]
            velocity_gap = abs(note.velocity - held.velocity)
            return (abs(note.pitch - held.pitch), velocity_gap != 0, note.pitch, velocity_gap, index)

        nearest.append(min(candidates, key=key))
    return nearest


def novel_pitch_pairs(train_records: Sequence[NoteRecord], held_records: Sequence[NoteRecord]) -> NovelPitchPairs:
    """`nearest_training_notes` as index arrays, with the semitones from partner to held-out note."""
    nearest = nearest_training_notes(train_records, held_records)
    held_index = np.array([i for i, j in enumerate(nearest) if j is not None], np.int64)
    train_index = np.array([j for j in nearest if j is not None], np.int64)
    semitones = np.array(
        [held_records[i].pitch - train_records[j].pitch for i, j in zip(held_index, train_index)], np.int64
    )
    unscored = tuple(i for i, j in enumerate(nearest) if j is None)
    return NovelPitchPairs(held_index, train_index, semitones, unscored)


def pitch_shifted_log_mel(records: Sequence[NoteRecord], index, semitones, frontend: FrontendConfig) -> np.ndarray:
    """Log-mel (dB, (len(index), n_mels, n_frames)) of each `records[index[k]]`'s waveform moved by `semitones[k]`.

    Each audio file is read once (`read_audio`, then `conform_audio` to the
    frontend's rate and length), moved by `librosa.effects.pitch_shift` and put
    through `numpy_log_mel`. The novel-pitch row moves each partner to its
    held-out pitch; swap and judge moves each held-out note to the asked pitch.
    """
    import librosa

    waveforms: dict[int, np.ndarray] = {}
    shifted = np.zeros((len(index), *frontend.feature_shape), np.float32)
    for k, (note, steps) in enumerate(zip(np.asarray(index).tolist(), np.asarray(semitones).tolist())):
        if note not in waveforms:
            path = records[note].path
            data, info = read_audio(path)
            waveforms[note] = conform_audio(
                data, info.sample_rate, frontend.sample_rate, frontend.num_samples, name=str(path)
            )
        waveform = waveforms[note]
        if steps != 0:
            waveform = librosa.effects.pitch_shift(waveform, sr=frontend.sample_rate, n_steps=float(steps))
        shifted[k] = numpy_log_mel(waveform, frontend)
    return shifted


def _log_mel(log_mel_db, what: str) -> np.ndarray:
    log_mel_db = np.asarray(log_mel_db, np.float32)
    if log_mel_db.ndim == 4 and log_mel_db.shape[-1] == 1:
        log_mel_db = log_mel_db[..., 0]
    if log_mel_db.ndim != 3:
        raise ValueError(f"{what} must be (notes, n_mels, n_frames) log-mel in dB, got shape {log_mel_db.shape}")
    return log_mel_db


def copy_and_shift_rows(
    train_records: Sequence[NoteRecord],
    train_log_mel_db,
    held_records: Sequence[NoteRecord],
    held_log_mel_db,
    frontend: FrontendConfig,
) -> dict:
    """The two model-free novel-pitch rows: LSD of the nearest-pitch copy and of its pitch shift.

    Args:
        train_records: Training notes; their `path`s must be audio files (the
            pitch shift reads their waveforms).
        train_log_mel_db: (len(train_records), n_mels, n_frames) their log-mel in dB.
        held_records: Held-out notes (instruments at pitches absent from training).
        held_log_mel_db: (len(held_records), n_mels, n_frames) their log-mel in dB.
        frontend: The frontend the log-mels were computed with.

    Returns:
        `{"nearest_pitch_copy_lsd_db", "pitch_shift_lsd_db", "notes", "unscored"}`:
        both LSDs (dB, mean over scored notes, NaN if none), the number of
        scored held-out notes and of those whose instrument has no training note.
    """
    train_log_mel_db = _log_mel(train_log_mel_db, "train_log_mel_db")
    held_log_mel_db = _log_mel(held_log_mel_db, "held_log_mel_db")
    if len(train_log_mel_db) != len(train_records) or len(held_log_mel_db) != len(held_records):
        raise ValueError(
            f"{len(train_records)} training records with {len(train_log_mel_db)} log-mels, "
            f"{len(held_records)} held-out records with {len(held_log_mel_db)}: they must match"
        )
    pairs = novel_pitch_pairs(train_records, held_records)
    row = {"notes": len(pairs), "unscored": len(pairs.unscored)}
    if len(pairs) == 0:
        return {"nearest_pitch_copy_lsd_db": float("nan"), "pitch_shift_lsd_db": float("nan"), **row}
    target = held_log_mel_db[pairs.held_index]
    copy = train_log_mel_db[pairs.train_index]
    shifted = pitch_shifted_log_mel(train_records, pairs.train_index, pairs.semitones, frontend)
    return {
        "nearest_pitch_copy_lsd_db": lsd_db(target, copy, floor_db=frontend.floor_db),
        "pitch_shift_lsd_db": lsd_db(target, shifted, floor_db=frontend.floor_db),
        **row,
    }
