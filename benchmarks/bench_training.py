"""Training throughput of TimbreVAE on each Keras backend, against the keras.io-style peer.

One run measures, each configuration in its own subprocess (KERAS_BACKEND is fixed per process):

* `keras_timbre.TimbreVAE` (default "skip+grad" model, default input (128, 256, 1)),
  trained with `model.fit`, on tensorflow, jax and torch: with and without `jit_compile`,
  in float32 and `mixed_bfloat16`, with each normalisation, and at batch 16, 32 and 64;
* the 0.1 model (BatchNorm, float32, and on JAX its native transposed convolutions)
  beside today's default in the same process, so "vs 0.1" is a side-by-side ratio;
* the peer a user would copy: the same architecture and blocks written keras.io-VAE
  style (functional encoder/decoder, a `train_step` with `tf.GradientTape`), on
  tensorflow, with and without `jit_compile` (it lives only in this file);
* a convolution micro-benchmark on tensorflow and jax (forward, input gradient,
  kernel gradient of one strided conv).

It also counts FLOPs per training sample analytically and relates the throughput to
the CPU's peak (4096^2 float32 matmul in TF, about 480 GFLOP/s on the 2-core build
machine). Results go to benchmarks/results/training.md.

    python benchmarks/bench_training.py               # all rows, ~15 min on 2 cores
    python benchmarks/bench_training.py --steps 4 --repeats 2 --backends tensorflow
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
def _peer_model(input_shape, filters, latent_dim, beta, grad_weight, skip_dropout, normalization):
    """The keras.io VAE recipe, same architecture and blocks: functional nets + tf.GradientTape train_step."""
    import keras
    import tensorflow as tf
    from keras import layers

    inputs = keras.Input(input_shape)
    x, skips = inputs, []

    def norm(y):
        if normalization == "group":
            return layers.GroupNormalization(groups=4)(y)
        return layers.BatchNormalization()(y) if normalization == "batch" else y

    use_bias = normalization is None
    for f in filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=use_bias)(x)
        x = layers.LeakyReLU(0.2)(norm(x))
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
        y = layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=use_bias)(y)
        y = layers.Conv2D(f, 1, use_bias=use_bias)(layers.Concatenate()([y, skip_in[-(i + 1)]]))
        y = layers.LeakyReLU(0.2)(norm(y))
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


def _model(setting: dict, legacy: bool = False):
    """TimbreVAE for a setting; `legacy`: the 0.1 model (BatchNorm, float32, native transposed convs)."""
    import keras

    from keras_timbre.models import layers
    from keras_timbre.models.timbre_vae import TimbreVAE

    keras.utils.set_random_seed(0)
    if legacy:
        model = TimbreVAE.from_variant("skip+grad", normalization="batch")
        for layer in model._flatten_layers():
            if isinstance(layer, layers.Conv2DTranspose):
                layer.sub_pixel_backends = ()  # 0.1 ran every backend's own transposed conv
    else:
        kwargs = {} if setting["normalization"] == "default" else {"normalization": setting["normalization"]}
        model = TimbreVAE.from_variant("skip+grad", dtype=setting["precision"], **kwargs)
    model.compile(jit_compile=setting["jit"])
    return model


def worker(setting: dict, steps: int, repeats: int) -> list[dict]:
    import keras
    import numpy as np

    from keras_timbre.models.timbre_vae import DEFAULT_BETA, DEFAULT_GRAD_WEIGHT, DEFAULT_SKIP_DROPOUT

    batch_size = setting["batch_size"]
    ours = _model(setting)
    models = {"keras_timbre": ours}
    if setting.get("peer"):
        peer = _peer_model(
            ours.spectrogram_shape,
            ours.filters,
            ours.latent_dim,
            DEFAULT_BETA,
            DEFAULT_GRAD_WEIGHT,
            DEFAULT_SKIP_DROPOUT,
            ours.normalization,
        )
        peer.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), jit_compile=setting["jit"])
        models["peer"] = peer
    if setting.get("legacy"):
        models["0.1 model"] = _model(setting, legacy=True)
    x = np.random.default_rng(0).normal(size=(batch_size * steps,) + ours.spectrogram_shape).astype("float32")
    timed = _time_fits(models, x, batch_size, repeats, time_steps=keras.backend.backend() != "jax")
    results = [
        {
            **timed[name],
            "kind": name,
            "backend": keras.backend.backend(),
            **_resolved(setting, ours if name == "peer" else models[name]),
        }
        for name in models
    ]
    if setting.get("diagnose"):
        results[0]["conv"] = _conv_microbench(keras.backend.backend())
    return results


def _resolved(setting: dict, model) -> dict:
    """The setting as the model really ran it (defaults resolved)."""
    precision = getattr(model, "dtype_policy", None)
    return {
        "jit_compile": setting["jit"],
        "precision": precision.name if precision is not None else "float32",
        "normalization": str(getattr(model, "normalization", "batch")),
        "batch_size": setting["batch_size"],
    }


# --------------------------------------------------------------------------- driver
def _setting(backend, jit, precision="float32", normalization="default", batch_size=16, **flags) -> dict:
    return dict(
        backend=backend, jit=jit, precision=precision, normalization=normalization, batch_size=batch_size, **flags
    )


CONFIGS = [
    # Defaults and jit_compile / precision per backend; on TensorFlow the peer and the 0.1 model share
    # ours' process, timed alternately round by round.
    _setting("tensorflow", False, peer=True, legacy=True, diagnose=True),
    _setting("tensorflow", True, peer=True),
    _setting("tensorflow", False, "mixed_bfloat16", legacy=True),
    _setting("jax", True, legacy=True, diagnose=True),
    _setting("jax", False),
    _setting("jax", True, "mixed_bfloat16"),
    _setting("torch", False, legacy=True),
    _setting("torch", True),
    _setting("torch", False, "mixed_bfloat16"),
    # Normalisation (float32, batch 16)
    *[
        _setting(b, b == "jax", normalization=n)
        for b in ("tensorflow", "jax", "torch")
        for n in ("batch", "group", "None")
    ],
    _setting("tensorflow", False, "mixed_bfloat16", normalization="batch"),
    _setting("torch", False, "mixed_bfloat16", normalization="batch"),
    # Batch size
    *[_setting(b, b == "jax", batch_size=n) for b in ("tensorflow", "jax", "torch") for n in (32, 64)],
    _setting("tensorflow", False, "mixed_bfloat16", batch_size=32),
    _setting("tensorflow", False, "mixed_bfloat16", batch_size=64),
]


def _run_config(setting: dict, args) -> list[dict]:
    env = {
        **os.environ,
        "KERAS_BACKEND": setting["backend"],
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    worker_setting = {**setting, "normalization": _normalization_arg(setting["normalization"])}
    command = [sys.executable, __file__, "--worker", json.dumps(worker_setting)]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    failed = {"kind": "keras_timbre", **_resolved(setting, None), "backend": setting["backend"]}
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [{**failed, "error": f"timed out after {args.timeout} s"}]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [{**failed, "error": tail[0][:200]}]
    return json.loads(lines[-1])


def _normalization_arg(name: str):
    return None if name == "None" else name


def _steady(r: dict) -> float:
    """Samples/s by median step where steps were timed, else by median epoch."""
    steps = r.get("step_ms")
    return r["batch_size"] / steps["median"] * 1e3 if steps else r["samples_per_s"]


def _row_label(r: dict) -> str:
    return (
        f"{r['backend']}, jit={r['jit_compile']}, {r['precision']}, norm={r['normalization']}, batch {r['batch_size']}"
    )


def _report(results, args, flops, elapsed) -> str:
    train_flops = flops["training"]
    lines = [
        "# Training throughput: TimbreVAE on each backend, vs the GradientTape peer and the 0.1 model",
        "",
        f"Default `skip+grad` model, input (128, 256, 1), {args.steps} steps per timed epoch, median of "
        f"{args.repeats} rounds. The peer and the 0.1 model ran in the same process as the TimbreVAE row above "
        "them, alternating round by round. "
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}, load average {args.load_before:.2f} before the run. Compare rows "
        f"of one run, not absolute numbers across runs. Total benchmark time {elapsed:.0f} s.",
        "",
        "FLOPs per training sample (analytic, convs + dense, 3x forward, counted as float32 FLOPs for every "
        f"precision): {train_flops / 1e9:.3f} GFLOP (forward {flops['forward'] / 1e6:.0f} MFLOP). "
        f"Peak: {PEAK_GFLOPS:.0f} GFLOP/s (4096^2 f32 matmul in TF).",
        "",
        "Throughput is the batch size over the median step time where steps can be timed (TensorFlow, "
        "torch); JAX dispatches steps asynchronously, so its rows use the median epoch.",
        "",
        "| model | backend | jit_compile | precision | norm | batch | samples/s | step ms (IQR) "
        "| samples/s by epoch | GFLOP/s | % of peak | warm-up s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        head = f"| {r['kind']} | {r['backend']} | {r['jit_compile']} | {r['precision']} | {r['normalization']} "
        if "error" in r:
            lines.append(head + f"| {r['batch_size']} | failed: {r['error']} |" + " |" * 5)
            continue
        rate = _steady(r)
        gflops = rate * train_flops / 1e9
        steps = r.get("step_ms")
        step_text = f"{steps['median']:.1f} ({steps['p25']:.0f}-{steps['p75']:.0f})" if steps else "async"
        lines.append(
            head + f"| {r['batch_size']} | {rate:.1f} | {step_text} | {r['samples_per_s']:.1f} | {gflops:.1f} | "
            f"{100 * gflops / PEAK_GFLOPS:.1f} | {r['warmup_s']:.0f} |"
        )
    lines += ["", "## Ratios", ""] + _ratios(results)
    conv_rows = [(r["backend"], row) for r in results if "conv" in r for row in r["conv"]]
    if conv_rows:
        lines += [
            "",
            "## One strided conv (16->32 channels, 3x3, stride 2, batch 16 of 64x128)",
            "",
            "| backend | op | ms | GFLOP/s |",
            "|---|---|---:|---:|",
        ]
        lines += [f"| {b} | {row['op']} | {row['ms']:.1f} | {row['gflops']:.1f} |" for b, row in conv_rows]
    return "\n".join(lines) + "\n"


def _ratios(results: list[dict]) -> list[str]:
    """Same-process ratios (ours vs the peer / the 0.1 model), then JAX and torch against TensorFlow."""
    ok = [r for r in results if "error" not in r]
    lines = []
    for i, r in enumerate(ok):
        if r["kind"] != "keras_timbre":
            ours = next(o for o in reversed(ok[:i]) if o["kind"] == "keras_timbre")
            lines.append(
                f"- {_row_label(ours)}: TimbreVAE / {r['kind']} = **{_steady(ours) / _steady(r):.2f}x** "
                f"({_steady(ours):.1f} vs {_steady(r):.1f} samples/s; by median epoch "
                f"{ours['samples_per_s'] / r['samples_per_s']:.2f}x)."
            )
    ours = [r for r in ok if r["kind"] == "keras_timbre"]
    first = {}
    for r in ours:  # each backend's first row: its default settings, float32, batch 16
        first.setdefault(r["backend"], r)
    tf = first.get("tensorflow")
    best_tf = max((r for r in ours if r["backend"] == "tensorflow"), key=_steady, default=None)
    for backend in ("jax", "torch"):
        if tf and backend in first:
            lines.append(
                f"- {backend} / TensorFlow at the defaults ({_row_label(first[backend])} vs {_row_label(tf)}): "
                f"**{_steady(first[backend]) / _steady(tf):.2f}x**."
            )
        fastest = max((r for r in ours if r["backend"] == backend), key=_steady, default=None)
        if best_tf and fastest:
            lines.append(
                f"- {backend} fastest ({_row_label(fastest)}) / TensorFlow fastest ({_row_label(best_tf)}): "
                f"{_steady(fastest) / _steady(best_tf):.2f}x."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--only-defaults", action="store_true", help="the first nine rows (no sweeps)")
    parser.add_argument("--timeout", type=int, default=420, help="seconds per configuration")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "training.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.steps, args.repeats)))
        return

    sys.path.insert(0, str(REPO))
    from tqdm import tqdm

    from keras_timbre.atomic import write_text

    args.load_before = os.getloadavg()[0]
    backends = set(args.backends.split(","))
    configs = [c for c in (CONFIGS[:9] if args.only_defaults else CONFIGS) if c["backend"] in backends]
    flops = training_flops_per_sample()
    started = time.perf_counter()
    results = []
    for setting in tqdm(configs, desc="configurations", unit="run"):
        for result in _run_config(setting, args):
            results.append(result)
            rate = f"{_steady(result):.1f} samples/s" if "error" not in result else result["error"]
            tqdm.write(f"{result['kind']:13s} {_row_label(result)}: {rate}")
    report = _report(results, args, flops, time.perf_counter() - started)
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
