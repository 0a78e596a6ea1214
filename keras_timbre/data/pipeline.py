"""The tf.data pipeline: notes to batches of normalised log-mel.

Per note: decode (in the graph with `tf.audio.decode_wav` for 16-bit PCM WAV
at the frontend's rate; soundfile + librosa through `tf.py_function` for
every other file; `tf.io.parse_single_example` for NSynth TFRecords),
downmix, resample, crop or pad, log-mel (`keras_timbre.frontend.tf_log_mel`,
batched), normalise per mel bin, then cache, shuffle, batch with static
shapes and prefetch.

A file that cannot be used is skipped, never fatal: its path and reason go
into a `SkipReport` and are printed once. Changes made to usable files
(resampling, downmixing, padding, cropping) are noted there too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import threading
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import load_audio
from keras_timbre.audio.io import probe_audio
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.readers import split_tfrecord_path
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.frontend import fit_to_length
from keras_timbre.audio.frontend import tf_log_mel

# Notes per log-mel call: one batched STFT is faster than many small ones.
_FEATURE_BATCH = 32
_MAX_SHUFFLE_BUFFER = 4096


@dataclasses.dataclass
class SkipReport:
    """Files skipped by the pipeline, with reasons, and changes made to the others.

    Args:
        verbose: Print each skip (and a summary of changes) to stderr when it happens.

    Example:
    >>> skips = SkipReport()
    >>> dataset = feature_dataset(records, FrontendConfig(), skips=skips)  # doctest: +SKIP
    >>> for batch in dataset: ...  # doctest: +SKIP
    >>> print(skips.summary())  # doctest: +SKIP
    """

    verbose: bool = True
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    changes: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.Lock()

    def skip(self, path: str, reason: str) -> None:
        """Records that `path` was skipped; the first reason for a path is kept."""
        reason = reason.removeprefix(f"{path}: ")  # AudioError messages start with the path
        with self._lock:
            if path in self.skipped:
                return
            self.skipped[path] = reason
        if self.verbose:
            print(f"keras-timbre: skipped {path}: {reason}", file=sys.stderr, flush=True)

    def change(self, path: str, what: list[str]) -> None:
        """Records what loading did to a usable file (resampled, downmixed...)."""
        if what:
            with self._lock:
                self.changes[path] = list(what)

    def __len__(self) -> int:
        return len(self.skipped)

    def change_counts(self) -> dict[str, int]:
        """Files per kind of change: `{"resampled": 3, "padded": 1, ...}`."""
        counts = defaultdict(int)
        for what in self.changes.values():
            for verb in {message.split()[0] for message in what}:
                counts[verb] += 1
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        """Every skipped file with its reason, then counts of changes."""
        lines = [f"{len(self.skipped)} file(s) skipped"]
        lines += [f"  {path}: {reason}" for path, reason in sorted(self.skipped.items())]
        return "\n".join(lines + self._change_lines())

    def _change_lines(self) -> list[str]:
        lines = []
        for verb, count in self.change_counts().items():
            example = next(p for p, what in sorted(self.changes.items()) if any(m.startswith(verb) for m in what))
            detail = next(m for m in self.changes[example] if m.startswith(verb))
            lines.append(f"{count} file(s) {verb} (e.g. {example}: {detail})")
        return lines

    def _print_changes(self) -> None:
        if self.verbose:
            for line in self._change_lines():
                print(f"keras-timbre: {line}", file=sys.stderr, flush=True)


def waveform_dataset(records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport):
    """A tf.data.Dataset of `(waveform (num_samples,), record index)`, unusable files skipped.

    Files are probed first (headers only): files that cannot be read are
    recorded in `skips` here; the rest are decoded in the pipeline.
    """
    import tensorflow as tf

    graph_wavs, python_files, tfrecord_notes = [], [], defaultdict(dict)
    for index, record in enumerate(records):
        location = split_tfrecord_path(record.path)
        if location is not None:
            tfrecord_notes[location[0]][location[1]] = index
            continue
        try:
            info = probe_audio(record.path)
        except AudioError as error:
            skips.skip(record.path, str(error))
            continue
        skips.change(record.path, info.changes(frontend.sample_rate, frontend.num_samples))
        if info.tf_decodable and info.sample_rate == frontend.sample_rate:
            graph_wavs.append(index)
        else:
            python_files.append(index)
    skips._print_changes()

    paths = tf.constant([r.path for r in records] or [""])
    parts = []
    if graph_wavs:
        parts.append(
            tf.data.Dataset.from_tensor_slices(tf.constant(graph_wavs, tf.int32)).map(
                lambda i: _decode_wav(paths[i], i, frontend), num_parallel_calls=tf.data.AUTOTUNE
            )
        )
    if python_files:
        parts.append(
            tf.data.Dataset.from_tensor_slices(tf.constant(python_files, tf.int32)).map(
                lambda i: _python_load(i, records, frontend, skips), num_parallel_calls=tf.data.AUTOTUNE
            )
        )
    if tfrecord_notes:
        parts.append(_tfrecord_waveforms(tfrecord_notes, records, frontend, skips))
    if not parts:
        raise ValueError(f"None of the {len(records)} notes could be read:\n{skips.summary()}")
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    if python_files or tfrecord_notes:
        return dataset.filter(_is_ok).map(_drop_ok)
    # All files were checked by the probe and decode in the graph: none is
    # dropped, so the count is known (Keras then knows the steps per epoch).
    return dataset.map(_drop_ok).apply(tf.data.experimental.assert_cardinality(len(graph_wavs)))


def _is_ok(waveform, index, ok):
    return ok


def _drop_ok(waveform, index, ok):
    return waveform, index


def _decode_wav(path, index, frontend: FrontendConfig):
    import tensorflow as tf

    audio, _ = tf.audio.decode_wav(tf.io.read_file(path))  # (frames, channels), rate checked by the probe
    waveform = fit_to_length(tf.reduce_mean(audio, axis=-1), frontend.num_samples)
    return waveform, index, tf.constant(True)


def _python_load(index, records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport):
    import tensorflow as tf

    def load(i):
        path = records[int(i)].path
        try:
            return load_audio(path, frontend.sample_rate, frontend.num_samples), True
        except AudioError as error:
            skips.skip(path, str(error))
        except Exception as error:  # an unexpected decoder failure must not kill the epoch
            skips.skip(path, f"cannot decode ({type(error).__name__}: {error})")
        return np.zeros(frontend.num_samples, np.float32), False

    waveform, ok = tf.py_function(load, [index], [tf.float32, tf.bool])
    waveform.set_shape([frontend.num_samples])
    ok.set_shape([])
    return waveform, index, ok


def _tfrecord_waveforms(notes: dict, records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport):
    import tensorflow as tf

    keys = [key for file in notes for key in notes[file]]
    values = [notes[file][key] for file in notes for key in notes[file]]
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values, tf.int32)), default_value=-1
    )
    spec = {
        "note_str": tf.io.FixedLenFeature([], tf.string),
        "audio": tf.io.VarLenFeature(tf.float32),
        "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=frontend.sample_rate),
    }

    def check(audio, rate, i):
        path = records[int(i)].path
        audio, rate = audio.numpy(), int(rate)
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            skips.skip(path, "no audio samples" if audio.size == 0 else "NaN or Inf samples")
            return np.zeros(frontend.num_samples, np.float32), False
        if rate != frontend.sample_rate:
            import librosa

            skips.change(path, [f"resampled from {rate} Hz to {frontend.sample_rate} Hz"])
            audio = librosa.resample(audio, orig_sr=rate, target_sr=frontend.sample_rate)
        audio = np.pad(audio[: frontend.num_samples], (0, max(0, frontend.num_samples - audio.size)))
        return audio.astype(np.float32), True

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        index = table.lookup(example["note_str"])
        waveform, ok = tf.py_function(
            check, [example["audio"].values, example["sample_rate"], index], [tf.float32, tf.bool]
        )
        waveform.set_shape([frontend.num_samples])
        ok.set_shape([])
        return waveform, index, ok

    def wanted(serialized):
        note_str = tf.io.parse_single_example(serialized, {"note_str": spec["note_str"]})["note_str"]
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
    import tensorflow as tf

    records = list(records)
    if not records:
        raise ValueError("feature_dataset got no records")
    if stats is not None and stats.n_mels != frontend.n_mels:
        raise ValueError(f"stats have {stats.n_mels} mel bins, the frontend has {frontend.n_mels}")
    skips = SkipReport() if skips is None else skips

    def features(waveforms, indices):
        log_mel_db = tf_log_mel(waveforms, frontend)
        if stats is not None:
            log_mel_db = stats.normalize(log_mel_db)
        return log_mel_db[..., None], indices

    waveforms = waveform_dataset(records, frontend, skips)
    count = int(waveforms.cardinality())
    dataset = waveforms.batch(_FEATURE_BATCH).map(features, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if count >= 0:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    if with_labels:
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

        dataset = dataset.map(labelled)
    else:
        dataset = dataset.map(_features_only)
    if isinstance(cache, str) and cache:
        # tf.data reuses complete cache files blindly: key them by what they hold.
        dataset = dataset.cache(f"{cache}-{_cache_key(records, frontend, stats, with_labels)}")
    elif cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(min(len(records), _MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


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
        dataset, total = records_or_dataset, None
    else:
        records = list(records_or_dataset)
        dataset = feature_dataset(records, frontend, None, batch_size=64, cache=False, skips=skips)
        total = math.ceil(len(records) / 64)
    total_sum = np.zeros(frontend.n_mels, np.float64)
    total_squares = np.zeros(frontend.n_mels, np.float64)
    count = 0
    for batch in tqdm(dataset, total=total, desc="feature statistics", unit="batch", leave=False, disable=None):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = np.asarray(x, np.float64).reshape(-1, frontend.n_mels, frontend.n_frames)
        total_sum += x.sum(axis=(0, 2))
        total_squares += np.square(x).sum(axis=(0, 2))
        count += x.shape[0] * x.shape[2]
    if count == 0:
        raise ValueError("No features to compute statistics from: every note was skipped")
    mean = total_sum / count
    std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
    return FeatureStats(mean=mean, std=std)


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
