"""`renderer_for(frontend, choice)`: the one way the package turns log-mel into what a user hears.

Every listening path (the CLI's WAVs, evaluation audio, the explorer page,
TensorBoard, figures' audio) asks this module for a `Renderer` and calls its
`to_audio(log_mel_db)`. The choice (`--vocoder` on the command line):

- None or `"default"`: the shipped vocoder (`keras_timbre/pretrained/vocoder.keras`)
  where it is installed and was trained on the run's features, else Griffin-Lim,
  so a run with other features (the tests' tiny frontends) still renders;
- `"griffin-lim"`: librosa's Griffin-Lim, the reference and the fallback;
- a path: that vocoder (a `.keras` file or a `train-vocoder` run directory); one
  trained on other features is refused with a one-line `FrontendMismatchError`.

Example:
>>> from keras_timbre.audio.frontend import FrontendConfig
>>> renderer = renderer_for(FrontendConfig(n_mels=16, duration=0.1), "griffin-lim", n_iter=2)
>>> renderer.name
'Griffin-Lim (2 it.)'
>>> renderer.to_audio(np.full((3, 16, 6), -20.0)).shape
(3, 1600)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.griffin_lim import griffin_lim_audio, mel_to_audio
from keras_timbre.audio.io import write_audio
from keras_timbre.vocoder.load import PRETRAINED, load_vocoder, vocoder_file
from keras_timbre.vocoder.model import FrontendMismatchError, Vocoder

GRIFFIN_LIM = "griffin-lim"
DEFAULT = "default"
CHOICES_HELP = (
    "'default' (the shipped vocoder where it fits the run's features, else Griffin-Lim), "
    "'griffin-lim', or a vocoder PATH (a .keras file or a train-vocoder run)"
)
_loaded: dict[tuple[Path, int], Vocoder] = {}


@dataclass
class GriffinLimRenderer:
    """Griffin-Lim on the filter bank's pseudo-inverse: librosa's NNLS `mel_to_audio`, or batched (`fast`)."""

    frontend: FrontendConfig
    n_iter: int = 64
    fast: bool = False

    @property
    def name(self) -> str:
        return f"Griffin-Lim ({self.n_iter} it.)"

    def to_audio(self, log_mel_db: np.ndarray) -> np.ndarray:
        """Audio `(notes, num_samples)` float32 for dB log-mel `(notes, n_mels, n_frames)`."""
        features = np.asarray(log_mel_db, np.float32)
        if len(features) == 0:
            return np.zeros((0, self.frontend.num_samples), np.float32)
        if self.fast:
            return griffin_lim_audio(features, self.frontend, n_iter=self.n_iter)
        return np.stack([mel_to_audio(note, self.frontend, n_iter=self.n_iter) for note in features])


@dataclass
class VocoderRenderer:
    """A trained `Vocoder`, its output fitted to the run's note length."""

    vocoder: Vocoder
    frontend: FrontendConfig
    source: str

    @property
    def name(self) -> str:
        return f"vocoder ({self.source})"

    def to_audio(self, log_mel_db: np.ndarray) -> np.ndarray:
        """Audio `(notes, num_samples)` float32 for dB log-mel `(notes, n_mels, n_frames)`."""
        import librosa

        return librosa.util.fix_length(self.vocoder.to_audio(log_mel_db), size=self.frontend.num_samples)


Renderer = GriffinLimRenderer | VocoderRenderer


def renderer_for(
    frontend: FrontendConfig, choice: str | os.PathLike | None = None, n_iter: int = 64, fast: bool = False
) -> Renderer:
    """The `Renderer` for `choice` (module docstring) and a run's `frontend`.

    Args:
        frontend: The features the renderer will be given.
        choice: None or "default", "griffin-lim", or a vocoder path.
        n_iter: Griffin-Lim iterations, where Griffin-Lim renders.
        fast: Griffin-Lim batched on the pseudo-inverse rather than librosa's NNLS per note.

    Raises:
        FileNotFoundError: `choice` is a path with no vocoder there.
        FrontendMismatchError: the vocoder at `choice` was trained on other features.
    """
    if choice == GRIFFIN_LIM:
        return GriffinLimRenderer(frontend, n_iter, fast)
    if choice in (None, DEFAULT):
        if not PRETRAINED.is_file():
            return GriffinLimRenderer(frontend, n_iter, fast)
        vocoder = _load(PRETRAINED)
        try:
            vocoder.check_frontend(frontend)
        except FrontendMismatchError:
            return GriffinLimRenderer(frontend, n_iter, fast)
        return VocoderRenderer(vocoder, frontend, "shipped default")
    vocoder = _load(Path(choice))
    vocoder.check_frontend(frontend)
    return VocoderRenderer(vocoder, frontend, str(choice))


def _load(path: Path) -> Vocoder:
    # One load per file version: the explorer and evaluation render many batches, and a vocoder
    # still training in the same process (a notebook) is reloaded once its file is replaced.
    file = vocoder_file(path).resolve()
    key = (file, file.stat().st_mtime_ns)
    if key not in _loaded:
        _loaded[key] = load_vocoder(file)
    return _loaded[key]


def write_wavs(renderer: Renderer, paths, log_mel_db: np.ndarray) -> list[Path]:
    """Each of `log_mel_db (notes, n_mels, n_frames)` rendered in one batch and written atomically to its path."""
    audio = renderer.to_audio(log_mel_db)
    return [write_audio(Path(path), clip, renderer.frontend) for path, clip in zip(paths, audio)]
