"""Fuzz: hundreds of mutated audio files among good notes, through `inspect`, `train` and `cache-features`.

Every file is an NSynth-named note. Whether a file must be read or skipped is
decided from soundfile itself (it opens and decodes every frame its header
promises, all finite), plus the one rule stricter than soundfile: a WAV whose
data chunk promises more bytes than the file holds is truncated and skipped.
The three commands must read exactly the must-read files, skip each other file
with a named reason, never raise, never print decoder noise, and agree.
"""

import json
import os
import struct
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.data import synthesize_note

pytestmark = pytest.mark.slow

RATE = 16000
SECONDS = 0.5
WAV_SUBTYPES = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000)
FAMILIES = ("flute", "reed", "string", "organ")


def note(family, pitch, rate=RATE, channels=1):
    """A short synthetic note at `rate` with `channels` (each channel a little quieter)."""
    waveform = synthesize_note(family, 0, pitch, 100)[: int(SECONDS * RATE)]
    if rate != RATE:
        waveform = np.interp(np.arange(int(SECONDS * rate)) * RATE / rate, np.arange(waveform.size), waveform)
    return np.stack([waveform * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def encode(data, rate, fmt, subtype=None):
    """The bytes soundfile writes for `data` in `fmt` / `subtype`."""
    import io

    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def riff_chunks(wav):
    """[(id, payload)] of a RIFF file soundfile wrote."""
    chunks, position = [], 12
    while position + 8 <= len(wav):
        chunk_id, size = wav[position : position + 4], struct.unpack("<I", wav[position + 4 : position + 8])[0]
        chunks.append((chunk_id, wav[position + 8 : position + 8 + size]))
        position += 8 + size + (size & 1)
    return chunks


def riff(chunks, pad=True, riff_size=None, sizes=None):
    """A RIFF file of `chunks`; `sizes` overrides declared chunk sizes by id; `pad=False` drops pad bytes."""
    sizes = sizes or {}
    body = b"WAVE"
    for chunk_id, payload in chunks:
        body += chunk_id + struct.pack("<I", sizes.get(chunk_id, len(payload))) + payload
        body += b"\0" * (len(payload) % 2 if pad else 0)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def wav_mutations(wav, rng):
    """{name: bytes} of one soundfile-written WAV: reordered, extra, odd, resized, truncated, tailed."""
    chunks = riff_chunks(wav)
    fmt = next(c for c in chunks if c[0] == b"fmt ")
    data = next(c for c in chunks if c[0] == b"data")
    others = [c for c in chunks if c[0] not in (b"fmt ", b"data")]
    listing = (b"LIST", b"INFOISFT\x05\x00\x00\x00fuzz\x00")  # odd-sized: padded
    extras = [listing, (b"fact", struct.pack("<I", 1)), (b"cue ", struct.pack("<I", 0)), (b"JUNK", b"\0" * 7)]
    out = {
        "as_written": wav,
        "extra_chunks": riff([fmt, *extras, *others, data]),
        "list_first": riff([listing, fmt, *others, data]),
        "data_before_fmt": riff([data, fmt]),
        "odd_chunk_unpadded": riff([fmt, listing, data], pad=False),
        "odd_data": riff([fmt, (b"data", data[1] + b"\x01")]),
        "odd_data_unpadded": riff([fmt, (b"data", data[1] + b"\x01")], pad=False),
        "riff_size_large": riff([fmt, data], riff_size=10**9),
        "riff_size_small": riff([fmt, data], riff_size=12),
        "riff_size_zero": riff([fmt, data], riff_size=0),
        "fmt_size_short": riff([fmt, data], sizes={b"fmt ": 12}),
        "data_size_large": riff([fmt, data], sizes={b"data": len(data[1]) * 2}),
        "data_size_zero": riff([fmt, data], sizes={b"data": 0}),
        "data_size_unknown": riff([fmt, data], sizes={b"data": 0xFFFFFFFF}),
        "trailing_junk": wav + rng.bytes(333),
        "trailing_id3": wav + b"ID3\x03\x00\x00\x00\x00\x01\x00" + rng.bytes(128),
        "no_data_chunk": riff([fmt, *extras]),
        "no_fmt_chunk": riff([data]),
    }
    boundaries, position = [12], 12
    for chunk_id, payload in chunks:
        position += 8 + len(payload) + (len(payload) & 1)
        boundaries += [position - len(payload) - (len(payload) & 1), position]  # after the header, after the chunk
    for cut in sorted(set(boundaries)):
        if cut < len(wav):
            out[f"cut_at_{cut}"] = wav[:cut]
    data_start = len(wav) - len(data[1]) - (len(data[1]) & 1)
    out["cut_mid_sample"] = wav[: data_start + len(data[1]) // 2 + 1]
    return out


def compressed_mutations(encoded, rng):
    """{name: bytes} of a FLAC/OGG/MP3 file: truncated, tailed, damaged after its magic."""
    damaged = bytearray(encoded)
    damaged[8:40] = rng.bytes(32)
    return {
        "as_written": encoded,
        "cut_half": encoded[: len(encoded) // 2],
        "cut_head": encoded[:64],
        "trailing_junk": encoded + rng.bytes(500),
        "damaged_header": bytes(damaged),
    }


def build_files(folder):
    """Writes good notes and mutations; returns the paths of the mutations and the good notes."""
    rng = np.random.default_rng(0)
    good = []
    for f, family in enumerate(FAMILIES):
        for pitch in (60, 62, 64, 65, 67):
            path = folder / f"{family}_acoustic_000-{pitch:03d}-100.wav"
            sf.write(path, note(family, pitch), RATE, subtype="PCM_16")
            good.append(path)
    contents = {}
    for subtype in WAV_SUBTYPES:
        for fmt in ("WAV", "WAVEX"):
            channels, rate = int(rng.integers(1, 9)), int(rng.choice(RATES))
            wav = encode(note("reed", 60, rate, channels), rate, fmt, subtype)
            for name, data in wav_mutations(wav, rng).items():
                contents[f"{fmt}-{subtype}-{channels}ch-{rate}-{name}"] = data
    for fmt, subtype, rates in (("FLAC", "PCM_16", RATES), ("FLAC", "PCM_24", RATES), ("OGG", "VORBIS", RATES[:7])):
        for rate in rates[::2]:
            channels = int(rng.integers(1, 9))
            encoded = encode(note("string", 62, rate, channels), rate, fmt, subtype)
            for name, data in compressed_mutations(encoded, rng).items():
                contents[f"{fmt}-{subtype}-{channels}ch-{rate}-{name}"] = data
    for rate in (8000, 16000, 22050, 44100, 48000):
        encoded = encode(note("organ", 64, rate, 1 + rate % 2), rate, "MP3", "MPEG_LAYER_III")
        for name, data in compressed_mutations(encoded, rng).items():
            contents[f"MP3-{rate}-{name}"] = data
    contents["random_bytes"] = rng.bytes(5000)
    contents["text"] = b"not audio\n" * 50
    contents["empty"] = b""
    suffixes = {"FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}
    mutations = {}
    for number, (name, data) in enumerate(sorted(contents.items())):
        path = folder / f"guitar_acoustic_{number + 1:03d}-060-100{suffixes.get(name.split('-')[0], '.wav')}"
        path.write_bytes(data)
        mutations[path] = name
    return mutations, good


def declared_data_exceeds_file(path):
    """The stricter rule: a RIFF data chunk promising more bytes than follow it."""
    data = path.read_bytes()
    if data[:4] != b"RIFF":
        return False
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        if chunk_id == b"data":
            return size != 0xFFFFFFFF and size > len(data) - position - 8
        position += 8 + size + (size & 1)
    return False


def soundfile_reads(path):
    """soundfile opens the file and decodes every frame it promises, all finite."""
    try:
        with sf.SoundFile(str(path)) as file:
            promised, samples = file.frames, file.read(dtype="float32", always_2d=True)
    except Exception:
        return False
    return 0 < samples.shape[0] >= promised and bool(np.all(np.isfinite(samples)))


def cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    command = [sys.executable, "-m", "keras_timbre.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def skipped_lines(stderr):
    return {line.split("skipped ", 1)[1].split(": ", 1)[0] for line in stderr.splitlines() if " skipped /" in line}


def test_fuzzed_files_are_read_or_skipped_alike_by_every_command(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    mutations, good = build_files(folder)
    assert len(mutations) >= 300
    must_read = {str(p) for p in mutations if soundfile_reads(p) and not declared_data_exceeds_file(p)}
    must_read |= {str(p) for p in good}
    must_skip = {str(p) for p in mutations} - must_read
    (tmp_path / "frontend.json").write_text(json.dumps(dict(n_mels=32, duration=SECONDS)))

    inspect = cli("inspect", folder, "--frontend", tmp_path / "frontend.json", cwd=tmp_path)
    cache = cli("make-dataset", "cache-features", folder, "--out", tmp_path / "cache", "--frontend",
                tmp_path / "frontend.json", cwd=tmp_path)  # fmt: skip
    train = cli("train", "--data", folder, "--out", tmp_path / "run", "--epochs", 1, "--duration", SECONDS,
                "--n-mels", 32, "--latent-dim", 4, "--batch-size", 32, cwd=tmp_path)  # fmt: skip
    for name, result in (("inspect", inspect), ("cache-features", cache), ("train", train)):
        assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, f"{name}:\n{result.stderr[-3000:]}"
        assert "mpg123" not in result.stderr and "Illegal Audio-MPEG" not in result.stderr, name

    total = len(must_read) + len(must_skip)
    assert f"read {len(must_read)} of {total} notes" in inspect.stdout, inspect.stdout[-2000:]
    assert f"{len(must_skip)} file(s) skipped" in inspect.stdout
    reported = {line.strip().split(": ", 1)[0] for line in inspect.stdout.splitlines() if line.startswith("  /")}
    assert reported == must_skip

    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["notes"] == len(must_read) and set(manifest["skipped"]) == must_skip
    assert all(manifest["skipped"].values())  # every skip has a reason
    assert skipped_lines(cache.stderr) == must_skip

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["split"]["train_notes"] + config["split"]["val_notes"] == len(must_read)
    assert skipped_lines(train.stderr) == must_skip

    reasons = Counter(reason.split(":")[0].split(" (")[0] for reason in manifest["skipped"].values())
    print(f"\nfuzz: {total} files ({len(mutations)} mutations), {len(must_read)} read, {len(must_skip)} skipped")
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")
