"""Audio: a file to a mono float32 waveform at the frontend's rate.

`probe_audio` checks a file cheaply (header only) and says whether TensorFlow
can decode it inside the graph: `tf.audio.decode_wav` reads only 16-bit PCM
WAV. `load_audio` decodes anything soundfile reads (WAV of any sample type,
FLAC, OGG, MP3), downmixes, resamples with librosa (soxr) and crops or pads.
tensorflow-io is not used: its compiled ops do not load with current
TensorFlow, and soundfile covers the same formats.

Every problem raises `AudioError` (a `ValueError`) whose message starts with
the file's path and says what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import numpy as np

_WAVE_FORMAT_PCM = 1


class AudioError(ValueError):
    """A note's audio cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says.

    Args:
        sample_rate: Rate in Hz.
        channels: Channel count.
        frames: Samples per channel.
        tf_decodable: True if `tf.audio.decode_wav` can decode it (16-bit PCM
            WAV with all its data present).
    """

    sample_rate: int
    channels: int
    frames: int
    tf_decodable: bool = False

    def changes(self, sample_rate: int, num_samples: int) -> list[str]:
        """What loading at `sample_rate` and `num_samples` will do to this audio."""
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


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Reads a file's header: rate, channels, length, and whether TF decodes it.

    Raises:
        AudioError: The file is missing, empty, not audio, corrupt, truncated,
            or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as file:
        head = file.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        info = _probe_wav(path, size)
        if info is not None:
            return info
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioError(f"{path}: not a readable audio file ({_describe(error, path)})") from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: contains no audio samples")
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), tf_decodable=False)


def _probe_wav(path: Path, size: int) -> AudioInfo | None:
    """A WAV header walk; None where soundfile should judge (unusual layouts)."""
    fmt = None
    with open(path, "rb") as file:
        file.seek(12)
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                raise AudioError(f"{path}: corrupt WAV: no data chunk")
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                first = file.tell() == 20
                body = file.read(chunk_size)
                if len(body) < 16:
                    raise AudioError(f"{path}: corrupt WAV: fmt chunk of {len(body)} bytes")
                audio_format, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                # In-graph decoding only for the plain layout every tf.audio.decode_wav
                # version accepts (older ones want fmt first, 16 or 18 bytes, consistent
                # 16-bit PCM); anything else goes through soundfile, never a failed epoch.
                tf_decodable = (
                    first
                    and chunk_size in (16, 18)
                    and audio_format == _WAVE_FORMAT_PCM
                    and bits == 16
                    and block_align == 2 * channels
                    and byte_rate == block_align * rate
                )
                fmt = (channels, rate, block_align)
                if chunk_size & 1:
                    file.seek(1, os.SEEK_CUR)
            elif chunk_id == b"data":
                if fmt is None:
                    raise AudioError(f"{path}: corrupt WAV: data before fmt chunk")
                channels, rate, block_align = fmt
                if channels == 0 or rate == 0 or block_align == 0:
                    raise AudioError(f"{path}: corrupt WAV: {channels} channels at {rate} Hz")
                if chunk_size == 0xFFFFFFFF:
                    return None  # streamed WAV without a size: let soundfile read it
                available = size - file.tell()
                if chunk_size == 0:
                    raise AudioError(f"{path}: contains no audio samples")
                if chunk_size > available:
                    raise AudioError(
                        f"{path}: truncated WAV: header promises {chunk_size} bytes of audio, "
                        f"the file holds {available}"
                    )
                return AudioInfo(rate, channels, chunk_size // block_align, tf_decodable)
            else:
                file.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def load_audio(path: str | os.PathLike, sample_rate: int, num_samples: int | None = None) -> np.ndarray:
    """Decodes a note to a mono float32 waveform at `sample_rate`.

    Multi-channel audio is averaged to mono; other rates are resampled with
    `librosa.resample` (soxr); with `num_samples`, the waveform is cropped or
    zero-padded at the end to that length.

    Args:
        path: An audio file soundfile reads, or a TFRecord note's
            `"<file.tfrecord>#<note_str>"`.
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
    from keras_timbre.data.readers import split_tfrecord_path  # TODO(layout): TFRecord notes belong to data/

    location = split_tfrecord_path(str(path))
    if location is not None:
        waveform, rate = _read_tfrecord_note(*location)
    else:
        waveform, rate = _read_file(Path(path))
    if not np.all(np.isfinite(waveform)):
        bad = int(np.sum(~np.isfinite(waveform)))
        raise AudioError(f"{path}: {bad} NaN or Inf samples")
    if rate != sample_rate:
        import librosa

        waveform = librosa.resample(waveform, orig_sr=rate, target_sr=sample_rate)
    if num_samples is not None:
        waveform = waveform[:num_samples]
        waveform = np.pad(waveform, (0, num_samples - waveform.shape[0]))
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    info = probe_audio(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # LibsndfileError, RuntimeError
        raise AudioError(f"{path}: corrupt audio ({_describe(error, path)})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if data.shape[0] < info.frames:
        raise AudioError(f"{path}: truncated: header promises {info.frames} frames, decoded {data.shape[0]}")
    return data.mean(axis=1), int(rate)


def _read_tfrecord_note(file: str, note_str: str) -> tuple[np.ndarray, int]:
    import tensorflow as tf

    spec = {
        "note_str": tf.io.FixedLenFeature([], tf.string),
        "audio": tf.io.VarLenFeature(tf.float32),
        "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=16000),
    }
    dataset = tf.data.TFRecordDataset(file).map(lambda x: tf.io.parse_single_example(x, spec))
    for example in dataset.filter(lambda e: e["note_str"] == note_str).take(1):
        return example["audio"].values.numpy(), int(example["sample_rate"])
    raise AudioError(f"{file}: no note {note_str!r} in this TFRecord")


def _describe(error: Exception, path: Path) -> str:
    """The decoder's first line of error, without the path it repeats."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text.replace(f"Error opening {str(path)!r}: ", "").replace(str(path), "the file")
