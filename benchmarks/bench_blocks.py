"""Down- and up-sampling blocks, forward + backward, on every Keras backend.

Each candidate is timed as a one-layer Keras model trained with `train_on_batch`
(Keras' own train step: forward, gradients w.r.t. input and weights, SGD) at the
shapes TimbreVAE's default model uses (batch 16, input 128 x 256). The input is a
trainable stand-in (a zero-initialised bias added first) so the input gradient is
computed as it would be inside the network. Candidates:

* down: `strided` (3x3 conv, stride 2; the paper variants' block up to 0.3) and
  `space_to_depth` (2x2 space-to-depth, then a 2x2 stride-1 conv: receptive
  field 4x4);
* up: `transposed` (Keras' 4x4 stride-2 `Conv2DTranspose`), `subpixel`
  (`keras_timbre.models.layers.Conv2DTranspose`: the same layer, weights and
  outputs, computed as a 2x2 stride-1 conv to 4x channels + depth-to-space)
  and `resize` (nearest x2, then 3x3 conv: more FLOPs, another function).

    python benchmarks/bench_blocks.py            # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_GFLOPS = 480.0
BATCH = 16
# (height, width, in_channels, out_channels) at the input of each encoder / decoder block.
DOWN_SHAPES = [(128, 256, 1, 16), (64, 128, 16, 32), (32, 64, 32, 64), (16, 32, 64, 128)]
UP_SHAPES = [(8, 16, 128, 64), (16, 32, 64, 32), (32, 64, 32, 16), (64, 128, 16, 1)]


def _flops(kind: str, h: int, w: int, cin: int, cout: int) -> float:
    """Forward multiply-adds x 2 of one block (batch 1)."""
    per_output = {
        "strided": (h // 2) * (w // 2) * 9 * cin * cout,
        "space_to_depth": (h // 2) * (w // 2) * 4 * 4 * cin * cout,
        "transposed": h * w * 16 * cin * cout,
        "subpixel": (h + 1) * (w + 1) * 4 * cin * 4 * cout,  # on the input padded by one
        "resize": (2 * h) * (2 * w) * 9 * cin * cout,
    }[kind]
    return 2.0 * per_output


def _space_to_depth():
    """(b, h, w, c) -> (b, h/2, w/2, 4c) by reshape + transpose in `keras.ops`: the candidate down-sampling."""
    import keras
    from keras import ops

    def space_to_depth(x):
        _, height, width, channels = x.shape
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))
        return ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height // 2, width // 2, 4 * channels))

    return keras.layers.Lambda(space_to_depth)


def _block(kind: str, cout: int):
    import keras

    from keras_timbre.models import layers

    if kind == "strided":
        return keras.layers.Conv2D(cout, 3, strides=2, padding="same")
    if kind == "space_to_depth":
        return keras.Sequential([_space_to_depth(), keras.layers.Conv2D(cout, 2, padding="same")])
    if kind == "transposed":
        return keras.layers.Conv2DTranspose(cout, 4, strides=2, padding="same")
    if kind == "subpixel":
        layer = layers.Conv2DTranspose(cout, 4, strides=2, padding="same")
        layer.sub_pixel_backends = (keras.backend.backend(),)  # the sub-pixel form on every backend
        return layer
    if kind == "resize":
        return keras.Sequential([keras.layers.UpSampling2D(2), keras.layers.Conv2D(cout, 3, padding="same")])
    raise ValueError(kind)


def _time_block(kind: str, shape, repeats: int) -> float:
    import keras
    import numpy as np

    h, w, cin, cout = shape
    inputs = keras.Input((h, w, cin), batch_size=BATCH)
    # A trainable offset on the input makes Keras compute the input gradient, as in a network.
    x = keras.layers.Dense(cin, use_bias=True, kernel_initializer="identity")(inputs) if cin > 1 else inputs
    outputs = _block(kind, cout)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse", jit_compile="auto")
    data = np.random.default_rng(0).normal(size=(BATCH, h, w, cin)).astype("float32")
    target = np.zeros(model.output_shape, "float32")
    for _ in range(3):
        model.train_on_batch(data, target)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(data, target)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(repeats: int) -> list[dict]:
    import keras

    rows = []
    for direction, shapes, kinds in (
        ("down", DOWN_SHAPES, ("strided", "space_to_depth")),
        ("up", UP_SHAPES, ("transposed", "subpixel", "resize")),
    ):
        for shape in shapes:
            for kind in kinds:
                seconds = _time_block(kind, shape, repeats)
                flops = 3 * BATCH * _flops(kind, *shape)
                rows.append(
                    {
                        "backend": keras.backend.backend(),
                        "direction": direction,
                        "kind": kind,
                        "shape": list(shape),
                        "ms": 1e3 * seconds,
                        "gflops": flops / seconds / 1e9,
                    }
                )
    return rows


def _report(rows: list[dict], elapsed: float, load: float) -> str:
    backends = sorted({r["backend"] for r in rows}, key=["tensorflow", "jax", "torch"].index)
    lines = [
        "# Down- and up-sampling blocks: forward + backward per backend",
        "",
        f"One `train_on_batch` of a one-block model (batch {BATCH}; input gradient included), median of the "
        f"repeats; machine: {os.cpu_count()} CPU cores ({platform.machine()}), load average {load:.2f} "
        f"before the run, {elapsed:.0f} s in all. GFLOP/s count 3x the forward FLOPs.",
        "",
        "| direction | input (h, w, cin -> cout) | block | " + " | ".join(f"{b} ms" for b in backends) + " |",
        "|---|---|---|" + "---:|" * len(backends),
    ]
    keyed = {(r["backend"], r["kind"], tuple(r["shape"])): r for r in rows}
    seen = []
    for r in rows:
        key = (r["direction"], tuple(r["shape"]), r["kind"])
        if key in seen:
            continue
        seen.append(key)
        cells = [f"{keyed[(b, r['kind'], tuple(r['shape']))]['ms']:.1f}" for b in backends]
        h, w, cin, cout = r["shape"]
        lines.append(f"| {r['direction']} | {h}x{w}, {cin} -> {cout} | {r['kind']} | " + " | ".join(cells) + " |")
    lines += ["", "## Sum over the four blocks of each direction (ms)", ""]
    lines += ["| block | " + " | ".join(backends) + " |", "|---|" + "---:|" * len(backends)]
    for kind in ("strided", "space_to_depth", "transposed", "subpixel", "resize"):
        sums = [sum(r["ms"] for r in rows if r["backend"] == b and r["kind"] == kind) for b in backends]
        lines.append(f"| {kind} | " + " | ".join(f"{s:.1f}" for s in sums) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/blocks.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.repeats)))
        return
    load = os.getloadavg()[0]
    start = time.perf_counter()
    rows = []
    for backend in args.backends:
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO))
        cmd = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows += json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        print(f"{backend}: done", flush=True)
    report = _report(rows, time.perf_counter() - start, load)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
