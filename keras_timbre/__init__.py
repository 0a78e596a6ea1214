"""keras-timbre: timbre embeddings of instrument notes with a convolutional beta-VAE.

The public API is listed here; everything else is internal.
"""

from keras_timbre.frontend import FeatureStats
from keras_timbre.frontend import FrontendConfig
from keras_timbre.frontend import log_mel
from keras_timbre.frontend import mel_to_audio

__version__ = "0.1.0"

__all__ = [
    "FeatureStats",
    "FrontendConfig",
    "log_mel",
    "mel_to_audio",
]
