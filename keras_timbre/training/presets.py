"""Shipping a finished run as a preset: a trained model that comes with the package, loaded by name.

A preset is the part of a run directory that inference needs, in
`keras_timbre/pretrained/NAME/` (`atomic.PRESETS_ROOT`):

```
NAME/
  model.keras    the model, weights only (no optimizer state: about a third of the run's file)
  config.json    the run's config.json (variant, hyperparameters, data + data_fingerprint, split,
                 seed, versions) plus "preset": its name, the run it came from and its epochs
  frontend.json  stats.npz    code_prior.npz (what random codes are drawn from)
  README.md      what it is, generated
```

`keras_timbre.load_run("NAME")` and every command that takes a RUN load it
(`training.run.run_directory`: an existing directory of that name wins). A
preset is read-only: `keras_timbre.atomic` refuses every write inside it, so
a command writes its outputs where `--out` says, never into the package.
`save_preset` is the one writer: it builds the whole folder beside the old
one and renames it into place (`atomic.atomic_directory`), and refuses a run
that is not finished, or an existing preset without `overwrite`.

Example:
>>> save_preset("runs/nsynth-mini", "nsynth-mini")  # doctest: +SKIP
PosixPath('.../keras_timbre/pretrained/nsynth-mini')
>>> load_run("nsynth-mini").config["preset"]["epochs"]  # doctest: +SKIP
60
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras

from keras_timbre import atomic
from keras_timbre.models.variants import check_variant
from keras_timbre.training import run as runs
from keras_timbre.training.lock import holder_pid
from keras_timbre.training.resume import finished_epochs

README_FILE = "README.md"


def save_preset(
    run_dir: str | os.PathLike, name: str, overwrite: bool = False, root: str | os.PathLike | None = None
) -> Path:
    """Writes the finished run `run_dir` as the preset `name`, in `root/name` (atomically).

    Args:
        run_dir: A finished run directory of `keras-timbre train` (not itself a preset).
        name: The preset's name: lower-case letters, digits, ".", "_" and "-" (`runs.PRESET_NAME`).
        overwrite: Replace an existing preset of that name.
        root: Where presets live; the package's `keras_timbre/pretrained/` (`atomic.PRESETS_ROOT`) by default.

    Returns:
        The preset's folder.

    Raises:
        ValueError: a bad name, an existing preset without `overwrite`, or a run that is not a finished
            model run (the message says which, and what to do).
        FileNotFoundError: `run_dir` is not a run directory with a model.
    """
    if not runs.PRESET_NAME.fullmatch(name):
        raise ValueError(f"preset name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
    target = Path(atomic.PRESETS_ROOT if root is None else root) / name
    if target.exists() and not overwrite:
        raise ValueError(f"preset {name} already exists at {target}; pass --overwrite to replace it")
    run_dir = Path(run_dir)
    run = check_finished(run_dir)
    if not (run_dir / runs.CODE_PRIOR_FILE).is_file():
        raise ValueError(
            f"{run_dir} has no {runs.CODE_PRIOR_FILE} (trained before 0.7): run the same `keras-timbre train` command "
            "on it again, which fits its code prior without training, then ship it"
        )
    model = keras.saving.load_model(run_dir / runs.MODEL_FILE, compile=False)  # compile=False: no optimizer
    config = {**run.config, "preset": {"name": name, "source": str(run_dir.resolve()), "epochs": epochs(run)}}
    with atomic.atomic_directory(target, replace=overwrite) as tmp:
        # The temporary folder is already atomic; plain writes (atomic.* refuses paths under the presets).
        model.save(tmp / runs.MODEL_FILE)
        for file in (runs.FRONTEND_FILE, runs.STATS_FILE, runs.CODE_PRIOR_FILE):
            shutil.copyfile(run_dir / file, tmp / file)
        (tmp / runs.CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / README_FILE).write_text(preset_readme(config))
    return target


def epochs(run: runs.Run) -> int:
    """The epochs the run was asked to train (config.json's `hyperparameters.epochs`)."""
    return int(run.config.get("hyperparameters", {}).get("epochs", 0))


def check_finished(run_dir: Path) -> runs.Run:
    """The run in `run_dir` (without its model), if it is a finished, idle model run.

    Raises:
        ValueError: a preset, a vocoder run, an unfinished run, or one a `train` is writing.
        FileNotFoundError: not a run directory, or one without `model.keras`.
    """
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} does not exist")
    if runs.is_preset(run_dir):
        raise ValueError(f"{run_dir} is already a preset; give the run directory it was trained in")
    run = runs.load_run(run_dir, load_model=False)
    check_variant(run.variant)  # a vocoder run is not a timbre model
    if not (run_dir / runs.MODEL_FILE).is_file():
        raise FileNotFoundError(f"Run directory {run_dir} has no {runs.MODEL_FILE}")
    done, asked = finished_epochs(run_dir), epochs(run)
    if done < max(asked, 1):
        raise ValueError(
            f"run {run_dir} is not finished: {done} of {asked} epochs; finish it first "
            "(`keras-timbre train` with the same --out and settings resumes it)"
        )
    trainer = _live_trainer(run_dir)
    if trainer is not None:
        raise ValueError(f"run {run_dir} is being trained (PID {trainer}); ship it when that train ends")
    return run


def _live_trainer(run_dir: Path) -> int | None:
    """The PID of a live process holding the run's lock file, if any (a killed trainer's PID is not)."""
    pid = holder_pid(run_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


def preset_readme(config: dict) -> str:
    """The preset folder's README.md: what it is, what it was trained on, how to use it."""
    preset, split = config["preset"], config.get("split", {})
    name = preset["name"]
    return "\n".join(
        [
            f"# Preset `{name}`",
            "",
            f"A `{config.get('variant')}` model of keras-timbre {config.get('versions', {}).get('keras-timbre', '?')}, "
            f"{preset['epochs']} epochs (seed {config.get('seed')}) on the notes in `{config.get('data')}` "
            f"(fingerprint {config.get('data_fingerprint', 'not recorded')}; "
            f"{split.get('train_notes', '?')} training, {split.get('val_notes', '?')} held-out notes).",
            f"Shipped from the run `{preset['source']}` by `keras-timbre ship-preset RUN --name {name}`;",
            "../README.md says which commands trained it.",
            "",
            f"Use: `keras-timbre synthesize {name} --random --pitch 60 --out note.wav`, "
            f'or `keras_timbre.load_run("{name}")`.',
            "",
        ]
    )
