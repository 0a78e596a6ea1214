"""Data: NSynth-format notes to batches of normalised log-mel (see docs/data.md).

Example:
>>> from keras_timbre import data
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> records = data.read_notes(data.default_data_dir())  # doctest: +SKIP
>>> train, val = data.split_notes(records)  # doctest: +SKIP
>>> stats = data.compute_stats(train, FrontendConfig())  # doctest: +SKIP
>>> dataset = data.feature_dataset(train, FrontendConfig(), stats, shuffle=True)  # doctest: +SKIP
"""

from keras_timbre.audio.io import AudioError
from keras_timbre.audio.io import AudioInfo
from keras_timbre.audio.io import probe_audio
from keras_timbre.data.nsynth import load_audio
from keras_timbre.data.pipeline import compute_stats
from keras_timbre.data.pipeline import feature_dataset
from keras_timbre.data.pipeline import load_features
from keras_timbre.data.pipeline import waveform_dataset
from keras_timbre.data.readers import FAMILIES
from keras_timbre.data.readers import SOURCES
from keras_timbre.data.readers import NoteRecord
from keras_timbre.data.readers import count_labels
from keras_timbre.data.readers import filter_notes
from keras_timbre.data.readers import parse_note_name
from keras_timbre.data.readers import read_notes
from keras_timbre.data.skips import SkipReport
from keras_timbre.data.split import split_notes
from keras_timbre.data.synthetic import SYNTHETIC_FAMILIES
from keras_timbre.data.synthetic import default_data_dir
from keras_timbre.data.synthetic import make_synthetic_dataset
from keras_timbre.data.synthetic import synthesize_note

__all__ = [
    "AudioError",
    "AudioInfo",
    "FAMILIES",
    "NoteRecord",
    "SOURCES",
    "SYNTHETIC_FAMILIES",
    "SkipReport",
    "compute_stats",
    "count_labels",
    "default_data_dir",
    "feature_dataset",
    "filter_notes",
    "load_audio",
    "load_features",
    "make_synthetic_dataset",
    "parse_note_name",
    "probe_audio",
    "read_notes",
    "split_notes",
    "synthesize_note",
    "waveform_dataset",
]
