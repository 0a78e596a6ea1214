"""The tf.data pipeline: shapes, values, labels, normalisation, skipped files, TFRecords, inspect."""

import os
import time
import warnings

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
from test_audio import tone
from test_audio import write_bad_files
from test_audio import write_odd_but_usable_files
from test_audio import write_valid_looking_wavs

from keras_timbre.cli import main
from keras_timbre.data import NoteRecord
from keras_timbre.data import SkipReport
from keras_timbre.data import compute_stats
from keras_timbre.data import feature_dataset
from keras_timbre.data import load_audio
from keras_timbre.data import load_features
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.data import parse_note_name
from keras_timbre.data import read_notes
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.frontend import log_mel
from tests.testing import TINY_FRONTEND

TINY = TINY_FRONTEND
RATE_16K = 16000


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), notes=20, seed=0, progress=False)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A folder of usable-with-changes files plus every kind of bad file."""
    folder = tmp_path_factory.mktemp("messy")
    return write_odd_but_usable_files(folder), write_bad_files(folder), folder


def test_shapes_dtypes_and_batches(synth):
    records = read_notes(synth)
    dataset = feature_dataset(records, TINY, batch_size=8, skips=SkipReport(verbose=False))
    assert dataset.element_spec.shape.as_list() == [None, 32, 64, 1]
    assert dataset.element_spec.dtype == tf.float32
    sizes = [int(x.shape[0]) for x in dataset]
    assert sizes == [8, 8, 4]
    fixed = feature_dataset(records, TINY, batch_size=8, drop_remainder=True, skips=SkipReport(verbose=False))
    assert fixed.element_spec.shape.as_list() == [8, 32, 64, 1]
    assert sum(1 for _ in fixed) == 2


def test_features_equal_the_public_log_mel(synth):
    records = read_notes(synth)[:4]
    features, kept = load_features(records, TINY, skips=SkipReport(verbose=False))
    assert [r.note_str for r in kept] == [r.note_str for r in records]
    for x, record in zip(features, kept):
        waveform, rate = sf.read(record.path, dtype="float32")
        np.testing.assert_allclose(x[..., 0], log_mel(waveform, rate, TINY), atol=1e-4)


def test_labels_travel_with_examples(synth):
    records = read_notes(synth)
    dataset = feature_dataset(
        records, TINY, batch_size=6, shuffle=True, with_labels=True, skips=SkipReport(verbose=False)
    )
    seen = []
    for x, labels in dataset:
        for i, family, source, pitch, velocity in zip(
            *(labels[k].numpy() for k in ("index", "family", "source", "pitch", "velocity"))
        ):
            record = records[i]
            assert (family, source, pitch, velocity) == (
                record.family_index,
                record.source_index,
                record.pitch,
                record.velocity,
            )
            seen.append(int(i))
    assert sorted(seen) == list(range(len(records)))


def test_normalisation_with_training_stats(synth):
    records = read_notes(synth)
    stats = compute_stats(records, TINY, skips=SkipReport(verbose=False))
    features_db, _ = load_features(records, TINY, skips=SkipReport(verbose=False))
    reference = FeatureStats.from_features(features_db)
    np.testing.assert_allclose(stats.mean, reference.mean, atol=1e-3)
    np.testing.assert_allclose(stats.std, reference.std, atol=1e-3)
    normalized, _ = load_features(records, TINY, stats, skips=SkipReport(verbose=False))
    np.testing.assert_allclose(normalized.mean(axis=(0, 2, 3)), 0.0, atol=1e-3)
    np.testing.assert_allclose(normalized.std(axis=(0, 2, 3)), 1.0, atol=1e-2)
    with pytest.raises(ValueError, match="stats have 128 mel bins, the frontend has 32"):
        feature_dataset(records, TINY, FeatureStats(np.zeros(128), np.ones(128)))


def test_stats_from_a_dataset_equal_stats_from_records(synth):
    records = read_notes(synth)
    dataset = feature_dataset(records, TINY, batch_size=7, with_labels=True, skips=SkipReport(verbose=False))
    from_dataset = compute_stats(dataset, TINY)
    from_records = compute_stats(records, TINY, skips=SkipReport(verbose=False))
    np.testing.assert_allclose(from_dataset.mean, from_records.mean, atol=1e-4)


def test_shuffle_is_seeded_and_cache_keeps_values(synth):
    records = read_notes(synth)

    def order(seed):
        dataset = feature_dataset(
            records, TINY, batch_size=20, shuffle=True, seed=seed, with_labels=True, skips=SkipReport(verbose=False)
        )
        return next(iter(dataset))[1]["index"].numpy().tolist(), dataset

    first, dataset = order(0)
    again, _ = order(0)
    other, _ = order(1)
    assert first == again and first != other
    epochs = [{int(i): x.numpy() for x, labels in dataset for i, x in zip(labels["index"], x)} for _ in range(2)]
    assert epochs[0].keys() == epochs[1].keys()
    for key in epochs[0]:  # the second (cached) epoch gives the same features
        np.testing.assert_array_equal(epochs[0][key], epochs[1][key])


def test_bad_files_are_skipped_with_reasons_and_the_epoch_goes_on(messy, capsys):
    usable, bad, folder = messy
    records = read_notes(folder)
    assert len(records) == len(usable) + len(bad)
    skips = SkipReport()
    features, kept = load_features(records, TINY, skips=skips)
    kept_paths = {r.path for r in kept}
    assert kept_paths == {str(p) for p in usable.values()}
    assert features.shape == (len(usable), 32, 64, 1)
    assert np.all(np.isfinite(features))
    assert set(skips.skipped) == {str(p) for p in bad.values()}
    assert "2 NaN or Inf samples" in skips.skipped[str(bad["nan"])]
    assert "truncated" in skips.skipped[str(bad["truncated"])]
    assert "empty file" in skips.skipped[str(bad["empty"])]
    printed = capsys.readouterr().err
    for path in bad.values():
        assert f"skipped {path}" in printed
    assert skips.change_counts() == {"cropped": 1, "downmixed": 1, "padded": 1, "resampled": 1}
    summary = skips.summary()
    assert summary.startswith(f"{len(bad)} file(s) skipped") and "1 file(s) resampled" in summary


def test_odd_files_give_the_right_features(messy):
    usable, _, folder = messy
    records = {r.path: r for r in read_notes(folder)}
    features, kept = load_features([records[str(p)] for p in usable.values()], TINY, skips=SkipReport(verbose=False))
    by_case = {case: features[[r.path for r in kept].index(str(path))][..., 0] for case, path in usable.items()}
    good = by_case["good"]
    loud = good > TINY.floor_db + 20  # near the floor, one 16-bit LSB moves a bin by ~0.1 dB

    def assert_close(case, expected, atol=0.05):
        np.testing.assert_allclose(by_case[case][loud], expected[loud], atol=atol, err_msg=case)

    assert_close("flac", good)
    assert_close("long", good)
    assert_close("pcm24", good)
    assert_close("list_first", good)
    assert_close("stereo", good - 20 * np.log10(2))  # half the amplitude
    assert np.abs(by_case["rate_44k"] - good)[:, 2:-2].max() < 1.0
    np.testing.assert_allclose(by_case["silent"], TINY.floor_db)
    assert np.all(by_case["short"][:, -8:] == TINY.floor_db) and np.any(by_case["short"][:, :8] > -30)


def test_all_files_bad_is_a_clear_error(tmp_path):
    bad = write_bad_files(tmp_path / "bad")
    records = [NoteRecord.from_path(p) for p in bad.values() if p.suffix == ".wav" and "007" not in p.name]
    skips = SkipReport(verbose=False)
    with pytest.raises(ValueError, match="None of the 4 notes could be read:\n4 file"):
        compute_stats(records, TINY, skips=skips)
    features, kept = load_features(records, TINY, skips=skips)
    assert features.shape == (0, 32, 64, 1) and kept == [] and len(skips) == 4
    with pytest.raises(ValueError, match="no records"):
        feature_dataset([], TINY)


def test_valid_looking_wavs_do_not_stop_the_epoch(tmp_path):
    """Issue 12.1: odd chunks, odd data, an ID3 tail used to kill the job inside tf.audio.decode_wav."""
    paths = write_valid_looking_wavs(tmp_path / "odd")
    skips = SkipReport(verbose=False)
    features, kept = load_features(read_notes(tmp_path / "odd"), TINY, skips=skips)
    assert len(kept) == 3 and len(skips) == 0
    expected = log_mel(tone(), RATE_16K, TINY)
    for x in features:
        np.testing.assert_allclose(x[..., 0], expected, atol=0.05)
    assert main(["inspect", str(tmp_path / "odd")]) == 0
    assert sorted(str(p) for p in paths.values()) == sorted(r.path for r in kept)


def nsynth_example(note_str, audio, family="guitar", source="acoustic", rate=16000, with_rate=True):
    labels = parse_note_name(note_str)

    def ints(*v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

    def text(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))

    features = {
        "note_str": text(note_str),
        "pitch": ints(labels["pitch"]),
        "velocity": ints(labels["velocity"]),
        "sample_rate": ints(rate),
        "audio": tf.train.Feature(float_list=tf.train.FloatList(value=audio)),
        "instrument_str": text(labels["instrument"]),
        "instrument_family": ints(0),
        "instrument_family_str": text(family),
        "instrument_source": ints(0),
        "instrument_source_str": text(source),
        "qualities": ints(*([0] * 10)),
    }
    if not with_rate:
        del features["sample_rate"]
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_tfrecord_release(tmp_path):
    path = tmp_path / "nsynth-test.tfrecord"
    nan = tone(1.0)
    nan[5] = np.nan
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(nsynth_example("guitar_acoustic_000-060-100", tone(1.0, frequency=262)))
        writer.write(nsynth_example("guitar_acoustic_000-064-100", tone(0.5, frequency=330)))
        writer.write(nsynth_example("guitar_acoustic_001-060-050", nan))
        writer.write(nsynth_example("guitar_acoustic_002-067-100", tone(2.0, rate=32000), rate=32000))
        writer.write(nsynth_example("kazoo_acoustic_000-060-100", tone(1.0), family="kazoo"))
    listing = SkipReport(verbose=False)
    records = read_notes(tmp_path, skips=listing)
    assert listing.skipped == {
        f"{path}#kazoo_acoustic_000-060-100": listing.skipped[f"{path}#kazoo_acoustic_000-060-100"]
    }
    assert "unknown instrument family 'kazoo'" in listing.skipped[f"{path}#kazoo_acoustic_000-060-100"]
    assert [r.note_str for r in records] == [
        "guitar_acoustic_000-060-100",
        "guitar_acoustic_000-064-100",
        "guitar_acoustic_001-060-050",
        "guitar_acoustic_002-067-100",
    ]
    assert records[2].velocity == 50 and records[2].instrument == "guitar_acoustic_001"
    assert len(read_notes(path, velocities=[100], skips=SkipReport(verbose=False))) == 3  # a .tfrecord directly
    skips = SkipReport(verbose=False)
    features, kept = load_features(records[:3] + records[3:], TINY, skips=skips)
    assert {r.note_str for r in kept} == {records[i].note_str for i in (0, 1, 3)}
    assert list(skips.skipped) == [records[2].path] and "NaN or Inf" in skips.skipped[records[2].path]
    assert skips.change_counts() == {"cropped": 1, "padded": 1, "resampled": 1}
    first = features[[r.note_str for r in kept].index(records[0].note_str)][..., 0]
    np.testing.assert_allclose(first, log_mel(tone(1.0, frequency=262), 16000, TINY), atol=1e-3)
    np.testing.assert_allclose(load_audio(records[1].path, 16000, 16000)[:8000], tone(0.5, frequency=330), atol=1e-6)


def test_tfrecord_notes_read_alike_one_by_one_and_streamed(tmp_path):
    """`load_audio` (one note) and `feature_dataset` (tf.data) give one TFRecord note the same features.

    The second note has no `sample_rate` feature: it is NSynth's 16 kHz on both paths,
    whatever the frontend's rate (here 8 kHz).
    """
    frontend = FrontendConfig(sample_rate=8000, fmax=4000, n_mels=32, duration=1.0, n_fft=512, hop_length=250)
    path = tmp_path / "nsynth-valid.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(nsynth_example("guitar_acoustic_000-060-100", tone(1.0, rate=32000), rate=32000))
        writer.write(nsynth_example("guitar_acoustic_000-064-100", tone(1.5, frequency=330), with_rate=False))
    records = read_notes(path)
    streamed, kept = load_features(records, frontend, skips=SkipReport(verbose=False))
    assert [r.note_str for r in kept] == [r.note_str for r in records]
    for x, record in zip(streamed, kept):
        waveform = load_audio(record.path, frontend.sample_rate, frontend.num_samples)
        np.testing.assert_allclose(x[..., 0], log_mel(waveform, frontend.sample_rate, frontend), atol=1e-4)
    # 330 Hz at 16 kHz, resampled to 8 kHz: still 330 Hz (1 Hz bins over one second).
    waveform = load_audio(kept[1].path, 8000, 8000)
    assert np.argmax(np.abs(np.fft.rfft(waveform))) == 330


def test_cached_epochs_are_fast_and_deterministic_per_seed(synth):
    records = read_notes(synth)

    def epochs(seed, count):
        start = time.perf_counter()
        dataset = feature_dataset(
            records, TINY, batch_size=4, shuffle=True, seed=seed, with_labels=True, skips=SkipReport(verbose=False)
        )
        seconds = [time.perf_counter() - start]  # the first pass fills the cache
        assert int(dataset.cardinality()) == 5  # known: Keras shows steps and does not warn
        orders = []
        for _ in range(count):
            start = time.perf_counter()
            orders.append([int(i) for _, labels in dataset for i in labels["index"]])
            seconds.append(time.perf_counter() - start)
        return orders, seconds

    orders, seconds = epochs(seed=3, count=3)
    assert epochs(seed=3, count=2)[0] == orders[:2]  # the same seed, the same orders, epoch by epoch
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1]) == list(range(len(records)))
    assert max(seconds[1:]) < seconds[0] / 2, seconds  # epochs read the in-memory cache


@pytest.mark.backend
def test_the_dataset_feeds_model_fit(synth):
    import keras

    records = read_notes(synth)
    stats = compute_stats(records, TINY, skips=SkipReport(verbose=False))
    dataset = feature_dataset(records, TINY, stats, batch_size=10, shuffle=True, skips=SkipReport(verbose=False))
    pairs = dataset.map(lambda x: (x, x))
    model = keras.Sequential([keras.Input((32, 64, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(pairs, epochs=3, verbose=0, shuffle=False)  # the dataset shuffles itself
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert not [w for w in caught if "ran out of data" in str(w.message)]  # its length is known


def test_inspect_reports_notes_skips_stats_and_speed(messy, capsys):
    usable, bad, folder = messy
    assert main(["inspect", str(folder), "--families", "flute", "guitar"]) == 0
    out = capsys.readouterr().out
    assert f"{len(usable) + len(bad)} notes listed" in out
    assert f"notes per family: flute {len(usable)}, guitar {len(bad)}" in out
    for path in bad.values():
        assert str(path) in out
    assert f"read {len(usable)} of {len(usable) + len(bad)} notes" in out and "notes/s" in out
    assert "% of bins at the floor" in out


def test_inspect_fails_clearly_without_data(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) != 0
    assert f"Data directory {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) != 0
    assert f"No notes found in {tmp_path}" in capsys.readouterr().err
    only_bad = tmp_path / "bad"
    write_bad_files(only_bad)
    assert main(["inspect", str(only_bad)]) != 0
    assert "could be read" in capsys.readouterr().err


def test_make_dataset_cache_features(synth, tmp_path, capsys):
    from keras_timbre.data.feature_cache import FeatureCache

    TINY.save(tmp_path / "frontend.json")
    argv = [
        "make-dataset",
        "cache-features",
        str(synth),
        "--out",
        str(tmp_path / "cache"),
        "--frontend",
        str(tmp_path / "frontend.json"),
        "--notes-per-shard",
        "8",
        "--families",
        "flute",
        "bass",
    ]
    assert main(argv) == 0
    assert "4 notes in 1 shards" in capsys.readouterr().out
    cache = FeatureCache.open(tmp_path / "cache", TINY)
    assert cache.num_notes == 4
    assert main(argv) == 0  # fresh: reused, not rebuilt
    assert "reusing feature cache" in capsys.readouterr().out


def test_file_cache_is_keyed_by_its_inputs(synth, tmp_path):
    records = read_notes(synth)
    prefix = str(tmp_path / "features")

    def first_batch(notes, stats=None):
        dataset = feature_dataset(notes, TINY, stats, batch_size=64, cache=prefix, skips=SkipReport(verbose=False))
        return np.concatenate([x.numpy() for x in dataset])

    all_notes = first_batch(records)
    assert len(list(tmp_path.glob("features-*.index"))) == 1
    np.testing.assert_array_equal(first_batch(records), all_notes)  # read back from the files
    assert first_batch(records[:5]).shape[0] == 5  # other notes: another cache, not the stale one
    stats = FeatureStats(np.full(32, -40.0), np.full(32, 10.0))
    np.testing.assert_allclose(first_batch(records, stats), stats.normalize(all_notes[..., 0])[..., None], atol=1e-5)
    assert len(list(tmp_path.glob("features-*.index"))) == 3


def test_special_files_named_like_tfrecords_are_counted_not_opened(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "notes.tfrecord")) as writer:
        writer.write(nsynth_example("guitar_acoustic_000-060-100", tone(1.0, frequency=262)))
    os.mkfifo(tmp_path / "pipe.tfrecord")  # opening it would block forever
    (tmp_path / "gone.tfrecord-00000-of-00002").symlink_to(tmp_path / "nowhere")
    skips = SkipReport(verbose=False)
    assert [r.note_str for r in read_notes(tmp_path, skips=skips)] == ["guitar_acoustic_000-060-100"]
    assert skips.skipped[str(tmp_path / "pipe.tfrecord")] == "not a regular file (FIFO)"
    assert skips.skipped[str(tmp_path / "gone.tfrecord-00000-of-00002")].startswith("dangling symlink")
