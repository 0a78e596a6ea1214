"""A trained neural vocoder: the frontend's log-mel back to audio, in place of Griffin-Lim.

- `keras_timbre.vocoder.layers`: `ConvNeXtBlock`, `VocosBackbone`, `ISTFTHead`, `overlap_add_istft`.
- `keras_timbre.vocoder.losses`: multi-resolution STFT and mel L1 losses.
- `keras_timbre.vocoder.model`: `Vocoder` (`to_audio`).
- `keras_timbre.vocoder.render`: `renderer_for`, what every listening path uses.

Training is `keras_timbre.training.vocoder.train_vocoder` (a resumable run directory).
- `keras_timbre.vocoder.load`: `load_vocoder`.
"""

from keras_timbre.vocoder.load import load_vocoder
from keras_timbre.vocoder.model import FrontendMismatchError, Vocoder

__all__ = ["FrontendMismatchError", "Vocoder", "load_vocoder"]
