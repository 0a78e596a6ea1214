"""The on-disk log-mel cache: round trips, staleness, corrupt shards and records."""

import json

import numpy as np
import pytest

from keras_timbre.data.feature_cache import FeatureCache
from keras_timbre.data.feature_cache import StaleCacheError
from keras_timbre.data.feature_cache import build_feature_cache
from keras_timbre.data.feature_cache import ensure_feature_cache
from keras_timbre.data.feature_cache import write_feature_cache
from keras_timbre.audio.frontend import FrontendConfig
from tests.testing import TINY_FRONTEND

FRONTEND = TINY_FRONTEND  # features (32, 64)
NOTES = 25


def random_examples(n=NOTES, seed=0):
    rng = np.random.default_rng(seed)
    features = (rng.normal(-40.0, 12.0, (n, *FRONTEND.feature_shape)) + np.linspace(0, 30, 32)[:, None]).astype(
        np.float32
    )
    labels = [{"family": i % 11, "source": i % 3, "pitch": 40 + i, "velocity": 100} for i in range(n)]
    return features, labels


@pytest.fixture
def cache(tmp_path):
    features, labels = random_examples()
    return write_feature_cache(tmp_path / "cache", FRONTEND, zip(features, labels), notes_per_shard=10)


def read_all(cache, **kwargs):
    features, labels = [], []
    for x, y in cache.dataset(batch_size=8, with_labels=True, **kwargs):
        features.append(x.numpy())
        labels.append({k: v.numpy() for k, v in y.items()})
    labels = {k: np.concatenate([y[k] for y in labels]) for k in labels[0]} if labels else {}
    return (np.concatenate(features) if features else np.zeros((0,))), labels


def test_round_trip_is_exact_with_labels_and_stats(cache):
    features, labels = random_examples()
    assert [s["notes"] for s in cache.shards] == [10, 10, 5]
    x, y = read_all(cache)
    assert x.shape == (NOTES, 32, 64, 1)
    order = np.argsort(y["index"])
    np.testing.assert_array_equal(y["index"][order], np.arange(NOTES))
    np.testing.assert_array_equal(x[order, ..., 0], features)
    np.testing.assert_array_equal(y["pitch"][order], [label["pitch"] for label in labels])
    np.testing.assert_array_equal(y["family"][order], [label["family"] for label in labels])
    np.testing.assert_allclose(cache.stats.mean, features.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(cache.stats.std, features.std(axis=(0, 2)), rtol=1e-4)
    assert cache.skipped_notes == 0 and len(cache.skips) == 0


def test_normalised_shuffled_epochs_cover_every_note_in_new_orders(cache):
    dataset = cache.dataset(cache.stats, batch_size=5, shuffle=True, shuffle_buffer=8, seed=1, with_labels=True)
    epochs = [np.concatenate([y["index"].numpy() for _, y in dataset]) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(NOTES))
    assert list(epochs[0]) != list(epochs[1]) != list(range(NOTES))
    x = np.concatenate([x.numpy() for x in cache.dataset(cache.stats, batch_size=25)])
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1.0, atol=1e-3)


def test_other_frontend_config_is_stale_and_names_the_field(cache):
    with pytest.raises(StaleCacheError, match="n_mels: run has 64, feature cache .* has 32"):
        FeatureCache.open(cache.directory, FrontendConfig(n_mels=64, duration=1.0, n_fft=512, hop_length=250))
    assert FeatureCache.open(cache.directory, FRONTEND).num_notes == NOTES


def test_interrupted_build_is_not_a_cache(cache):
    (cache.directory / "manifest.json").unlink()
    with pytest.raises(StaleCacheError, match="no manifest.json"):
        FeatureCache.open(cache.directory, FRONTEND)


def test_a_folder_that_is_not_a_cache_is_never_cleared(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.npz").write_bytes(b"keep me")
    features, labels = random_examples(3)
    with pytest.raises(ValueError, match="is not empty and holds no feature cache"):
        write_feature_cache(run, FRONTEND, zip(features, labels))
    assert (run / "stats.npz").read_bytes() == b"keep me"


def test_corrupt_record_skips_the_rest_of_its_shard_named_and_counted_once(cache):
    shard = cache.directory / "features-00001.tfrecord"
    raw = bytearray(shard.read_bytes())
    record = len(raw) // 10  # records are the same size
    raw[3 * record + 100] ^= 0xFF  # inside the data of record 3: its CRC fails
    shard.write_bytes(bytes(raw))
    for _ in range(2):
        x, y = read_all(cache)
        assert len(x) == NOTES - 7
    assert cache.skipped_notes == 7
    [(name, reason)] = cache.skips.skipped.items()
    assert name == str(shard) and "after 3 of 10 records" in reason


def test_truncated_and_missing_shards_are_skipped_by_name(cache):
    first, last = cache.directory / "features-00000.tfrecord", cache.directory / "features-00002.tfrecord"
    first.write_bytes(first.read_bytes()[:5000])
    last.unlink()
    x, _ = read_all(cache)
    assert len(x) == 10
    assert cache.skipped_notes == 15
    assert "truncated" in cache.skips.skipped[str(first)] and "missing" in cache.skips.skipped[str(last)]


def test_records_that_do_not_decode_are_skipped_by_name(tmp_path):
    features, labels = random_examples(6)
    features[2, 5, 7] = np.nan
    cache = write_feature_cache(tmp_path, FRONTEND, zip(features, labels), notes_per_shard=6)
    x, y = read_all(cache)
    assert sorted(y["index"]) == [0, 1, 3, 4, 5]
    assert "record 2 has NaN" in " ".join(cache.skips.skipped.values())
    # A record of the wrong size, as a cache written with another shape would hold.
    import tensorflow as tf

    shard = tmp_path / "features-00000.tfrecord"
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for i, size in enumerate([32 * 64, 10, 32 * 64]):
            feature = {
                "log_mel": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.zeros(size, "f4").tobytes()]))
            }
            feature["index"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"] = [{"name": shard.name, "notes": 3, "bytes": shard.stat().st_size}]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    cache = FeatureCache.open(tmp_path, FRONTEND)
    x, y = read_all(cache)
    assert sorted(y["index"]) == [0, 2]
    assert "record 1 is not a (32, 64) float32 log-mel" in " ".join(cache.skips.skipped.values())


def test_built_from_notes_matches_the_pipeline_then_reused_or_rebuilt(tmp_path):
    from keras_timbre.data import feature_dataset
    from keras_timbre.data import make_synthetic_dataset
    from keras_timbre.data import read_notes

    records = read_notes(make_synthetic_dataset(tmp_path / "notes", notes=12, seed=0))
    messages = []
    cache = ensure_feature_cache(records, tmp_path / "cache", FRONTEND, notes_per_shard=5, log=messages.append)
    expected = np.concatenate([x.numpy() for x in feature_dataset(records, FRONTEND, None, cache=False)])
    x, y = read_all(cache)
    np.testing.assert_array_equal(x[np.argsort(y["index"])], expected)

    built = (tmp_path / "cache" / "manifest.json").stat().st_mtime_ns
    ensure_feature_cache(records, tmp_path / "cache", FRONTEND, log=messages.append)
    assert "reusing" in messages[-1] and (tmp_path / "cache" / "manifest.json").stat().st_mtime_ns == built

    other = FrontendConfig(n_mels=16, duration=1.0, n_fft=512, hop_length=250)
    cache = ensure_feature_cache(records, tmp_path / "cache", other, log=messages.append)
    assert "stale" in messages[-1] and "n_mels" in messages[-1]
    assert cache.frontend == other and next(iter(cache.dataset(batch_size=4))).shape == (4, 16, 64, 1)

    cache = ensure_feature_cache(records[:-2], tmp_path / "cache", other, log=messages.append)
    assert "other notes" in messages[-1] and cache.num_notes == 10


def test_build_from_a_directory_records_source_and_bad_files(tmp_path):
    from keras_timbre.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "notes", notes=6, seed=1)
    bad = sorted((data / "audio").glob("*.wav"))[0]
    bad.write_bytes(b"not audio")
    cache = build_feature_cache(data, tmp_path / "cache", FRONTEND)
    assert cache.num_notes == 5 and cache.source == str(data)
    assert list(cache.build_skips) == [str(bad)]
