"""Subsets: a filtered copy of an NSynth download, in the jsonwav layout.

`make_subset` builds an "nsynth-mini"-style set from a full NSynth release
(jsonwav, TFRecord or a folder of audio): the notes passing the filters are
written as `examples.json` + `audio/*.wav`. WAV files are copied byte for
byte; other formats and TFRecord notes are decoded and written as 16-bit WAV.
The output folder appears only when complete (`keras_timbre.atomic.atomic_directory`).
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.pipeline import waveform_dataset
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.readers import example_entry
from keras_timbre.data.readers import read_notes
from keras_timbre.data.skips import SkipReport
from keras_timbre.data.synthetic import is_jsonwav_output, write_wav
from keras_timbre.outputs import check_output_folder


def make_subset(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    families: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    pitch_range: tuple[int, int] | None = None,
    velocities: Iterable[int] | None = None,
    max_per_instrument: int | None = None,
    max_per_family: int | None = None,
    sample_rate: int = 16000,
    duration: float = 4.0,
    overwrite: bool = False,
) -> Path:
    """Writes the notes of `source` that pass the filters to `out_dir` (jsonwav).

    Args:
        source: An NSynth download in any layout `read_notes` reads.
        out_dir: New or empty folder (an earlier subset there only with `overwrite`).
        families, sources, pitch_range, velocities, max_per_instrument: As in
            `read_notes`.
        max_per_family: Keep at most this many notes per family, spread
            evenly over its (sorted) notes.
        sample_rate: Rate of re-encoded (non-WAV) notes.
        duration: Seconds of re-encoded notes (cropped or padded).
        overwrite: Replace an earlier dataset in `out_dir` (see `make_synthetic_dataset`).

    Returns:
        `out_dir`.

    Example:
    >>> make_subset("nsynth-train", "nsynth-mini", families=["flute", "reed"],
    ...             max_per_family=110)  # doctest: +SKIP
    """
    out_dir = check_output_folder(out_dir, is_jsonwav_output, overwrite=overwrite)
    skips = SkipReport()
    records = read_notes(
        source,
        families=families,
        sources=sources,
        pitch_range=pitch_range,
        velocities=velocities,
        max_per_instrument=max_per_instrument,
        skips=skips,
    )
    if max_per_family is not None:
        records = _limit_per_family(records, max_per_family)
    with atomic.atomic_directory(out_dir, replace=True) as tmp:
        audio_dir = tmp / "audio"
        audio_dir.mkdir()
        frontend = FrontendConfig(sample_rate=sample_rate, duration=duration, fmax=sample_rate / 2)
        written = _copy_wavs(records, audio_dir) + _reencode(records, audio_dir, frontend, skips)
        written.sort(key=lambda r: r.note_str)
        examples = {r.note_str: example_entry(r, i, sample_rate) for i, r in enumerate(written)}
        atomic.write_json(tmp / "examples.json", examples)
    return out_dir


def _is_wav_file(record: NoteRecord) -> bool:
    return Path(record.path).suffix.lower() == ".wav" and Path(record.path).is_file()


def _copy_wavs(records: list[NoteRecord], audio_dir: Path) -> list[NoteRecord]:
    """WAV notes, copied byte for byte."""
    from tqdm.auto import tqdm

    copied = [r for r in records if _is_wav_file(r)]
    for record in tqdm(copied, desc="copying", unit="note", disable=None):
        shutil.copyfile(record.path, audio_dir / f"{record.note_str}.wav")
    return copied


def _reencode(records: list[NoteRecord], audio_dir: Path, frontend: FrontendConfig, skips) -> list[NoteRecord]:
    """Other notes (FLAC, OGG, MP3, TFRecord), decoded and written as 16-bit WAV; unreadable ones skipped."""
    from tqdm.auto import tqdm

    decoded = [r for r in records if not _is_wav_file(r)]
    if not decoded:
        return []
    written = []
    waveforms = waveform_dataset(decoded, frontend, skips).as_numpy_iterator()
    for waveform, index in tqdm(waveforms, total=len(decoded), desc="re-encoding", unit="note", disable=None):
        record = decoded[int(index)]
        write_wav(audio_dir / f"{record.note_str}.wav", np.asarray(waveform), frontend.sample_rate)
        written.append(record)
    return written


def _limit_per_family(records: list[NoteRecord], limit: int) -> list[NoteRecord]:
    if limit < 1:
        raise ValueError(f"max_per_family must be >= 1, got {limit}")
    by_family = defaultdict(list)
    for record in records:
        by_family[record.family].append(record)
    kept = []
    for notes in by_family.values():
        picks = np.unique(np.linspace(0, len(notes) - 1, min(limit, len(notes))).round().astype(int))
        kept.extend(notes[i] for i in picks)
    return sorted(kept, key=lambda r: r.note_str)
