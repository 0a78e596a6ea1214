"""`load_vocoder(path=None)`: a trained `Vocoder` from a file or a run directory.

`path` may be a `.keras` file or a vocoder run directory (its `model.keras`);
None loads the package's shipped default (`keras_timbre/pretrained/vocoder.keras`)
where it is installed, else it names what to do.

Example:
>>> vocoder = load_vocoder("/work/vocoder-runs/default")  # doctest: +SKIP
>>> vocoder.frontend.feature_shape  # doctest: +SKIP
(128, 256)
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_timbre import atomic
from keras_timbre.vocoder.model import Vocoder

# Where the shipped default lives in the installed package.
PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "vocoder.keras"


def vocoder_file(path: str | os.PathLike | None = None) -> Path:
    """The `.keras` file `load_vocoder(path)` reads.

    Raises:
        FileNotFoundError: naming the path, or that no default is shipped.
    """
    if path is None:
        if not PRETRAINED.is_file():
            raise FileNotFoundError(
                f"no default vocoder is installed at {PRETRAINED}; train one with "
                "`keras-timbre train-vocoder --data DIR --out VOC` and pass VOC"
            )
        return PRETRAINED
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"no vocoder at {path} (give a .keras file or a train-vocoder run directory)")
    return path


def load_vocoder(path: str | os.PathLike | None = None) -> Vocoder:
    """The `Vocoder` in `path` (a `.keras` file or a run directory), or the shipped default if None.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: the file holds another kind of model.
    """
    import keras

    file = vocoder_file(path)
    model = keras.saving.load_model(file, compile=False)
    if not isinstance(model, Vocoder):
        raise ValueError(f"{file} holds a {type(model).__name__}, not a keras_timbre Vocoder")
    return model


def save_for_inference(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Writes the vocoder of `source` (file or run directory) to `target` without its optimizer state, atomically.

    A run's `model.keras` holds Adam's two moments beside the weights (about
    3x the size); the copy that ships (`PRETRAINED`) holds the weights only.

    Example:
    >>> save_for_inference("/work/vocoder-runs/default", "keras_timbre/pretrained/vocoder.keras")  # doctest: +SKIP
    PosixPath('keras_timbre/pretrained/vocoder.keras')
    """
    model = load_vocoder(source)
    target = Path(target)
    with atomic.atomic_path(target) as tmp:
        model.save(tmp)
    return target
