"""Training speed of the hierarchical variant beside skip+grad, side by side in one process.

Both models are built as `keras-timbre train` builds them (default 4 s features, batch 16, the
backend's default precision) and trained with Keras' own `fit` on the same random batches,
alternating rounds so drifts in the machine's speed hit both alike. Reports samples/s and the
median over rounds of the ratio hierarchical / skip+grad (issue 23's target: >= 0.8), with the machine.

    KERAS_BACKEND=tensorflow python benchmarks/bench_hierarchical.py   # ~3 min on 2 cores
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
STEPS = 20


def _model(variant: str):
    from keras_timbre.models.training_defaults import default_optimizer, resolve_precision
    from keras_timbre.models.variants import build_model

    extra = {"pitch_range": (21, 108)} if variant == "hierarchical" else {}
    model = build_model(variant, dtype=resolve_precision("auto"), **extra)
    model.compile(optimizer=default_optimizer())
    return model


def _batches(variant: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 128, 256, 1)).astype("float32")
    if variant != "hierarchical":
        return x
    pitch = rng.integers(21, 108, len(x)).astype("float32")
    return {"log_mel": x, "pitch": pitch, "velocity": np.full(len(x), 100.0, "float32")}


def _round(model, data) -> float:
    started = time.perf_counter()
    model.fit(data, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return BATCH * STEPS / (time.perf_counter() - started)


def main() -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "hierarchical.json")
    args = parser.parse_args()
    variants = ("skip+grad", "hierarchical")
    models = {v: _model(v) for v in variants}
    data = {v: _batches(v) for v in variants}
    speeds = {v: [] for v in variants}
    for round_index in range(args.rounds + 1):  # round 0 compiles and warms up
        for variant in variants:
            speed = _round(models[variant], data[variant])
            if round_index:
                speeds[variant].append(speed)
    median = {v: statistics.median(s) for v, s in speeds.items()}
    # Each round times both models back to back: the ratio within a round cancels the machine's drift.
    ratios = [h / s for h, s in zip(speeds["hierarchical"], speeds["skip+grad"])]
    result = {
        "backend": keras.backend.backend(),
        "precision": models["skip+grad"].dtype_policy.name,
        "samples_per_s": median,
        "all_rounds": speeds,
        "ratio_hierarchical_to_skip_grad": statistics.median(ratios),
        "ratio_per_round": ratios,
        "parameters": {v: int(m.count_params()) for v, m in models.items()},
        "machine": environment(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
