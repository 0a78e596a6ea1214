"""A log-mel cache on disk: features computed once, streamed every epoch.

nsynth-mini fits in memory; NSynth's train split (289,205 notes, about 38 GB
of float32 log-mel at the default frontend) does not. `build_feature_cache`
runs the notes once through the training pipeline and writes their log-mel,
with labels, to sharded TFRecord files; `FeatureCache.dataset` reads them back
with `interleave` over shards and a parallel `map`, so memory is bounded by
the shuffle buffer, not by the number of notes.

A cache folder holds:

```
DIR/
  frontend.json               the FrontendConfig the features were computed with
  stats.npz                   per-mel-bin FeatureStats of the cached notes
  features-00000.tfrecord     `notes_per_shard` notes each
  ...
  manifest.json               written last: format, frontend key, source
                              fingerprint, shards with their notes and bytes
```

The cache is keyed by the frontend config: opening it with another config
raises `StaleCacheError` naming the fields that differ, and
`ensure_feature_cache` rebuilds it instead (also when the source notes
changed, or a build was interrupted, which leaves no manifest). A shard that
is missing, truncated or corrupt, and a record that does not decode, is
skipped, counted and reported with its name; it never stops an epoch.

Example:
>>> cache = ensure_feature_cache("nsynth-train", "cache/train", FrontendConfig())  # doctest: +SKIP
>>> model.fit(cache.dataset(cache.stats, batch_size=32, shuffle=True), epochs=10)  # doctest: +SKIP
>>> print(cache.skips.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.stats import FeatureStatsAccumulator
from keras_timbre.data.pipeline import feature_dataset
from keras_timbre.data.readers import FAMILIES
from keras_timbre.data.readers import SOURCES
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.readers import notes_fingerprint
from keras_timbre.data.readers import read_notes
from keras_timbre.data.skips import SkipReport

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
DEFAULT_NOTES_PER_SHARD = 512  # 67 MB shards at the default frontend
DEFAULT_SHUFFLE_BUFFER = 1024  # notes; 134 MB at the default frontend
_LABELS = ("family", "source", "pitch", "velocity", "index")


class StaleCacheError(ValueError):
    """A feature cache that does not match what is asked of it (config, source, completeness)."""


def frontend_key(frontend: FrontendConfig) -> str:
    """A short hash of the frontend config and cache format: the cache's key.

    Example:
    >>> frontend_key(FrontendConfig()) == frontend_key(FrontendConfig(n_mels=128))
    True
    >>> frontend_key(FrontendConfig()) == frontend_key(FrontendConfig(n_mels=64))
    False
    """
    text = json.dumps({"format": CACHE_FORMAT, "frontend": frontend.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class FeatureCache:
    """An opened feature cache; `dataset()` streams it.

    Attributes:
        directory: The cache folder.
        frontend: The frontend config the features were computed with.
        stats: Per-mel-bin statistics of the cached notes.
        shards: `[{"name", "notes", "bytes"}, ...]` from the manifest.
        source: Where the notes came from.
        fingerprint: `notes_fingerprint(records, exact=True)` of the notes at build time.
        build_skips: Notes that could not be read when the cache was built,
            `{path: reason}`.
        skips: Shards and records skipped while reading, with reasons;
            filled as datasets are iterated.
    """

    directory: Path
    frontend: FrontendConfig
    stats: FeatureStats
    shards: list[dict]
    source: str = ""
    fingerprint: str = ""
    build_skips: dict[str, str] = dataclasses.field(default_factory=dict)
    skips: SkipReport = dataclasses.field(default_factory=SkipReport)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._lost: dict[str, int] = {}

    @property
    def num_notes(self) -> int:
        """Notes written to the cache."""
        return sum(shard["notes"] for shard in self.shards)

    @property
    def skipped_notes(self) -> int:
        """Notes lost to bad shards or records while reading (each counted once)."""
        with self._lock:
            return sum(self._lost.values())

    @classmethod
    def open(cls, directory: str | os.PathLike, frontend: FrontendConfig | None = None) -> "FeatureCache":
        """Opens a complete cache, checking it was built with `frontend`.

        Raises:
            FileNotFoundError: `directory` does not exist.
            StaleCacheError: no manifest (not a cache, or an interrupted
                build), another cache format, or another frontend config
                (the message names each differing field).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"No feature cache at {directory}")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise StaleCacheError(
                f"{directory} is not a complete feature cache: no {MANIFEST} "
                "(never built, or the build was interrupted)"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            cached = FrontendConfig.from_dict(manifest["frontend"])
        except (ValueError, KeyError, TypeError) as error:
            raise StaleCacheError(f"{manifest_path} is unreadable ({error}); rebuild the cache") from None
        if manifest.get("format") != CACHE_FORMAT:
            raise StaleCacheError(
                f"{directory} has cache format {manifest.get('format')!r}, "
                f"this version reads {CACHE_FORMAT}; rebuild the cache"
            )
        if frontend is not None and frontend_key(frontend) != manifest.get("key"):
            try:
                frontend.check_matches(cached, what=f"feature cache {directory}")
            except ValueError as error:
                raise StaleCacheError(str(error)) from None
        return cls(
            directory=directory,
            frontend=cached,
            stats=FeatureStats(mean=manifest["stats"]["mean"], std=manifest["stats"]["std"]),
            shards=list(manifest["shards"]),
            source=manifest.get("source", ""),
            fingerprint=manifest.get("fingerprint", ""),
            build_skips=dict(manifest.get("skipped", {})),
        )

    def check_shards(self) -> list[str]:
        """Paths of the shards that exist with the size the manifest records.

        Missing and wrong-sized shards are recorded in `skips` (and their notes
        counted as skipped) here, cheaply, before any record is read.
        """
        good = []
        for shard in self.shards:
            path = self.directory / shard["name"]
            size = path.stat().st_size if path.is_file() else None
            if size is None:
                self._lose(str(path), shard["notes"], f"{path}: shard missing ({shard['notes']} notes skipped)")
            elif size != shard["bytes"]:
                self._lose(
                    str(path),
                    shard["notes"],
                    f"{path}: shard has {size} bytes, the manifest says {shard['bytes']} "
                    f"(truncated or overwritten; {shard['notes']} notes skipped)",
                )
            else:
                good.append(str(path))
        return good

    def dataset(
        self,
        stats: FeatureStats | None = None,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        seed: int = 0,
        with_labels: bool = False,
        drop_remainder: bool = False,
        cycle_length: int = 4,
    ):
        """Batches of cached log-mel, streamed from the shards.

        Shards are read `cycle_length` at a time with `interleave` (in a
        shuffled order each epoch when `shuffle`), records are decoded with a
        parallel `map`, then shuffled in a buffer of `shuffle_buffer` notes,
        batched and prefetched. Memory is about `shuffle_buffer` notes plus a
        few batches, whatever the size of the cache.

        Args:
            stats: Normalise features with these statistics; None gives dB.
                Pass `cache.stats` for a training cache.
            batch_size: Notes per batch (the global batch under distribution).
            shuffle: Shuffle shards and notes, differently every epoch.
            shuffle_buffer: Notes in the shuffle buffer.
            seed: Shuffle seed.
            with_labels: Yield `(features, labels)`, labels a dict of int32
                `family`, `source`, `pitch`, `velocity`, `index` (as
                `keras_timbre.data.feature_dataset` gives).
            drop_remainder: Drop the last, smaller batch.
            cycle_length: Shards read at once.

        Returns:
            A `tf.data.Dataset` of float32 `(batch, n_mels, n_frames, 1)`, or
            of `(features, labels)`.
        """
        import tensorflow as tf

        if stats is not None and stats.n_mels != self.frontend.n_mels:
            raise ValueError(
                f"stats have {stats.n_mels} mel bins, the cache {self.directory} has " f"{self.frontend.n_mels}"
            )
        paths, counts = self._readable_shards()
        decode = _record_decoder(self.frontend, stats)

        def keep(features, labels, ok, info):
            is_end, whole, count, _, notes = info
            quiet = tf.logical_or(ok, tf.logical_and(is_end, tf.equal(count, notes)))
            return tf.cond(quiet, lambda: ok, lambda: tf.py_function(self._report, list(info), Tout=tf.bool))

        dataset = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.constant(counts, tf.int64)))
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        dataset = (
            dataset.interleave(
                _numbered_records,
                cycle_length=min(cycle_length, len(paths)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=not shuffle,
            )
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
            .filter(keep)
        )
        if with_labels:
            dataset = dataset.map(lambda features, labels, ok, info: (features, labels))
        else:
            dataset = dataset.map(lambda features, labels, ok, info: features)
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    def _readable_shards(self) -> tuple[list[str], list[int]]:
        """Paths and note counts of the shards that `check_shards` passes."""
        expected = {str(self.directory / s["name"]): int(s["notes"]) for s in self.shards}
        paths = self.check_shards()
        if not paths:
            raise ValueError(f"No readable shard in the feature cache {self.directory}:\n{self.skips.summary()}")
        return paths, [expected[p] for p in paths]

    def _report(self, is_end, whole, count, path, notes) -> bool:
        path, count, notes = path.numpy().decode(), int(count), int(notes)
        if bool(is_end):
            lost = notes - count
            self._lose(
                path,
                lost,
                f"{path}: corrupt or truncated record after {count} of {notes} "
                f"records; the remaining {lost} notes of the shard skipped",
            )
        elif not bool(whole):
            self._lose(
                f"{path}#{count}",
                1,
                f"{path}: record {count} is not a " f"{self.frontend.feature_shape} float32 log-mel; skipped",
            )
        else:
            self._lose(f"{path}#{count}", 1, f"{path}: record {count} has NaN or Inf features; skipped")
        return False

    def _lose(self, key: str, notes: int, reason: str) -> None:
        with self._lock:
            if key in self._lost:
                return
            self._lost[key] = notes
        self.skips.skip(key, reason)


def _numbered_records(path, notes):
    """`(serialized, is_end, count, path, notes)` per record of a shard, then one end marker.

    `ignore_errors` ends a shard at its first corrupt record; the end marker
    carries how many records were read, so the loss is counted.
    """
    import tensorflow as tf

    records = tf.data.TFRecordDataset(path).ignore_errors().map(lambda r: (r, False))
    end = tf.data.Dataset.from_tensors((tf.constant(b""), True))

    def number(count, element):
        serialized, is_end = element
        return count + tf.cast(tf.logical_not(is_end), tf.int64), (serialized, is_end, count)

    numbered = records.concatenate(end).scan(tf.constant(0, tf.int64), number)
    return numbered.map(lambda serialized, is_end, count: (serialized, is_end, count, path, notes))


def _record_decoder(frontend: FrontendConfig, stats: FeatureStats | None):
    """The map from a numbered record to `(features, labels, ok, info)`; `ok` is False for a bad record."""
    import tensorflow as tf

    n_mels, n_frames = frontend.feature_shape
    size = n_mels * n_frames
    spec = {
        "log_mel": tf.io.FixedLenFeature([], tf.string, default_value=""),
        **{name: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for name in _LABELS},
    }

    def decode(serialized, is_end, count, path, notes):
        example = tf.io.parse_single_example(serialized, spec)
        values = tf.io.decode_raw(example["log_mel"], tf.float32)
        whole = tf.equal(tf.size(values), size)
        features = tf.reshape(tf.cond(whole, lambda: values, lambda: tf.zeros([size])), (n_mels, n_frames))
        finite = tf.reduce_all(tf.math.is_finite(features))
        ok = tf.logical_and(tf.logical_not(is_end), tf.logical_and(whole, finite))
        if stats is not None:
            features = stats.normalize(features)
        labels = {name: tf.cast(example[name], tf.int32) for name in _LABELS}
        return features[..., None], labels, ok, (is_end, whole, count, path, notes)

    return decode


def write_feature_cache(
    directory: str | os.PathLike,
    frontend: FrontendConfig,
    examples: Iterable[tuple[np.ndarray, dict]],
    *,
    total: int | None = None,
    source: str = "",
    fingerprint: str = "",
    skipped: dict[str, str] | None = None,
    notes_per_shard: int = DEFAULT_NOTES_PER_SHARD,
) -> FeatureCache:
    """Writes log-mel examples as a cache; the low-level half of `build_feature_cache`.

    Any earlier cache in `directory` is removed first (its manifest before
    anything else, so an interrupted build is never mistaken for a complete
    one). Each shard and the manifest are written atomically.

    Args:
        directory: The cache folder.
        frontend: The config the features were computed with.
        examples: `(log_mel_db (n_mels, n_frames), labels)` pairs, labels a
            dict with int `family`, `source` (indices into `FAMILIES`,
            `SOURCES`), `pitch`, `velocity`; missing ones are -1.
        total: Number of examples, for the progress bar.
        source, fingerprint, skipped: Recorded in the manifest.
        notes_per_shard: Notes per TFRecord shard.

    Returns:
        The opened `FeatureCache`.
    """
    from tqdm.auto import tqdm

    if notes_per_shard < 1:
        raise ValueError(f"notes_per_shard must be >= 1, got {notes_per_shard}")
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()) and not _is_cache(directory):
        # Never clear a folder that is not ours (a run directory also has frontend.json and stats.npz).
        raise ValueError(
            f"{directory} is not empty and holds no feature cache: write the cache to a new or " "empty folder"
        )
    directory.mkdir(parents=True, exist_ok=True)
    _remove_cache_files(directory)
    accumulator = FeatureStatsAccumulator(frontend.n_mels)
    shards: list[dict] = []
    remaining = iter(tqdm(examples, total=total, desc="caching log-mel", unit="note", disable=None, leave=False))
    while chunk := list(itertools.islice(remaining, notes_per_shard)):
        path = directory / f"features-{len(shards):05d}.tfrecord"
        _write_shard(path, chunk, sum(shard["notes"] for shard in shards), frontend, accumulator)
        shards.append({"name": path.name, "notes": len(chunk), "bytes": path.stat().st_size})
    written = accumulator.notes
    if written == 0:
        raise ValueError(f"No notes to cache in {directory}" + (f" (from {source})" if source else ""))
    stats = accumulator.result()
    stats.save(directory / "stats.npz")
    frontend.save(directory / "frontend.json")
    manifest = {"source": str(source), "fingerprint": fingerprint, "notes": written, "shards": shards}
    _write_manifest(directory, frontend, stats, manifest, dict(skipped or {}))
    return FeatureCache.open(directory, frontend)


def _write_manifest(directory: Path, frontend: FrontendConfig, stats: FeatureStats, manifest: dict, skipped: dict):
    """The manifest, written last: its presence says the cache is complete."""
    atomic.write_json(
        directory / MANIFEST,
        {
            "format": CACHE_FORMAT,
            "key": frontend_key(frontend),
            "frontend": frontend.to_dict(),
            **manifest,
            "skipped": skipped,
            "stats": {"mean": stats.mean.tolist(), "std": stats.std.tolist()},
            "feature_dtype": "float32",
            "labels": {"family": list(FAMILIES), "source": list(SOURCES)},
        },
    )


def _write_shard(path: Path, chunk: list, first_index: int, frontend: FrontendConfig, accumulator) -> None:
    """One TFRecord shard of `(log_mel_db, labels)` examples, atomically; their stats go into `accumulator`."""
    import tensorflow as tf

    def int_feature(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    with atomic.atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for offset, (log_mel_db, labels) in enumerate(chunk):
            log_mel_db = np.asarray(log_mel_db, np.float32).reshape(frontend.feature_shape)
            feature = {"log_mel": tf.train.Feature(bytes_list=tf.train.BytesList(value=[log_mel_db.tobytes()]))}
            for name in _LABELS:
                feature[name] = int_feature(first_index + offset if name == "index" else int(labels.get(name, -1)))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
            accumulator.add(log_mel_db)


def _is_cache(directory: Path) -> bool:
    return (directory / MANIFEST).is_file() or any(directory.glob("features-*.tfrecord"))


def _remove_cache_files(directory: Path) -> None:
    (directory / MANIFEST).unlink(missing_ok=True)
    for path in directory.glob("features-*.tfrecord"):
        path.unlink()
    for name in ("stats.npz", "frontend.json"):
        (directory / name).unlink(missing_ok=True)


def build_feature_cache(
    source: str | os.PathLike | Sequence[NoteRecord],
    directory: str | os.PathLike,
    frontend: FrontendConfig,
    *,
    notes_per_shard: int = DEFAULT_NOTES_PER_SHARD,
    skips: SkipReport | None = None,
) -> FeatureCache:
    """Runs notes through the training pipeline once and writes their log-mel as a cache.

    Args:
        source: A data directory (any layout `read_notes` reads) or records.
        directory: The cache folder; an earlier cache there is replaced.
        frontend: The frontend config.
        notes_per_shard: Notes per TFRecord shard.
        skips: Where unreadable notes are recorded (a printing report if None).

    Returns:
        The opened `FeatureCache`.
    """
    skips = SkipReport() if skips is None else skips
    records = read_notes(source, skips=skips) if isinstance(source, (str, os.PathLike)) else list(source)
    dataset = feature_dataset(records, frontend, None, batch_size=64, cache=False, with_labels=True, skips=skips)

    def examples() -> Iterator[tuple[np.ndarray, dict]]:
        for batch, labels in dataset:
            batch = batch.numpy()[..., 0]
            labels = {name: values.numpy() for name, values in labels.items()}
            for i in range(batch.shape[0]):
                yield batch[i], {name: int(labels[name][i]) for name in ("family", "source", "pitch", "velocity")}

    name = str(source) if isinstance(source, (str, os.PathLike)) else f"{len(records)} records"
    return write_feature_cache(
        directory,
        frontend,
        examples(),
        total=len(records),
        source=name,
        fingerprint=notes_fingerprint(records, exact=True),
        skipped=skips.skipped,
        notes_per_shard=notes_per_shard,
    )


def ensure_feature_cache(
    source: str | os.PathLike | Sequence[NoteRecord],
    directory: str | os.PathLike,
    frontend: FrontendConfig,
    *,
    notes_per_shard: int = DEFAULT_NOTES_PER_SHARD,
    skips: SkipReport | None = None,
    log=print,
) -> FeatureCache:
    """The cache of `source` at `directory` for `frontend`: reused if fresh, else (re)built.

    A cache is stale, and rebuilt with a message saying why, when it is
    incomplete, was built with another frontend config, or its source notes
    changed (paths, labels, file sizes or times).
    """
    skips = SkipReport() if skips is None else skips
    records = read_notes(source, skips=skips) if isinstance(source, (str, os.PathLike)) else list(source)
    directory = Path(directory)
    if directory.is_dir() and _is_cache(directory):
        try:
            cache = FeatureCache.open(directory, frontend)
        except StaleCacheError as error:
            log(f"keras-timbre: feature cache {directory} is stale, rebuilding: {error}")
        else:
            if cache.fingerprint == notes_fingerprint(records, exact=True):
                log(
                    f"keras-timbre: reusing feature cache {directory} ({cache.num_notes} notes, "
                    f"{len(cache.shards)} shards)"
                )
                return cache
            log(
                f"keras-timbre: feature cache {directory} was built from other notes than {source!s:.200}; "
                "rebuilding"
            )
    return build_feature_cache(records, directory, frontend, notes_per_shard=notes_per_shard, skips=skips)
