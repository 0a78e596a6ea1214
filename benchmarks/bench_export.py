"""Exported `encode` (frontend in the graph) vs the Python path (librosa + Keras), on CPU.

Measures, side by side in one process:

- exported SavedModel, `encode` signature: waveform in, (z_mean, z_log_var) out,
  latency at batch 1 and throughput at batch 64;
- the Python path a user would write without the export: `librosa` log-mel per
  note (`frontend.librosa_log_mel`), `FeatureStats.normalize`, then the Keras
  model, either `model.predict` (the full forward pass, batch 64) or
  `model.encode` called eagerly (encoder only, the fair twin of `encode`).

Throughput is reported in notes/s and as a real-time factor: seconds of audio
encoded per second of compute. Results go to benchmarks/results/export.md.

    python benchmarks/bench_export.py                  # default TimbreVAE (untrained weights)
    python benchmarks/bench_export.py --run runs/demo  # a trained run's model and stats
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"  # the export runs under TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_timbre.export import saved_model as export  # noqa: E402
from keras_timbre.export import signatures  # noqa: E402
from keras_timbre.audio.stats import FeatureStats  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig  # noqa: E402
from keras_timbre.audio.frontend import librosa_log_mel  # noqa: E402
from keras_timbre.models.timbre_vae import TimbreVAE  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NSYNTH_MINI = Path(os.environ.get("KERAS_TIMBRE_NSYNTH_MINI", REPO.parent / "shared" / "nsynth-mini"))


def load_notes(count: int, config: FrontendConfig) -> tuple[np.ndarray, str]:
    """`count` real NSynth notes if nsynth-mini is there, else synthetic harmonic tones."""
    files = sorted((NSYNTH_MINI / "audio").glob("*.flac"))[:count] if (NSYNTH_MINI / "audio").is_dir() else []
    if len(files) == count:
        from keras_timbre.audio.io import load_audio

        notes = np.stack([load_audio(f, config.sample_rate, config.num_samples) for f in files])
        return notes, f"{count} real NSynth notes from nsynth-mini"
    rng = np.random.default_rng(0)
    t = np.arange(config.num_samples) / config.sample_rate
    notes = [
        sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) * np.exp(-t) * 0.2
        for f0 in rng.uniform(50, 1000, size=count)
    ]
    return np.stack(notes).astype(np.float32), f"{count} synthetic harmonic tones"


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run directory; default: an untrained default TimbreVAE")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "export.md"))
    args = parser.parse_args(argv)

    if args.run:
        model, config, stats = export.load_run_for_export(args.run)
        source = f"run {args.run}"
    else:
        keras.utils.set_random_seed(0)
        config = FrontendConfig()
        model = TimbreVAE.from_variant("skip+grad", input_shape=(*config.feature_shape, 1))
        stats = FeatureStats(mean=np.full(config.n_mels, -40.0), std=np.full(config.n_mels, 20.0))
        source = "default TimbreVAE (skip+grad, 128x256 log-mel, latent 64), untrained weights"
    notes, notes_source = load_notes(args.batch, config)
    load_before = os.getloadavg()[0]
    seconds_per_note = config.num_samples / config.sample_rate

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        saved = export.export_saved_model(model, Path(tmp) / "timbre" / "1", config, stats)
        export_seconds = time.perf_counter() - start
        served = tf.saved_model.load(str(saved))
        encode = served.signatures["encode"]
        one, batch = tf.constant(notes[:1]), tf.constant(notes)

        def python_features(waveforms):
            return np.stack([stats.normalize(librosa_log_mel(w, config)) for w in waveforms])[..., None]

        results = {}
        print("timing exported encode ...", flush=True)
        results["exported `encode` (SavedModel)"] = (
            timed(lambda: encode(waveform=one)["z_mean"].numpy(), repeats=20, warmup=3),
            timed(lambda: encode(waveform=batch)["z_mean"].numpy(), repeats=args.repeats),
        )
        print("timing python path ...", flush=True)
        results["librosa + `model.encode` (eager)"] = (
            timed(
                lambda: keras.ops.convert_to_numpy(model.encode(python_features(notes[:1]))[0]), repeats=20, warmup=3
            ),
            timed(lambda: keras.ops.convert_to_numpy(model.encode(python_features(notes))[0]), repeats=args.repeats),
        )
        results["librosa + `model.predict` (full forward)"] = (
            timed(lambda: model.predict(python_features(notes[:1]), verbose=0), repeats=20, warmup=3),
            timed(
                lambda: model.predict(python_features(notes), batch_size=args.batch, verbose=0), repeats=args.repeats
            ),
        )
        # The same export without slicing the batch (CHUNK_SIZE = batch): what slicing buys.
        chunk_size, signatures.CHUNK_SIZE = signatures.CHUNK_SIZE, args.batch
        try:
            whole = export.export_saved_model(model, Path(tmp) / "whole" / "1", config, stats)
        finally:
            signatures.CHUNK_SIZE = chunk_size
        encode_whole = tf.saved_model.load(str(whole)).signatures["encode"]
        whole_batch = timed(lambda: encode_whole(waveform=batch)["z_mean"].numpy(), repeats=args.repeats)
        features_only = timed(lambda: python_features(notes), repeats=args.repeats, warmup=1)
        reconstruct_batch = timed(
            lambda: served.signatures["reconstruct"](waveform=batch)["z_mean"].numpy(), repeats=args.repeats
        )

        # Parity on these notes: the export must compute what the Python path computes.
        exported_z = encode(waveform=batch)["z_mean"].numpy()
        python_z = keras.ops.convert_to_numpy(model.encode(python_features(notes))[0])
        parity = float(np.abs(exported_z - python_z).max())

    load_after = os.getloadavg()[0]
    exported_batch = results["exported `encode` (SavedModel)"][1]
    best_python = min(r[1] for name, r in results.items() if name.startswith("librosa"))
    lines = [
        "# Export benchmark: exported `encode` vs the Python path",
        "",
        f"Model: {source}. Audio: {notes_source}, {seconds_per_note:g} s each at {config.sample_rate} Hz.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{load_before:.1f} before, {load_after:.1f} after: noisy, all paths equally; medians of "
        f"{args.repeats} batch runs, 20 single-note runs), TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        "no GPU. The SavedModel is called through `tf.saved_model.load` in Python: TF Serving runs the same graph "
        "without the Python call overhead.",
        "",
        f"| path | latency, batch 1 (ms) | batch {args.batch} (s) | notes/s | real-time factor |",
        "|---|---|---|---|---|",
    ]
    for name, (latency, batch_seconds) in results.items():
        notes_per_s = args.batch / batch_seconds
        lines.append(
            f"| {name} | {latency * 1e3:.1f} | {batch_seconds:.3f} | {notes_per_s:.0f} | "
            f"{notes_per_s * seconds_per_note:.0f}x |"
        )
    latency_ratio = results["librosa + `model.encode` (eager)"][0] / results["exported `encode` (SavedModel)"][0]
    lines += [
        "",
        f"- Exported `encode` at batch {args.batch}: "
        f"**{args.batch * seconds_per_note / exported_batch:.0f}x real time**"
        f" (target >= 500x), **{best_python / exported_batch:.1f}x** the throughput of the faster Python path;"
        f" at batch 1, {latency_ratio:.1f}x"
        " lower latency than librosa + eager `encode`.",
        f"- The graph runs a batch in slices of {export.CHUNK_SIZE} notes (cache-sized): the same export "
        f"taking all {args.batch} notes at once needs {whole_batch:.3f} s "
        f"({args.batch * seconds_per_note / whole_batch:.0f}x real time, "
        f"{whole_batch / exported_batch:.1f}x slower).",
        f"- librosa features alone for {args.batch} notes: {features_only:.3f} s "
        f"({features_only / best_python:.0%} of the faster Python path).",
        f"- Exported `reconstruct` (encoder + decoder with skips) at batch {args.batch}: {reconstruct_batch:.3f} s "
        f"({args.batch * seconds_per_note / reconstruct_batch:.0f}x real time).",
        f"- Parity: max |z_mean(exported) - z_mean(librosa + Keras)| = {parity:.2e} on these notes.",
        f"- Export itself (trace + write): {export_seconds:.1f} s.",
        "",
        "Reproduce: `python benchmarks/bench_export.py` (add `--run RUN` for a trained model).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    from keras_timbre import atomic

    atomic.write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
