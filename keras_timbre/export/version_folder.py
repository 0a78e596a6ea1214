"""The export's version folder: its name, its keras-timbre record, and whether it already holds this export.

TF Serving loads `MODEL_BASE/<version>/`; an export writes one version folder
and records in `assets.extra/keras_timbre.json` (ignored by TF Serving) what it
holds: a fingerprint of the model's values, the frontend, the export settings.
Exporting the same thing again is a no-op; another keras-timbre export there
needs `overwrite=True`, and a folder holding anything else is never replaced.

Example:
>>> check_version_folder("exported/timbre/1").name
'1'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats

METADATA_PATH = Path("assets.extra") / "keras_timbre.json"


class ExportExistsError(FileExistsError):
    """The output folder already holds something else; pass `overwrite=True`."""


def model_fingerprint(model, frontend: FrontendConfig, stats: FeatureStats) -> str:
    """sha256 over the model's weights, frontend and stats: equal exports have equal ones.

    It depends on values only, not on the backend the model was loaded in.
    """
    digest = _weights_digest(model)
    digest.update(json.dumps(frontend.to_dict(), sort_keys=True).encode())
    digest.update(stats.mean.tobytes())
    digest.update(stats.std.tobytes())
    return digest.hexdigest()


def weights_fingerprint(model) -> str:
    """sha256 over a Keras model's class and weights (the vocoder an export renders with): equal values, equal ones."""
    return _weights_digest(model).hexdigest()


def _weights_digest(model):
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy(), np.float32)).tobytes())
    return digest


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The keras-timbre record of an export (fingerprint, frontend, signatures), or None."""
    record = Path(path) / METADATA_PATH
    if not record.is_file():
        return None
    return json.loads(record.read_text())


def check_version_folder(path: str | os.PathLike) -> Path:
    """`path` as a Path; raises ValueError unless its name is a version number."""
    path = Path(path)
    if not path.name.isdigit():
        raise ValueError(
            f"Export folder {path} must be a numeric version folder: TF Serving loads "
            f"MODEL_BASE/<version>/, so pass e.g. {path / '1'}"
        )
    return path


def existing_export_is_current(path: Path, fingerprint: str, settings: dict[str, Any], overwrite: bool) -> bool:
    """True if `path` already holds this export (same fingerprint and settings).

    Raises:
        ExportExistsError: `path` holds something else and `overwrite` is False.
    """
    if not path.exists():
        return False
    if not path.is_dir():
        raise ExportExistsError(f"Export folder {path} exists and is not a folder")
    if not any(path.iterdir()):
        return False
    metadata = read_export_metadata(path)
    if metadata is not None and metadata.get("fingerprint") == fingerprint:
        if all(metadata.get(key) == value for key, value in settings.items()):
            return True
    if overwrite and metadata is not None:
        return False
    if overwrite:  # never replace what keras-timbre did not write
        raise ExportExistsError(
            f"Export folder {path} holds {_describe(path, metadata, settings)}; --overwrite replaces only an "
            f"earlier keras-timbre export, so export to a new version folder such as {next_version(path)}"
        )
    raise ExportExistsError(
        f"Export folder {path} already holds {_describe(path, metadata, settings)}; pass --overwrite "
        f"(overwrite=True) to replace it, or export to a new version folder such as {next_version(path)}"
    )


def next_version(path: Path) -> Path:
    """The version folder after `path` (exported/timbre/1 -> exported/timbre/2)."""
    return path.parent / str(int(path.name) + 1)


def _describe(path: Path, metadata: dict[str, Any] | None, settings: dict[str, Any]) -> str:
    if metadata is not None:
        recorded = ", ".join(f"{key}={metadata.get(key)}" for key in settings)
        return (
            f"a different model or export settings (exported {metadata.get('exported_at')} from "
            f"{metadata.get('source')}, {recorded})"
        )
    if (path / "saved_model.pb").is_file():
        return "a SavedModel not written by keras-timbre"
    return "other files"
