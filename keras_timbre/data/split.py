"""The training / held-out split of a note collection, read into log-mel."""

from __future__ import annotations

import dataclasses
import sys
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.pipeline import load_features
from keras_timbre.data.readers import NoteRecord, filter_notes, notes_fingerprint, read_notes
from keras_timbre.data.skips import SkipReport

# Share of each instrument's pitches held out for validation, everywhere a split is made.
DEFAULT_VAL_FRACTION = 0.15


def split_notes(
    records: Sequence[NoteRecord], val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[NoteRecord], list[NoteRecord]]:
    """Splits notes into training and validation, holding out pitches per instrument.

    For each instrument, about `val_fraction` of its distinct pitches go to
    validation with all their velocities, so no validation pitch of an
    instrument was seen in training. Instruments with one pitch stay in training.

    Args:
        records: The notes.
        val_fraction: Fraction of each instrument's pitches held out, in [0, 1).
        seed: Seed of the choice of pitches.

    Returns:
        `(train, val)`, each in the order of `records`.

    Example:
    >>> train, val = split_notes(records, val_fraction=0.2)  # doctest: +SKIP
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pitches = defaultdict(set)
    for record in records:
        pitches[record.instrument].add(record.pitch)
    held_out = set()
    for instrument in sorted(pitches):
        candidates = sorted(pitches[instrument])
        count = int(round(val_fraction * len(candidates)))
        count = min(count, len(candidates) - 1)
        if count <= 0:
            continue
        # A seed per instrument: adding an instrument does not change the others' split.
        rng = np.random.default_rng([seed, _stable_hash(instrument)])
        for pitch in rng.choice(candidates, size=count, replace=False):
            held_out.add((instrument, int(pitch)))
    train = [r for r in records if (r.instrument, r.pitch) not in held_out]
    val = [r for r in records if (r.instrument, r.pitch) in held_out]
    return train, val


@dataclasses.dataclass(frozen=True)
class NoteSplit:
    """What training asks of a data folder, in one answer: the notes split, and their fingerprint."""

    train: list
    val: list
    fingerprint: str  # of every note read, before `max_per_instrument` (`readers.notes_fingerprint`)
    val_fraction: float
    split_seed: int

    def summary(self) -> dict:
        """The run directory's record of the split (config.json, "split")."""
        return {
            "method": "pitch held out per instrument",
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "train_notes": len(self.train),
            "val_notes": len(self.val),
        }


def split_data(
    data_path: Path, val_fraction: float, split_seed: int, max_per_instrument: int | None = None
) -> NoteSplit:
    """The notes of `data_path` read, fingerprinted, thinned to `max_per_instrument` and split (`split_notes`).

    Example:
    >>> split = split_data(data_dir, 0.15, 0)  # doctest: +SKIP
    >>> split.summary()["method"]  # doctest: +SKIP
    'pitch held out per instrument'
    """
    records = read_notes(data_path)
    fingerprint = notes_fingerprint(records)
    records = filter_notes(records, max_per_instrument=max_per_instrument)
    train, val = split_notes(records, val_fraction=val_fraction, seed=split_seed)
    if not train:
        raise ValueError(f"No training notes in {data_path} (val_fraction {val_fraction} left none)")
    return NoteSplit(train, val, fingerprint, val_fraction, split_seed)


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; crc32 is not.
    return zlib.crc32(text.encode())


def load_split(
    data: Path,
    frontend: FrontendConfig,
    val_fraction: float,
    seed: int,
    max_per_instrument=None,
    skips: SkipReport | None = None,
):
    """Reads and splits notes, and computes their log-mel (dB).

    Returns:
        `(train_records, train_db, val_records, val_db)`; notes that cannot be
        used are skipped, each printed once with its reason (or recorded in
        `skips`), then counted on one line.
    """
    report = SkipReport() if skips is None else skips
    records = read_notes(data, max_per_instrument=max_per_instrument, skips=report)
    train_records, val_records = split_notes(records, val_fraction=val_fraction, seed=seed)
    train_db, train_records = load_log_mel(train_records, frontend, skips=report)
    val_db, val_records = load_log_mel(val_records, frontend, skips=report)
    if skips is None and len(report):
        print(f"keras-timbre: {len(report)} note(s) of {data} skipped", file=sys.stderr, flush=True)
    if len(train_records) == 0:
        raise ValueError(f"No readable training notes in {data}")
    return train_records, train_db, val_records, val_db


def load_log_mel(records, frontend: FrontendConfig, skips: SkipReport | None = None) -> tuple[np.ndarray, list]:
    """`(log_mel_db (N, mels, frames) float32, kept_records)`; unreadable files are skipped and reported."""
    records = list(records)
    if not records:
        return np.zeros((0, *frontend.feature_shape), np.float32), []
    features, kept = load_features(records, frontend, skips=skips)
    return np.asarray(features, np.float32)[..., 0], kept


def diverse_notes(records, count: int) -> list[int]:
    """Indices of up to `count` notes, from different families first, so figures show different timbres."""
    picks, seen = [], set()
    for i, record in enumerate(records):
        if record.family not in seen:
            picks.append(i)
            seen.add(record.family)
    picks += [i for i in range(len(records)) if i not in picks]
    return picks[:count]
