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

With `--waveforms`, it times instead the SavedModel's waveform outputs
(`reconstruct` and `synthesize`, batch 16 by default) rendered in the graph by
the shipped vocoder and by Griffin-Lim (`--griffin-lim-iters`, 32), side by
side: two exports of one model, in seconds of audio per second of wall time.
Results go to benchmarks/results/export_waveform.{md,json}.

    python benchmarks/bench_export.py                  # default TimbreVAE (untrained weights)
    python benchmarks/bench_export.py --run runs/demo  # a trained run's model and stats
    taskset -c 0 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/bench_export.py --waveforms   # one core, one thread
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

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from keras_timbre.export import saved_model as export  # noqa: E402
from keras_timbre.export import signatures  # noqa: E402
from keras_timbre.audio.stats import FeatureStats  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig  # noqa: E402
from keras_timbre.audio.frontend import librosa_log_mel  # noqa: E402
from keras_timbre.models.timbre_vae import TimbreVAE  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The target for the waveform outputs at batch 16 (seconds of audio per second of wall time).
WAVEFORM_TARGET = 50.0
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
    parser.add_argument("--batch", type=int, default=None, help="notes a request (default 64, --waveforms 16)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", default=None, help="markdown report (default results/export.md, or export_waveform.md)"
    )
    parser.add_argument("--waveforms", action="store_true", help="time the waveform outputs: vocoder vs Griffin-Lim")
    parser.add_argument("--griffin-lim-iters", type=int, default=export.GRIFFIN_LIM_ITERS)
    args = parser.parse_args(argv)
    if args.waveforms:
        return waveform_benchmark(args)
    args.out = args.out or str(RESULTS / "export.md")
    args.batch = args.batch or 64

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
        f"- Exported `reconstruct` (encoder + decoder with skips + its `waveform`, by the default renderer) at batch "
        f"{batch}: {recon:.3f} s "
        f"({batch * seconds_per_note / recon:.0f}x real time).",
        f"- Parity: max |z_mean(exported) - z_mean(librosa + Keras)| = {measured['parity']:.2e} on these notes.",
        f"- Export itself (trace + write): {measured['export_seconds']:.1f} s.",
        "",
        "Reproduce: `python benchmarks/bench_export.py` (add `--run RUN` for a trained model).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- waveform outputs


def waveform_benchmark(args) -> int:
    """`--waveforms`: the waveform outputs under each renderer; writes export_waveform.md and .json."""
    batch = args.batch or 16  # the batch for the waveform outputs
    model, config, stats, source = load_model(args.run)
    notes, notes_source = load_notes(batch, config)
    load_before = os.getloadavg()[0]
    measured = measure_waveforms(model, config, stats, notes, args.repeats, args.griffin_lim_iters)
    result = {
        "model": source,
        "audio": notes_source,
        "frontend": config.to_dict(),
        "batch": batch,
        "note_seconds": config.num_samples / config.sample_rate,
        "repeats": args.repeats,
        "target_x_real_time": WAVEFORM_TARGET,
        "environment": {**environment(), "load_average": [load_before, os.getloadavg()[0]]},
        **measured,
    }
    text = waveform_report(result)
    print(text)
    from keras_timbre import atomic

    out = Path(args.out or RESULTS / "export_waveform.md")
    atomic.write_text(out, text)
    atomic.write_json(out.with_suffix(".json"), result)
    return 0


def measure_waveforms(model, config, stats, notes: np.ndarray, repeats: int, griffin_lim_iters: int) -> dict:
    """Per renderer: the export's renderer, its export time, and the median and best seconds of each signature.

    Both exports are loaded first and their calls interleaved round by round, so
    a neighbour's load on the shared machine falls on both renderers alike.
    """
    batch = tf.constant(notes)
    z = tf.constant(np.random.default_rng(0).normal(size=(len(notes), model.latent_dim)).astype(np.float32))
    renderers, calls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, choice in (("vocoder", "default"), ("griffin-lim", "griffin-lim")):
            print(f"exporting with {label} ...", flush=True)
            start = time.perf_counter()
            saved = export.export_saved_model(
                model, Path(tmp) / label / "1", config, stats, griffin_lim_iters=griffin_lim_iters, vocoder=choice
            )
            export_seconds = time.perf_counter() - start
            record = export.read_export_metadata(saved)
            if record["waveform_renderer"] != label:
                raise RuntimeError(f"vocoder={choice!r} exported with {record['renderer']}, not {label}")
            signature = tf.saved_model.load(str(saved)).signatures
            renderers[label] = {"renderer": record["renderer"], "export_seconds": export_seconds}
            calls[label, "reconstruct"] = lambda s=signature: s["reconstruct"](waveform=batch)["waveform"].numpy()
            calls[label, "synthesize"] = lambda s=signature: s["synthesize"](z=z)["waveform"].numpy()
            # The same decoder without a renderer: what the waveform costs on top of the log-mel.
            calls[label, "decode"] = lambda s=signature: s["decode"](z=z)["log_mel"].numpy()
            if label == "vocoder":
                renderers[label]["parity_max_abs"] = vocoder_parity(signature, batch)
        print(f"timing {len(calls)} calls x {repeats} rounds ...", flush=True)
        times = interleaved(calls, repeats)
    for (label, name), values in times.items():
        renderers[label].setdefault("seconds", {})[name] = statistics.median(values)
        renderers[label].setdefault("best_seconds", {})[name] = min(values)
    return {"renderers": renderers}


def vocoder_parity(signature, batch) -> float:
    """Max |the graph's `reconstruct` waveform - `Vocoder.to_audio` of its log-mel| (the vocoder loaded afresh)."""
    from keras_timbre.vocoder.load import load_vocoder

    out = signature["reconstruct"](waveform=batch)
    return float(np.abs(out["waveform"].numpy() - load_vocoder().to_audio(out["log_mel"].numpy())).max())


def interleaved(calls: dict, repeats: int, warmup: int = 2) -> dict:
    """Wall seconds of each of `calls` (name: fn), `repeats` rounds of one call each, after `warmup` rounds."""
    times = {name: [] for name in calls}
    for round_index in range(warmup + repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def environment() -> dict:
    """`machine.environment()` with the TensorFlow and Keras versions."""
    return {**machine.environment(), "tensorflow": tf.__version__, "keras": keras.__version__}


def waveform_report(result: dict) -> str:
    """benchmarks/results/export_waveform.md: one row per signature and renderer."""
    env, batch, audio_seconds = result["environment"], result["batch"], result["batch"] * result["note_seconds"]
    threads = " ".join(f"{k}={v or '(unset)'}" for k, v in env["threads"].items())
    lines = [
        "# Export benchmark: the SavedModel's waveform outputs, shipped vocoder vs in-graph Griffin-Lim",
        "",
        f"Model: {result['model']}. Audio: {result['audio']}, {result['note_seconds']:g} s each at "
        f"{result['frontend']['sample_rate']} Hz; batch {batch} = {audio_seconds:g} s of audio a request.",
        f"Machine: {env['cpu_model']} ({env['cpu_flags']}), {env['machine']}; this process pinned to CPU(s) "
        f"{env['cpu_list']} (`taskset`), `{threads}`; TensorFlow {env['tensorflow']}, Keras {env['keras']}, no GPU; "
        f"load average {env['load_average'][0]:.1f} before, {env['load_average'][1]:.1f} after (the 2-core "
        f"machine is shared). Medians (and best) of {result['repeats']} calls after 2 warm-up rounds, the "
        "exports' calls interleaved round by round, through `tf.saved_model.load`; "
        f"{env['time']}.",
        "",
        f"| signature (batch {batch}) | the export's renderer | seconds: median (best) | x real time: median (best) |",
        "|---|---|---|---|",
    ]
    for signature in ("reconstruct", "synthesize", "decode"):
        for label, measured in result["renderers"].items():
            median, best = measured["seconds"][signature], measured["best_seconds"][signature]
            name = f"`{signature}`" + (" (log-mel only, no renderer)" if signature == "decode" else " `waveform`")
            lines.append(
                f"| {name} | {measured['renderer']} | {median:.3f} ({best:.3f}) | "
                f"{audio_seconds / median:.0f}x ({audio_seconds / best:.0f}x) |"
            )
    lines += ["", *waveform_notes(result), ""]
    return "\n".join(lines)


def waveform_notes(result: dict) -> list[str]:
    vocoder, griffin_lim = result["renderers"]["vocoder"], result["renderers"]["griffin-lim"]
    audio_seconds = result["batch"] * result["note_seconds"]
    target = result["target_x_real_time"]
    lines = []
    for signature in ("reconstruct", "synthesize"):
        factor = audio_seconds / vocoder["seconds"][signature]
        best = audio_seconds / vocoder["best_seconds"][signature]
        speedup = griffin_lim["seconds"][signature] / vocoder["seconds"][signature]
        verdict = "meets" if factor >= target else "misses"
        lines.append(
            f"- `{signature}` with the vocoder: **{factor:.0f}x real time** median, {best:.0f}x best ({verdict} the "
            f"issue's >= {target:g}x at the median), {speedup:.1f}x the speed of Griffin-Lim (medians)."
        )
    for label, measured in result["renderers"].items():
        lines.append(
            f"- {measured['renderer']} alone (`synthesize` - `decode`): "
            f"{measured['seconds']['synthesize'] - measured['seconds']['decode']:.3f} s a batch."
        )
    lines += [
        f"- Parity: the graph's vocoder vs `Vocoder.to_audio` on the same log-mel, max |difference| = "
        f"{vocoder['parity_max_abs']:.1e}.",
        f"- Export itself (trace + write): {vocoder['export_seconds']:.1f} s with the vocoder, "
        f"{griffin_lim['export_seconds']:.1f} s with Griffin-Lim.",
        "",
        "Reproduce: `taskset -c 0 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 "
        f"python benchmarks/bench_export.py --waveforms --repeats {result['repeats']}`.",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
