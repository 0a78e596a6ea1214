"""Fuzz: hundreds of mutated audio files among good notes, through `inspect`, `train` and `cache-features`.

Every file is an NSynth-named note. Whether a file must be read or skipped is
decided from soundfile itself (it opens and decodes every frame its header
promises, all finite), plus the one rule stricter than soundfile: a WAV whose
data chunk promises more bytes than the file holds is truncated and skipped.
The three commands must read exactly the must-read files, skip each other file
with a named reason, never raise, never print decoder noise, and agree.

Hostile files (a tiny file whose header claims a 1 Hz rate, 65 channels, 2^36
frames, or two minutes of 8-channel silence in 16 KB) must cost no more than a
fixed multiple of reading a real 4 s note, each measured on its own, and a
folder of them must be read under a 3 GiB address-space limit.
"""

import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import load_audio
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


# A hostile file may cost at most this many times reading a real 4 s, 16 kHz note (peak memory and time).
COST_MULTIPLE = 20
TIME_FLOOR = 0.01  # seconds
NOTE_SAMPLES = 4 * RATE


def wav_bytes(payload, rate, channels=1, data_size=None):
    """A 16-bit PCM WAV whose header says `rate` and `channels` (whatever the payload holds)."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block & 0xFFFFFFFF, block, 16)
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def with_streaminfo(flac, rate=None, frames=None):
    """A FLAC file whose STREAMINFO claims another sample rate or total frame count."""
    flac = bytearray(flac)
    fields = int.from_bytes(flac[18:26], "big")  # 20 bits rate, 3 channels, 5 bits per sample, 36 frames
    if rate is not None:
        fields = fields & ~(0xFFFFF << 44) | rate << 44
    if frames is not None:
        fields = fields & ~(2**36 - 1) | frames
    flac[18:26] = fields.to_bytes(8, "big")
    return bytes(flac)


def silent_flac(seconds, channels):
    """A FLAC file of digital silence: about a thousand samples in each byte."""
    import io

    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", RATE, channels, format="FLAC", subtype="PCM_16") as file:
        for _ in range(int(seconds)):
            file.write(np.zeros((RATE, channels), np.int16))
    return buffer.getvalue()


def hostile_files(folder, large=False):
    """Small files whose headers claim costly audio: {path: how its skip reason starts, or None: read}.

    `large` adds the 160 KB 1 Hz WAV, which took about 20 GB before rates were checked.
    """
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(8000) * 3000).astype("<i2").tobytes()  # 16 KB of samples
    flac = encode((rng.standard_normal((8000, 1)) * 0.1).astype(np.float32), RATE, "FLAC", "PCM_16")
    au_1hz = b".snd" + struct.pack(">IIIII", 24, len(pcm), 3, 1, 1) + pcm[::-1]  # AU, big-endian PCM16, 1 Hz
    cases = {
        "wav-1hz.wav": (wav_bytes(pcm, 1), "unsupported sample rate: 1 Hz (accepted 1,000 to 384,000 Hz)"),
        "wav-999hz.wav": (wav_bytes(pcm, 999), "unsupported sample rate: 999 Hz"),
        "wav-384001hz.wav": (wav_bytes(pcm, 384001), "unsupported sample rate: 384001 Hz"),
        "wav-2147483647hz.wav": (wav_bytes(pcm, 2**31 - 1), "unsupported sample rate: 2147483647 Hz"),
        "au-1hz.wav": (au_1hz, "unsupported sample rate: 1 Hz"),
        "flac-1hz.flac": (with_streaminfo(flac, rate=1), "unsupported sample rate: 1 Hz"),
        "wav-65-channels.wav": (wav_bytes(pcm[: 65 * 2 * 100], RATE, 65), "too many channels: 65 (accepted 1 to 64)"),
        "wav-claims-4gb.wav": (wav_bytes(pcm, RATE, data_size=2**32 - 2), "truncated WAV: header promises 4294967294"),
        "flac-claims-2^36-frames.flac": (
            with_streaminfo(flac, frames=2**36 - 1),
            "corrupt audio (Internal psf_fseek() failed.)",  # libsndfile, past the 8000 frames there are
        ),
        "flac-2-minutes-8ch-silence.flac": (silent_flac(120, 8), None),
    }
    if large:
        cases["wav-1hz-160kb.wav"] = (wav_bytes(pcm * 10, 1), "unsupported sample rate: 1 Hz")
    expected = {}
    for name, (data, reason) in cases.items():
        (folder / name).write_bytes(data)
        expected[folder / name] = reason
    return expected


def cost(function, repeats=1):
    """(peak traced bytes, seconds) of `function()`, an `AudioError` included; the least of `repeats` runs."""
    peaks, times = [], []
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            function()
        except AudioError:
            pass
        times.append(time.perf_counter() - start)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return min(peaks), min(times)


def test_no_hostile_file_costs_more_than_a_multiple_of_reading_a_real_note(tmp_path):
    """Each fuzzed and hostile file, read as the pipeline reads a note (`read_audio`, `conform_audio` to 4 s)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    mutations, _ = build_files(folder)
    hostile = hostile_files(folder)
    reference = folder / "reference-4s-16khz.wav"  # a real-like note, as NSynth's jsonwav release stores it
    sf.write(reference, synthesize_note("reed", 0, 60, 100)[:NOTE_SAMPLES], RATE, subtype="PCM_16")

    def read(path):
        return lambda: load_audio(path, RATE, NOTE_SAMPLES)

    for path in (reference, *sorted(p for p, name in mutations.items() if "44100-as_written" in name)):
        read(path)()  # first calls import the resampler: not any file's cost
    reference_peak, reference_time = cost(read(reference), repeats=5)
    costs = {}
    for path in (*mutations, *hostile):
        peak, seconds = cost(read(path))
        if seconds > COST_MULTIPLE * reference_time:  # another job may have held the CPU: measure again
            peak, seconds = cost(read(path), repeats=3)
        # Time below 10 ms counts as the reference's: a scheduler hiccup on a busy machine is not a file's cost.
        costs[path.name] = (peak / reference_peak, max(seconds, TIME_FLOOR) / max(reference_time, TIME_FLOOR))
    worst = sorted(costs.items(), key=lambda item: -max(item[1]))[:5]
    print(f"\nreference: {reference_peak / 2**20:.2f} MiB, {reference_time * 1e3:.2f} ms; worst (memory x, time x):")
    print("\n".join(f"  {name}: {memory:.1f}x, {seconds:.1f}x" for name, (memory, seconds) in worst))
    over = {name: ratios for name, ratios in costs.items() if max(ratios) > COST_MULTIPLE}
    assert not over, f"costs over {COST_MULTIPLE}x a real 4 s note (memory, time): {over}"
    assert len(costs) == len(mutations) + len(hostile) >= 300


FOLDER_READER = """
import json, resource, sys, types
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
# The package's __init__ imports Keras and TensorFlow (2 GB of address space); reading files needs neither.
package = types.ModuleType("keras_timbre")
package.__path__ = [sys.argv[2]]
sys.modules["keras_timbre"] = package
from keras_timbre.audio.io import AudioError, load_audio
from keras_timbre.data.readers import read_notes
from keras_timbre.data.skips import SkipReport

assert load_audio.__code__.co_filename.startswith(sys.argv[2]), load_audio.__code__.co_filename

skips, read = SkipReport(verbose=False), []
for record in read_notes(sys.argv[1], skips=skips):
    try:
        read.append((record.path, load_audio(record.path, 16000, 64000).shape[0]))
    except AudioError as error:
        skips.skip(record.path, str(error))
print(json.dumps({"read": dict(read), "skipped": skips.skipped, "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform != "linux", reason="needs RLIMIT_AS and FIFOs")
def test_a_folder_of_hostile_files_is_read_under_a_memory_limit(tmp_path):
    """Every hostile file and odd folder entry is a counted skip with its reason; the good note and the
    silent FLAC are read; nothing needs more than 3 GiB of address space (the 160 KB 1 Hz WAV alone took 20 GB)."""
    from test_audio import special_entries

    folder = tmp_path / "notes"
    folder.mkdir()
    expected = hostile_files(folder, large=True)
    expected.update(special_entries(folder))
    good = folder / "flute_acoustic_000-060-100.wav"
    sf.write(good, synthesize_note("flute", 0, 60, 100)[:NOTE_SAMPLES], RATE, subtype="PCM_16")
    expected[good] = None
    package = Path(load_audio.__code__.co_filename).parents[1]  # the keras_timbre these tests import
    command = [sys.executable, "-c", FOLDER_READER, str(folder), str(package), str(3 * 2**30)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert not report["tensorflow"]
    assert report["read"] == {str(path): NOTE_SAMPLES for path, reason in expected.items() if reason is None}
    assert set(report["skipped"]) == {str(path) for path, reason in expected.items() if reason is not None}
    for path, reason in expected.items():
        if reason is not None:
            assert report["skipped"][str(path)].startswith(reason), (path.name, report["skipped"][str(path)])
