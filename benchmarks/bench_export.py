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

    model, config, stats, source = load_model(args.run)
    notes, notes_source = load_notes(args.batch, config)
    load_before = os.getloadavg()[0]
    measured = measure(model, config, stats, notes, args.repeats)
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after: noisy, all paths equally; medians of "
        f"{args.repeats} batch runs, 20 single-note runs), TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        "no GPU. The SavedModel is called through `tf.saved_model.load` in Python: TF Serving runs the same graph "
        "without the Python call overhead."
    )
    seconds_per_note = config.num_samples / config.sample_rate
    audio = f"Audio: {notes_source}, {seconds_per_note:g} s each at {config.sample_rate} Hz."
    text = report(measured, args.batch, seconds_per_note, f"Model: {source}. {audio}", machine)
    print(text)
    from keras_timbre import atomic

    atomic.write_text(args.out, text)
    return 0


def load_model(run):
    """(model, FrontendConfig, FeatureStats, description): a run's, or the default untrained TimbreVAE."""
    if run:
        model, config, stats = export.load_run_for_export(run)
        return model, config, stats, f"run {run}"
    keras.utils.set_random_seed(0)
    config = FrontendConfig()
    model = TimbreVAE.from_variant("skip+grad", input_shape=(*config.feature_shape, 1))
    stats = FeatureStats(mean=np.full(config.n_mels, -40.0), std=np.full(config.n_mels, 20.0))
    return model, config, stats, "default TimbreVAE (skip+grad, 128x256 log-mel, latent 64), untrained weights"


def measure(model, config, stats, notes: np.ndarray, repeats: int) -> dict:
    """Every timing of the report (seconds), the export's parity with the Python path, and the export time."""
    batch_size = len(notes)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        saved = export.export_saved_model(model, Path(tmp) / "timbre" / "1", config, stats)
        export_seconds = time.perf_counter() - start
        served = tf.saved_model.load(str(saved))
        encode = served.signatures["encode"]
        one, batch = tf.constant(notes[:1]), tf.constant(notes)

        def python_features(waveforms):
            return np.stack([stats.normalize(librosa_log_mel(w, config)) for w in waveforms])[..., None]

        def python_encode(waveforms):
            return keras.ops.convert_to_numpy(model.encode(python_features(waveforms))[0])

        def both(fn, inputs=(notes[:1], notes)):
            """(latency at batch 1, time for the whole batch)."""
            return timed(lambda: fn(inputs[0]), repeats=20, warmup=3), timed(lambda: fn(inputs[1]), repeats=repeats)

        print("timing exported encode and the python path ...", flush=True)
        paths = {
            "exported `encode` (SavedModel)": both(lambda w: encode(waveform=w)["z_mean"].numpy(), (one, batch)),
            "librosa + `model.encode` (eager)": both(python_encode),
            "librosa + `model.predict` (full forward)": both(
                lambda w: model.predict(python_features(w), batch_size=batch_size, verbose=0)
            ),
        }
        # The same export without slicing the batch (CHUNK_SIZE = batch): what slicing buys.
        chunk_size, signatures.CHUNK_SIZE = signatures.CHUNK_SIZE, batch_size
        try:
            whole = export.export_saved_model(model, Path(tmp) / "whole" / "1", config, stats)
        finally:
            signatures.CHUNK_SIZE = chunk_size
        encode_whole = tf.saved_model.load(str(whole)).signatures["encode"]
        reconstruct = served.signatures["reconstruct"]
        return {
            "paths": paths,
            "whole_batch": timed(lambda: encode_whole(waveform=batch)["z_mean"].numpy(), repeats=repeats),
            "features_only": timed(lambda: python_features(notes), repeats=repeats, warmup=1),
            "reconstruct_batch": timed(lambda: reconstruct(waveform=batch)["z_mean"].numpy(), repeats=repeats),
            # Parity on these notes: the export must compute what the Python path computes.
            "parity": float(np.abs(encode(waveform=batch)["z_mean"].numpy() - python_encode(notes)).max()),
            "export_seconds": export_seconds,
        }


def report(measured: dict, batch: int, seconds_per_note: float, source: str, machine: str) -> str:
    """benchmarks/results/export.md: the table of paths and the notes under it."""
    paths = measured["paths"]
    lines = ["# Export benchmark: exported `encode` vs the Python path", "", source, machine, ""]
    lines += [
        f"| path | latency, batch 1 (ms) | batch {batch} (s) | notes/s | real-time factor |",
        "|---|---|---|---|---|",
    ]
    for name, (latency, batch_seconds) in paths.items():
        notes_per_s = batch / batch_seconds
        lines.append(
            f"| {name} | {latency * 1e3:.1f} | {batch_seconds:.3f} | {notes_per_s:.0f} | "
            f"{notes_per_s * seconds_per_note:.0f}x |"
        )
    exported_latency, exported_batch = paths["exported `encode` (SavedModel)"]
    best_python = min(r[1] for name, r in paths.items() if name.startswith("librosa"))
    latency_ratio = paths["librosa + `model.encode` (eager)"][0] / exported_latency
    whole, features, recon = measured["whole_batch"], measured["features_only"], measured["reconstruct_batch"]
    lines += [
        "",
        f"- Exported `encode` at batch {batch}: **{batch * seconds_per_note / exported_batch:.0f}x real time**"
        f" (target >= 500x), **{best_python / exported_batch:.1f}x** the throughput of the faster Python path;"
        f" at batch 1, {latency_ratio:.1f}x lower latency than librosa + eager `encode`.",
        f"- The graph runs a batch in slices of {signatures.CHUNK_SIZE} notes (cache-sized): the same export "
        f"taking all {batch} notes at once needs {whole:.3f} s ({batch * seconds_per_note / whole:.0f}x real time, "
        f"{whole / exported_batch:.1f}x slower).",
        f"- librosa features alone for {batch} notes: {features:.3f} s ({features / best_python:.0%} of the faster "
        "Python path).",
        f"- Exported `reconstruct` (encoder + decoder with skips) at batch {batch}: {recon:.3f} s "
        f"({batch * seconds_per_note / recon:.0f}x real time).",
        f"- Parity: max |z_mean(exported) - z_mean(librosa + Keras)| = {measured['parity']:.2e} on these notes.",
        f"- Export itself (trace + write): {measured['export_seconds']:.1f} s.",
        "",
        "Reproduce: `python benchmarks/bench_export.py` (add `--run RUN` for a trained model).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
