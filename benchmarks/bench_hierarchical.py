"""Training speed of the hierarchical variant beside skip+grad, side by side in one process.

The models are built as `keras-timbre train` builds them (default 4 s features, batch 16, the
backend's default precision) and trained with Keras' own train step (`train_on_batch`) on the same
random batches, taking turns step by step so drifts in the machine's speed hit all alike.
Each model's speed is the median over its steps (the shared machine's spikes fall outside it), and
its ratio to skip+grad the median over turns of skip+grad's step time over its own (issue 23's target
for the hierarchical one: >= 0.8); with the machine. `MODELS` names the models timed.

    KERAS_BACKEND=tensorflow python benchmarks/bench_hierarchical.py   # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import environment  # noqa: E402

BATCH = 16
STEPS = 10
# The models timed: name -> (variant, settings, bounded). A bounded model gets the output ceiling `train`
# gives it from the training notes' stats (`settings_from_stats`; `STAND_IN_STATS` stand in for them: the
# ceiling's cost does not depend on its values). "hierarchical, 0.7" is the model before the ceiling.
MODELS = {
    "skip+grad": ("skip+grad", {}, False),
    "hierarchical": ("hierarchical", {"pitch_range": (21, 108)}, True),
    "hierarchical, 0.7": ("hierarchical", {"pitch_range": (21, 108)}, False),
}
STAND_IN_STATS = dict(mean=np.zeros(128), std=np.full(128, 20.0), peak_db=33.5)


def _model(name: str):
    from keras_timbre.audio.stats import FeatureStats
    from keras_timbre.models.training_defaults import default_optimizer, resolve_precision
    from keras_timbre.models.variants import build_model, model_class

    variant, settings, bounded = MODELS[name]
    if bounded:
        settings = {**settings, **model_class(variant).settings_from_stats(FeatureStats(**STAND_IN_STATS))}
    model = build_model(variant, dtype=resolve_precision("auto"), **settings)
    model.compile(optimizer=default_optimizer())
    return model


def _batches(variant: str) -> list:
    """`STEPS` random (inputs, target) batches of the variant's input, as tensors.

    Tensors, as the tf.data pipeline hands them to `fit`: `train_on_batch` converting a dict of numpy
    arrays every step cost the hierarchical model 17 ms a step more than the tensors (skip+grad: 1 ms).
    """
    import keras

    rng = np.random.default_rng(0)
    batches = []
    for _ in range(STEPS):
        x = rng.normal(size=(BATCH, 128, 256, 1)).astype("float32")
        if variant == "hierarchical":
            pitch = rng.integers(21, 108, BATCH).astype("float32")
            inputs = {"log_mel": x, "pitch": pitch, "velocity": np.full(BATCH, 100.0, "float32")}
        else:
            inputs = x
        batches.append(keras.tree.map_structure(keras.ops.convert_to_tensor, (inputs, x)))
    return batches


def _round(models: dict, batches: dict) -> dict[str, list[float]]:
    """Seconds of each model's training steps, the models taking turns step by step.

    Turns of one step each put a drift of the shared machine's speed on every model alike.
    """
    times = {name: [] for name in models}
    for i in range(STEPS):
        names = list(models) if i % 2 == 0 else list(models)[::-1]  # neither goes first every time
        for name in names:
            x, y = batches[name][i]
            started = time.perf_counter()
            models[name].train_on_batch(x, y)
            times[name].append(time.perf_counter() - started)
    return times


def _pair_ratio(reference: list[float], times: list[float]) -> float:
    """Median over turns of the reference's step time over the model's: adjacent steps share the machine's state."""
    return statistics.median(r / t for r, t in zip(reference, times))


def main() -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "hierarchical.json")
    args = parser.parse_args()
    variants = tuple(MODELS)
    models = {v: _model(v) for v in variants}
    data = {v: _batches(MODELS[v][0]) for v in variants}
    steps = {v: [] for v in variants}
    for round_index in range(args.rounds + 1):  # round 0 compiles and warms up
        times = _round(models, data)
        if round_index:
            for variant in variants:
                steps[variant].extend(times[variant])
    speed = {v: BATCH / statistics.median(t) for v, t in steps.items()}
    result = {
        "backend": keras.backend.backend(),
        "precision": models["skip+grad"].dtype_policy.name,
        "samples_per_s": speed,
        "step_ms_quartiles": {v: [1000 * q for q in statistics.quantiles(t, n=4)] for v, t in steps.items()},
        "ratio_to_skip_grad": {v: _pair_ratio(steps["skip+grad"], steps[v]) for v in variants},
        "parameters": {v: int(m.count_params()) for v, m in models.items()},
        "machine": environment(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
