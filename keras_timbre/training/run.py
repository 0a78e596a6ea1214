"""The run directory: everything one training run leaves on disk.

```
RUN/
  model.keras    frontend.json    stats.npz    config.json    metrics.json
  history.csv    checkpoints/     logs/        figures/       audio/
```

The API is small:

- `create_run(path, frontend, stats, config)` makes the folder and writes
  `frontend.json`, `stats.npz` and `config.json` (atomically). Calling it again
  on an existing run with the same frontend and variant is how training resumes;
  a different one is a clear error.
- `save_model(path, model)` writes `model.keras` atomically.
- `load_run(path)` returns `Run(path, model, frontend, stats, config)`, with a
  clear error naming whatever is missing. `path` may also be the name of a
  preset, a trained run shipped with the package (`preset_names()`, in
  `keras_timbre/pretrained/NAME/`, written by `keras_timbre.training.presets`):
  an existing directory of that name wins. A preset is read-only.
- `run_config(...)` builds the `config.json` dict (variant, hyperparameters,
  data source, split, seed, package versions). The data source is stored as
  an absolute path with a fingerprint of its notes (`notes_fingerprint`, of
  `keras_timbre.data.readers`, imported here), so
  `locate_data(run)` finds the notes again from any working directory, and
  tells notes that changed from the ones the run was trained on.

Example:
>>> run = load_run("runs/demo")  # doctest: +SKIP
>>> run.frontend.feature_shape, run.config["variant"]  # doctest: +SKIP
((128, 256), 'skip+grad')
>>> load_run("nsynth-mini").path  # a shipped preset  # doctest: +SKIP
PosixPath('.../keras_timbre/pretrained/nsynth-mini')
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from keras_timbre import atomic
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.readers import notes_fingerprint
from keras_timbre.data.readers import read_notes
from keras_timbre.models.code_prior import CodePrior

MODEL_FILE = "model.keras"
FRONTEND_FILE = "frontend.json"
STATS_FILE = "stats.npz"
# The code prior fit after training (models/code_prior.py); a run without one draws codes from N(0, I).
CODE_PRIOR_FILE = "code_prior.npz"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
SUBDIRS = ("checkpoints", "logs", "figures", "audio")
LOCK_FILE = ".train.lock"
# What a preset folder holds: what inference needs of a run (the model without its optimizer state).
PRESET_FILES = (MODEL_FILE, CONFIG_FILE, FRONTEND_FILE, STATS_FILE, CODE_PRIOR_FILE)
PRESET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
# `keras_timbre.atomic`'s temporary names: ".<stem>.<random>.tmp<suffix>".
_TEMPORARY = re.compile(r"\.[^/]+\.tmp[^/]*")


@dataclasses.dataclass
class Run:
    """A loaded run directory. `model` is None when loaded with `load_model=False`."""

    path: Path
    model: Any
    frontend: FrontendConfig
    stats: FeatureStats
    config: dict[str, Any]

    @property
    def code_prior(self) -> CodePrior:
        """What random codes are drawn from: the run's `code_prior.npz`, or N(0, I) for a run without one."""
        path = self.path / CODE_PRIOR_FILE
        return CodePrior.load(path) if path.is_file() else CodePrior.standard(self.model.latent_dim)

    @property
    def variant(self) -> str:
        return str(self.config.get("variant", "unknown"))


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for config.json."""
    import importlib.metadata

    versions = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "jax", "torch", "numpy", "librosa", "keras-timbre"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        import keras

        versions["keras_backend"] = keras.backend.backend()
    except ImportError:
        pass
    return versions


def run_config(
    variant: str,
    hyperparameters: dict[str, Any],
    data: str,
    split: dict[str, Any],
    seed: int,
    data_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The dict written to config.json.

    Args:
        variant: The model variant.
        hyperparameters: Training and model settings.
        data: Where the notes are; pass an absolute path (`locate_data` reads it).
        split: How the notes were split.
        seed: The run's seed.
        data_fingerprint: `notes_fingerprint` of the notes in `data`.
    """
    config = {
        "variant": variant,
        "hyperparameters": dict(hyperparameters),
        "data": str(data),
        "split": dict(split),
        "seed": int(seed),
        "versions": package_versions(),
    }
    if data_fingerprint is not None:
        config["data_fingerprint"] = data_fingerprint
    return config


def create_run(
    path: str | os.PathLike,
    frontend: FrontendConfig,
    stats: FeatureStats,
    config: dict[str, Any],
) -> Path:
    """Creates (or re-opens, to resume) a run directory and writes its metadata.

    Raises:
        ValueError: if `path` already holds a run with another frontend or variant.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"Run path {path} exists and is not a directory")
    existing = path / CONFIG_FILE
    if existing.is_file():
        old = json.loads(existing.read_text())
        if old.get("variant") != config.get("variant"):
            raise ValueError(
                f"{path} already holds a {old.get('variant')!r} run; cannot resume it as "
                f"{config.get('variant')!r}. Use another --out directory."
            )
        if (path / FRONTEND_FILE).is_file():
            FrontendConfig.load(path / FRONTEND_FILE).check_matches(frontend, "new training data")
    for sub in SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)
    frontend.save(path / FRONTEND_FILE)
    stats.save(path / STATS_FILE)
    atomic.write_json(path / CONFIG_FILE, config)
    return path


def is_run_directory(path: str | os.PathLike) -> bool:
    """Whether `path` holds a run's `config.json` (a JSON object with the variant and package versions)."""
    try:
        config = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "variant" in config and "versions" in config


def check_run_directory(path: str | os.PathLike, data: str | os.PathLike | None = None) -> Path:
    """`path` as a Path, if `train` may write a run there: new, empty, a run directory, or a run's first moments.

    A folder that is none of these is never written into (not even a lock
    file), and neither is one that holds the training notes or lies inside
    them.

    Raises:
        ValueError: one line naming `path` and what is wrong.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a run directory; give a directory")
    root = atomic.PRESETS_ROOT.resolve()
    if root == path.resolve() or root in path.resolve().parents:
        raise ValueError(f"--out {path} is inside the package's shipped presets ({root}); train into another directory")
    if data is not None and _overlap(path, Path(data)):
        raise ValueError(f"--out {path} and the data {data} overlap; train into a directory outside the notes")
    if not path.is_dir() or is_run_directory(path):
        return path
    foreign = sorted(p.name for p in path.iterdir() if not _written_before_config(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"--out {path} is not a keras-timbre run directory and holds other files ({shown}); "
            "choose a new or empty directory"
        )
    return path


def _written_before_config(path: Path) -> bool:
    """What a run writes before its config.json: the lock, frontend and stats, its empty folders, temporaries."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return path.name in SUBDIRS and not any(path.iterdir())
    return path.name in (LOCK_FILE, FRONTEND_FILE, STATS_FILE) or _TEMPORARY.fullmatch(path.name) is not None


def _overlap(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def save_model(path: str | os.PathLike, model) -> Path:
    """Writes `RUN/model.keras` atomically (a reader never sees half a model)."""
    target = Path(path) / MODEL_FILE
    with atomic.atomic_path(target) as tmp:
        model.save(tmp)
    return target


def preset_names() -> list[str]:
    """The names of the presets installed with the package: the folders of `atomic.PRESETS_ROOT` with a run."""
    root = atomic.PRESETS_ROOT
    if not root.is_dir():
        return []
    folders = (p for p in root.iterdir() if p.is_dir() and PRESET_NAME.fullmatch(p.name))
    return sorted(p.name for p in folders if all((p / name).is_file() for name in PRESET_FILES))


def is_preset(path: str | os.PathLike) -> bool:
    """Whether `path` is a shipped preset's folder (read-only: nothing but shipping writes there)."""
    folder = atomic.preset_folder(path)
    return folder is not None and folder.resolve() == Path(path).resolve()


def run_directory(name_or_path: str | os.PathLike) -> Path:
    """The run directory `name_or_path` names: an existing directory, else the shipped preset of that name.

    Raises:
        FileNotFoundError: neither; the message lists the installed presets.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    names = preset_names()
    if len(path.parts) == 1 and path.name in names:
        return atomic.PRESETS_ROOT / path.name
    raise FileNotFoundError(
        f"Run directory {path} does not exist, and no preset shipped with the package has that name "
        f"(presets: {', '.join(names) or 'none installed'})"
    )


def load_run(path: str | os.PathLike, load_model: bool = True) -> Run:
    """Loads a run directory written by `keras_timbre.training.train`, or a shipped preset by name.

    Args:
        path: The run directory, or a preset's name (`preset_names()`); a directory of that name wins.
        load_model: Load `model.keras` too (needs the Keras backend).

    Raises:
        FileNotFoundError: naming the missing directory (and the presets) or file.
    """
    path = run_directory(path)
    needed = [FRONTEND_FILE, STATS_FILE, CONFIG_FILE] + ([MODEL_FILE] if load_model else [])
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Run directory {path} is incomplete: missing {', '.join(missing)} "
            "(was training interrupted before the first epoch finished?)"
        )
    model = None
    if load_model:
        import keras

        model = keras.saving.load_model(path / MODEL_FILE)
    return Run(
        path=path,
        model=model,
        frontend=FrontendConfig.load(path / FRONTEND_FILE),
        stats=FeatureStats.load(path / STATS_FILE),
        config=json.loads((path / CONFIG_FILE).read_text()),
    )


def locate_data(run: Run, data: str | os.PathLike | None = None) -> Path:
    """The data directory holding the notes `run` was trained on.

    `data` if given, else the path stored in config.json (absolute; a relative
    path of an older run is tried against the run directory's parent, then
    the working directory). Checked against the stored `data_fingerprint`
    when the run has one.

    Raises:
        FileNotFoundError: no such directory; the message says to pass `--data DIR`.
        ValueError: the directory holds other notes than the run was trained on.
    """
    stored = str(run.config.get("data", ""))
    if data is not None:
        candidates = [Path(data)]
    elif not stored or Path(stored).is_absolute():
        candidates = [Path(stored)] if stored else []
    else:
        candidates = [run.path.parent / stored, Path.cwd() / stored]
    found = next((path for path in candidates if path.exists()), None)
    if found is None:
        tried = f" (tried {', '.join(str(path) for path in candidates)})" if candidates else ""
        raise FileNotFoundError(
            f"Run {run.path} was trained on notes in {stored or 'an unrecorded directory'}, which is not there"
            f"{tried}; pass --data DIR with those notes"
        )
    expected = run.config.get("data_fingerprint")
    if expected:
        actual = notes_fingerprint(read_notes(found))
        if actual != expected:
            raise ValueError(
                f"{found} holds other notes than run {run.path} was trained on (fingerprint {actual}, "
                f"trained on {expected}); pass --data DIR with the training notes"
            )
    return found
