"""keras-timbre: timbre embeddings of instrument notes with a convolutional beta-VAE.

The public API, in the order data flows through it: audio to features, to the
model, to training, evaluation, search and export. Submodules
(`keras_timbre.data`, `.layers`, `.losses`, `.callbacks`, `.metrics`,
`.plots`, `.runs`) hold the rest.

Example:
>>> import keras_timbre
>>> run = keras_timbre.train("runs/demo", epochs=2)  # doctest: +SKIP
>>> metrics = keras_timbre.evaluate("runs/demo")  # doctest: +SKIP
"""

from keras_timbre import callbacks
from keras_timbre import data
from keras_timbre import layers
from keras_timbre import losses
from keras_timbre.callbacks import BetaWarmup
from keras_timbre.callbacks import NaNGuard
from keras_timbre.data import compute_stats
from keras_timbre.data import default_data_dir
from keras_timbre.data import feature_dataset
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.data import read_notes
from keras_timbre.data import split_notes
from keras_timbre.distribute import distribution_scope
from keras_timbre.evaluation import evaluate
from keras_timbre.export import export_run
from keras_timbre.export import export_saved_model
from keras_timbre.frontend import FeatureStats
from keras_timbre.frontend import FrontendConfig
from keras_timbre.frontend import log_mel
from keras_timbre.frontend import mel_to_audio
from keras_timbre.model import VARIANTS
from keras_timbre.model import TimbreVAE
from keras_timbre.runs import load_run
from keras_timbre.training import train
from keras_timbre.tuning import TimbreHyperModel
from keras_timbre.tuning import run_search

__version__ = "0.1.0"

__all__ = [
    "BetaWarmup",
    "FeatureStats",
    "FrontendConfig",
    "NaNGuard",
    "TimbreHyperModel",
    "TimbreVAE",
    "VARIANTS",
    "callbacks",
    "compute_stats",
    "data",
    "default_data_dir",
    "distribution_scope",
    "evaluate",
    "export_run",
    "export_saved_model",
    "feature_dataset",
    "layers",
    "load_run",
    "log_mel",
    "losses",
    "make_synthetic_dataset",
    "mel_to_audio",
    "read_notes",
    "run_search",
    "split_notes",
    "train",
]
