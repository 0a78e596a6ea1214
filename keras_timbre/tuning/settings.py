"""A search's settings, `OUT/search.json`: what a rerun in the same directory must repeat to resume it.

The space is stored as KerasTuner serialises it (`HyperParameter.get_config`),
one entry per name; `possible_values` and `varied` read what its entries can
take (the hypermodel's checks and the objective's use them).

Example:
>>> import keras_tuner as kt
>>> space = kt.HyperParameters()
>>> _ = space.Float("beta", 1e-3, 0.1, sampling="log")
>>> space_config(space)["beta"]["sampling"]
'log'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras_tuner as kt

from keras_timbre import atomic

SEARCH_FILE = "search.json"
_TYPES = kt.engine.hyperparameters


def space_config(space: kt.HyperParameters) -> dict[str, dict[str, Any]]:
    """name -> `{"type": "Float", "min_value": ..., ...}` for every entry of `space`."""
    return {
        entry.name: {"type": type(entry).__name__, **{k: v for k, v in entry.get_config().items() if k != "name"}}
        for entry in space.space
    }


def possible_values(entry: kt.engine.hyperparameters.HyperParameter) -> list[Any]:
    """The values a KerasTuner entry can take (a range: its ends)."""
    if isinstance(entry, _TYPES.Fixed):
        return [entry.value]
    if isinstance(entry, _TYPES.Boolean):
        return [False, True]
    if isinstance(entry, _TYPES.Choice):
        return list(entry.values)
    return [entry.min_value, entry.max_value]


def varied(space: kt.HyperParameters) -> set[str]:
    """Names of the entries of `space` that take more than one value."""
    return {entry.name for entry in space.space if len(set(possible_values(entry))) > 1}


def write_settings(out: Path, settings: dict[str, Any]) -> None:
    """Writes `out/search.json`."""
    atomic.write_json(Path(out) / SEARCH_FILE, settings)


def check_same_search(out: Path, settings: dict[str, Any]) -> None:
    """Raises a ValueError listing the differences if `out` holds a search with other settings.

    `max_trials` is not a setting: raising it extends a search.
    """
    path = Path(out) / SEARCH_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = json.loads(json.dumps(settings))
    diffs = []
    for key in sorted(set(old) | set(new)):
        before, now = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(now, dict):  # name the entries that differ
            diffs += [
                f"{key}.{k}: {before.get(k)!r} before, {now.get(k)!r} now"
                for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)
            ]
        elif before != now:
            diffs.append(f"{key}: {before!r} before, {now!r} now")
    if diffs:
        raise ValueError(
            f"{out} holds a different search ({'; '.join(diffs)}). Rerun with the same settings to resume "
            "it (only --max-trials may grow), or use another output directory or --overwrite"
        )
