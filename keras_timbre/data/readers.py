"""Readers: a data directory to a list of `NoteRecord`s (paths plus labels).

Three layouts are detected automatically:

- NSynth's jsonwav release: `examples.json` plus `audio/*.wav`.
- NSynth's TFRecord release: `nsynth-*.tfrecord` (or any `*.tfrecord`). A
  record's `path` is then `"<file.tfrecord>#<note_str>"`; the pipeline reads
  its audio from the TFRecord.
- A plain folder of audio files (wav, flac, ogg, mp3), searched recursively.
  Labels come from NSynth-style names, `<family>_<source>_<NNN>-<pitch>-<velocity>`,
  where present; other names keep the file stem as `note_str` and unknown
  labels (`""` and `-1`), except a pitch and velocity estimated into the
  folder's `labels.json` (`keras_timbre.data.labels.label_notes`), which
  `read_labels` reads here, checking every entry (`label_problem`).

Readers only list notes; decoding (and skipping undecodable files) happens in
`keras_timbre.data.pipeline`. Metadata problems (an `examples.json` entry
without audio, audio without an entry, an unknown family) leave the note out
and are recorded, by name, in a `SkipReport`, as are audio-named entries that
are not regular files (dangling symlinks, symlink loops, FIFOs, devices): they
are found with `stat`, never opened (opening a FIFO blocks). Symlinks to
regular files are followed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import Counter
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from keras_timbre.audio.io import file_problem
from keras_timbre.data.nsynth import TFRECORD_SEPARATOR
from keras_timbre.data.nsynth import is_tfrecord
from keras_timbre.data.nsynth import is_tfrecord_name
from keras_timbre.data.nsynth import label_spec
from keras_timbre.data.nsynth import split_tfrecord_path
from keras_timbre.data.nsynth import tfrecord_note_path
from keras_timbre.data.skips import SkipReport

# NSynth's label vocabularies, in NSynth's index order.
FAMILIES = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)
SOURCES = ("acoustic", "electronic", "synthetic")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
LABELS_FILE = "labels.json"  # an audio folder's estimated labels (keras_timbre.data.labels.label_notes)
MIDI_PITCHES = (0, 127)  # what a labels.json pitch may be
MIDI_VELOCITIES = (1, 127)  # and a velocity (0 is MIDI's note-off)

_NSYNTH_NAME = re.compile(
    r"^(?P<instrument>(?P<family>[a-z]+(?:_[a-z]+)*?)_(?P<source>[a-z]+)_(?P<number>\d+))"
    r"-(?P<pitch>\d+)-(?P<velocity>\d+)$"
)


@dataclasses.dataclass(frozen=True)
class NoteRecord:
    """One note: where its audio is and its labels.

    Args:
        path: Audio file, or `"<file.tfrecord>#<note_str>"` for a TFRecord note.
        note_str: NSynth note name, e.g. `"bass_electronic_000-029-100"`.
        family: Instrument family, e.g. `"bass"`; `""` if unknown.
        source: `"acoustic"`, `"electronic"` or `"synthetic"`; `""` if unknown.
        instrument: Instrument name, e.g. `"bass_electronic_000"`.
        pitch: MIDI pitch, -1 if unknown.
        velocity: MIDI velocity, -1 if unknown.

    Example:
    >>> NoteRecord.from_path("audio/bass_electronic_000-029-100.flac").pitch
    29
    """

    path: str
    note_str: str
    family: str = ""
    source: str = ""
    instrument: str = ""
    pitch: int = -1
    velocity: int = -1

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "NoteRecord":
        """A record with labels parsed from the file name (unknown where it is not NSynth-style)."""
        path = Path(path)
        labels = parse_note_name(path.stem)
        if labels is None:
            return cls(path=str(path), note_str=path.stem, instrument=path.stem)
        return cls(path=str(path), **labels)

    @property
    def family_index(self) -> int:
        """Index into `FAMILIES`, -1 if unknown."""
        return FAMILIES.index(self.family) if self.family in FAMILIES else -1

    @property
    def source_index(self) -> int:
        """Index into `SOURCES`, -1 if unknown."""
        return SOURCES.index(self.source) if self.source in SOURCES else -1


def parse_note_name(name: str) -> dict | None:
    """Labels from an NSynth note name, or None if it is not one.

    Example:
    >>> parse_note_name("synth_lead_synthetic_004-060-127")["family"]
    'synth_lead'
    """
    match = _NSYNTH_NAME.match(name)
    if not match:
        return None
    return dict(
        note_str=name,
        family=match["family"],
        source=match["source"],
        instrument=match["instrument"],
        pitch=int(match["pitch"]),
        velocity=int(match["velocity"]),
    )


def read_notes(
    path: str | os.PathLike,
    *,
    families: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    pitch_range: tuple[int, int] | None = None,
    velocities: Iterable[int] | None = None,
    max_per_instrument: int | None = None,
    skips: SkipReport | None = None,
) -> list[NoteRecord]:
    """Lists the notes of a data directory, with labels, after filters.

    Args:
        path: A directory in one of the three layouts (see the module
            docstring), an `examples.json`, or a `.tfrecord` file.
        families: Keep only these families (e.g. `["bass", "flute"]`).
        sources: Keep only these sources.
        pitch_range: Keep MIDI pitches in `[low, high]`, inclusive.
        velocities: Keep only these velocities.
        max_per_instrument: Keep at most this many notes per instrument,
            spread evenly over its pitches.
        skips: Where notes left out for metadata problems are recorded; a
            new, printing `SkipReport` if None.

    Returns:
        Records sorted by `note_str`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: No notes found, or none pass the filters, or a filter
            names an unknown family or source.

    Example:
    >>> records = read_notes(default_data_dir(), families=["flute"])  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    records = _read_layout(path, SkipReport() if skips is None else skips)
    if not records:
        raise ValueError(
            f"No notes found in {path}: expected examples.json + audio/*.wav, "
            f"nsynth-*.tfrecord, or audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    filtered = filter_notes(
        records,
        families=families,
        sources=sources,
        pitch_range=pitch_range,
        velocities=velocities,
        max_per_instrument=max_per_instrument,
    )
    if not filtered:
        raise ValueError(f"None of the {len(records)} notes in {path} pass the filters")
    return filtered


def _read_layout(path: Path, skips: SkipReport) -> list[NoteRecord]:
    if not path.exists():
        raise FileNotFoundError(f"Data directory {path} does not exist")
    if path.is_file() and path.name == "examples.json":
        return _read_jsonwav(path, skips)
    if path.is_file() and is_tfrecord(path):
        return _read_tfrecords([path], skips)
    if path.is_file():
        raise ValueError(f"{path} is a file; expected a data directory, an examples.json or a .tfrecord")
    if (path / "examples.json").is_file():
        return _read_jsonwav(path / "examples.json", skips)
    if tfrecords := _regular_files(sorted(p for p in path.iterdir() if is_tfrecord_name(p)), skips):
        return _read_tfrecords(tfrecords, skips)
    return _read_audio_folder(path, skips)


def filter_notes(
    records: Sequence[NoteRecord],
    *,
    families: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    pitch_range: tuple[int, int] | None = None,
    velocities: Iterable[int] | None = None,
    max_per_instrument: int | None = None,
) -> list[NoteRecord]:
    """The filters of `read_notes`, on a list of records."""
    keep = list(records)
    if families is not None:
        families = set(families)
        _check_known("families", families, FAMILIES)
        keep = [r for r in keep if r.family in families]
    if sources is not None:
        sources = set(sources)
        _check_known("sources", sources, SOURCES)
        keep = [r for r in keep if r.source in sources]
    if pitch_range is not None:
        low, high = pitch_range
        keep = [r for r in keep if low <= r.pitch <= high]
    if velocities is not None:
        velocities = {int(v) for v in velocities}
        keep = [r for r in keep if r.velocity in velocities]
    if max_per_instrument is not None:
        if max_per_instrument < 1:
            raise ValueError(f"max_per_instrument must be >= 1, got {max_per_instrument}")
        by_instrument = defaultdict(list)
        for record in keep:
            by_instrument[record.instrument].append(record)
        keep = []
        for notes in by_instrument.values():
            notes.sort(key=lambda r: (r.pitch, r.velocity, r.note_str))
            if len(notes) > max_per_instrument:
                # Evenly spaced over the sorted pitches, so the range is kept.
                picks = np.linspace(0, len(notes) - 1, max_per_instrument).round().astype(int)
                notes = [notes[i] for i in sorted(set(picks))]
            keep.extend(notes)
    return sorted(keep, key=lambda r: r.note_str)


def _check_known(what: str, values: set, known: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; known: {list(known)}")


def _unknown_family(family: str) -> str:
    return f"unknown instrument family {family!r} (NSynth's are {', '.join(FAMILIES)})"


def _read_jsonwav(examples_path: Path, skips: SkipReport) -> list[NoteRecord]:
    root = examples_path.parent
    audio_dir = root / "audio"
    try:
        examples = json.loads(examples_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{examples_path} is not valid JSON: {error}") from error
    if not isinstance(examples, dict):
        raise ValueError(f"{examples_path} must map note names to entries, got {type(examples).__name__}")
    on_disk = {p.stem: p for p in audio_dir.glob("*") if p.suffix.lower() in AUDIO_EXTENSIONS}
    usable = set(_regular_files(on_disk.values(), skips))  # the others are counted with their reason
    records = []
    for note_str, entry in sorted(examples.items()):
        entry = entry if isinstance(entry, dict) else {}
        audio = on_disk.get(note_str)
        if audio is None:
            skips.skip(f"{examples_path}: {note_str}", f"examples.json entry without audio in {audio_dir}")
            continue
        if audio not in usable:
            continue
        parsed = parse_note_name(note_str) or {}
        family = entry.get("instrument_family_str", parsed.get("family", ""))
        if family not in FAMILIES:
            skips.skip(str(audio), _unknown_family(family))
            continue
        records.append(
            NoteRecord(
                path=str(audio),
                note_str=note_str,
                family=family,
                source=entry.get("instrument_source_str", parsed.get("source", "")),
                instrument=entry.get("instrument_str", parsed.get("instrument", note_str)),
                pitch=int(entry.get("pitch", parsed.get("pitch", -1))),
                velocity=int(entry.get("velocity", parsed.get("velocity", -1))),
            )
        )
    for note_str in sorted(set(on_disk) - set(examples)):
        if on_disk[note_str] in usable:
            skips.skip(str(on_disk[note_str]), f"audio file without an entry in {examples_path}")
    return records


def _regular_files(paths: Iterable[Path], skips: SkipReport) -> list[Path]:
    """The regular files (or symlinks to one) among `paths`; every other entry but a folder is a counted skip."""
    regular = []
    for path in paths:
        problem = file_problem(path)  # stat only: a FIFO is never opened
        if problem is None:
            regular.append(path)
        elif not path.is_dir():  # a folder named like a note is searched, not read
            skips.skip(str(path), problem)
    return regular


def _read_audio_folder(root: Path, skips: SkipReport) -> list[NoteRecord]:
    estimated = read_labels(root)  # {} without a labels.json
    records = []
    named = [file for file in sorted(root.rglob("*")) if file.suffix.lower() in AUDIO_EXTENSIONS]
    for file in _regular_files(named, skips):
        record = NoteRecord.from_path(file)
        if record.family and record.family not in FAMILIES:
            skips.skip(str(file), _unknown_family(record.family))
            continue
        if entry := estimated.get(file.relative_to(root).as_posix()):
            record = dataclasses.replace(
                record,
                pitch=record.pitch if record.pitch >= 0 else entry["pitch"],
                velocity=record.velocity if record.velocity >= 0 else entry["velocity"],
            )
        records.append(record)
    return records


def read_labels(data_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """`DATA_DIR/labels.json` as `{relative path: {"pitch": p, "velocity": v}}`; `{}` if there is none.

    Every entry is checked (`label_problem`). One bad entry refuses the whole
    file: the readers would otherwise keep its note with a wrong or unknown
    label, which trains silently or fails far from here.

    Raises:
        ValueError: The file is not valid JSON, not in that shape, or has bad
            entries; the message names the file and the first bad entry, and
            says how many there are.

    Example:
    >>> import tempfile
    >>> read_labels(tempfile.mkdtemp())
    {}
    """
    path = Path(data_dir).expanduser() / LABELS_FILE
    labels, problems = labels_and_problems(path)
    if problems:
        (note, problem), more = next(iter(problems.items())), len(problems) - 1
        raise ValueError(
            f"{path}: entry {note!r}: {problem}" + (f" (and {more} more bad entries)" if more else "") + "; fix or "
            f"delete them, or run `keras-timbre make-dataset labels {path.parent}` to estimate them again"
        )
    return labels


def label_problem(entry) -> str | None:
    """What is wrong with one labels.json entry, or None: a pitch must be a whole MIDI number 0-127, a velocity 1-127.

    Example:
    >>> label_problem({"pitch": 60, "velocity": 100}) is None
    True
    >>> label_problem({"pitch": True, "velocity": 100})
    'pitch True is not a MIDI number 0-127'
    >>> label_problem({"pitch": 60, "velocity": -7})
    'velocity -7 is not a MIDI velocity 1-127'
    """
    if not isinstance(entry, dict):
        return f"must be {{'pitch': int, 'velocity': int}}, got {entry!r}"
    for key, (low, high), what in (
        ("pitch", MIDI_PITCHES, "MIDI number"),
        ("velocity", MIDI_VELOCITIES, "MIDI velocity"),
    ):
        if key not in entry:
            return f"has no {key}"
        if not (is_whole(entry[key]) and low <= entry[key] <= high):
            return f"{key} {entry[key]!r} is not a {what} {low}-{high}"
    return None


def is_whole(value) -> bool:
    """Whether `value` is a whole number: an int, or a float such as 60.0 (not a bool, not NaN).

    Example:
    >>> [is_whole(v) for v in (60, 60.0, 60.5, True, float("inf"), "60")]
    [True, True, False, False, False, False]
    """
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return numeric and bool(np.isfinite(value)) and value % 1 == 0


def labels_and_problems(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """`(good entries, {note: problem} of the bad ones)` of a labels.json; both empty if there is none.

    Raises:
        ValueError: The file is not valid JSON or not a mapping.
    """
    if not path.is_file():
        return {}, {}
    try:
        labels = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(labels, dict):
        raise ValueError(f"{path} must map note paths to labels, got {type(labels).__name__}")
    problems = {note: problem for note, entry in labels.items() if (problem := label_problem(entry))}
    good = {note: entry for note, entry in labels.items() if note not in problems}
    return {note: {"pitch": int(e["pitch"]), "velocity": int(e["velocity"])} for note, e in good.items()}, problems


def _read_tfrecords(files: Sequence[Path], skips: SkipReport) -> list[NoteRecord]:
    import tensorflow as tf

    spec = label_spec()  # only the labels: audio is parsed later, by the pipeline
    records = []
    for file in files:
        dataset = tf.data.TFRecordDataset(str(file)).map(
            lambda x: tf.io.parse_single_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE
        )
        try:
            for example in dataset.as_numpy_iterator():
                note_str = example["note_str"].decode()
                parsed = parse_note_name(note_str) or {}
                family = example["instrument_family_str"].decode() or parsed.get("family", "")
                if family not in FAMILIES:
                    skips.skip(tfrecord_note_path(file, note_str), _unknown_family(family))
                    continue
                records.append(
                    NoteRecord(
                        path=tfrecord_note_path(file, note_str),
                        note_str=note_str,
                        family=family,
                        source=example["instrument_source_str"].decode() or parsed.get("source", ""),
                        instrument=example["instrument_str"].decode() or parsed.get("instrument", ""),
                        pitch=int(example["pitch"]),
                        velocity=int(example["velocity"]),
                    )
                )
        except tf.errors.OpError as error:
            raise ValueError(f"{file} is not a readable NSynth TFRecord: {error.message}") from error
    return records


def example_entry(record: NoteRecord, index: int, sample_rate: int = 16000) -> dict:
    """The `examples.json` entry of a note, in NSynth's jsonwav format."""
    return {
        "note": index,
        "note_str": record.note_str,
        "sample_rate": sample_rate,
        "pitch": record.pitch,
        "velocity": record.velocity,
        "instrument_str": record.instrument,
        "instrument_family": FAMILIES.index(record.family) if record.family in FAMILIES else -1,
        "instrument_family_str": record.family,
        "instrument_source": SOURCES.index(record.source) if record.source in SOURCES else -1,
        "instrument_source_str": record.source,
        "qualities": [0] * 10,
        "qualities_str": [],
    }


def count_labels(records: Iterable[NoteRecord]) -> dict[str, Counter]:
    """Notes per family and per source: `{"family": Counter, "source": Counter}`."""
    records = list(records)
    return {
        "family": Counter(r.family or "?" for r in records),
        "source": Counter(r.source or "?" for r in records),
    }


def notes_fingerprint(records: Iterable[NoteRecord], exact: bool = False) -> str:
    """A 16-hex-digit hash of notes and their files: whether the notes are still the ones they were.

    One rule for a note's file (`split_tfrecord_path`: a TFRecord note's file
    is its TFRecord) and one `stat` per file, for two strengths:

    - portable (the default; a run's `data_fingerprint`, which `locate_data`
      and resuming compare): each note's name and its file's size, in any
      order. A copy of the notes in another folder gives the same value.
    - `exact=True` (a feature cache's source): each note's path and labels
      and its file's size and modification time, in order. Any change to a
      file, a label, a path or the order gives another value, and the cache
      is rebuilt.

    Both are the digests 0.1 and 0.2 wrote, so their runs and caches stay
    valid; for that, the portable hash counts -1 as the size of a TFRecord
    note's file unless it is a `*.tfrecord` with no other `#` in its path
    (e.g. NSynth's sharded `*.tfrecord-00000-of-00004`), as they did. A
    missing file's size and time are -1.

    Example:
    >>> a = NoteRecord("/nowhere/x.wav", "bass_electronic_000-029-100")
    >>> b = NoteRecord("/elsewhere/x.wav", a.note_str)
    >>> notes_fingerprint([a]) == notes_fingerprint([b])
    True
    >>> notes_fingerprint([a], exact=True) == notes_fingerprint([b], exact=True)
    False
    """
    files: dict[str, tuple[int, int]] = {}
    lines = []
    for record in records:
        location = split_tfrecord_path(record.path)
        file = record.path if location is None else location[0]
        if file not in files:
            files[file] = _size_and_time(file)
        if exact:
            lines.append(
                f"{record.path}|{record.note_str}|{record.family}|{record.source}|"
                f"{record.pitch}|{record.velocity}|{files[file]}\n"
            )
        else:
            sized = location is None or (file.endswith(".tfrecord") and TFRECORD_SEPARATOR not in file)
            lines.append(f"{record.note_str}|{files[file][0] if sized else -1}")
    text = "".join(lines) if exact else "\n".join(sorted(lines))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _size_and_time(file: str) -> tuple[int, int]:
    try:
        info = os.stat(file)
    except OSError:
        return -1, -1
    return info.st_size, info.st_mtime_ns
