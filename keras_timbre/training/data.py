"""The data of a training run: one tf.data path, in memory or streamed from a feature cache.

Either way the training set is a stream of normalised notes, shuffled in an
order that depends only on `(seed, epoch)` (`EpochOrder`), then batched:

- in memory: `keras_timbre.data.feature_dataset` cached after its first pass
  (which also gives the statistics, so the audio is decoded once);
- larger than memory (`cache=DIR`): streamed from the feature caches
  `DIR/train` and `DIR/val` (`keras_timbre.data.feature_cache`), built on
  first use, shuffled in a buffer of `DEFAULT_SHUFFLE_BUFFER` notes.

Example:
>>> split = split_data(data_dir, 0.15, 0)  # doctest: +SKIP
>>> data = training_data(split.train, split.val, FrontendConfig(), batch_size=16, seed=0)  # doctest: +SKIP
>>> model.fit(data.train, validation_data=data.validation, callbacks=[data.order])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.data import compute_stats, feature_dataset
from keras_timbre.data.feature_cache import DEFAULT_SHUFFLE_BUFFER, ensure_feature_cache
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.split import diverse_notes, load_log_mel

FIGURE_NOTES = 3
# Notes whose codes TensorBoard's projector shows: enough for a map, few enough to encode in a second.
SHOWN_NOTES = 500
# Notes per decoding batch before the notes are shuffled and re-batched.
_SOURCE_BATCH = 64


@dataclasses.dataclass
class TrainingData:
    """Datasets and facts of one run's data.

    Attributes:
        train: Batches `(batch, n_mels, n_frames, 1)` of normalised training notes (for a
            conditioned model, dicts of them with their pitch and velocity: `model_inputs`).
        validation: Batches of normalised held-out notes (or dicts), or None.
        stats: Per-mel-bin statistics of the training notes.
        order: The callback that sets each epoch's shuffle; pass it to `fit`.
        shown_db: Up to `SHOWN_NOTES` held-out notes (training notes if none
            are held out) in dB, for the TensorBoard projector; None if none read.
        shown_records: Their records.
        counts: Notes read (not skipped): `{"train_notes": ..., "val_notes": ...}`.
    """

    train: Any
    validation: Any
    stats: FeatureStats
    order: "EpochOrder"
    shown_db: Any
    shown_records: list[NoteRecord]
    counts: dict[str, int]

    @property
    def figure_db(self):
        """A few of the shown notes, of different families, for reconstruction figures."""
        return None if self.shown_db is None else self.shown_db[self._figure_picks()]

    @property
    def figure_titles(self) -> list[str]:
        return [record.note_str for record in self.figure_records]

    @property
    def figure_records(self) -> list[NoteRecord]:
        return [self.shown_records[i] for i in self._figure_picks()]

    def _figure_picks(self) -> list[int]:
        return diverse_notes(self.shown_records, FIGURE_NOTES)


class EpochOrder(keras.callbacks.Callback):
    """Shuffles the notes anew each epoch, in an order set by `(seed, epoch)` alone.

    tf.data's own `reshuffle_each_iteration` counts epochs from the start of
    the process, so a resumed run would replay the first epoch's order; here
    the epoch index, set in `on_epoch_begin` before `fit` opens the epoch's
    iterator, seeds each epoch's shuffle.

    Example:
    >>> import tensorflow as tf
    >>> order = EpochOrder(seed=0)
    >>> notes = order.shuffle(tf.data.Dataset.range(5), buffer=5)
    >>> first = [int(x) for x in notes]
    >>> first == [int(x) for x in notes], sorted(first)
    (True, [0, 1, 2, 3, 4])
    >>> order.on_epoch_begin(1)
    >>> [int(x) for x in notes] != first
    True
    """

    def __init__(self, seed: int):
        import tensorflow as tf

        super().__init__()
        self._base = tf.constant(int(seed) * 1_000_003, tf.int64)
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)

    def shuffle(self, notes, buffer: int):
        """`notes` (a dataset of single notes) in this epoch's order."""
        import tensorflow as tf

        def this_epoch(_):
            # Clears the global seed of this function's graph only: the order
            # then depends on (seed, epoch) alone, and TF's seed pairing (which
            # tests a global seed of 0 with Python `==`) accepts a tensor seed.
            tf.random.set_seed(None)
            return notes.shuffle(buffer, seed=self._base + self._epoch, reshuffle_each_iteration=False)

        return tf.data.Dataset.from_tensors(0).flat_map(this_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch.assign(epoch)


def training_data(
    train_records: list[NoteRecord],
    val_records: list[NoteRecord],
    frontend: FrontendConfig,
    batch_size: int,
    seed: int,
    stats: FeatureStats | None = None,
    cache: str | os.PathLike | None = None,
    model_type=None,
) -> TrainingData:
    """The run's datasets; `stats` (of a resumed run) are used instead of computed.

    Elements are what the model class `model_type` takes (its `INPUT_KEYS`):
    log-mel batches, or dicts of them with the notes' labels (`model_inputs`).
    """
    import tensorflow as tf

    if cache is None:
        notes, counts, labelled, stats = _in_memory(train_records, val_records, frontend, batch_size, stats)
        buffer = len(train_records)
    else:
        notes, counts, labelled, stats = _streamed(train_records, val_records, Path(cache), frontend, batch_size, stats)
        buffer = DEFAULT_SHUFFLE_BUFFER
    inputs = model_inputs(("log_mel",) if model_type is None else model_type.INPUT_KEYS)
    order = EpochOrder(seed)
    notes = notes.map(inputs)
    train = order.shuffle(notes, buffer).batch(batch_size).apply(_batch_count(counts["train_notes"], batch_size))
    train = train.prefetch(tf.data.AUTOTUNE)
    validation = labelled.map(inputs) if labelled is not None else None
    if labelled is not None:  # the held-out notes already in the validation set: not decoded again
        shown_db, shown_records = _first_notes(labelled, val_records, stats)
    else:
        shown_db, shown_records = shown_notes(train_records, frontend)
    return TrainingData(train, validation, stats, order, shown_db, shown_records, counts)


def model_inputs(input_keys: tuple[str, ...]):
    """`(log_mel, labels) -> model input`: the log-mel alone, or a dict of `input_keys` (log-mel and labels)."""

    def inputs(x, labels):
        if tuple(input_keys) == ("log_mel",):
            return x
        return {key: x if key == "log_mel" else labels[key] for key in input_keys}

    return inputs


def _in_memory(train_records, val_records, frontend, batch_size, stats):
    raw = feature_dataset(train_records, frontend, None, batch_size=_SOURCE_BATCH, cache=True, with_labels=True)
    if stats is None:
        stats = compute_stats(raw, frontend)  # the first pass fills the cache
    notes = raw.unbatch().map(lambda x, labels: (stats.normalize(x[..., 0])[..., None], labels))
    labelled = None
    if val_records:  # cached too: its first pass, here, is the one fit's first validation would make
        labelled = feature_dataset(val_records, frontend, stats, batch_size=batch_size, cache=True, with_labels=True)
    val_notes = _count(labelled.map(lambda x, labels: x)) if labelled is not None else 0
    return notes, {"train_notes": _count(raw.map(lambda x, labels: x)), "val_notes": val_notes}, labelled, stats


def _batch_count(notes: int, batch_size: int):
    """States a stream's length: flat_map hides it, and Keras then warns that the first epoch "ran out of data"."""
    import tensorflow as tf

    return tf.data.experimental.assert_cardinality(-(-notes // batch_size))


def _count(batches) -> int:
    """Notes in a dataset of batches (one pass; from memory once it is cached)."""
    import tensorflow as tf

    return int(batches.reduce(0, lambda total, batch: total + tf.shape(batch)[0]))


def _streamed(train_records, val_records, cache_dir: Path, frontend, batch_size, stats):
    train_cache = ensure_feature_cache(train_records, cache_dir / "train", frontend)
    stats = train_cache.stats if stats is None else stats
    notes = train_cache.dataset(stats, batch_size=_SOURCE_BATCH, with_labels=True).unbatch()
    labelled, counts = None, {"train_notes": train_cache.num_notes, "val_notes": 0}
    if val_records:
        val_cache = ensure_feature_cache(val_records, cache_dir / "val", frontend)
        counts["val_notes"] = val_cache.num_notes
        labelled = val_cache.dataset(stats, batch_size=batch_size, with_labels=True)
        labelled = labelled.apply(_batch_count(val_cache.num_notes, batch_size))
    return notes, counts, labelled, stats


def _first_notes(labelled, records: list[NoteRecord], stats: FeatureStats) -> tuple[Any, list[NoteRecord]]:
    """`(log_mel_db, records)` of up to `SHOWN_NOTES` notes of a labelled dataset of normalised batches."""
    import numpy as np

    spectrograms, indices = [], []
    for x, labels in labelled:
        spectrograms.append(stats.denormalize(np.asarray(x)[..., 0]))
        indices += [int(i) for i in np.asarray(labels["index"])]
        if len(indices) >= SHOWN_NOTES:
            break
    if not indices:
        return None, []
    return np.concatenate(spectrograms)[:SHOWN_NOTES], [records[i] for i in indices[:SHOWN_NOTES]]


def shown_notes(records: list[NoteRecord], frontend: FrontendConfig) -> tuple[Any, list[NoteRecord]]:
    """`(log_mel_db, kept_records)` of up to `SHOWN_NOTES` of `records`, evenly spread over them.

    For a run without held-out notes, whose training notes are shown instead.
    """
    step = -(-len(records) // SHOWN_NOTES)
    log_mel_db, kept = load_log_mel(records[::step], frontend)
    return (log_mel_db if len(kept) else None), kept
