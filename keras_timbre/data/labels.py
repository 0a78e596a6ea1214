"""Estimated note labels: MIDI pitch and velocity of notes whose names do not give them.

A conditional model needs each note's pitch and velocity. NSynth names and
`examples.json` give them; for other audio, `label_notes` estimates them once,
at data preparation, and writes `DATA_DIR/labels.json`:

    {"tones/a.wav": {"pitch": 60, "velocity": 100}, ...}

keyed by the note's path relative to `DATA_DIR` (with `/`). The audio-folder
reader (`keras_timbre.data.readers`, which reads the file: `read_labels`) fills
in a note's unknown (-1) pitch and velocity from it; labels from names are
never overridden. Reading it checks every entry (a pitch a whole MIDI number
0-127, a velocity 1-127): a bad entry refuses the whole file, naming it and the
entry, because a note with a wrong label would otherwise train silently;
`label_notes` re-estimates such entries, so `keras-timbre make-dataset labels
DIR` repairs the file.

- Pitch: `librosa.pyin` between MIDI 21 and 108 (the piano's range, NSynth's
  too), the median f0 of its voiced frames; then the octave of it whose
  harmonics best explain the note's spectrum (`choose_octave`: pYIN, like YIN,
  takes the shortest period that nearly repeats, so a weak fundamental whose
  odd harmonics are quiet reads an octave up), rounded to a MIDI number.
- Velocity: the loudest frame's RMS in dBFS, to the nearest of NSynth's
  velocity levels in `VELOCITY_LEVELS_DB`. Only meaningful for recordings
  whose level was not normalised (NSynth's own notes are: about -10 dB at
  every velocity).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_timbre.atomic import write_json
from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import read_audio
from keras_timbre.data.nsynth import is_tfrecord
from keras_timbre.data.readers import LABELS_FILE
from keras_timbre.data.readers import is_whole  # noqa: F401 (imported from here by synthesis.audio_files)
from keras_timbre.data.readers import labels_and_problems
from keras_timbre.data.readers import read_labels  # noqa: F401 (the reading half of labels.json, named here too)
from keras_timbre.data.readers import read_notes
from keras_timbre.data.skips import SkipReport

# Notes are analysed at the frontend's usual rate: pYIN's cost and frame sizes stay those of 16 kHz.
ANALYSIS_RATE = 16000
PITCH_RANGE = (21, 108)  # MIDI, A0 to C8
# Analyse this much audio, from the loudest frame on: the attack's noise is over there and the
# pitch of a sustained note is steady, so more audio would only make pYIN (the slow part) slower.
ANALYSIS_SECONDS = 1.5
# A voiced frame is one pYIN marks voiced with at least this probability: white noise gets
# sporadic "voiced" frames of far lower probability than a tone's, even the lowest (MIDI 21).
MIN_VOICED_PROBABILITY = 0.1
MIN_VOICED_FRAMES = 5  # fewer: unpitched or silent, no pitch
# NSynth's velocities and the peak frame RMS (dBFS) each stands for: -3.01 dB (a full-scale sine)
# at 127, and 40 log10(v / 127) below it (amplitude ~ velocity squared, the usual MIDI curve).
# A note gets the velocity whose level is nearest in dB, i.e. the thresholds are the midpoints:
# below -25.2 dB 25, to -15.7 dB 50, to -9.7 dB 75, to -5.1 dB 100, above 127.
VELOCITY_LEVELS_DB = {25: -31.3, 50: -19.2, 75: -12.2, 100: -7.2, 127: -3.0}
_FRAME, _HOP = 2048, 512  # samples, at 16 kHz: 128 ms frames (two periods of MIDI 21), 32 ms hops
# The octave choice: pYIN's f0 times 2**j for these j (within PITCH_RANGE), scored by subharmonic
# summation (Hermes 1988) of harmonic contrast: harmonic k counts HARMONIC_WEIGHT**k (Hermes' value),
# so the first ten or so harmonics decide, as they do for the heard pitch.
OCTAVE_CANDIDATES = (-2, -1, 0, 1, 2)
HARMONIC_WEIGHT = 0.84
# pYIN's octave stands unless another scores this much more: it is right for most notes, and a
# pure tone's octave below scores only HARMONIC_WEIGHT less, so one stray partial must not flip it.
OCTAVE_MARGIN = 1.25
_SPECTRUM_FRAME = 8192  # samples at 16 kHz: 2 Hz bins, 7 bins between the harmonics of MIDI 21 (27.5 Hz)
# Partials further below the strongest one count as silence: masked, they do not set the heard pitch
# (a flute's breath or a mallet's body can leave a faint series an octave down).
AUDIBLE_RANGE_DB = 40.0
_PEAK_WIDTH = 0.03  # a harmonic is looked for within +-3% (half a semitone) of k * f0: stretched partials
_SAVE_EVERY = 100  # notes between writes of labels.json, so interrupted work resumes


def estimate_pitch(waveform: np.ndarray, sample_rate: int) -> int | None:
    """MIDI pitch of a mono note by pYIN and `choose_octave`, or None when it has too few voiced frames.

    Args:
        waveform: Mono samples `(samples,)`.
        sample_rate: Rate in Hz; frames scale with it (2048 samples at 16 kHz).

    Returns:
        The median f0 of the voiced frames, moved to the octave whose
        harmonics best explain the spectrum, as a rounded MIDI number in
        `PITCH_RANGE`; None for unpitched or silent audio.

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
    f0 = _pyin_f0(segment, sample_rate, frame, hop)
    if f0 is None:
        return None
    midi = int(np.round(librosa.hz_to_midi(choose_octave(segment, sample_rate, f0))))
    return int(np.clip(midi, *PITCH_RANGE))


def _pyin_f0(segment: np.ndarray, sample_rate: int, frame: int, hop: int) -> float | None:
    """The median f0 (Hz) of pYIN's voiced frames, or None with fewer than `MIN_VOICED_FRAMES`."""
    import librosa

    f0, voiced, probability = librosa.pyin(
        segment,
        fmin=float(librosa.midi_to_hz(PITCH_RANGE[0])),
        fmax=float(librosa.midi_to_hz(PITCH_RANGE[1])),
        sr=sample_rate,
        frame_length=frame,
        hop_length=hop,
        resolution=0.25,  # quarter semitones: the answer is rounded to semitones, and fewer bins are faster
    )
    voiced = voiced & (probability >= MIN_VOICED_PROBABILITY) & np.isfinite(f0)
    if int(voiced.sum()) < MIN_VOICED_FRAMES:
        return None
    return float(np.median(f0[voiced]))


def choose_octave(segment: np.ndarray, sample_rate: int, f0: float) -> float:
    """The octave of `f0` (Hz) whose harmonics best explain the spectrum of `segment`.

    Candidates are `f0 * 2**j` for j in `OCTAVE_CANDIDATES` whose MIDI number
    is in `PITCH_RANGE`, each scored by `harmonic_score`; the best replaces
    `f0` if it scores more than `OCTAVE_MARGIN` times `f0`'s. An octave too high
    loses the odd harmonics of the true pitch, which sit between its own
    harmonics and count against it; an octave too low loses its own odd
    harmonics, which are silent. So a weak fundamental is found from its odd
    harmonics, and a note with only even harmonics is, as heard, an octave up.
    Levels are counted in dB above the noise floor or `AUDIBLE_RANGE_DB` below
    the strongest partial, whichever is higher.

    Example:
    >>> t = np.arange(16000) / 16000
    >>> weak_fundamental = sum(np.sin(2 * np.pi * k * 110.0 * t) / k ** (1 if k % 2 == 0 else 2) for k in range(2, 12))
    >>> round(choose_octave(weak_fundamental, 16000, 220.0), 1)
    110.0
    """
    import librosa

    spectrum, bin_hz = _spectrum_db(np.asarray(segment, np.float64).reshape(-1), sample_rate)
    top = 0.95 * sample_rate / 2
    band = spectrum[int(30 / bin_hz) : int(top / bin_hz)]
    # The noise floor (most bins lie between harmonics), or 40 dB below the strongest partial if higher.
    floor = max(float(np.median(band)), float(band.max()) - AUDIBLE_RANGE_DB)
    midi = float(librosa.hz_to_midi(f0))
    octaves = [j for j in OCTAVE_CANDIDATES if PITCH_RANGE[0] <= round(midi + 12 * j) <= PITCH_RANGE[1]] or [0]
    scores = {j: harmonic_score(spectrum - floor, bin_hz, f0 * 2.0**j, top) for j in octaves}
    best, own = max(scores, key=scores.get), scores.get(0, 0.0)
    return f0 * 2.0 ** (best if scores[best] > OCTAVE_MARGIN * own else 0)


def harmonic_score(level_db: np.ndarray, bin_hz: float, f0: float, top_hz: float) -> float:
    """Subharmonic summation of harmonic contrast: how well harmonics of `f0` explain a spectrum.

    `sum_k HARMONIC_WEIGHT**k * (L(k f0) - L((k - 1/2) f0))` over the
    harmonics below `top_hz`, where `L` is the peak of `level_db` (dB above
    the noise floor, negative values counted as 0) within +-3% of a
    frequency: energy on the harmonics counts for `f0`, energy halfway
    between them (the odd harmonics of `f0 / 2`) against it.

    Example:
    >>> level = np.zeros(4000)
    >>> level[[100, 200, 300, 400]] = 60.0  # harmonics of bin 100, 2 Hz bins: 200 Hz
    >>> [round(harmonic_score(level, 2.0, f0, 7600.0)) for f0 in (100.0, 200.0, 400.0)]
    [108, 158, 0]
    """
    harmonics = np.arange(1, int(top_hz // f0) + 1)
    if harmonics.size == 0:
        return 0.0
    level = np.maximum(np.asarray(level_db, np.float64), 0.0)
    on = _peaks(level, bin_hz, harmonics * f0, f0)
    between = _peaks(level, bin_hz, (harmonics - 0.5) * f0, f0)
    return float(np.sum(HARMONIC_WEIGHT**harmonics * (on - between)))


def _peaks(level: np.ndarray, bin_hz: float, frequencies: np.ndarray, spacing: float) -> np.ndarray:
    """The maximum of `level` within +-`_PEAK_WIDTH` of each frequency (at least a bin, at most spacing / 4)."""
    half = np.clip(_PEAK_WIDTH * frequencies, bin_hz, spacing / 4)
    low = np.clip(np.floor((frequencies - half) / bin_hz).astype(int), 0, level.size - 1)
    high = np.clip(np.ceil((frequencies + half) / bin_hz).astype(int), 0, level.size - 1)
    return np.array([level[a : b + 1].max() for a, b in zip(low, high)])


def _spectrum_db(segment: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """Welch power spectrum (dB) of `segment` and its bin width: Hann frames of `_SPECTRUM_FRAME` at 16 kHz."""
    size = int(2 ** np.ceil(np.log2(_SPECTRUM_FRAME * sample_rate / ANALYSIS_RATE)))
    segment = segment - segment.mean()  # a DC offset would leak into the lowest harmonics' bins
    if segment.size < size:
        segment = np.pad(segment, (0, size - segment.size))
    frames = np.lib.stride_tricks.sliding_window_view(segment, size)[:: size // 4] * np.hanning(size)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    return 10 * np.log10(power + 1e-20), sample_rate / size


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


def label_notes(data_dir: str | os.PathLike, skips: SkipReport | None = None, progress: bool = True) -> dict:
    """Estimates pitch and velocity of an audio folder's unlabelled notes into `DATA_DIR/labels.json`.

    Notes labelled by their names are left alone; entries already in
    `labels.json` are kept (an interrupted run resumes: the file is rewritten,
    atomically, every 100 notes and at the end), but bad ones (`label_problem`)
    are estimated again, recorded in `skips` as "re-estimated". Notes that
    cannot be read, or whose pitch cannot be estimated, are recorded in
    `skips` and left out.

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
            metadata), holds no notes, or has a `labels.json` that is not JSON
            or not a mapping.

    Example:
    >>> label_notes("~/my-notes")  # doctest: +SKIP
    {'labelled': 120, 'reused': 0, 'skipped': 2, 'path': '/home/me/my-notes/labels.json'}
    """
    from tqdm.auto import tqdm

    root = _check_audio_folder(Path(data_dir).expanduser())
    skips = SkipReport() if skips is None else skips
    path = root / LABELS_FILE
    existing, bad = labels_and_problems(path)
    if bad:  # the readers refuse a file with bad entries: keep the good ones, estimate the others again
        write_json(path, existing)
    labels, todo = {}, []
    for record in read_notes(root, skips=skips):
        note = Path(record.path).relative_to(root).as_posix()
        if note in existing:
            labels[note] = existing[note]
        elif record.pitch < 0 or record.velocity < 0:
            todo.append(note)
            if note in bad:
                skips.change(str(record.path), [f"re-estimated (its {LABELS_FILE} entry: {bad[note]})"])
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
