"""Readers: layouts, labels, filters, bad metadata, splits, and the nsynth-mini subset builder."""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import warnings

import pytest
import soundfile as sf
from test_audio import special_entries
from test_audio import tone
from test_audio import without_blocking

from keras_timbre.cli import main
from keras_timbre.data import NoteRecord
from keras_timbre.data import SkipReport
from keras_timbre.data import count_labels
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.data import parse_note_name
from keras_timbre.data import read_notes
from keras_timbre.data import split_notes
from keras_timbre.data.nsynth import split_tfrecord_path
from keras_timbre.data.readers import notes_fingerprint
from keras_timbre.training import run as runs


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), notes=60, seed=0, progress=False)


def test_parse_note_names():
    assert parse_note_name("bass_electronic_000-029-100") == dict(
        note_str="bass_electronic_000-029-100",
        family="bass",
        source="electronic",
        instrument="bass_electronic_000",
        pitch=29,
        velocity=100,
    )
    lead = parse_note_name("synth_lead_synthetic_004-060-127")
    assert (lead["family"], lead["source"], lead["instrument"]) == (
        "synth_lead",
        "synthetic",
        "synth_lead_synthetic_004",
    )
    assert parse_note_name("my recording") is None
    assert parse_note_name("bass_electronic_000-029") is None
    record = NoteRecord.from_path("/x/take 3.wav")
    assert (record.note_str, record.family, record.pitch, record.velocity) == ("take 3", "", -1, -1)
    assert record.family_index == -1


def test_jsonwav_layout(synth):
    records = read_notes(synth)
    assert len(records) == 60
    entries = json.loads((synth / "examples.json").read_text())
    for record in records:
        entry = entries[record.note_str]
        assert record.path == str(synth / "audio" / f"{record.note_str}.wav")
        assert (record.family, record.source, record.instrument, record.pitch, record.velocity) == (
            entry["instrument_family_str"],
            entry["instrument_source_str"],
            entry["instrument_str"],
            entry["pitch"],
            entry["velocity"],
        )
    assert read_notes(synth / "examples.json") == records
    assert records == sorted(records, key=lambda r: r.note_str)


def test_real_audio_folder(nsynth_mini):
    records = read_notes(nsynth_mini)
    assert len(records) == 1100
    counts = count_labels(records)
    assert set(counts["family"].values()) == {110} and len(counts["family"]) == 10
    first = records[0]
    assert first.note_str == "bass_electronic_000-029-100" and first.path.endswith(".flac")
    assert (first.family, first.source, first.instrument, first.pitch, first.velocity) == (
        "bass",
        "electronic",
        "bass_electronic_000",
        29,
        100,
    )


def test_filters(synth):
    every = read_notes(synth)
    flutes = read_notes(synth, families=["flute"])
    assert flutes and all(r.family == "flute" for r in flutes)
    assert {r.source for r in read_notes(synth, sources=["electronic"])} == {"electronic"}
    pitched = read_notes(synth, pitch_range=(60, 72))
    assert pitched and all(60 <= r.pitch <= 72 for r in pitched) and len(pitched) < len(every)
    loud = read_notes(synth, velocities=[100, 127])
    assert loud and all(r.velocity in (100, 127) for r in loud)
    capped = read_notes(synth, max_per_instrument=2)
    assert max(sum(1 for r in capped if r.instrument == i) for i in {r.instrument for r in capped}) == 2
    # The cap keeps an instrument's lowest and highest pitch.
    guitar = [r for r in every if r.instrument == "guitar_acoustic_000"]
    kept = [r for r in capped if r.instrument == "guitar_acoustic_000"]
    assert {r.pitch for r in kept} == {min(r.pitch for r in guitar), max(r.pitch for r in guitar)}


def test_filter_errors_name_the_problem(synth):
    with pytest.raises(ValueError, match=r"Unknown families \['kazoo'\]"):
        read_notes(synth, families=["kazoo"])
    with pytest.raises(ValueError, match=r"Unknown sources \['analog'\]"):
        read_notes(synth, sources=["analog"])
    with pytest.raises(ValueError, match=f"None of the 60 notes in {synth} pass the filters"):
        read_notes(synth, pitch_range=(0, 5))
    with pytest.raises(ValueError, match="max_per_instrument must be >= 1"):
        read_notes(synth, max_per_instrument=0)


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"Data directory {tmp_path / 'nope'} does not exist"):
        read_notes(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=f"No notes found in {tmp_path / 'empty'}"):
        read_notes(tmp_path / "empty")
    with pytest.raises(ValueError, match="is a file"):
        read_notes(tmp_path / "empty" / "notes.txt")


def test_bad_examples_json_entries_are_skipped_and_counted(synth, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(synth, root)
    entries = json.loads((root / "examples.json").read_text())
    names = sorted(entries)
    (root / "audio" / f"{names[0]}.wav").unlink()  # an entry without audio
    (root / "audio" / f"{names[1]}.wav").unlink()
    sf.write(root / "audio" / "flute_acoustic_099-060-100.wav", tone(), 16000)  # audio without an entry
    entries[names[2]]["instrument_family_str"] = "kazoo"  # unknown family
    (root / "examples.json").write_text(json.dumps(entries))
    skips = SkipReport(verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counted skips, not warnings
        records = read_notes(root, skips=skips)
    examples = root / "examples.json"
    assert skips.skipped == {
        f"{examples}: {names[0]}": f"examples.json entry without audio in {root / 'audio'}",
        f"{examples}: {names[1]}": f"examples.json entry without audio in {root / 'audio'}",
        str(root / "audio" / "flute_acoustic_099-060-100.wav"): f"audio file without an entry in {examples}",
        str(root / "audio" / f"{names[2]}.wav"): skips.skipped[str(root / "audio" / f"{names[2]}.wav")],
    }
    assert "unknown instrument family 'kazoo'" in skips.skipped[str(root / "audio" / f"{names[2]}.wav")]
    assert len(records) == 57
    (root / "examples.json").write_text("{not json")
    with pytest.raises(ValueError, match="examples.json is not valid JSON"):
        read_notes(root)


def test_metadata_skips_are_counted_once_by_inspect(synth, tmp_path, capsys):
    """Issue 12.4: examples.json problems are named, counted skips in the summary; nothing else is printed."""
    root = tmp_path / "broken"
    shutil.copytree(synth, root)
    names = sorted(json.loads((root / "examples.json").read_text()))
    (root / "audio" / f"{names[0]}.wav").unlink()
    sf.write(root / "audio" / "flute_acoustic_099-060-100.wav", tone(), 16000)
    flute = next(name for name in names if name.startswith("flute"))
    (root / "audio" / f"{flute}.wav").write_bytes(b"")  # a decoding skip, counted with the metadata ones
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["inspect", str(root), "--families", "flute"]) == 0
    captured = capsys.readouterr()
    assert "3 file(s) skipped" in captured.out and captured.out.count("flute_acoustic_099-060-100") == 1
    assert f"{names[0]}: examples.json entry without audio" in captured.out
    assert "empty file" in captured.out
    assert "Warning" not in captured.err


def test_audio_folder_with_unknown_family_and_plain_names(tmp_path):
    sf.write(tmp_path / "kazoo_acoustic_000-060-100.wav", tone(), 16000)
    sf.write(tmp_path / "my take.wav", tone(), 16000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "reed_acoustic_000-060-100.flac", tone(), 16000)
    skips = SkipReport(verbose=False)
    records = read_notes(tmp_path, skips=skips)
    assert list(skips.skipped) == [str(tmp_path / "kazoo_acoustic_000-060-100.wav")]
    assert [(r.note_str, r.family) for r in records] == [("my take", ""), ("reed_acoustic_000-060-100", "reed")]


needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="needs FIFOs")


@needs_fifos
def test_audio_folder_counts_every_entry_that_is_not_a_regular_file(tmp_path):
    sf.write(tmp_path / "flute_acoustic_000-060-100.wav", tone(), 16000, subtype="PCM_16")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "flute_acoustic_001-062-100.wav").symlink_to(tmp_path / "flute_acoustic_000-060-100.wav")
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # a loop of folders: not followed
    expected = special_entries(tmp_path)
    skips = SkipReport(verbose=False)
    records = without_blocking(lambda: read_notes(tmp_path, skips=skips))
    assert [r.note_str for r in records] == ["flute_acoustic_000-060-100", "flute_acoustic_001-062-100"]
    assert records[1].path == str(tmp_path / "sub" / "flute_acoustic_001-062-100.wav")  # the link, followed
    assert skips.skipped == {str(path): reason for path, reason in expected.items()}
    assert skips.reason_counts() == {"dangling symlink": 1, "not a regular file": 2, "symlink loop": 2}


@needs_fifos
def test_jsonwav_counts_audio_entries_that_are_not_regular_files(synth, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(synth, root)
    notes = sorted(p for p in (root / "audio").iterdir())
    fifo, dangling, device = notes[0], notes[1], notes[2]
    for path in (fifo, dangling, device):
        path.unlink()
    os.mkfifo(fifo)
    dangling.symlink_to(root / "audio" / "gone.wav")
    device.symlink_to(os.devnull)
    extra = root / "audio" / "flute_acoustic_999-060-100.wav"  # no entry in examples.json
    os.mkfifo(extra)
    skips = SkipReport(verbose=False)
    records = without_blocking(lambda: read_notes(root, skips=skips))
    assert len(records) == 57 and {fifo.stem, dangling.stem, device.stem}.isdisjoint(r.note_str for r in records)
    assert skips.skipped == {
        str(fifo): "not a regular file (FIFO)",
        str(dangling): f"dangling symlink (to {root / 'audio' / 'gone.wav'})",
        str(device): "not a regular file (character device)",
        str(extra): "not a regular file (FIFO)",
    }


def test_split_holds_out_pitches_per_instrument(nsynth_mini):
    records = read_notes(nsynth_mini)
    train, val = split_notes(records, val_fraction=0.15, seed=0)
    assert len(train) + len(val) == len(records)
    assert 0.10 < len(val) / len(records) < 0.20
    seen = {(r.instrument, r.pitch) for r in train}
    assert not any((r.instrument, r.pitch) in seen for r in val)
    # Every instrument with enough pitches contributes to validation.
    assert len({r.instrument for r in val}) > 50
    assert split_notes(records, 0.15, seed=0) == (train, val)
    assert split_notes(records, 0.15, seed=1)[1] != val
    assert split_notes(records, 0.0)[1] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_notes(records, 1.0)


def test_split_keeps_all_velocities_of_a_pitch_together():
    records = [
        NoteRecord(
            f"{p}-{v}.wav", f"flute_acoustic_000-{p:03d}-{v:03d}", "flute", "acoustic", "flute_acoustic_000", p, v
        )
        for p in range(60, 70)
        for v in (25, 100)
    ]
    train, val = split_notes(records, val_fraction=0.3)
    assert len({r.pitch for r in val}) == 3 and len(val) == 6


def test_make_dataset_nsynth_mini_from_a_release(synth, tmp_path, capsys):
    out = tmp_path / "mini"
    assert (
        main(
            [
                "make-dataset",
                "nsynth-mini",
                "--source",
                str(synth),
                "--out",
                str(out),
                "--families",
                "flute",
                "reed",
                "--per-instrument",
                "2",
            ]
        )
        == 0
    )
    records = read_notes(out)
    assert {r.family for r in records} == {"flute", "reed"}
    assert len(records) == len({r.instrument for r in records}) * 2
    assert f"Wrote {len(records)} notes to {out}" in capsys.readouterr().out
    original = {r.note_str: r for r in read_notes(synth)}
    for record in records:  # WAVs are copied byte for byte, labels kept
        assert open(record.path, "rb").read() == open(original[record.note_str].path, "rb").read()
        assert record.pitch == original[record.note_str].pitch
    assert main(["make-dataset", "nsynth-mini", "--source", str(synth), "--out", str(out)]) == 2
    assert "holds an earlier output; pass --overwrite" in capsys.readouterr().err


def test_make_dataset_nsynth_mini_reencodes_flac(nsynth_mini, tmp_path):
    out = tmp_path / "mini"
    assert (
        main(
            [
                "make-dataset",
                "nsynth-mini",
                "--source",
                str(nsynth_mini),
                "--out",
                str(out),
                "--families",
                "mallet",
                "--pitch-range",
                "60",
                "64",
                "--per-family",
                "3",
            ]
        )
        == 0
    )
    records = read_notes(out)
    assert len(records) == 3 and all(r.family == "mallet" and 60 <= r.pitch <= 64 for r in records)
    for record in records:
        info = sf.info(record.path)
        assert (info.samplerate, info.frames, info.subtype) == (16000, 64000, "PCM_16")
        flac, _ = sf.read(nsynth_mini / "audio" / f"{record.note_str}.flac", dtype="int16")
        wav, _ = sf.read(record.path, dtype="int16")
        assert abs(flac.astype(int) - wav.astype(int)).max() <= 1  # lossless, up to rounding


def _fingerprint_of_runs_0_2(records):
    # training.run.notes_fingerprint as 0.1 and 0.2 computed it: a run's stored data_fingerprint.
    def size(path):
        try:
            return os.path.getsize(path.split("#", 1)[0] if ".tfrecord#" in path else path)
        except OSError:
            return -1

    lines = sorted(f"{record.note_str}|{size(record.path)}" for record in records)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _fingerprint_of_caches_0_2(records):
    # data.feature_cache.source_fingerprint as 0.2 computed it: a cache manifest's fingerprint.
    digest = hashlib.sha256()
    stats = {}
    for record in records:
        location = split_tfrecord_path(record.path)
        file = record.path if location is None else location[0]
        if file not in stats:
            try:
                info = os.stat(file)
                stats[file] = (info.st_size, info.st_mtime_ns)
            except OSError:
                stats[file] = (-1, -1)
        digest.update(
            f"{record.path}|{record.note_str}|{record.family}|{record.source}|"
            f"{record.pitch}|{record.velocity}|{stats[file]}\n".encode()
        )
    return digest.hexdigest()[:16]


def test_one_fingerprint_keeps_the_values_runs_and_caches_stored(tmp_path):
    # WAVs, a TFRecord, NSynth's sharded TFRecords, a missing file: the digests 0.2 wrote, unchanged.
    for name, size in (("a.wav", 10), ("b.flac", 20), ("nsynth-test.tfrecord", 30), ("x.tfrecord-00000-of-00002", 40)):
        (tmp_path / name).write_bytes(b"\0" * size)
    records = [
        NoteRecord(str(tmp_path / "a.wav"), "bass_electronic_000-029-100", "bass", "electronic", "b", 29, 100),
        NoteRecord(str(tmp_path / "b.flac"), "flute_acoustic_002-070-050", "flute", "acoustic", "f", 70, 50),
        NoteRecord(str(tmp_path / "nsynth-test.tfrecord#organ_electronic_001-060-075"), "organ_electronic_001-060-075"),
        NoteRecord(str(tmp_path / "nsynth-test.tfrecord#reed_acoustic_011-061-127"), "reed_acoustic_011-061-127"),
        NoteRecord(
            str(tmp_path / "x.tfrecord-00000-of-00002#vocal_synthetic_003-062-025"), "vocal_synthetic_003-062-025"
        ),
        NoteRecord(str(tmp_path / "gone.wav"), "gone"),
    ]
    assert notes_fingerprint(records) == _fingerprint_of_runs_0_2(records)
    assert notes_fingerprint(records[::-1]) == notes_fingerprint(records)  # any order
    assert notes_fingerprint(records, exact=True) == _fingerprint_of_caches_0_2(records)
    assert notes_fingerprint(records[::-1], exact=True) != notes_fingerprint(records, exact=True)
    # The literal value of the portable hash: names and sizes only, wherever the files are.
    assert notes_fingerprint(records) == "d0ea9b6d460a2f4e"
    assert runs.notes_fingerprint is notes_fingerprint  # still importable where runs have used it
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("moved"))
    elsewhere = [dataclasses.replace(r, path=r.path.replace(str(tmp_path), str(moved))) for r in records]
    assert notes_fingerprint(elsewhere) == notes_fingerprint(records)
    assert notes_fingerprint(elsewhere, exact=True) != notes_fingerprint(records, exact=True)
    (moved / "a.wav").write_bytes(b"\0" * 11)
    assert notes_fingerprint(elsewhere) != notes_fingerprint(records)
