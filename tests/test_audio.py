"""Decoding notes: formats, downmixing, resampling, crop/pad, and every kind of bad file."""

import os
import struct
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import file_problem
from keras_timbre.audio.io import read_audio
from keras_timbre.data import AudioError
from keras_timbre.data import load_audio
from keras_timbre.data import probe_audio

RATE = 16000


def pcm16_wav(samples, rate=RATE, chunks_before=(), odd_data=False, trailing=b""):
    """The bytes of a mono 16-bit WAV: extra chunks (RIFF-padded) before `data`, a stray byte, a tail."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes() + (b"\x01" if odd_data else b"")
    body = b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    for chunk_id, payload in chunks_before:
        body += chunk_id + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)
    body += b"data" + struct.pack("<I", len(pcm)) + pcm + b"\0" * (len(pcm) % 2) + trailing
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_valid_looking_wavs(folder):
    """Issue 12.1: WAVs soundfile reads that tf.audio.decode_wav rejects: {case: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    id3 = b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\0" * 16
    cases = {
        "odd_chunk": pcm16_wav(tone(), chunks_before=[(b"LIST", b"INFOabc")]),
        "odd_data": pcm16_wav(tone(), odd_data=True),
        "id3_tail": pcm16_wav(tone(), trailing=id3),
    }
    paths = {}
    for number, (case, data) in enumerate(cases.items()):
        paths[case] = folder / f"reed_acoustic_{number:03d}-060-100.wav"
        paths[case].write_bytes(data)
    return paths


def tone(seconds=1.0, rate=RATE, frequency=440.0, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_bad_files(folder):
    """Writes one file per bad-input case; returns {case: path}. Names are NSynth-style."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}

    def name(case, pitch):
        return folder / f"guitar_acoustic_{case}-{pitch:03d}-100"

    paths["empty"] = name("001", 60).with_suffix(".wav")
    paths["empty"].write_bytes(b"")
    paths["not_audio"] = name("002", 60).with_suffix(".wav")
    paths["not_audio"].write_text("this is not audio\n" * 20)
    paths["not_audio_flac"] = name("003", 60).with_suffix(".flac")
    paths["not_audio_flac"].write_bytes(b"\x00\x01garbage" * 100)
    good = name("004", 60).with_suffix(".wav")
    sf.write(good, tone(), RATE, subtype="PCM_16")
    paths["truncated"] = name("005", 60).with_suffix(".wav")
    paths["truncated"].write_bytes(good.read_bytes()[: 44 + 1000])
    paths["corrupt_header"] = name("006", 60).with_suffix(".wav")
    paths["corrupt_header"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x00" * 200)
    nan = tone()
    nan[100] = np.nan
    nan[200] = np.inf
    paths["nan"] = name("007", 60).with_suffix(".wav")
    sf.write(paths["nan"], nan, RATE, subtype="FLOAT")
    noisy = name("008", 60).with_suffix(".flac")
    sf.write(noisy, np.random.default_rng(0).uniform(-0.5, 0.5, RATE).astype(np.float32), RATE)
    paths["truncated_flac"] = name("009", 60).with_suffix(".flac")
    paths["truncated_flac"].write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    good.unlink()
    noisy.unlink()
    return paths


def write_odd_but_usable_files(folder, seconds=1.0):
    """Files the pipeline must accept with a change: {case: path}."""
    folder.mkdir(parents=True, exist_ok=True)

    def name(case, pitch):
        return folder / f"flute_acoustic_{case}-{pitch:03d}-100"

    paths = {
        "good": name("000", 60).with_suffix(".wav"),
        "rate_44k": name("001", 60).with_suffix(".wav"),
        "stereo": name("002", 60).with_suffix(".wav"),
        "short": name("003", 60).with_suffix(".wav"),
        "long": name("004", 60).with_suffix(".wav"),
        "silent": name("005", 60).with_suffix(".wav"),
        "flac": name("006", 60).with_suffix(".flac"),
        "pcm24": name("007", 60).with_suffix(".wav"),
        "ogg": name("008", 60).with_suffix(".ogg"),
        "list_first": name("009", 60).with_suffix(".wav"),
    }
    sf.write(paths["good"], tone(seconds), RATE, subtype="PCM_16")
    sf.write(paths["rate_44k"], tone(seconds, rate=44100), 44100, subtype="PCM_16")
    sf.write(
        paths["stereo"], np.stack([tone(seconds), np.zeros(int(seconds * RATE), np.float32)], 1), RATE, subtype="PCM_16"
    )
    sf.write(paths["short"], tone(seconds / 4), RATE, subtype="PCM_16")
    sf.write(paths["long"], tone(seconds * 3), RATE, subtype="PCM_16")
    sf.write(paths["silent"], np.zeros(int(seconds * RATE), np.float32), RATE, subtype="PCM_16")
    sf.write(paths["flac"], tone(seconds), RATE, subtype="PCM_16")
    sf.write(paths["pcm24"], tone(seconds), RATE, subtype="PCM_24")
    sf.write(paths["ogg"], tone(seconds), RATE)
    # A padding chunk before "fmt ": valid WAV outside the conservative in-graph route.
    wav = paths["good"].read_bytes()
    listing = b"JUNK" + struct.pack("<I", 6) + b"\0" * 6
    body = wav[12:]
    paths["list_first"].write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(listing) + len(body)) + b"WAVE" + listing + body
    )
    return paths


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def usable_files(tmp_path_factory):
    return write_odd_but_usable_files(tmp_path_factory.mktemp("usable"))


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "empty file"),
        ("not_audio", "not a WAV/RIFF file"),
        ("not_audio_flac", "not an audio file: starts with"),
        ("truncated", "truncated WAV: header promises 32000 bytes of audio, the file holds 1000"),
        ("corrupt_header", "corrupt WAV"),
        ("nan", "2 NaN or Inf samples"),
        ("truncated_flac", r"corrupt audio \(Error : flac decoder lost sync"),
    ],
)
def test_bad_files_raise_naming_the_file(bad_files, case, message):
    path = bad_files[case]
    with pytest.raises(AudioError, match=message) as error:
        load_audio(path, RATE, RATE)
    assert str(error.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found") as error:
        load_audio(tmp_path / "nope.wav", RATE)
    assert "nope.wav" in str(error.value)


def special_entries(folder):
    """Entries named like notes that are not regular files: {path: how the skip reason starts}.

    A dangling symlink, a two-link loop, a FIFO and a symlink to a character device (/dev/null).
    """
    dangling, loop_a, loop_b, fifo, device = (folder / f"flute_acoustic_9{n:02d}-060-100.wav" for n in range(5))
    dangling.symlink_to(folder / "no-such-note.wav")
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    os.mkfifo(fifo)  # opening it to read would block until a writer came
    device.symlink_to(os.devnull)
    return {
        dangling: f"dangling symlink (to {folder / 'no-such-note.wav'})",
        loop_a: "symlink loop",
        loop_b: "symlink loop",
        fifo: "not a regular file (FIFO)",
        device: "not a regular file (character device)",
    }


def without_blocking(function, seconds=20):
    """`function()`'s result, or its exception re-raised; fails if it is still running after `seconds`."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a FIFO was opened"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="needs FIFOs and symlinks")
def test_special_files_are_refused_by_name_without_being_opened(tmp_path):
    for path, reason in special_entries(tmp_path).items():
        assert file_problem(path) == reason
        for read in (read_audio, probe_audio, lambda p: load_audio(p, RATE, RATE)):
            with pytest.raises(AudioError) as error:
                without_blocking(lambda: read(path))
            assert str(error.value) == f"{path}: {reason}"
    sf.write(tmp_path / "note.wav", tone(), RATE, subtype="PCM_16")
    (tmp_path / "link.wav").symlink_to(tmp_path / "note.wav")  # followed, as before
    assert file_problem(tmp_path / "link.wav") is None
    np.testing.assert_array_equal(load_audio(tmp_path / "link.wav", RATE), load_audio(tmp_path / "note.wav", RATE))


def test_probe_reads_headers(usable_files):
    info = probe_audio(usable_files["rate_44k"])
    assert (info.sample_rate, info.channels, info.frames) == (44100, 1, 44100)
    assert info.changes(RATE, RATE) == ["resampled from 44100 Hz to 16000 Hz"]
    assert probe_audio(usable_files["stereo"]).changes(RATE, RATE) == ["downmixed 2 channels to mono"]
    assert probe_audio(usable_files["short"]).changes(RATE, RATE) == ["padded from 0.250 s to 1.000 s"]
    assert probe_audio(usable_files["long"]).changes(RATE, RATE) == ["cropped from 3.000 s to 1.000 s"]
    assert probe_audio(usable_files["good"]).changes(RATE, RATE) == []


def test_formats_decode_to_the_same_waveform(usable_files):
    reference = load_audio(usable_files["good"], RATE)
    assert reference.dtype == np.float32 and reference.shape == (RATE,)
    # 16-bit encoders may round differently: within one LSB.
    np.testing.assert_allclose(load_audio(usable_files["flac"], RATE), reference, atol=1.01 / 32768)
    np.testing.assert_allclose(load_audio(usable_files["pcm24"], RATE), reference, atol=1e-4)
    np.testing.assert_array_equal(load_audio(usable_files["list_first"], RATE), reference)
    ogg = load_audio(usable_files["ogg"], RATE, RATE)  # lossy: same length and loudness
    assert ogg.shape == (RATE,) and abs(np.std(ogg) - np.std(reference)) < 0.05


def test_stereo_is_averaged(usable_files):
    mono = load_audio(usable_files["stereo"], RATE)
    np.testing.assert_allclose(mono, load_audio(usable_files["good"], RATE) / 2, atol=1e-4)


def test_other_rates_are_resampled(usable_files):
    resampled = load_audio(usable_files["rate_44k"], RATE)
    assert resampled.shape == (RATE,)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.argmax(spectrum) == 440  # 1 Hz bins: the tone stays at 440 Hz
    reference = load_audio(usable_files["good"], RATE)
    assert np.abs(resampled[100:-100] - reference[100:-100]).max() < 0.01


def test_crop_and_pad(usable_files):
    short = load_audio(usable_files["short"], RATE, RATE)
    assert short.shape == (RATE,) and np.all(short[RATE // 4 :] == 0) and np.any(short[: RATE // 4] != 0)
    long = load_audio(usable_files["long"], RATE, RATE)
    np.testing.assert_allclose(long, load_audio(usable_files["good"], RATE), atol=1e-4)


def test_silence_loads_as_zeros(usable_files):
    silent = load_audio(usable_files["silent"], RATE, RATE)
    assert silent.shape == (RATE,) and not np.any(silent)


def test_valid_looking_wavs_decode(tmp_path):
    reference = tone()
    for case, path in write_valid_looking_wavs(tmp_path).items():
        np.testing.assert_allclose(load_audio(path, RATE), reference, atol=2 / 32767, err_msg=case)
        assert probe_audio(path).frames == RATE, case


def test_random_bytes_are_not_a_wav(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioError, match="not a WAV/RIFF file") as error:
        load_audio(path, RATE)
    assert str(error.value).startswith(str(path)) and "pipe" not in str(error.value)


def test_decoder_noise_stays_off_stderr(tmp_path, capfd):
    """mpg123 prints on fd 2 when it searches junk for MP3 frames; none of it may reach the user."""
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + np.random.default_rng(1).bytes(20000))
    sync = tmp_path / "sync.mp3"  # an MPEG frame sync, then garbage
    sync.write_bytes(b"\xff\xfb\x90\x00" + np.random.default_rng(2).bytes(20000))
    for path in (junk, sync):
        with pytest.raises(AudioError):
            load_audio(path, RATE)
    assert capfd.readouterr().err == ""


def test_other_writes_to_stderr_pass_while_decoder_noise_is_dropped(tmp_path, capfd):
    from keras_timbre.audio import io

    with io._quiet_decoder_stderr():
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 0.\nkept line\n")
    assert capfd.readouterr().err == "kept line\n"


def test_read_audio_and_conform(usable_files):
    data, info = read_audio(usable_files["stereo"])
    assert data.shape == (RATE, 2) and (info.channels, info.sample_rate) == (2, RATE)
    np.testing.assert_allclose(conform_audio(data, RATE, RATE), data.mean(axis=1))
    with pytest.raises(AudioError, match="x.wav: contains no audio samples"):
        conform_audio(np.zeros((0, 1)), RATE, RATE, name="x.wav")
