"""Estimated note labels: MIDI pitch and velocity of notes whose names do not give them.

A conditional model needs each note's pitch and velocity. NSynth names and
`examples.json` give them; for other audio, `label_notes` estimates them once,
at data preparation, and writes `DATA_DIR/labels.json`:

    {"tones/a.wav": {"pitch": 60, "velocity": 100}, ...}

keyed by the note's path relative to `DATA_DIR` (with `/`). The audio-folder
reader (`keras_timbre.data.readers`) fills in a note's unknown (-1) pitch and
velocity from this file; labels from names are never overridden.

- Pitch: `librosa.pyin` between MIDI 21 and 108 (the piano's range, NSynth's
  too), the median f0 of its voiced frames, rounded to a MIDI number.
- Velocity: the loudest frame's RMS in dBFS, to the nearest of NSynth's
  velocity levels in `VELOCITY_LEVELS_DB`. Only meaningful for recordings
  whose level was not normalised (NSynth's own notes are: about -10 dB at
  every velocity).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from keras_timbre.atomic import write_json
from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import read_audio
from keras_timbre.data.skips import SkipReport

LABELS_FILE = "labels.json"
# Notes are analysed at the frontend's usual rate: pYIN's cost and frame sizes stay those of 16 kHz.
ANALYSIS_RATE = 16000
PITCH_RANGE = (21, 108)  # MIDI, A0 to C8
# Analyse this much audio, from the loudest frame on: the attack's noise is over there and the
# pitch of a sustained note is steady, so more audio would only make pYIN (the slow part) slower.
ANALYSIS_SECONDS = 1.5
# A voiced frame is one pYIN marks voiced with at least this probability; white noise gets
# sporadic "voiced" frames of probability ~0.01, a tone 0.2 (MIDI 21) to 0.98.
MIN_VOICED_PROBABILITY = 0.1
MIN_VOICED_FRAMES = 5  # fewer: unpitched or silent, no pitch
# NSynth's velocities and the peak frame RMS (dBFS) each stands for: -3.01 dB (a full-scale sine)
# at 127, and 40 log10(v / 127) below it (amplitude ~ velocity squared, the usual MIDI curve).
# A note gets the velocity whose level is nearest in dB, i.e. the thresholds are the midpoints:
# below -25.2 dB 25, to -15.7 dB 50, to -9.7 dB 75, to -5.1 dB 100, above 127.
VELOCITY_LEVELS_DB = {25: -31.3, 50: -19.2, 75: -12.2, 100: -7.2, 127: -3.0}
_FRAME, _HOP = 2048, 512  # samples, at 16 kHz: 128 ms frames (two periods of MIDI 21), 32 ms hops
_SAVE_EVERY = 100  # notes between writes of labels.json, so interrupted work resumes


def estimate_pitch(waveform: np.ndarray, sample_rate: int) -> int | None:
    """MIDI pitch of a mono note by pYIN, or None when it has too few voiced frames.

    Args:
        waveform: Mono samples `(samples,)`.
        sample_rate: Rate in Hz; frames scale with it (2048 samples at 16 kHz).

    Returns:
        The median f0 of the voiced frames as a rounded MIDI number in
        `PITCH_RANGE`, or None for unpitched or silent audio.

    Example:
    >>> t = np.arange(16000) / 16000
    >>> estimate_pitch(np.sin(2 * np.pi * 440.0 * t), 16000)
    69
    >>> estimate_pitch(np.zeros(16000), 16000) is None
    True
    """
    import librosa

    waveform = np.asarray(waveform, np.float32).reshape(-1)
    scale = sample_rate / ANALYSIS_RATE
    frame, hop = int(2 ** np.ceil(np.log2(_FRAME * scale))), max(1, int(round(_HOP * scale)))
    start = _loudest_frame(waveform, frame, hop) * hop
    segment = waveform[start : start + int(ANALYSIS_SECONDS * sample_rate)]
    if segment.size < frame or not np.any(segment):
        return None
    f0, voiced, probability = librosa.pyin(
        segment,
        fmin=float(librosa.midi_to_hz(PITCH_RANGE[0])),
        fmax=float(librosa.midi_to_hz(PITCH_RANGE[1])),
        sr=sample_rate,
        frame_length=frame,
        hop_length=hop,
        resolution=0.25,  # quarter semitones: the answer is rounded to semitones; 10x faster than 0.1
    )
    voiced = voiced & (probability >= MIN_VOICED_PROBABILITY) & np.isfinite(f0)
    if int(voiced.sum()) < MIN_VOICED_FRAMES:
        return None
    midi = int(np.round(librosa.hz_to_midi(np.median(f0[voiced]))))
    return int(np.clip(midi, *PITCH_RANGE))


def estimate_velocity(waveform: np.ndarray) -> int:
    """NSynth velocity (25, 50, 75, 100 or 127) from the peak frame RMS, by `VELOCITY_LEVELS_DB`.

    Example:
    >>> t = np.arange(16000) / 16000
    >>> [estimate_velocity(a * np.sin(2 * np.pi * 440.0 * t)) for a in (1.0, 0.5, 0.1, 0.01)]
    [127, 100, 50, 25]
    """
    db = peak_rms_db(waveform)
    return min(VELOCITY_LEVELS_DB, key=lambda velocity: abs(VELOCITY_LEVELS_DB[velocity] - db))


def peak_rms_db(waveform: np.ndarray) -> float:
    """RMS of the loudest frame (2048 samples, hop 512) in dBFS; -120 for silence.

    Example:
    >>> round(peak_rms_db(np.ones(4096)), 1)
    0.0
    """
    rms = _frame_rms(np.asarray(waveform, np.float64).reshape(-1), _FRAME, _HOP)
    return float(20 * np.log10(max(float(rms.max()), 1e-6)))


def _frame_rms(waveform: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if waveform.size < frame:
        waveform = np.pad(waveform, (0, frame - waveform.size))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, frame)[::hop]
    return np.sqrt(np.mean(np.square(frames), axis=1))


def _loudest_frame(waveform: np.ndarray, frame: int, hop: int) -> int:
    return int(np.argmax(_frame_rms(waveform, frame, hop))) if waveform.size else 0


def read_labels(data_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """`DATA_DIR/labels.json` as `{relative path: {"pitch": p, "velocity": v}}`; `{}` if there is none.

    Raises:
        ValueError: The file is not valid JSON or not in that shape; the message names it.

    Example:
    >>> import tempfile
    >>> read_labels(tempfile.mkdtemp())
    {}
    """
    path = Path(data_dir).expanduser() / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        labels = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(labels, dict):
        raise ValueError(f"{path} must map note paths to labels, got {type(labels).__name__}")
    for note, entry in labels.items():
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), int) for k in ("pitch", "velocity"))):
            raise ValueError(f"{path}: entry {note!r} must be {{'pitch': int, 'velocity': int}}, got {entry!r}")
    return {note: {"pitch": entry["pitch"], "velocity": entry["velocity"]} for note, entry in labels.items()}


def label_notes(data_dir: str | os.PathLike, skips: SkipReport | None = None, progress: bool = True) -> dict:
    """Estimates pitch and velocity of an audio folder's unlabelled notes into `DATA_DIR/labels.json`.

    Notes labelled by their names are left alone; entries already in
    `labels.json` are kept (an interrupted run resumes: the file is rewritten,
    atomically, every 100 notes and at the end). Notes that cannot be read, or
    whose pitch cannot be estimated, are recorded in `skips` and left out.

    Args:
        data_dir: An audio folder (see `keras_timbre.data.readers`).
        skips: Where skipped notes are recorded; a new, printing `SkipReport` if None.
        progress: Show a progress bar (tqdm; hidden when stderr is not a terminal).

    Returns:
        `{"labelled": new entries, "reused": entries kept, "skipped": notes
        skipped here, "path": the labels.json path}`.

    Raises:
        FileNotFoundError: `data_dir` does not exist.
        NotADirectoryError: `data_dir` is a file.
        ValueError: `data_dir` is an NSynth release (its labels are in the
            metadata), holds no notes, or has a malformed `labels.json`.

    Example:
    >>> label_notes("~/my-notes")  # doctest: +SKIP
    {'labelled': 120, 'reused': 0, 'skipped': 2, 'path': '/home/me/my-notes/labels.json'}
    """
    from tqdm.auto import tqdm

    from keras_timbre.data.readers import read_notes  # readers imports this module

    root = _check_audio_folder(Path(data_dir).expanduser())
    skips = SkipReport() if skips is None else skips
    path, existing = root / LABELS_FILE, read_labels(root)
    labels, todo = {}, []
    for record in read_notes(root, skips=skips):
        note = Path(record.path).relative_to(root).as_posix()
        if note in existing:
            labels[note] = existing[note]
        elif record.pitch < 0 or record.velocity < 0:
            todo.append(note)
    reused, skipped = len(labels), 0
    for done, note in enumerate(tqdm(todo, desc="labelling", unit="note", disable=None if progress else True), 1):
        entry = _label_file(root / note, skips)
        if entry is None:
            skipped += 1
        else:
            labels[note] = entry
        if done % _SAVE_EVERY == 0:
            write_json(path, labels)
    if todo or labels != existing:
        write_json(path, labels)
    return {"labelled": len(labels) - reused, "reused": reused, "skipped": skipped, "path": str(path)}


def _check_audio_folder(root: Path) -> Path:
    from keras_timbre.data.nsynth import is_tfrecord

    if not root.exists():
        raise FileNotFoundError(f"Data directory {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory; labels are estimated for a folder of audio files")
    if (root / "examples.json").is_file() or any(is_tfrecord(p) for p in root.iterdir()):
        raise ValueError(f"{root} is an NSynth release: its notes' labels are in its metadata, not estimated")
    return root


def _label_file(file: Path, skips: SkipReport) -> dict[str, int] | None:
    """`{"pitch", "velocity"}` of one file, or None (recorded in `skips`) when it cannot be read or pitched."""
    try:
        data, info = read_audio(file)
        waveform = conform_audio(data, info.sample_rate, ANALYSIS_RATE, name=str(file))
    except AudioError as error:
        skips.skip(str(file), str(error))
        return None
    pitch = estimate_pitch(waveform, ANALYSIS_RATE)
    if pitch is None:
        skips.skip(
            str(file), f"pitch cannot be estimated: fewer than {MIN_VOICED_FRAMES} voiced frames (unpitched or silent)"
        )
        return None
    return {"pitch": pitch, "velocity": estimate_velocity(waveform)}
