"""keras-timbre: timbre embeddings of instrument notes with a convolutional beta-VAE.

The public API, in the order data flows through it: audio to features, to the
model, to training, evaluation, search and export. The packages
(`keras_timbre.audio`, `.data`, `.models`, `.analysis`, `.training`,
`.evaluation`, `.tuning`, `.export`; see docs/design.md) hold the rest.

Example:
>>> import keras_timbre
>>> run = keras_timbre.train("runs/demo", epochs=2)  # doctest: +SKIP
>>> metrics = keras_timbre.evaluate("runs/demo")  # doctest: +SKIP
>>> audio = keras_timbre.load_vocoder().to_audio(log_mel_db)  # the shipped vocoder  # doctest: +SKIP

Importing the package registers its Keras classes (the layers, the models and
the `Vocoder`), so a user script can load a saved model directly:

>>> import keras
>>> model = keras.saving.load_model("runs/demo/model.keras", safe_mode=True)  # doctest: +SKIP
"""

# Nothing global changes here for a script (no import hook, no fd 2 redirection, no environment
# variable): it sees what `import keras` shows. Only on the command line (`python -m keras_timbre.cli`)
# is TensorFlow's start-up quieted, before Keras loads; a script asks with keras_timbre_quiet.quiet_start().
from keras_timbre import _startup

_startup.start_if_command_line()

import importlib  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

# Eager, unlike the rest of the API: importing the models registers every
# serializable class ("keras_timbre>TimbreVAE", ...) with Keras, without which
# keras.saving.load_model cannot find them.
with _startup.command_line_interrupts():  # seconds of imports: Ctrl-C is "Interrupted.", exit 130, on the CLI
    from keras_timbre import models as _models  # noqa: E402, F401
    from keras_timbre import vocoder as _vocoder  # noqa: E402, F401

# Public name -> (module, attribute or None for the module itself). Imported on
# first use, so that `import keras_timbre` loads only Keras and the models.
_EXPORTS = {
    "callbacks": ("keras_timbre.training.callbacks", None),
    "data": ("keras_timbre.data", None),
    "layers": ("keras_timbre.models.layers", None),
    "losses": ("keras_timbre.models.losses", None),
    "BetaWarmup": ("keras_timbre.training.callbacks", "BetaWarmup"),
    "NaNGuard": ("keras_timbre.training.callbacks", "NaNGuard"),
    "compute_stats": ("keras_timbre.data", "compute_stats"),
    "default_data_dir": ("keras_timbre.data", "default_data_dir"),
    "feature_dataset": ("keras_timbre.data", "feature_dataset"),
    "make_synthetic_dataset": ("keras_timbre.data", "make_synthetic_dataset"),
    "read_notes": ("keras_timbre.data", "read_notes"),
    "split_notes": ("keras_timbre.data", "split_notes"),
    "distribution_scope": ("keras_timbre.training.distribute", "distribution_scope"),
    "evaluate": ("keras_timbre.evaluation.evaluator", "evaluate"),
    "export_run": ("keras_timbre.export.saved_model", "export_run"),
    "export_saved_model": ("keras_timbre.export.saved_model", "export_saved_model"),
    "FeatureStats": ("keras_timbre.audio.stats", "FeatureStats"),
    "FrontendConfig": ("keras_timbre.audio.frontend", "FrontendConfig"),
    "log_mel": ("keras_timbre.audio.frontend", "log_mel"),
    "mel_to_audio": ("keras_timbre.audio.griffin_lim", "mel_to_audio"),
    "VARIANTS": ("keras_timbre.models.variants", "VARIANTS"),
    "TimbreVAE": ("keras_timbre.models.timbre_vae", "TimbreVAE"),
    "load_run": ("keras_timbre.training.run", "load_run"),
    "train": ("keras_timbre.training.trainer", "train"),
    "load_vocoder": ("keras_timbre.vocoder.load", "load_vocoder"),
    "TimbreHyperModel": ("keras_timbre.tuning.hypermodel", "TimbreHyperModel"),
    "run_search": ("keras_timbre.tuning.search", "run_search"),
}

__version__ = "0.2.0"

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
    from keras_timbre.training import callbacks
    from keras_timbre import data
    from keras_timbre.models import layers
    from keras_timbre.models import losses
    from keras_timbre.training.callbacks import BetaWarmup
    from keras_timbre.training.callbacks import NaNGuard
    from keras_timbre.data import compute_stats
    from keras_timbre.data import default_data_dir
    from keras_timbre.data import feature_dataset
    from keras_timbre.data import make_synthetic_dataset
    from keras_timbre.data import read_notes
    from keras_timbre.data import split_notes
    from keras_timbre.training.distribute import distribution_scope
    from keras_timbre.evaluation.evaluator import evaluate
    from keras_timbre.export.saved_model import export_run
    from keras_timbre.export.saved_model import export_saved_model
    from keras_timbre.audio.stats import FeatureStats
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.audio.frontend import log_mel
    from keras_timbre.audio.griffin_lim import mel_to_audio
    from keras_timbre.models.variants import VARIANTS
    from keras_timbre.models.timbre_vae import TimbreVAE
    from keras_timbre.training.run import load_run
    from keras_timbre.training.trainer import train
    from keras_timbre.vocoder.load import load_vocoder
    from keras_timbre.tuning.hypermodel import TimbreHyperModel
    from keras_timbre.tuning.search import run_search
