"""The tf.data pipeline: notes to batches of normalised log-mel.

One pass, one entry per note: records -> read the note (a file: soundfile
opens, checks and decodes it in one call; a TFRecord note: parsed from the
streamed records), conform it (downmix, resample, crop or pad, with
`keras_timbre.audio.io.conform_audio`), compute its log-mel
(`keras_timbre.audio.frontend.numpy_log_mel`) and normalise it, all in the
same parallel reader call, or skip it with a reason -> cache, shuffle, batch
with static shapes, prefetch. Computing the log-mel where the note is read
spares a second hand-over per note and TensorFlow's slower batched `rfft`
(benchmarks/results/pipeline.md).

A note that cannot be used is skipped, never fatal: its path and reason go
into a `SkipReport` and are printed once. Changes made to usable notes
(resampling, downmixing, padding, cropping) are counted there too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.frontend import numpy_log_mel
from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import AudioInfo
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import read_audio
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.stats import FeatureStatsAccumulator
from keras_timbre.data import nsynth
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.skips import SkipReport

__all__ = ["SkipReport", "compute_stats", "feature_dataset", "load_features", "waveform_dataset"]

_MAX_SHUFFLE_BUFFER = 4096


def waveform_dataset(records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport):
    """A tf.data.Dataset of `(waveform (num_samples,), record index)`, unusable notes skipped.

    Each note is read once, when the dataset is iterated: files in parallel
    `tf.py_function` calls, TFRecord notes from their streamed records. A note
    that cannot be used is recorded in `skips` and left out.
    """
    return _note_dataset(records, frontend, skips, lambda waveform: waveform, (frontend.num_samples,))


def _note_dataset(records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport, transform, shape):
    """`(transform(waveform), record index)` for every usable note; `shape` is the transform's output shape."""
    reader = _NoteReader(frontend, skips, transform, tuple(shape))
    files, tfrecord_notes = [], defaultdict(dict)
    for index, record in enumerate(records):
        location = nsynth.split_tfrecord_path(record.path)
        if location is None:
            files.append(index)
        else:
            tfrecord_notes[location[0]][location[1]] = index
    parts = []
    if files:
        parts.append(_file_notes(files, records, reader))
    if tfrecord_notes:
        parts.append(_tfrecord_notes(tfrecord_notes, records, reader))
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset.filter(_is_ok).map(_drop_ok)


def _is_ok(waveform, index, ok):
    return ok


def _drop_ok(waveform, index, ok):
    return waveform, index


@dataclasses.dataclass(frozen=True)
class _NoteReader:
    """What each parallel reader call does to one note: conform, transform, or skip with the reason."""

    frontend: FrontendConfig
    skips: SkipReport
    transform: object  # conformed waveform (num_samples,) -> float32 array of `shape`
    shape: tuple

    def conformed(self, path: str, data, rate: int) -> np.ndarray:
        """The note's samples at the frontend's rate and length; what that changed goes into `skips`."""
        frontend = self.frontend
        waveform = conform_audio(data, rate, frontend.sample_rate, frontend.num_samples, name=path)
        channels = data.shape[1] if np.ndim(data) == 2 else 1
        changes = AudioInfo(int(rate), channels, len(data)).changes(frontend.sample_rate, frontend.num_samples)
        self.skips.change(path, changes)
        return waveform

    def guarded(self, path: str, read) -> tuple[np.ndarray, bool]:
        """`(transform(read()), True)`, or `(zeros, False)` with the reason recorded."""
        try:
            return np.asarray(self.transform(read()), np.float32), True
        except AudioError as error:
            self.skips.skip(path, str(error))
        except Exception as error:  # an unexpected decoder failure must not kill the epoch
            self.skips.skip(path, f"cannot decode ({type(error).__name__}: {error})")
        return np.zeros(self.shape, np.float32), False

    def py_function(self, function, inputs):
        import tensorflow as tf

        output, ok = tf.py_function(function, inputs, [tf.float32, tf.bool])
        output.set_shape(self.shape)
        ok.set_shape([])
        return output, ok


def _file_notes(indices: list[int], records: Sequence[NoteRecord], reader: _NoteReader):
    import tensorflow as tf

    def load(i):
        path = records[int(i)].path

        def read():
            data, info = read_audio(path)
            return reader.conformed(path, data, info.sample_rate)

        return reader.guarded(path, read)

    def decode(index):
        output, ok = reader.py_function(load, [index])
        return output, index, ok

    return tf.data.Dataset.from_tensor_slices(tf.constant(indices, tf.int32)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE
    )


def _tfrecord_notes(notes: dict, records: Sequence[NoteRecord], reader: _NoteReader):
    import tensorflow as tf

    keys = [key for file in notes for key in notes[file]]
    values = [notes[file][key] for file in notes for key in notes[file]]
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values, tf.int32)), default_value=-1
    )

    def conform(audio, rate, i):
        path = records[int(i)].path
        return reader.guarded(path, lambda: reader.conformed(path, audio.numpy(), int(rate)))

    def parse(serialized):
        note_str, audio, rate = nsynth.parse_audio(serialized)
        index = table.lookup(note_str)
        output, ok = reader.py_function(conform, [audio, rate, index])
        return output, index, ok

    def wanted(serialized):
        note_str = tf.io.parse_single_example(serialized, {"note_str": nsynth.label_spec()["note_str"]})["note_str"]
        return table.lookup(note_str) >= 0

    return (
        tf.data.TFRecordDataset(list(notes), num_parallel_reads=tf.data.AUTOTUNE)
        .filter(wanted)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    )


def feature_dataset(
    records: Iterable[NoteRecord],
    frontend: FrontendConfig,
    stats: FeatureStats | None = None,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    cache: bool | str = True,
    with_labels: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    skips: SkipReport | None = None,
):
    """Batches of log-mel features of notes, ready for `model.fit`.

    Args:
        records: The notes (see `read_notes`).
        frontend: The frontend config.
        stats: Per-mel-bin statistics of the training split; features are
            normalised with them. None gives log-mel in dB.
        batch_size: Notes per batch.
        shuffle: Reshuffle notes every epoch (seeded by `seed`).
        cache: Cache features in memory after the first pass (True), in
            files with this prefix (a str; a hash of the notes, config and
            stats is appended, so changed inputs never read stale files),
            or not at all (False).
        with_labels: Yield `(features, labels)` with `labels` a dict of int32
            tensors: `family`, `source` (indices into `FAMILIES`, `SOURCES`;
            -1 if unknown), `pitch`, `velocity` and `index` (into `records`).
        seed: Shuffle seed.
        drop_remainder: Drop the last, smaller batch (gives a static batch size).
        skips: Where skipped files and their reasons are recorded; a new,
            printing `SkipReport` if None.

    Returns:
        A `tf.data.Dataset` of float32 `(batch, n_mels, n_frames, 1)`, or of
        `(features, labels)`.

    Example:
    >>> records = read_notes(default_data_dir())  # doctest: +SKIP
    >>> train, val = split_notes(records)  # doctest: +SKIP
    >>> stats = compute_stats(train, FrontendConfig())  # doctest: +SKIP
    >>> model.fit(feature_dataset(train, FrontendConfig(), stats, shuffle=True))  # doctest: +SKIP
    """
    records = list(records)
    if not records:
        raise ValueError("feature_dataset got no records")
    if stats is not None and stats.n_mels != frontend.n_mels:
        raise ValueError(f"stats have {stats.n_mels} mel bins, the frontend has {frontend.n_mels}")
    skips = SkipReport() if skips is None else skips

    def features(waveform):
        log_mel_db = numpy_log_mel(waveform, frontend)
        return (log_mel_db if stats is None else stats.normalize(log_mel_db))[..., None]

    dataset = _note_dataset(records, frontend, skips, features, (*frontend.feature_shape, 1))
    dataset = dataset.map(_labeller(records)) if with_labels else dataset.map(_features_only)
    if isinstance(cache, str) and cache:
        # tf.data reuses complete cache files blindly: key them by what they hold.
        dataset = dataset.cache(f"{cache}-{_cache_key(records, frontend, stats, with_labels)}")
    elif cache:
        dataset = _filled_cache(dataset, len(records), skips)
    return _batches(dataset, len(records) if shuffle else 0, seed, batch_size, drop_remainder)


def _batches(dataset, shuffle_notes: int, seed: int, batch_size: int, drop_remainder: bool):
    """Notes shuffled (when `shuffle_notes`, reshuffled every epoch), batched, prefetched."""
    import tensorflow as tf

    if shuffle_notes:
        dataset = dataset.shuffle(min(shuffle_notes, _MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _labeller(records: Sequence[NoteRecord]):
    """`(x, index) -> (x, labels)`, labels the int32 columns of the records plus `index`."""
    import tensorflow as tf

    columns = {
        "family": [r.family_index for r in records],
        "source": [r.source_index for r in records],
        "pitch": [r.pitch for r in records],
        "velocity": [r.velocity for r in records],
    }
    columns = {name: tf.constant(values, tf.int32) for name, values in columns.items()}

    def labelled(x, index):
        labels = {name: tf.gather(values, index) for name, values in columns.items()}
        labels["index"] = index
        return x, labels

    return labelled


def _filled_cache(dataset, notes: int, skips: SkipReport):
    """The dataset cached in memory, after one full pass: later passes read memory, and the count is known.

    The pass is the first epoch's decoding done up front; knowing the count
    lets Keras show steps per epoch and not warn that the input "ran out of data".
    """
    import tensorflow as tf

    dataset = dataset.cache()
    count = int(dataset.reduce(tf.constant(0, tf.int64), lambda count, *_: count + 1))
    if count == 0:
        raise ValueError(f"None of the {notes} notes could be read:\n{skips.summary()}")
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _cache_key(records, frontend: FrontendConfig, stats: FeatureStats | None, with_labels: bool) -> str:
    digest = hashlib.sha256(
        json.dumps([frontend.to_dict(), with_labels, [dataclasses.astuple(r) for r in records]]).encode()
    )
    if stats is not None:
        digest.update(stats.mean.tobytes() + stats.std.tobytes())
    return digest.hexdigest()[:16]


def _features_only(x, index):
    return x


def compute_stats(records_or_dataset, frontend: FrontendConfig, skips: SkipReport | None = None) -> FeatureStats:
    """Per-mel-bin mean and std of log-mel (dB), streamed over the notes.

    Compute it on the training split only, and save it with the model.

    Args:
        records_or_dataset: Notes, or a dataset of un-normalised features
            `(batch, n_mels, n_frames, 1)` (or `(features, labels)`).
        frontend: The frontend config.
        skips: Report for skipped files (records only).

    Example:
    >>> stats = compute_stats(train_records, FrontendConfig())  # doctest: +SKIP
    >>> stats.save("run/stats.npz")  # doctest: +SKIP
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    if isinstance(records_or_dataset, tf.data.Dataset):
        dataset, total, skips = records_or_dataset, None, None
    else:
        records = list(records_or_dataset)
        skips = SkipReport() if skips is None else skips
        dataset = feature_dataset(records, frontend, None, batch_size=64, cache=False, skips=skips)
        total = math.ceil(len(records) / 64)
    accumulator = FeatureStatsAccumulator(frontend.n_mels)
    for x in _features_of(
        tqdm(dataset, total=total, desc="feature statistics", unit="batch", leave=False, disable=None)
    ):
        accumulator.add(np.asarray(x))
    if accumulator.notes == 0 and skips is not None:
        raise ValueError(f"None of the {len(records)} notes could be read:\n{skips.summary()}")
    return accumulator.result()


def _features_of(batches):
    for batch in batches:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def load_features(
    records: Iterable[NoteRecord],
    frontend: FrontendConfig,
    stats: FeatureStats | None = None,
    skips: SkipReport | None = None,
) -> tuple[np.ndarray, list[NoteRecord]]:
    """All features in memory, with the records that were kept (for evaluation).

    Returns:
        `(features, kept)`: float32 `(N, n_mels, n_frames, 1)` and the N
        records they come from, in the same order; skipped files are left out.

    Example:
    >>> x, kept = load_features(val_records, FrontendConfig(), stats)  # doctest: +SKIP
    """
    records = list(records)
    dataset = feature_dataset(records, frontend, stats, batch_size=64, cache=False, with_labels=True, skips=skips)
    features, indices = [], []
    for x, labels in dataset:
        features.append(x.numpy())
        indices.append(labels["index"].numpy())
    if not features:
        return np.zeros((0, *frontend.feature_shape, 1), np.float32), []
    indices = np.concatenate(indices)
    return np.concatenate(features), [records[i] for i in indices]
