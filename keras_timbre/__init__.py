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

import importlib
from typing import TYPE_CHECKING

# Public name -> (module, attribute or None for the module itself). Imported on
# first use, so that `import keras_timbre` stays fast and the CLI can set
# TensorFlow's log level before TensorFlow loads.
_EXPORTS = {
    "callbacks": ("keras_timbre.callbacks", None),
    "data": ("keras_timbre.data", None),
    "layers": ("keras_timbre.layers", None),
    "losses": ("keras_timbre.losses", None),
    "BetaWarmup": ("keras_timbre.callbacks", "BetaWarmup"),
    "NaNGuard": ("keras_timbre.callbacks", "NaNGuard"),
    "compute_stats": ("keras_timbre.data", "compute_stats"),
    "default_data_dir": ("keras_timbre.data", "default_data_dir"),
    "feature_dataset": ("keras_timbre.data", "feature_dataset"),
    "make_synthetic_dataset": ("keras_timbre.data", "make_synthetic_dataset"),
    "read_notes": ("keras_timbre.data", "read_notes"),
    "split_notes": ("keras_timbre.data", "split_notes"),
    "distribution_scope": ("keras_timbre.distribute", "distribution_scope"),
    "evaluate": ("keras_timbre.evaluation", "evaluate"),
    "export_run": ("keras_timbre.export", "export_run"),
    "export_saved_model": ("keras_timbre.export", "export_saved_model"),
    "FeatureStats": ("keras_timbre.frontend", "FeatureStats"),
    "FrontendConfig": ("keras_timbre.frontend", "FrontendConfig"),
    "log_mel": ("keras_timbre.frontend", "log_mel"),
    "mel_to_audio": ("keras_timbre.frontend", "mel_to_audio"),
    "VARIANTS": ("keras_timbre.model", "VARIANTS"),
    "TimbreVAE": ("keras_timbre.model", "TimbreVAE"),
    "load_run": ("keras_timbre.runs", "load_run"),
    "train": ("keras_timbre.training", "train"),
    "TimbreHyperModel": ("keras_timbre.tuning", "TimbreHyperModel"),
    "run_search": ("keras_timbre.tuning", "run_search"),
}

__version__ = "0.1.0"

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_timbre' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # static analysers see the real imports
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
