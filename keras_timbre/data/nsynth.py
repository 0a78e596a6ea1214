"""NSynth's TFRecord release: its feature spec, its parsing, and the `file#note_str` paths.

A TFRecord note's `NoteRecord.path` is `"<file.tfrecord>#<note_str>"`. Its
audio is the `audio` float list at the record's `sample_rate`; NSynth always
stores that feature, and a record without it is taken to be at NSynth's
16 kHz, never at whatever rate the frontend asks for. Both ways a note is
read, one at a time (`load_audio`) and streamed in `tf.data`
(`keras_timbre.data.pipeline`), parse it here and conform it with
`keras_timbre.audio.io.conform_audio`, so they give the same waveform.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import conform_audio
from keras_timbre.audio.io import load_audio as load_audio_file

TFRECORD_SEPARATOR = "#"
NSYNTH_SAMPLE_RATE = 16000
_LABEL_INTS = ("pitch", "velocity")
_LABEL_STRINGS = ("instrument_str", "instrument_family_str", "instrument_source_str")


def label_spec() -> dict:
    """`tf.io.parse_single_example` spec of a note's name and labels (no audio)."""
    import tensorflow as tf

    return {
        "note_str": tf.io.FixedLenFeature([], tf.string),
        **{name: tf.io.FixedLenFeature([], tf.int64, default_value=-1) for name in _LABEL_INTS},
        **{name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in _LABEL_STRINGS},
    }


def audio_spec() -> dict:
    """`tf.io.parse_single_example` spec of a note's name, samples and rate."""
    import tensorflow as tf

    return {
        "note_str": tf.io.FixedLenFeature([], tf.string),
        "audio": tf.io.VarLenFeature(tf.float32),
        "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=NSYNTH_SAMPLE_RATE),
    }


def parse_audio(serialized):
    """`(note_str, audio samples, sample_rate)` tensors of one serialized record."""
    import tensorflow as tf

    example = tf.io.parse_single_example(serialized, audio_spec())
    return example["note_str"], example["audio"].values, example["sample_rate"]


def is_tfrecord_name(path: Path) -> bool:
    """A TFRecord's name: `*.tfrecord` or NSynth's sharded `*.tfrecord-00000-of-00004`.

    Example:
    >>> is_tfrecord_name(Path("nsynth-train.tfrecord-00000-of-00512")), is_tfrecord_name(Path("a.wav"))
    (True, False)
    """
    return path.suffix == ".tfrecord" or ".tfrecord-" in path.name


def is_tfrecord(path: Path) -> bool:
    """A TFRecord file by its name (a regular file; a FIFO or a dangling link is not one)."""
    return path.is_file() and is_tfrecord_name(path)


def tfrecord_note_path(file: str | os.PathLike, note_str: str) -> str:
    """The `NoteRecord.path` of a note in a TFRecord file.

    Example:
    >>> tfrecord_note_path("nsynth-test.tfrecord", "bass_synthetic_033-022-050")
    'nsynth-test.tfrecord#bass_synthetic_033-022-050'
    """
    return f"{file}{TFRECORD_SEPARATOR}{note_str}"


def split_tfrecord_path(path: str) -> tuple[str, str] | None:
    """`(file, note_str)` for a TFRecord note's path, None for an audio file.

    Example:
    >>> split_tfrecord_path("nsynth-test.tfrecord#bass_synthetic_033-022-050")
    ('nsynth-test.tfrecord', 'bass_synthetic_033-022-050')
    >>> split_tfrecord_path("audio/take#2.wav") is None
    True
    """
    file, sep, key = str(path).rpartition(TFRECORD_SEPARATOR)
    if sep and (file.endswith(".tfrecord") or ".tfrecord-" in Path(file).name):
        return file, key
    return None


def read_tfrecord_note(file: str, note_str: str) -> tuple[np.ndarray, int]:
    """`(samples, sample_rate)` of one note of a TFRecord file (a scan of the file).

    Raises:
        AudioError: No such note in the file.
    """
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(file).map(parse_audio)
    for _, audio, rate in dataset.filter(lambda name, audio, rate: name == note_str).take(1):
        return audio.numpy(), int(rate)
    raise AudioError(f"{file}: no note {note_str!r} in this TFRecord")


def load_audio(path: str | os.PathLike, sample_rate: int, num_samples: int | None = None) -> np.ndarray:
    """A note's mono float32 waveform at `sample_rate`, whichever release it is in.

    Args:
        path: An audio file (see `keras_timbre.audio.io.load_audio`) or a
            TFRecord note's `"<file.tfrecord>#<note_str>"`.
        sample_rate: Target rate in Hz.
        num_samples: Target length (cropped or zero-padded), or None.

    Raises:
        AudioError: The audio cannot be read or holds NaN or Inf samples.

    Example:
    >>> waveform = load_audio("nsynth-test.tfrecord#bass_synthetic_033-022-050", 16000)  # doctest: +SKIP
    """
    location = split_tfrecord_path(str(path))
    if location is None:
        return load_audio_file(path, sample_rate, num_samples)
    audio, rate = read_tfrecord_note(*location)
    return conform_audio(audio, rate, sample_rate, num_samples, name=str(path))
