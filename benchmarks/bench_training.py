"""Training throughput of TimbreVAE on each Keras backend, against the keras.io-style peer.

One run measures, each in its own subprocess (KERAS_BACKEND is fixed per process):

* `keras_timbre.TimbreVAE` (default "skip+grad" model, default input (128, 256, 1)),
  trained with `model.fit`, on tensorflow, jax and torch, with and without `jit_compile`;
* the peer a user would copy: the same architecture written keras.io-VAE style
  (functional encoder/decoder, a `train_step` with `tf.GradientTape`), on tensorflow,
  with and without `jit_compile` (it lives only in this file);
* a convolution micro-benchmark on tensorflow and jax (forward, input gradient,
  kernel gradient of one strided conv), which is where JAX loses on CPU.

It also counts FLOPs per training sample analytically and relates the throughput to
the CPU's peak (4096^2 float32 matmul in TF, about 480 GFLOP/s on the 2-core build
machine). Results go to benchmarks/results/training.md.

    python benchmarks/bench_training.py               # all backends, ~8 min on 2 cores
    python benchmarks/bench_training.py --steps 4 --repeats 2 --backends tensorflow
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
PEAK_GFLOPS = 480.0  # 4096^2 float32 matmul in TF on the build machine (brief)


# --------------------------------------------------------------------------- FLOPs
def training_flops_per_sample(
    input_shape=(128, 256, 1), filters=(16, 32, 64, 128), latent_dim=64, use_skips=True
) -> dict:
    """Multiply-adds x 2 of the convolutions and dense layers of TimbreVAE.

    Training costs ~3x the forward pass (forward, gradient w.r.t. inputs, gradient
    w.r.t. weights); element-wise work (norms, activations, Adam) is left out.
    """
    height, width, channels = input_shape
    forward = 0
    cin = channels
    for f in filters:  # EncoderBlock: 3x3 conv, stride 2
        height, width = height // 2, width // 2
        forward += 2 * height * width * 9 * cin * f
        cin = f
    flat = height * width * filters[-1]
    forward += 2 * 2 * flat * latent_dim  # z_mean, z_log_var
    forward += 2 * latent_dim * flat  # decoder_dense
    for f in reversed(filters[:-1]):  # DecoderBlock: 4x4 transposed conv, stride 2 (+ 1x1 mix)
        forward += 2 * height * width * 16 * cin * f
        height, width = height * 2, width * 2
        if use_skips:
            forward += 2 * height * width * 2 * f * f
        cin = f
    forward += 2 * height * width * 16 * cin * channels  # output transposed conv
    return {"forward": forward, "training": 3 * forward}


# --------------------------------------------------------------------------- workers
def _peer_model(input_shape, filters, latent_dim, beta, grad_weight, skip_dropout):
    """The keras.io VAE recipe, same architecture: functional nets + tf.GradientTape train_step."""
    import keras
    import tensorflow as tf
    from keras import layers

    inputs = keras.Input(input_shape)
    x, skips = inputs, []
    for f in filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.LeakyReLU(0.2)(layers.BatchNormalization()(x))
        skips.append(x)
    flat = layers.Flatten()(x)
    z_mean = layers.Dense(latent_dim)(flat)
    z_log_var = layers.Dense(latent_dim)(flat)
    encoder = keras.Model(inputs, [z_mean, z_log_var] + skips[:-1], name="encoder")

    z_in = keras.Input((latent_dim,))
    skip_in = [keras.Input(s.shape[1:]) for s in skips[:-1]]
    bottleneck = (input_shape[0] >> len(filters), input_shape[1] >> len(filters), filters[-1])
    y = layers.Dense(bottleneck[0] * bottleneck[1] * bottleneck[2], activation="leaky_relu")(z_in)
    y = layers.Reshape(bottleneck)(y)
    for i, f in enumerate(reversed(filters[:-1])):
        y = layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False)(y)
        y = layers.Conv2D(f, 1, use_bias=False)(layers.Concatenate()([y, skip_in[-(i + 1)]]))
        y = layers.LeakyReLU(0.2)(layers.BatchNormalization()(y))
    y = layers.Conv2DTranspose(input_shape[-1], 4, strides=2, padding="same")(y)
    decoder = keras.Model([z_in] + skip_in, y, name="decoder")

    class PeerVAE(keras.Model):
        def __init__(self, encoder, decoder):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder
            self.total_loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker]

        def train_step(self, data):
            with tf.GradientTape() as tape:
                z_mean, z_log_var, *skips = self.encoder(data, training=True)
                eps = tf.random.normal(tf.shape(z_mean))
                z = z_mean + tf.exp(0.5 * tf.clip_by_value(z_log_var, -10.0, 10.0)) * eps
                keep = tf.cast(tf.random.uniform((tf.shape(data)[0], 1, 1, 1)) >= skip_dropout, data.dtype)
                reconstruction = self.decoder([z] + [s * keep for s in skips], training=True)
                recon = tf.reduce_mean(tf.square(data - reconstruction))
                kl = tf.reduce_sum(
                    tf.reduce_mean(-0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var)), axis=0)
                )
                mel_grad = tf.reduce_mean(
                    tf.abs((data[:, 1:] - data[:, :-1]) - (reconstruction[:, 1:] - reconstruction[:, :-1]))
                )
                total = recon + beta * kl + grad_weight * mel_grad
            grads = tape.gradient(total, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self.total_loss_tracker.update_state(total)
            return {"loss": self.total_loss_tracker.result()}

    return PeerVAE(encoder, decoder)


def _time_fits(models: dict, x, batch_size, repeats, time_steps: bool) -> dict:
    """Warm-up fit of each model (compiles), then `repeats` rounds of one timed one-epoch fit
    per model, interleaved so that load changes on a shared machine hit every model alike.

    Reports each model's median round. With `time_steps` (TensorFlow and torch, whose train
    functions return when the step is done; JAX dispatches asynchronously) it also times
    every step: the median step is the least noisy figure on a shared machine, as a burst of
    load spoils a few steps but not the median. The rest of a round's time, outside the
    steps, is `fit`'s own per-call overhead (set-up and tf.data teardown), which on this
    machine varies between 0 and ~0.9 s per call whichever model runs."""
    import keras
    import numpy as np

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    results, timers = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(x[: 2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)
        results[name] = {"warmup_s": time.perf_counter() - start, "all_samples_per_s": []}
        timers[name] = StepTimer()
        results[name]["fit_overhead_s"] = []
    for _ in range(repeats):
        for name, model in models.items():
            already = len(timers[name].seconds)
            start = time.perf_counter()
            model.fit(
                x,
                batch_size=batch_size,
                epochs=1,
                verbose=0,
                shuffle=False,
                callbacks=[timers[name]] if time_steps else None,
            )
            elapsed = time.perf_counter() - start
            results[name]["all_samples_per_s"].append(len(x) / elapsed)
            results[name]["fit_overhead_s"].append(elapsed - sum(timers[name].seconds[already:]))
    for name, result in results.items():
        result["samples_per_s"] = float(np.median(result["all_samples_per_s"]))
        if time_steps:
            steps = np.asarray(timers[name].seconds)
            result["step_ms"] = {
                "median": 1e3 * float(np.median(steps)),
                "p25": 1e3 * float(np.percentile(steps, 25)),
                "p75": 1e3 * float(np.percentile(steps, 75)),
                "count": int(steps.size),
            }
        else:
            del result["fit_overhead_s"]
    return results


def _conv_microbench(backend: str, repeats: int = 5) -> list[dict]:
    """Forward / input-gradient / kernel-gradient of the 2nd encoder conv (16->32, 3x3, stride 2)."""
    import numpy as np

    batch, height, width, cin, cout = 16, 64, 128, 16, 32
    x = np.random.default_rng(0).normal(size=(batch, height, width, cin)).astype("float32")
    k = np.random.default_rng(1).normal(size=(3, 3, cin, cout)).astype("float32") * 0.1
    flops = 2 * batch * (height // 2) * (width // 2) * 9 * cin * cout
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def conv(x, k):
            return jax.lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

        fns = {
            "forward": jax.jit(conv),
            "input gradient (transposed conv)": jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k)), 0)),
            "kernel gradient": jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k)), 1)),
        }
        args = (jnp.asarray(x), jnp.asarray(k))
        block = jax.block_until_ready
    else:
        import tensorflow as tf

        def conv(x, k):
            return tf.nn.conv2d(x, k, 2, "SAME")

        def grad(index):
            def fn(x, k):
                with tf.GradientTape() as tape:
                    tape.watch([x, k])
                    y = tf.reduce_sum(conv(x, k))
                return tape.gradient(y, [x, k])[index]

            return tf.function(fn)

        fns = {"forward": tf.function(conv), "input gradient (transposed conv)": grad(0), "kernel gradient": grad(1)}
        args = (tf.constant(x), tf.constant(k))

        def block(value):
            return value.numpy()

    rows = []
    for name, fn in fns.items():
        block(fn(*args))  # compile
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            block(fn(*args))
            best = min(best, time.perf_counter() - start)
        rows.append({"op": name, "ms": 1e3 * best, "gflops": flops / best / 1e9})
    return rows


def worker(with_peer: bool, jit: bool, batch_size: int, steps: int, repeats: int, diagnose: bool) -> list[dict]:
    import keras
    import numpy as np

    from keras_timbre.models.timbre_vae import DEFAULT_BETA, DEFAULT_GRAD_WEIGHT, DEFAULT_SKIP_DROPOUT, TimbreVAE

    keras.utils.set_random_seed(0)
    ours = TimbreVAE.from_variant("skip+grad")
    ours.compile(jit_compile=jit)
    models = {"keras_timbre": ours}
    if with_peer:
        peer = _peer_model(
            ours.spectrogram_shape,
            ours.filters,
            ours.latent_dim,
            DEFAULT_BETA,
            DEFAULT_GRAD_WEIGHT,
            DEFAULT_SKIP_DROPOUT,
        )
        peer.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), jit_compile=jit)
        models["peer"] = peer
    x = np.random.default_rng(0).normal(size=(batch_size * steps,) + ours.spectrogram_shape).astype("float32")
    timed = _time_fits(models, x, batch_size, repeats, time_steps=keras.backend.backend() != "jax")
    results = [{**timed[name], "kind": name, "backend": keras.backend.backend(), "jit_compile": jit} for name in models]
    if diagnose:
        results[0]["conv"] = _conv_microbench(keras.backend.backend())
    return results


# --------------------------------------------------------------------------- driver
CONFIGS = [  # (backend, jit); on tensorflow ours and the peer share one process, timed alternately
    ("tensorflow", False),
    ("tensorflow", True),
    ("jax", True),
    ("jax", False),
    ("torch", False),
    ("torch", True),
]


def _run_config(backend, jit, args) -> list[dict]:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--jit",
        str(int(jit)),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--repeats",
        str(args.repeats),
    ]
    if backend == "tensorflow":
        command.append("--with-peer")
    if jit == (backend == "jax") and backend in ("tensorflow", "jax"):
        command.append("--diagnose")
    failed = {"kind": "keras_timbre", "backend": backend, "jit_compile": jit}
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [{**failed, "error": f"timed out after {args.timeout} s"}]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [{**failed, "error": tail[0][:200]}]
    return json.loads(lines[-1])


def _report(results, args, flops, elapsed) -> str:
    train_flops = flops["training"]
    by_key = {(r["kind"], r["backend"], r["jit_compile"]): r for r in results}
    lines = [
        "# Training throughput: TimbreVAE vs the keras.io-style GradientTape peer",
        "",
        f"Default `skip+grad` model, input (128, 256, 1), batch {args.batch_size}, "
        f"{args.steps} steps per timed epoch, median of {args.repeats} rounds (on TensorFlow ours and the peer "
        "alternate in one process, round by round). "
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}, load average {args.load_before:.2f} before the run. Compare rows "
        "of one run (ours and the peer ran back to back), not absolute numbers across runs. "
        f"Total benchmark time {elapsed:.0f} s.",
        "",
        f"FLOPs per training sample (analytic, convs + dense, 3x forward): {train_flops / 1e9:.3f} GFLOP "
        f"(forward {flops['forward'] / 1e6:.0f} MFLOP). Peak: {PEAK_GFLOPS:.0f} GFLOP/s (4096^2 f32 matmul in TF).",
        "",
        "Throughput is the batch size over the median step time where steps can be timed (TensorFlow, "
        "torch); JAX dispatches steps asynchronously, so its rows use the median epoch. Epoch figures "
        "also carry `fit`'s per-call overhead (set-up, tf.data teardown), shown separately.",
        "",
        "| model | backend | jit_compile | samples/s | step ms (IQR) | samples/s by epoch | fit overhead s "
        "| GFLOP/s | % of peak | vs peer (TF, no jit) | warm-up s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "samples_per_s" in r:
            steps = r.get("step_ms")
            r["steady_samples_per_s"] = args.batch_size / steps["median"] * 1e3 if steps else r["samples_per_s"]
    peer = by_key.get(("peer", "tensorflow", False), {}).get("steady_samples_per_s")
    for r in results:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['backend']} | {r['jit_compile']} | failed: {r['error']} |" + " |" * 7)
            continue
        rate = r["steady_samples_per_s"]
        gflops = rate * train_flops / 1e9
        ratio = f"{rate / peer:.2f}x" if peer else "n/a"
        steps = r.get("step_ms")
        step_text = f"{steps['median']:.1f} ({steps['p25']:.0f}-{steps['p75']:.0f})" if steps else "async"
        overhead = f"{statistics.median(r['fit_overhead_s']):.2f}" if "fit_overhead_s" in r else ""
        lines.append(
            f"| {r['kind']} | {r['backend']} | {r['jit_compile']} | {rate:.1f} | {step_text} | "
            f"{r['samples_per_s']:.1f} | {overhead} | {gflops:.1f} | "
            f"{100 * gflops / PEAK_GFLOPS:.1f} | {ratio} | {r['warmup_s']:.0f} |"
        )
    ours_tf = by_key.get(("keras_timbre", "tensorflow", False), {}).get("steady_samples_per_s")
    peer_jit = by_key.get(("peer", "tensorflow", True), {}).get("steady_samples_per_s")
    ours_jit = by_key.get(("keras_timbre", "tensorflow", True), {}).get("steady_samples_per_s")
    lines += ["", "## Ratios", ""]
    for jit, ours, theirs in ((False, ours_tf, peer), (True, ours_jit, peer_jit)):
        if not (ours and theirs):
            continue
        ours_steps = by_key[("keras_timbre", "tensorflow", jit)]["step_ms"]
        peer_steps = by_key[("peer", "tensorflow", jit)]["step_ms"]
        label = "XLA" if jit else "no XLA"
        step_ratio = peer_steps["median"] / ours_steps["median"]
        epoch_ratio = (
            by_key[("keras_timbre", "tensorflow", jit)]["samples_per_s"]
            / by_key[("peer", "tensorflow", jit)]["samples_per_s"]
        )
        lines.append(
            f"- TensorFlow, {label}: TimbreVAE / peer = **{step_ratio:.2f}x** by median step "
            f"({ours_steps['median']:.1f} vs {peer_steps['median']:.1f} ms, interquartile "
            f"{ours_steps['p25']:.1f}-{ours_steps['p75']:.1f} vs {peer_steps['p25']:.1f}-{peer_steps['p75']:.1f} ms, "
            f"{ours_steps['count']} steps each); {epoch_ratio:.2f}x by median epoch."
        )
    for backend in ("jax", "torch"):
        best = max(
            (r for r in results if r.get("backend") == backend and "steady_samples_per_s" in r),
            key=lambda r: r["steady_samples_per_s"],
            default=None,
        )
        if best and ours_tf:
            lines.append(
                f"- {backend} (best, jit_compile={best['jit_compile']}) / TensorFlow (no XLA): "
                f"{best['steady_samples_per_s'] / ours_tf:.2f}x."
            )
    conv_rows = [(r["backend"], row) for r in results if "conv" in r for row in r["conv"]]
    if conv_rows:
        lines += [
            "",
            "## Why JAX is slow on CPU: one strided conv (16->32 channels, 3x3, stride 2, batch 16 of 64x128)",
            "",
            "| backend | op | ms | GFLOP/s |",
            "|---|---|---:|---:|",
        ]
        lines += [f"| {b} | {row['op']} | {row['ms']:.1f} | {row['gflops']:.1f} |" for b, row in conv_rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--timeout", type=int, default=420, help="seconds per configuration")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "training.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--diagnose", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(worker(args.with_peer, bool(args.jit), args.batch_size, args.steps, args.repeats, args.diagnose))
        )
        return

    sys.path.insert(0, str(REPO))
    from keras_timbre.atomic import write_text

    args.load_before = os.getloadavg()[0]
    backends = set(args.backends.split(","))
    configs = [c for c in CONFIGS if c[0] in backends]
    flops = training_flops_per_sample()
    started = time.perf_counter()
    results = []
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety

        def tqdm(items, **_):
            return items

    for backend, jit in tqdm(configs, desc="configurations", unit="run"):
        for result in _run_config(backend, jit, args):
            results.append(result)
            rate = result.get("samples_per_s")  # by epoch; the report also gives the median step
            print(
                f"{result['kind']:13s} {backend:10s} jit={jit!s:5s} "
                + (f"{rate:7.1f} samples/s" if rate else result.get("error", "")),
                flush=True,
            )
    report = _report(results, args, flops, time.perf_counter() - started)
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
