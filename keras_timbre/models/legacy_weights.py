"""Weights saved by keras-timbre 0.1 and 0.2, loaded into the models composed of parts.

Keras names a saved weight by the attribute path that reaches its layer. 0.1
and 0.2 kept every layer on the model itself (`encoder_blocks/encoder_block/conv`,
`layers/dense`, ...); today's models hold them in named parts
(`encoder/blocks/...`). Every layer kept its name, and a weights file records
each layer's name, so a file in the old layout is re-pathed by the chain of
layer names that leads to each weight (the parts' own names left out). The
optimizer's slots follow the order of the trainable variables; where a model
created its layers in another order in 0.2 (`LEGACY_ORDER`), they are put in
today's order too.

`adopt_legacy_layout` runs from `TimbreModel.load_own_variables`, the first
thing Keras loads, and swaps the open file of Keras' `H5IOStore` for the
re-pathed copy in memory; the file on disk is not touched. A file written by
this version is loaded as it is.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np

# A group only the old layout has at the top of the file.
LEGACY_MARKER = "encoder_blocks"
OPTIMIZER_VARS = "optimizer/vars"
# Optimizer variables before the slots (Keras' iteration count and learning rate).
OPTIMIZER_HEAD = 2


def is_legacy_file(h5_file) -> bool:
    """Whether an open weights file has the 0.1/0.2 layout."""
    return LEGACY_MARKER in h5_file


def adopt_legacy_layout(store, model) -> None:
    """Makes a 0.1/0.2 weights file readable for `model` (see the module docstring); else does nothing."""
    h5_file = getattr(store, "h5_file", None)
    if h5_file is None or not is_legacy_file(h5_file):
        return
    store.h5_file = repathed(h5_file, model)
    h5_file.close()
    store.get("")  # Keras reads the model's own variables from the store's current entry


def repathed(legacy, model):
    """An in-memory h5py file with `legacy`'s weights at the paths `model` saves them to."""
    import h5py  # noqa: F401  (Keras' own dependency for .keras files)

    by_chain = _weights_by_chain(legacy, ())
    target = h5py.File(io.BytesIO(), "w")
    template = _template(model)
    parts = {part.name for part in model.parts.values()}
    for path, chain in _weights_by_chain(template, parts, paths=True).items():
        if path.startswith("optimizer/"):
            continue  # the optimizer's slots are copied below, in today's order
        if chain not in by_chain:
            raise ValueError(f"the 0.1/0.2 weights file has no weights for layer {'/'.join(chain) or model.name!r}")
        group = target.require_group(path)
        for key, values in by_chain[chain].items():
            group.create_dataset(key, data=values)
    template.close()
    if OPTIMIZER_VARS in legacy:
        _copy_optimizer(legacy[OPTIMIZER_VARS], target.require_group(OPTIMIZER_VARS), _legacy_positions(model))
    return target


def _template(model):
    """The model's weights file as this version writes it (its paths; values irrelevant)."""
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "template.weights.h5"
        model.save_weights(path)
        return h5py.File(io.BytesIO(path.read_bytes()), "r")


def _weights_by_chain(h5_file, skipped_names, paths: bool = False) -> dict:
    """`{chain of layer names: {index: values}}` of every `vars` group with weights (`paths`: `{path: chain}`)."""
    found = {}

    def visit(name, obj):
        if not (name == "vars" or name.endswith("/vars")) or not len(obj):
            return
        chain = _chain(h5_file, name, skipped_names)
        found[name if paths else chain] = chain if paths else {key: np.asarray(obj[key]) for key in obj}

    h5_file.visititems(visit)
    return found


def _chain(h5_file, vars_path: str, skipped_names) -> tuple[str, ...]:
    """The names of the layers from the model down to the one whose `vars` group this is."""
    parts = vars_path.split("/")[:-1]
    names = []
    for depth in range(1, len(parts) + 1):
        own = "/".join(parts[:depth] + ["vars"])
        if own in h5_file and "name" in h5_file[own].attrs:
            name = h5_file[own].attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name not in skipped_names:
                names.append(name)
    return tuple(names)


def _legacy_positions(model) -> list[int]:
    """For each trainable variable of `model`, its position in the 0.2 model's creation order."""
    variables = model.trainable_variables
    order = getattr(model, "LEGACY_ORDER", None)
    if not order:
        return list(range(len(variables)))
    patterns = [re.compile(rf"^{pattern}") for pattern in order]

    def rank(index):
        segments = variables[index].path.split("/")
        ranks = [r for r, p in enumerate(patterns) for s in segments if p.match(s)]
        return (min(ranks) if ranks else len(patterns), index)

    legacy_order = sorted(range(len(variables)), key=rank)  # legacy position -> today's index
    positions = [0] * len(variables)
    for legacy_position, index in enumerate(legacy_order):
        positions[index] = legacy_position
    return positions


def _copy_optimizer(source, target, positions: list[int]) -> None:
    """The optimizer's variables, each slot moved to its variable's place in today's order."""
    total = len(source)
    slots, remainder = divmod(total - OPTIMIZER_HEAD, max(len(positions), 1))
    if remainder or positions == sorted(positions):
        for key in source:
            target.create_dataset(key, data=np.asarray(source[key]))
        return
    for key in range(OPTIMIZER_HEAD):
        target.create_dataset(str(key), data=np.asarray(source[str(key)]))
    for index, legacy in enumerate(positions):
        for slot in range(slots):
            new, old = OPTIMIZER_HEAD + index * slots + slot, OPTIMIZER_HEAD + legacy * slots + slot
            target.create_dataset(str(new), data=np.asarray(source[str(old)]))
