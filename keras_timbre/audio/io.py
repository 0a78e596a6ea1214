"""Audio: a file to a mono float32 waveform at the frontend's rate.

`read_audio` opens a file once: it recognises the container from its first
bytes, decodes it with soundfile (WAV of any sample type and chunk layout,
FLAC, OGG, MP3) and checks a WAV's data chunk is all there. `conform_audio`
then downmixes, resamples with librosa (soxr) and crops or pads; every load
path (files, TFRecord notes) goes through it, so one note always gives one
waveform. tensorflow-io is not used: its compiled ops do not load with
current TensorFlow, and soundfile covers the same formats.

Every file has a bounded cost, whatever its header claims: only regular files
are opened (a FIFO would block), rates outside `MIN_SAMPLE_RATE` to
`MAX_SAMPLE_RATE` and more than `MAX_CHANNELS` channels are refused before
anything is decoded, decoding stops at `decode_budget(file size)` samples, and
`conform_audio` resamples only the frames the requested length needs.

Every problem raises `AudioError` (a `ValueError`) whose message starts with
the file's path and says what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_timbre import atomic

if TYPE_CHECKING:
    from keras_timbre.audio.frontend import FrontendConfig

# Containers by their first bytes. Anything else is never handed to libsndfile:
# it would try it as MP3, and mpg123 prints its complaints on fd 2.
_RIFF_MAGIC = (b"RIFF", b"RIFX", b"RF64")
_OTHER_MAGIC = {b"fLaC": "FLAC", b"OggS": "OGG", b"FORM": "AIFF", b".snd": "AU", b"riff": "W64", b"caff": "CAF"}
_WAVE_FORMAT_MPEG = (0x0050, 0x0055)  # MPEG audio inside a WAV: decoded by mpg123 too
# What mpg123 prints on fd 2 while it searches junk for frames.
_DECODER_NOISE = re.compile(rb"^(Note: |Warning: |\[src/libmpg123/|.*mpg123)")
# fd 2 is shared by every thread: redirect it for one decode at a time.
_STDERR_LOCK = threading.Lock()

# No recording of a note has another rate (what a 1 Hz header cost: docs/data.md, "Decoding and bad input").
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 384_000
MAX_CHANNELS = 64  # 7th-order ambisonics; instrument notes have 1 or 2
# Decoding stops at max(2^20, 16 per byte of file) samples (frames x channels): a compressed file can
# promise far more audio than its bytes hold (silent FLAC, real notes: docs/data.md, "Decoding and bad input").
_DECODE_FLOOR_SAMPLES = 2**20
_DECODE_SAMPLES_PER_BYTE = 16
# Source frames kept past a crop, in periods of the lower rate: room for soxr's filter (the crop's
# error, measured over the accepted rates: docs/data.md, "Decoding and bad input").
_RESAMPLE_MARGIN = 512
_FILE_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "directory"),
)


class AudioError(ValueError):
    """A note's audio cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file holds.

    Args:
        sample_rate: Rate in Hz.
        channels: Channel count.
        frames: Samples per channel.
    """

    sample_rate: int
    channels: int
    frames: int

    def changes(self, sample_rate: int, num_samples: int) -> list[str]:
        """What loading at `sample_rate` and `num_samples` will do to this audio.

        Example:
        >>> AudioInfo(44100, 2, 44100).changes(16000, 32000)
        ['downmixed 2 channels to mono', 'resampled from 44100 Hz to 16000 Hz', 'padded from 1.000 s to 2.000 s']
        """
        notes = []
        if self.channels > 1:
            notes.append(f"downmixed {self.channels} channels to mono")
        if self.sample_rate != sample_rate:
            notes.append(f"resampled from {self.sample_rate} Hz to {sample_rate} Hz")
        length = int(round(self.frames * sample_rate / self.sample_rate))
        if length < num_samples:
            notes.append(f"padded from {length / sample_rate:.3f} s to {num_samples / sample_rate:.3f} s")
        elif length > num_samples:
            notes.append(f"cropped from {length / sample_rate:.3f} s to {num_samples / sample_rate:.3f} s")
        return notes


def decode_budget(file_size: int) -> int:
    """The most samples (frames x channels) decoded from a file of `file_size` bytes.

    Example:
    >>> decode_budget(16_000), decode_budget(1_000_000)
    (1048576, 16000000)
    """
    return max(_DECODE_FLOOR_SAMPLES, _DECODE_SAMPLES_PER_BYTE * int(file_size))


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file (or a symlink to one), found without opening it; None if it is.

    Example:
    >>> file_problem("/dev/null")
    'not a regular file (character device)'
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _missing(path)
    except OSError as error:
        return "symlink loop" if error.errno == errno.ELOOP else f"cannot be read ({error.strerror})"
    return None if stat.S_ISREG(mode) else _not_regular(mode)


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "unknown kind")
    return f"not a regular file ({kind})"


def _missing(path: str | os.PathLike) -> str:
    try:
        return f"dangling symlink (to {os.readlink(path)})"
    except OSError:  # not a symlink
        return "file not found"


def sample_rate_problem(rate: int) -> str | None:
    """Why no recording has this rate, or None if it is in `MIN_SAMPLE_RATE` to `MAX_SAMPLE_RATE` Hz."""
    if MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return None
    return f"unsupported sample rate: {rate} Hz (accepted {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz)"


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels and length of a file, from its headers (no samples decoded).

    Raises:
        AudioError: As `read_audio`, except for damage only decoding finds.
    """
    return _open_audio(Path(path), read=False)[1]


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, AudioInfo]:
    """Decodes a file as it is: float32 `(frames, channels)` and its `AudioInfo`.

    At most `decode_budget(file size)` samples are decoded; `AudioInfo.frames`
    is what the header says.

    Raises:
        AudioError: The file is missing, not a regular file, empty, not audio,
            corrupt, truncated, holds no samples, or has a rate or channel
            count no recording has.
    """
    return _open_audio(Path(path), read=True)


def _open_audio(path: Path, read: bool) -> tuple[np.ndarray | None, AudioInfo]:
    head, size = _read_head(path)
    walk = _walk_wav(path, size) if head[:4] in _RIFF_MAGIC else None
    data, info = _decode(
        path, noisy=_may_reach_mpg123(head, walk), walk=walk, budget=decode_budget(size) if read else 0
    )
    if walk is not None and walk.missing_bytes > 0:
        raise AudioError(
            f"{path}: truncated WAV: header promises {walk.data_size} bytes of audio, "
            f"the file holds {walk.data_size - walk.missing_bytes}"
        )
    if info.frames <= 0 or info.sample_rate <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: contains no audio samples")
    return data, info


def _read_head(path: Path) -> tuple[bytes, int]:
    """The first 12 bytes and the size of a regular file."""
    problem = file_problem(path)
    if problem is not None:
        raise AudioError(f"{path}: {problem}")
    with _open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(12)
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    if head[:4] in _RIFF_MAGIC or head[:4] in _OTHER_MAGIC or _is_mpeg(head):
        return head, size
    what = "a WAV/RIFF file (no RIFF header)" if path.suffix.lower() == ".wav" else "an audio file"
    raise AudioError(f"{path}: not {what}: starts with {head[:8]!r}, not WAV, FLAC, OGG or MP3")


def _open_regular(path: Path):
    """`path` opened to read, never blocking: a FIFO put there since it was checked is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise AudioError(f"{path}: cannot be read ({error.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise AudioError(f"{path}: {_not_regular(mode)}")
    return os.fdopen(fd, "rb")


def _is_mpeg(head: bytes) -> bool:
    """ID3 tag, or an MPEG audio frame sync (11 set bits)."""
    return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@dataclasses.dataclass(frozen=True)
class _WavLayout:
    format_tag: int = -1
    data_size: int = -1
    missing_bytes: int = 0
    problem: str = ""


def _walk_wav(path: Path, size: int) -> _WavLayout:
    """The fmt tag and data chunk of a RIFF file; `problem` says what soundfile will not like."""
    format_tag = -1
    with _open_regular(path) as file:
        file.seek(12)
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return _WavLayout(format_tag, problem="corrupt WAV: no data chunk")
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = file.read(min(chunk_size, 64))
                if len(body) < 16:
                    return _WavLayout(problem=f"corrupt WAV: fmt chunk of {len(body)} bytes")
                format_tag = struct.unpack("<H", body[:2])[0]
                file.seek(chunk_size + (chunk_size & 1) - len(body), os.SEEK_CUR)
            elif chunk_id == b"data":
                # 0xFFFFFFFF: a streamed WAV (or RF64) without a size; soundfile reads to the end.
                missing = 0 if chunk_size == 0xFFFFFFFF else chunk_size - (size - file.tell())
                return _WavLayout(format_tag, chunk_size, max(missing, 0))
            else:
                file.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def _may_reach_mpg123(head: bytes, walk: _WavLayout | None) -> bool:
    if walk is not None:
        return walk.format_tag in _WAVE_FORMAT_MPEG or walk.format_tag == -1
    return head[:4] not in _OTHER_MAGIC


def _decode(path: Path, noisy: bool, walk: _WavLayout | None, budget: int) -> tuple[np.ndarray | None, AudioInfo]:
    """Opens the file with soundfile and decodes up to `budget` samples (0: only its header)."""
    import soundfile as sf

    quiet = _quiet_decoder_stderr() if noisy else contextlib.nullcontext()
    opened, data = False, None
    try:
        with quiet, sf.SoundFile(str(path)) as file:
            opened = True
            info = AudioInfo(int(file.samplerate), int(file.channels), int(file.frames))
            _check_format(path, info)
            # The header's frame count only caps the read: soundfile would allocate all it promises.
            wanted = min(info.frames, budget // max(info.channels, 1))
            if budget:
                data = file.read(frames=wanted, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError
        if walk is not None and walk.problem:
            raise AudioError(f"{path}: {walk.problem}") from None
        what = "corrupt audio" if opened else "not a readable audio file"
        raise AudioError(f"{path}: {what} ({_describe(error, path)})") from None
    if data is not None and data.shape[0] < wanted:
        raise AudioError(f"{path}: truncated: header promises {info.frames} frames, decoded {data.shape[0]}")
    return data, info


def _check_format(path: Path, info: AudioInfo) -> None:
    """Refuses, before any decoding, a rate or channel count whose cost no recording justifies."""
    if info.frames <= 0 or info.sample_rate <= 0 or info.channels <= 0:
        return  # nothing to decode: reported as "contains no audio samples" after the WAV checks
    problem = sample_rate_problem(info.sample_rate)
    if problem is None and info.channels > MAX_CHANNELS:
        problem = f"too many channels: {info.channels} (accepted 1 to {MAX_CHANNELS})"
    if problem is not None:
        raise AudioError(f"{path}: {problem}")


@contextlib.contextmanager
def _quiet_decoder_stderr():
    """Keeps mpg123's lines off fd 2; anything else written meanwhile is passed on."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _DECODER_NOISE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def print_message(text: str) -> None:
    """Prints a line on stderr, never while fd 2 is redirected away from a decoder (it would be lost)."""
    with _STDERR_LOCK:
        print(text, file=sys.stderr, flush=True)


def conform_audio(
    data: np.ndarray, rate: int, sample_rate: int, num_samples: int | None = None, name: str = "audio"
) -> np.ndarray:
    """Mono float32 at `sample_rate`, cropped or zero-padded to `num_samples`.

    With `num_samples`, only the source frames that length needs (and a margin
    for the resampler's filter) are downmixed and resampled, so a long note
    costs what a short one does.

    Args:
        data: Samples `(frames,)` or `(frames, channels)`; channels are averaged.
        rate: Rate of `data` in Hz; resampled with `librosa.resample` (soxr) if
            it differs from `sample_rate`.
        sample_rate: Target rate in Hz.
        num_samples: Target length, or None to keep the length.
        name: What the samples are, for the error message (a path).

    Raises:
        AudioError: No samples, NaN or Inf samples, or a `rate` outside
            `MIN_SAMPLE_RATE` to `MAX_SAMPLE_RATE`.

    Example:
    >>> conform_audio(np.ones((8000, 2)), 8000, 16000, 20000).shape
    (20000,)
    """
    rate, sample_rate = int(rate), int(sample_rate)
    if (problem := sample_rate_problem(rate)) is not None:
        raise AudioError(f"{name}: {problem}")
    data = np.asarray(data, np.float32)
    data = data if data.ndim == 2 else data.reshape(-1, 1)
    if data.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(data.sum(dtype=np.float64)):  # any NaN or Inf, without a copy of the note
        raise AudioError(f"{name}: {_non_finite(_downmix(data))} NaN or Inf samples")
    if num_samples is not None:
        data = data[: _source_frames(num_samples, rate, sample_rate)]
    waveform = _downmix(data)
    if (bad := _non_finite(waveform)) > 0:  # a mean of huge channels can overflow
        raise AudioError(f"{name}: {bad} NaN or Inf samples")
    if rate != sample_rate:
        import librosa

        waveform = librosa.resample(waveform, orig_sr=rate, target_sr=sample_rate)
    if num_samples is not None:
        waveform = np.pad(waveform[:num_samples], (0, max(0, num_samples - waveform.shape[0])))
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    return waveform.copy() if np.may_share_memory(waveform, data) else waveform  # never a view of the caller's


def _source_frames(num_samples: int, rate: int, sample_rate: int) -> int:
    """Frames at `rate` that give `num_samples` at `sample_rate` once resampled: the crop before resampling."""
    if rate == sample_rate:
        return num_samples
    margin = math.ceil(_RESAMPLE_MARGIN * rate / min(rate, sample_rate))
    return math.ceil(num_samples * rate / sample_rate) + margin


def _downmix(data: np.ndarray) -> np.ndarray:
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)


def _non_finite(waveform: np.ndarray) -> int:
    return int(waveform.size - np.count_nonzero(np.isfinite(waveform)))


def load_audio(path: str | os.PathLike, sample_rate: int, num_samples: int | None = None) -> np.ndarray:
    """Decodes an audio file to a mono float32 waveform at `sample_rate`.

    Multi-channel audio is averaged to mono; other rates are resampled with
    `librosa.resample` (soxr); with `num_samples`, the waveform is cropped or
    zero-padded at the end to that length. (TFRecord notes:
    `keras_timbre.data.load_audio`.)

    Args:
        path: An audio file soundfile reads.
        sample_rate: Target rate in Hz.
        num_samples: Target length, or None to keep the length.

    Returns:
        float32 array (samples,).

    Raises:
        AudioError: The file cannot be decoded, is empty or truncated, or
            holds NaN or Inf samples.

    Example:
    >>> waveform = load_audio("note.flac", 16000, 64000)  # doctest: +SKIP
    """
    data, info = read_audio(path)
    return conform_audio(data, info.sample_rate, sample_rate, num_samples, name=str(path))


def _describe(error: Exception, path: Path) -> str:
    """The decoder's first line of error, without the path it repeats."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    text = text.replace(f"Error opening {str(path)!r}: ", "").replace(str(path), "the file")
    # libsndfile's message for a format it does not recognise misleads: the file is there.
    return text.replace("File does not exist or is not a regular file (possibly a pipe?).", "format not recognised")


def write_audio(path: Path, audio: np.ndarray, frontend: FrontendConfig) -> Path:
    """A waveform at the frontend's rate, written atomically as WAV."""
    import soundfile

    with atomic.atomic_path(path, suffix=".wav") as tmp:
        soundfile.write(tmp, audio, frontend.sample_rate, format="WAV")
    return path
