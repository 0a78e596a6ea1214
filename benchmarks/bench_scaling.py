"""Scaling benchmark: streaming the log-mel cache as the data grows, and a full-NSynth projection.

Measures, each in a fresh process so that peak RSS is its own:

1. The feature cache (`keras_timbre.data.feature_cache`) streamed for one
   shuffled, normalised epoch at 1k, 10k and 50k notes: peak RSS, notes/s,
   seconds per epoch.
2. Side by side, what a user would otherwise write: all features in one
   numpy array fed through `tf.data.Dataset.from_tensor_slices` (1k, 10k;
   50k would need ~6.6 GB per copy on this shared machine and is projected).
3. The pipeline without a cache (`keras_timbre.data.feature_dataset`, WAV
   decode + log-mel every epoch) on a few hundred synthetic notes.
4. TimbreVAE training throughput on one device (a few train steps, default
   model, TensorFlow backend): the per-device rate of the projection.

Data: 50k notes of 4 s audio would be ~12.8 GB of WAV and hours of feature
computation on 2 cores, so the cache is written directly: log-mel of a pool
of 64 synthetic notes (`keras_timbre.data.synthesize_note` through
`tf_log_mel`), each written note offset by a small constant so that no two
records are equal, at the default frontend (128 x 256 float32, 131 kB a
note). Reading cost does not depend on the values. The 1k and 10k sets are
the first shards of the 50k cache. Everything is written under --workdir and
deleted at the end.

Run (about 5-10 minutes on 2 cores):
    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --notes 1000 5000 --quick   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL_NSYNTH_TRAIN = 289_205
BATCH = 32
SHUFFLE_BUFFER = 1024
NOTES_PER_SHARD = 500  # 1k, 10k and 50k notes are whole shards
POOL = 64


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------- children
def child_write(workdir: Path, notes: int) -> dict:
    import numpy as np

    from keras_timbre.data import SYNTHETIC_FAMILIES
    from keras_timbre.data import synthesize_note
    from keras_timbre.data.feature_cache import write_feature_cache
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.audio.frontend import tf_log_mel

    frontend = FrontendConfig()
    families = list(SYNTHETIC_FAMILIES)
    plan = [
        (families[i % len(families)], i // len(families), 36 + (7 * i) % 48, (25, 50, 75, 100, 127)[i % 5])
        for i in range(POOL)
    ]
    waveforms = np.stack([synthesize_note(f, k, p, v, seed=i) for i, (f, k, p, v) in enumerate(plan)])
    pool = tf_log_mel(waveforms, frontend).numpy()

    def examples():
        for i in range(notes):
            family, _, pitch, velocity = plan[i % POOL]
            yield pool[i % POOL] + np.float32(1e-3 * (i // POOL)), {
                "family": 0,
                "source": 0,
                "pitch": pitch,
                "velocity": velocity,
            }

    start = time.perf_counter()
    cache = write_feature_cache(
        workdir / "cache",
        frontend,
        examples(),
        total=notes,
        source="bench_scaling pool",
        notes_per_shard=NOTES_PER_SHARD,
    )
    seconds = time.perf_counter() - start
    size = sum((workdir / "cache" / s["name"]).stat().st_size for s in cache.shards)
    return {
        "notes": cache.num_notes,
        "shards": len(cache.shards),
        "seconds": seconds,
        "notes_per_s": cache.num_notes / seconds,
        "gb": size / 1e9,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_stream(workdir: Path, notes: int) -> dict:
    import tensorflow as tf  # noqa: F401  (imported before the baseline)

    from keras_timbre.data.feature_cache import FeatureCache

    cache = FeatureCache.open(workdir / "cache")
    cache.shards = _first_notes(cache.shards, notes)
    dataset = cache.dataset(cache.stats, batch_size=BATCH, shuffle=True, shuffle_buffer=SHUFFLE_BUFFER, seed=0)
    baseline = rss_mb()
    seen, samples = 0, []
    start = time.perf_counter()
    for batch in dataset:
        seen += int(batch.shape[0])
        if len(samples) < 200 or seen % (BATCH * 20) == 0:
            samples.append((seen, rss_mb()))
    seconds = time.perf_counter() - start
    return {
        "notes": seen,
        "seconds": seconds,
        "notes_per_s": seen / seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "rss_at_half_mb": _rss_at(samples, seen / 2),
        "rss_end_mb": rss_mb(),
        "skipped": cache.skipped_notes,
    }


def child_memory(workdir: Path, notes: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from keras_timbre.data.feature_cache import FeatureCache

    cache = FeatureCache.open(workdir / "cache")
    cache.shards = _first_notes(cache.shards, notes)
    baseline = rss_mb()
    start = time.perf_counter()
    # What a user writes when the features fit: one array, normalised, fed from memory.
    features = np.concatenate([x.numpy() for x in cache.dataset(cache.stats, batch_size=256)])
    load_seconds = time.perf_counter() - start
    dataset = tf.data.Dataset.from_tensor_slices(features).shuffle(SHUFFLE_BUFFER, seed=0).batch(BATCH).prefetch(2)
    seen = 0
    start = time.perf_counter()
    for batch in dataset:
        seen += int(batch.shape[0])
    seconds = time.perf_counter() - start
    return {
        "notes": seen,
        "seconds": seconds,
        "notes_per_s": seen / seconds,
        "load_seconds": load_seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_uncached(workdir: Path, notes: int) -> dict:
    import tensorflow as tf  # noqa: F401

    from keras_timbre.data import feature_dataset
    from keras_timbre.data import make_synthetic_dataset
    from keras_timbre.data import read_notes
    from keras_timbre.audio.frontend import FrontendConfig

    records = read_notes(make_synthetic_dataset(workdir / "wav", notes=notes, seed=0))
    dataset = feature_dataset(records, FrontendConfig(), None, batch_size=BATCH, shuffle=True, cache=False)
    seen = 0
    start = time.perf_counter()
    for batch in dataset:
        seen += int(batch.shape[0])
    seconds = time.perf_counter() - start
    return {"notes": seen, "seconds": seconds, "notes_per_s": seen / seconds, "peak_rss_mb": peak_rss_mb()}


def child_train(workdir: Path, steps: int) -> dict:
    import keras
    import numpy as np

    from keras_timbre.models.timbre_vae import TimbreVAE

    keras.utils.set_random_seed(0)
    model = TimbreVAE()
    model.compile(optimizer="adam", jit_compile="auto")
    x = np.random.default_rng(0).normal(size=(BATCH, 128, 256, 1)).astype("float32")
    model.train_on_batch(x)  # build and trace
    model.train_on_batch(x)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x)
    seconds = time.perf_counter() - start
    return {
        "backend": keras.backend.backend(),
        "steps": steps,
        "batch": BATCH,
        "notes_per_s": steps * BATCH / seconds,
        "step_seconds": seconds / steps,
        "params": int(model.count_params()),
        "jit_compile": model.jit_compile,  # what Keras resolved "auto" to
    }


def _first_notes(shards: list[dict], notes: int) -> list[dict]:
    kept, total = [], 0
    for shard in shards:
        if total >= notes:
            break
        kept.append(shard)
        total += shard["notes"]
    return kept


def _rss_at(samples, seen):
    return min(samples, key=lambda s: abs(s[0] - seen))[1] if samples else float("nan")


CHILDREN = {
    "write": child_write,
    "stream": child_stream,
    "memory": child_memory,
    "uncached": child_uncached,
    "train": child_train,
}


def run_child(kind: str, workdir: Path, count: int, timeout: float) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    command = [sys.executable, __file__, "--child", kind, "--workdir", str(workdir), "--count", str(count)]
    print(f"  {kind} {count} ...", flush=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {count} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- projection
def projection(
    per_device: float,
    params: int,
    stream_notes_per_s: float,
    devices=(1, 8, 64),
    bandwidth_gb_s: float = 10.0,
    latency_s: float = 50e-6,
    devices_per_host: int = 8,
) -> list[dict]:
    """Epoch time of full NSynth from measured per-device throughput (weak scaling, ring all-reduce)."""
    compute = BATCH / per_device  # seconds per step per device, at BATCH notes per device
    rows = []
    for d in devices:
        gradient_bytes = 4 * params
        allreduce = (
            0.0 if d == 1 else 2 * (d - 1) / d * gradient_bytes / (bandwidth_gb_s * 1e9) + 2 * (d - 1) * latency_s
        )
        step = compute + allreduce  # no overlap of communication with compute: conservative
        rate = d * BATCH / step
        hosts = math.ceil(d / devices_per_host)
        input_needed = rate / hosts  # notes/s each host's pipeline must deliver
        rows.append(
            {
                "devices": d,
                "global_batch": d * BATCH,
                "efficiency": compute / step,
                "notes_per_s": rate,
                "epoch_s": FULL_NSYNTH_TRAIN / rate,
                "allreduce_ms": 1e3 * allreduce,
                "input_per_host_notes_s": input_needed,
                "input_cores_per_host": input_needed / stream_notes_per_s * 2,
            }
        )
    return rows


# ------------------------------------------------------------------ report
def write_report(results: dict, out_dir: Path) -> None:
    from keras_timbre import atomic

    stream, memory = results["stream"], results["memory"]
    train, proj, write = results["train"], results["projection"], results["write"]
    uncached = results["uncached"]
    lines = [
        "# Scaling: streaming the feature cache, and a full-NSynth projection",
        "",
        f"`python benchmarks/bench_scaling.py` on {results['machine']}, {results['date']}. "
        "**The machine was shared with other jobs and noisy** (load average "
        f"{results['load_before']:.1f} before, {results['load_after']:.1f} after, on 2 cores): absolute rates "
        "are low and vary run to run; ratios and the shape of the curves are the result.",
        "",
        "Data: a feature cache at the default frontend (128 x 256 float32 log-mel, 131 kB a note), "
        f"{write['notes']} notes in {write['shards']} shards of {NOTES_PER_SHARD} ({write['gb']:.2f} GB), written at "
        f"{write['notes_per_s']:.0f} notes/s from log-mel of 64 synthetic notes (see the script's docstring: "
        "50k 4 s WAVs would be ~12.8 GB). Smaller sets are the first shards. Each measurement runs in a fresh "
        f"process; one shuffled, normalised epoch, batch {BATCH}, shuffle buffer {SHUFFLE_BUFFER} notes "
        f"(~{SHUFFLE_BUFFER * 131 / 1000:.0f} MB).",
        "",
        "## 1. Pipeline memory and throughput as the data grows",
        "",
        "Peak RSS is the whole process (Python, TensorFlow and the pipeline); 'above baseline' subtracts the "
        "RSS after imports and opening the data, before the first batch.",
        "",
        "| notes | streamed cache: peak RSS | above baseline | RSS at half / end of epoch | notes/s | s/epoch "
        "| in-memory array: peak RSS | above baseline | notes/s | s/epoch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in results["notes"]:
        s = stream[str(n)]
        m = memory.get(str(n))
        mem_cells = (
            f"{m['peak_rss_mb']:.0f} MB | {m['peak_rss_mb'] - m['baseline_rss_mb']:.0f} MB | "
            f"{m['notes_per_s']:.0f} | {m['seconds']:.1f}"
            if m
            else "not run: ~%.1f GB a copy | | |" % (n * 131e3 / 1e9)
        )
        lines.append(
            f"| {n:,} | {s['peak_rss_mb']:.0f} MB | {s['peak_rss_mb'] - s['baseline_rss_mb']:.0f} MB "
            f"| {s['rss_at_half_mb']:.0f} / {s['rss_end_mb']:.0f} MB "
            f"| {s['notes_per_s']:.0f} | {s['seconds']:.1f} | {mem_cells} |"
        )
    ns = results["notes"]
    growth = stream[str(ns[-1])]["peak_rss_mb"] - stream[str(ns[0])]["peak_rss_mb"]
    host_needs = 8 * train["notes_per_s"]
    streamed = stream[str(ns[-1])]["notes_per_s"]
    input_verdict = (
        f"The input pipeline is not the limit here: streaming measured {streamed:.0f} notes/s on 2 shared cores, "
        f"above the {host_needs:.0f} notes/s a host of 8 such devices consumes."
        if streamed >= host_needs
        else f"Input would limit a host of 8 such devices: they consume {host_needs:.0f} notes/s, streaming measured "
        f"{streamed:.0f} notes/s on 2 shared cores; such a host needs ~{host_needs / streamed * 2:.0f} cores for the "
        "pipeline."
    )
    lines += [
        "",
        f"Streaming peak RSS grows by {growth:+.0f} MB from {ns[0]:,} to {ns[-1]:,} notes "
        f"({ns[-1] // ns[0]}x the data): it is set by the shuffle buffer, the interleaved shards and "
        "the prefetched batches, not by N. The in-memory array grows by 131 kB a note (times the copies "
        "tf.data makes), which is why full NSynth (38 GB of features) does not fit a laptop.",
        "",
        f"Without the cache, the pipeline decodes WAV and computes log-mel every epoch: "
        f"{uncached['notes_per_s']:.0f} notes/s on {uncached['notes']} synthetic notes, so streaming the cache is "
        f"**{stream[str(ns[-1])]['notes_per_s'] / uncached['notes_per_s']:.1f}x** faster per epoch "
        f"({ns[-1]:,} notes).",
        "",
        "The shards had just been written, so reads were probably served from the OS page cache "
        f"({write['gb']:.1f} GB fit "
        f"in RAM): {stream[str(ns[-1])]['notes_per_s']:.0f} notes/s is "
        f"{stream[str(ns[-1])]['notes_per_s'] * 131e3 / 1e6:.0f} MB/s of features; from a cold disk the rate is "
        "at most the disk's bandwidth / 131 kB. The 1k epoch is short enough for pipeline start-up to dominate.",
        "",
        "![time per epoch and peak RSS against notes](scaling.png)",
        "",
        "## 2. Training throughput and a full-NSynth projection",
        "",
        f"TimbreVAE at its defaults ({train['params']:,} parameters), {train['backend']} backend, "
        f"jit_compile={train['jit_compile']}, batch {train['batch']}, {train['steps']} timed steps after two "
        f"warm-up steps: **{train['notes_per_s']:.1f} notes/s** ({train['step_seconds']:.2f} s a step) on this "
        "shared 2-core CPU (benchmarks/results/training.md compares backends for the same model: on this "
        "CPU, JAX and torch train it several times slower than TensorFlow). That rate, 'one device', drives "
        "the projection of one epoch of the full NSynth "
        f"train split ({FULL_NSYNTH_TRAIN:,} notes):",
        "",
        "| devices | global batch | all-reduce / step | efficiency | notes/s | epoch | input each host must stream |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in proj:
        lines.append(
            f"| {row['devices']} | {row['global_batch']} | {row['allreduce_ms']:.1f} ms | "
            f"{100 * row['efficiency']:.0f}% | {row['notes_per_s']:.0f} | {_duration(row['epoch_s'])} | "
            f"{row['input_per_host_notes_s']:.0f} notes/s |"
        )
    lines += [
        "",
        "Assumptions (a paper projection, not a measurement): weak scaling at "
        f"{BATCH} notes per device; every device as fast as the one measured; gradients (float32, "
        f"{4 * train['params'] / 1e6:.1f} MB) all-reduced by a ring at 10 GB/s with 50 us per hop and no "
        "overlap with compute; 8 devices per host; data parallelism only (`tf.distribute` / "
        "`keras.distribution.DataParallel`). "
        + input_verdict
        + " On GPUs the per-device rate is far higher (not measured here: no GPU on this "
        "machine); with the same formula, a device at r notes/s gives an epoch of about 289,205 / (d * r * "
        "efficiency) seconds, and a host must then stream 8 r notes/s (~1 GB/s of features at r = 1000): "
        "give each host local disk and several cores for `interleave`/`map`. A global batch of "
        f"{proj[-1]['global_batch']} also changes optimisation (learning-rate scaling, warm-up); "
        "the epoch time says nothing about the epochs needed.",
        "",
    ]
    atomic.write_text(out_dir / "scaling.md", "\n".join(lines))
    atomic.write_json(out_dir / "scaling.json", results)
    _figure(results, out_dir / "scaling.png")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_timbre import atomic

    notes = results["notes"]
    stream = [results["stream"][str(n)] for n in notes]
    memory_notes = [n for n in notes if str(n) in results["memory"]]
    memory = [results["memory"][str(n)] for n in memory_notes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(notes, [s["seconds"] for s in stream], "o-", label="streamed cache (measured)")
    if memory:
        left.loglog(memory_notes, [m["seconds"] for m in memory], "s--", label="in-memory array (measured)")
    grid = [notes[0], FULL_NSYNTH_TRAIN]
    train = results["train"]["notes_per_s"]
    for row in results["projection"]:
        rate = row["notes_per_s"]
        left.loglog(grid, [n / rate for n in grid], ":", label=f"training, {row['devices']} device(s) (projected)")
    left.axvline(FULL_NSYNTH_TRAIN, color="grey", lw=0.8)
    left.text(FULL_NSYNTH_TRAIN, left.get_ylim()[0] * 1.5, " full NSynth", rotation=90, color="grey", fontsize=8)
    left.set_xlabel("notes")
    left.set_ylabel("seconds per epoch")
    left.set_title(f"Time per epoch (TimbreVAE: {train:.0f} notes/s/device)")
    left.legend(fontsize=7)
    right.semilogx(notes, [s["peak_rss_mb"] - s["baseline_rss_mb"] for s in stream], "o-", label="streamed cache")
    if memory:
        right.semilogx(
            memory_notes, [m["peak_rss_mb"] - m["baseline_rss_mb"] for m in memory], "s--", label="in-memory array"
        )
    right.axhline(SHUFFLE_BUFFER * 131e3 / 2**20, color="grey", lw=0.8, ls=":")
    right.text(
        notes[-1], SHUFFLE_BUFFER * 131e3 / 2**20, "shuffle buffer ", color="grey", fontsize=8, va="top", ha="right"
    )
    right.set_xlabel("notes")
    right.set_ylabel("peak RSS above baseline (MB)")
    right.set_title("Pipeline peak memory")
    right.legend(fontsize=8)
    fig.suptitle("keras-timbre scaling (2 shared CPU cores)", fontsize=10)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--memory-max", type=int, default=10000, help="largest N for the in-memory baseline")
    parser.add_argument("--uncached-notes", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="smoke run: no report written")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite scaling.md and scaling.png from --out/scaling.json, measuring nothing",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.workdir, args.count)))
        return 0

    if args.report_only:
        write_report(json.loads((args.out / "scaling.json").read_text()), args.out)
        print(f"rewrote {args.out / 'scaling.md'} and scaling.png")
        return 0
    notes = sorted(args.notes)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    needed = notes[-1] * 131.3e3 * 1.1
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(f"{workdir}: {needed / 1e9:.1f} GB needed for {notes[-1]} notes, {free / 1e9:.1f} GB free")
    results = {
        "notes": notes,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg()[0],
        "stream": {},
        "memory": {},
    }
    try:
        print(f"writing a {notes[-1]}-note feature cache in {workdir}", flush=True)
        results["write"] = run_child("write", workdir, notes[-1], timeout=900)
        for n in notes:
            results["stream"][str(n)] = run_child("stream", workdir, n, timeout=900)
            print(f"    {results['stream'][str(n)]}", flush=True)
            if n <= args.memory_max:
                results["memory"][str(n)] = run_child("memory", workdir, n, timeout=900)
                print(f"    {results['memory'][str(n)]}", flush=True)
        results["uncached"] = run_child("uncached", workdir, args.uncached_notes, timeout=900)
        print(f"    {results['uncached']}", flush=True)
        results["train"] = run_child("train", workdir, args.train_steps, timeout=900)
        print(f"    {results['train']}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    results["projection"] = projection(
        results["train"]["notes_per_s"], results["train"]["params"], results["stream"][str(notes[-1])]["notes_per_s"]
    )
    for row in results["projection"]:
        print(f"  {row['devices']:>3} devices: epoch {_duration(row['epoch_s'])}, efficiency {row['efficiency']:.0%}")
    if not args.quick:
        write_report(results, args.out)
        print(f"wrote {args.out / 'scaling.md'} and scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
