"""Every inverse of the features on held-out real notes, side by side: quality, and speed on every backend.

Every inverse voices the *true* log-mel of each note (a perfect model); its
audio is compared with the real note by `keras_timbre.analysis.audio_metrics`
(the one definition, shared with `keras-timbre evaluate`):

- re-analysed mel LSD (dB): `reanalysed_lsd_db` (the audio through the
  frontend, `lsd_db` above its floor);
- multi-resolution STFT distance (dB): `mr_stft_distance_db` (FFT 512/1024/2048,
  hop a quarter, Hann, amplitudes re a full-scale sinusoid floored at 1e-5, -100 dB);
- f0 error (cents): `f0_error_cents` on the held 3 s of every note (pYIN an
  octave either side of its labelled pitch; median over the frames voiced in
  both), through `keras_timbre.evaluation.evaluator.pitched_f0_error`.

The inverses: the shipped vocoder (or `--vocoder PATH`), librosa's NNLS
Griffin-Lim (`mel_to_audio`, 64 it., on `--griffin-lim-notes` notes: it is
slow), batched `griffin_lim_audio` (16 it.), in-graph `tf_mel_to_audio` (32
it., in a `tf.function`) and `borrowed_phase_audio` (the real note's phase: an
oracle, not a renderer). Speed: seconds of 4 s notes voiced per second of wall
time (x real time) at batch 1 and 16, best of a few calls after a warm-up, in
one subprocess per Keras backend (the backend is fixed at import; only the
vocoder runs on it, the others are librosa or TensorFlow whatever the backend).

`--diagnose` adds two quality rows that say where the vocoder's error is: its
predicted STFT magnitude with the real note's phase, and with 16 iterations
of Griffin-Lim started from its predicted phase (not timed).

The held-out notes are those `keras_timbre.training.vocoder.vocoder_split`
keeps out of the vocoder's training: half unseen pitches of trained
instruments, half instruments never trained on (each list spread evenly);
each metric is also given per kind.

Usage (from the repository root; needs ../shared/nsynth-mini or --data), pinned to one core and thread:
    taskset -c 0 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 \\
        XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/bench_vocoder.py
    python benchmarks/bench_vocoder.py --progress --vocoder VOC_RUN --label "vocoder (N steps)"   # one progress row

Appends its rows to benchmarks/results/vocoder.json and rewrites vocoder.md from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package, wherever it runs from

import numpy as np  # noqa: E402

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from keras_timbre.analysis import audio_metrics  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig  # noqa: E402
from keras_timbre.data.readers import read_notes  # noqa: E402
from keras_timbre.training.vocoder import Notes, load_notes, vocoder_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "nsynth-mini"
BACKENDS = ("tensorflow", "jax", "torch")
BATCHES = (1, 16)
METRICS = "audio_metrics"  # rows scored by keras_timbre.analysis.audio_metrics; older rows by the v1 helpers


@dataclasses.dataclass
class Inverse:
    """One way back from log-mel to audio: `voice(log_mel_db, waveforms) -> audio`."""

    name: str
    voice: Callable[[np.ndarray, np.ndarray], np.ndarray]
    quality_notes: int | None = None  # None: every note
    repeats: int = 3
    weights_mb: float = 0.0


def inverses(frontend: FrontendConfig, vocoder_path: str | None, label: str | None, gl_notes: int) -> list[Inverse]:
    """The five inverses, the vocoder first (its weights loaded once)."""
    import tensorflow as tf

    from keras_timbre.audio import griffin_lim
    from keras_timbre.vocoder import load_vocoder

    vocoder = load_vocoder(vocoder_path)
    vocoder.check_frontend(frontend, "benchmark")
    graph = tf.function(
        lambda x: griffin_lim.tf_mel_to_audio(x, frontend, n_iter=32),
        input_signature=[tf.TensorSpec((None, *frontend.feature_shape), tf.float32)],
    )
    return [
        Inverse(
            label or ("shipped vocoder" if vocoder_path is None else f"vocoder ({vocoder_path})"),
            lambda db, _: vocoder.to_audio(db),
            weights_mb=vocoder.num_weight_bytes / 2**20,
        ),
        Inverse(
            "`mel_to_audio` (librosa NNLS Griffin-Lim, 64 it.)",
            lambda db, _: np.stack([griffin_lim.mel_to_audio(note, frontend, n_iter=64) for note in db]),
            quality_notes=gl_notes,
            repeats=1,
        ),
        Inverse("`griffin_lim_audio` (batched, pseudo-inverse, 16 it.)", lambda db, _: _gl16(db, frontend)),
        Inverse("`tf_mel_to_audio` (in-graph fast Griffin-Lim, 32 it.)", lambda db, _: graph(db).numpy()),
        Inverse(
            "`borrowed_phase_audio` (the real note's phase: an oracle)",
            lambda db, wav: griffin_lim.borrowed_phase_audio(db, wav, frontend),
        ),
    ]


def _gl16(log_mel_db: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    from keras_timbre.audio.griffin_lim import griffin_lim_audio

    return griffin_lim_audio(log_mel_db, frontend, n_iter=16)


# ---------------------------------------------------------------------------- notes


def held_out(data: Path, count: int, frontend: FrontendConfig) -> tuple[Notes, int]:
    """`count` held-out notes, half unseen pitches then half unseen instruments; and how many are the first kind."""
    _, pitches, instruments = vocoder_split(read_notes(data))

    def spread(records, k):
        return [records[i] for i in np.linspace(0, len(records) - 1, k).astype(int)] if k else []

    picked = spread(pitches, count - count // 2) + spread(instruments, count // 2)
    notes = load_notes(picked, frontend)
    return notes, sum(record in pitches for record in notes.records)


def subset(notes: Notes, unseen_pitch: int, count: int | None) -> tuple[Notes, int]:
    """Up to `count` notes, half of each kind as the full list; and how many of them are unseen pitches."""
    if count is None or count >= len(notes):
        return notes, unseen_pitch
    first = min(count - count // 2, unseen_pitch)
    keep = list(range(first)) + list(range(unseen_pitch, len(notes)))[: count - first]
    return Notes(notes.waveforms[keep], notes.log_mel_db[keep], [notes.records[i] for i in keep]), first


# ---------------------------------------------------------------------------- quality


def score(audio: np.ndarray, notes: Notes, frontend: FrontendConfig, unseen_pitch: int) -> dict:
    """The audio metrics over all notes, and mel LSD and MR-STFT per kind of held-out note."""
    from keras_timbre.evaluation.evaluator import pitched_f0_error

    def both(part):
        return (
            audio_metrics.reanalysed_lsd_db(audio[part], notes.waveforms[part], frontend),
            audio_metrics.mr_stft_distance_db(audio[part], notes.waveforms[part]),
        )

    row = dict(zip(("mel_lsd_db", "mr_stft_db"), both(slice(None))))
    if 0 < unseen_pitch < len(audio):
        row.update(zip(("pitch_mel_lsd_db", "pitch_mr_stft_db"), both(slice(0, unseen_pitch))))
        row.update(zip(("instrument_mel_lsd_db", "instrument_mr_stft_db"), both(slice(unseen_pitch, None))))
    cents, pitched = pitched_f0_error(audio, notes.waveforms, notes.records, frontend, count=len(notes))
    row.update(f0_error_cents=cents, f0_notes=pitched, notes=len(notes), metrics=METRICS)
    return row


def quality_rows(
    chosen: list[Inverse], notes: Notes, unseen_pitch: int, frontend: FrontendConfig, common: int
) -> list[dict]:
    """Each inverse scored on its notes, and on the `common` notes every inverse voices (`common_*`)."""
    shared, _ = subset(notes, unseen_pitch, common)
    rows = []
    for inverse in chosen:
        part, first = subset(notes, unseen_pitch, inverse.quality_notes)
        started = time.perf_counter()
        audio = inverse.voice(part.log_mel_db, part.waveforms)
        row = {"inverse": inverse.name, "weights_mb": inverse.weights_mb}
        row.update(score(audio, part, frontend, first))
        # Notes differ in difficulty (a bass that decays into silence is easy): compare on the same ones too.
        among = [part.records.index(record) for record in shared.records]
        row.update(
            common_notes=len(among),
            common_mel_lsd_db=audio_metrics.reanalysed_lsd_db(audio[among], shared.waveforms, frontend),
            common_mr_stft_db=audio_metrics.mr_stft_distance_db(audio[among], shared.waveforms),
        )
        print(f"  {inverse.name}: {row['mel_lsd_db']:.2f} dB mel, {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(row)
    return rows


def diagnosis_rows(vocoder_path, notes: Notes, unseen_pitch: int, frontend: FrontendConfig) -> list[dict]:
    """Where the vocoder's error is: its magnitude with the note's own phase, and with 16 it. of Griffin-Lim."""
    import librosa
    from keras import ops

    from keras_timbre.vocoder import load_vocoder

    vocoder = load_vocoder(vocoder_path)
    features = notes.log_mel_db
    magnitude, phase = vocoder.head.spectrum(vocoder.backbone(features), features)
    magnitude = np.swapaxes(np.asarray(ops.convert_to_numpy(magnitude)), 1, 2)  # (notes, bins, frames)
    phase = np.swapaxes(np.asarray(ops.convert_to_numpy(phase)), 1, 2)
    stft = dict(n_fft=frontend.n_fft, hop_length=frontend.hop_length)

    def inverse(spectrum):
        return librosa.istft(spectrum, hop_length=frontend.hop_length, length=frontend.num_samples)

    frames = magnitude.shape[-1]
    own_phase = np.angle(librosa.stft(notes.waveforms, **stft))[..., :frames]
    audio = [("vocoder magnitude + the note's own phase", inverse(magnitude * np.exp(1j * own_phase)))]
    estimate = magnitude * np.exp(1j * phase)
    for _ in range(16):
        estimate = magnitude * np.exp(1j * np.angle(librosa.stft(inverse(estimate), **stft)[..., :frames]))
    audio.append(("vocoder magnitude + 16 it. Griffin-Lim from its phase", inverse(estimate)))
    weights = vocoder.num_weight_bytes / 2**20
    return [
        {"inverse": name, "weights_mb": weights, **score(np.clip(clip, -1, 1), notes, frontend, unseen_pitch)}
        for name, clip in audio
    ]


# ---------------------------------------------------------------------------- speed


def speed(inverse: Inverse, notes: Notes, frontend: FrontendConfig, batch: int) -> float:
    """x real time of `inverse` on `batch` notes, best of its repeats after a warm-up (none where it is slow)."""
    pick = np.resize(np.arange(len(notes)), batch)
    features, waveforms = notes.log_mel_db[pick], notes.waveforms[pick]
    if inverse.repeats > 1 or batch == 1:
        inverse.voice(features, waveforms)  # compiles, traces, fills caches
    best = float("inf")
    for _ in range(inverse.repeats):
        start = time.perf_counter()
        inverse.voice(features, waveforms)
        best = min(best, time.perf_counter() - start)
    return batch * frontend.duration / best


def timing_worker(npz: str, vocoder_path: str | None, label: str | None, gl_notes: int) -> list[dict]:
    """In a subprocess with KERAS_BACKEND set: every inverse at every batch size; the vocoder's LSD as a check."""
    import keras

    data = np.load(npz, allow_pickle=False)
    frontend = FrontendConfig()
    notes = Notes(data["waveforms"], data["log_mel_db"], [None] * len(data["waveforms"]))
    rows, chosen = [], inverses(frontend, vocoder_path, label, gl_notes)
    for inverse in chosen:
        row = {"inverse": inverse.name, "backend": keras.backend.backend()}
        for batch in BATCHES:
            row[f"speed_b{batch}"] = speed(inverse, notes, frontend, batch)
        print(f"  {row}", file=sys.stderr, flush=True)
        rows.append(row)
    audio = chosen[0].voice(notes.log_mel_db, notes.waveforms)
    rows[0]["mel_lsd_db"] = audio_metrics.reanalysed_lsd_db(audio, notes.waveforms, frontend)
    return rows


def timing_rows(notes: Notes, args) -> list[dict]:
    """`timing_worker` in one subprocess per backend, the notes handed over in a temporary .npz."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "notes.npz"
        np.savez(npz, waveforms=notes.waveforms, log_mel_db=notes.log_mel_db)
        for backend in args.backends:
            command = [sys.executable, __file__, "--timing-worker", str(npz)]
            command += ["--vocoder", args.vocoder] if args.vocoder else []
            command += ["--label", args.label] if args.label else []
            print(f"timing on {backend} ...", flush=True)
            env = {**os.environ, "KERAS_BACKEND": backend}
            done = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True)
            rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows


# ---------------------------------------------------------------------------- environment, results


def environment() -> dict:
    return machine.environment()


def versions() -> dict:
    import importlib.metadata as metadata

    return {name: metadata.version(name) for name in ("keras", "tensorflow", "jax", "torch", "librosa")}


def comparison(args, frontend: FrontendConfig) -> list[dict]:
    """Quality of every inverse (TensorFlow, this process), then speed on every backend: one run's rows."""
    started = time.perf_counter()
    notes, unseen_pitch = held_out(Path(args.data), args.notes, frontend)
    print(f"{len(notes)} held-out notes ({unseen_pitch} unseen pitches); quality ...", flush=True)
    chosen = inverses(frontend, args.vocoder, args.label, args.griffin_lim_notes)
    env = {**environment(), "versions": versions(), "run": time.strftime("%Y-%m-%dT%H:%M:%S")}
    quality = quality_rows(chosen, notes, unseen_pitch, frontend, args.griffin_lim_notes)
    if args.diagnose:
        quality += diagnosis_rows(args.vocoder, notes, unseen_pitch, frontend)
    rows = [{**env, "table": "quality", **row} for row in quality]
    rows += [{**env, "table": "speed", **row} for row in timing_rows(notes, args)]
    for row in rows:
        row["run_seconds"] = round(time.perf_counter() - started)
    return rows


def progress_row(args, frontend: FrontendConfig) -> dict:
    """One training-progress row: the vocoder at `--vocoder` alone, speed on this process's backend."""
    import keras

    notes, unseen_pitch = held_out(Path(args.data), args.notes, frontend)
    vocoder = inverses(frontend, args.vocoder, args.label or str(args.vocoder), 1)[0]
    row = {**environment(), "table": "progress", "backend": keras.backend.backend(), "inverse": vocoder.name}
    row.update(path=str(args.vocoder), weights_mb=vocoder.weights_mb, steps=_steps(Path(args.vocoder)))
    row.update(score(vocoder.voice(notes.log_mel_db, notes.waveforms), notes, frontend, unseen_pitch))
    row.update({f"speed_b{b}": speed(vocoder, notes, frontend, b) for b in BATCHES})
    return row


def _steps(path: Path) -> int | None:
    """Training steps of a run directory: finished epochs x steps per epoch."""
    if not (path / "config.json").is_file():
        return None
    config = json.loads((path / "config.json").read_text())
    history = (path / "history.csv").read_text().splitlines() if (path / "history.csv").is_file() else []
    return max(len(history) - 1, 0) * int(config["hyperparameters"]["steps_per_epoch"])


# ---------------------------------------------------------------------------- markdown


def _num(value, digits: int = 2) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _pair(row: dict, key: str) -> str:
    if f"pitch_{key}" not in row:
        return "-"
    return f"{row[f'pitch_{key}']:.2f} / {row[f'instrument_{key}']:.2f}"


def comparison_lines(rows: list[dict]) -> list[str]:
    """The latest comparison run: a quality table and a speed table with one column per backend."""
    latest = max((r["run"] for r in rows if r.get("table") == "quality"), default=None)
    if latest is None:
        return []
    quality = [r for r in rows if r.get("run") == latest and r["table"] == "quality"]
    speeds = [r for r in rows if r.get("run") == latest and r["table"] == "speed"]
    env = quality[0]
    backends = list(dict.fromkeys(r["backend"] for r in speeds))
    threads = " ".join(f"{k}={v}" for k, v in env["threads"].items())
    lines = [
        f"## Every inverse, side by side ({env['time']}, one run: {env['run_seconds'] // 60} min)",
        "",
        f"CPU: {env['cpus']} core(s) of {env['cpu_model']} ({env['cpu_flags']}), `{threads}`; other work",
        "shared the machine meanwhile (a vocoder training on the other core), so speeds are indicative.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "True log-mel of held-out real nsynth-mini notes (4 s) in, audio out, scored against the real note by",
        "`keras_timbre.analysis.audio_metrics` (MR-STFT: amplitudes re full scale floored at 1e-5 = -100 dB;",
        "f0: pYIN on the held 3 s, an octave either side of the label, median over frames voiced in both).",
        "Per kind: unseen pitches of trained instruments / instruments never trained on.",
        "",
        f"The last two columns: every inverse on the same {quality[0]['common_notes']} notes (those NNLS Griffin-Lim"
        " voices, half of each kind).",
        "",
        "| inverse | notes | mel LSD (dB) | per kind | MR-STFT (dB) | per kind | f0 error (cents) | MB "
        "| mel LSD, common notes | MR-STFT, common notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in quality:
        lines.append(
            f"| {r['inverse']} | {r['notes']} | {r['mel_lsd_db']:.2f} | {_pair(r, 'mel_lsd_db')} "
            f"| {r['mr_stft_db']:.2f} | {_pair(r, 'mr_stft_db')} | {_num(r['f0_error_cents'], 0)} "
            f"| {r['weights_mb']:.1f} | {_num(r.get('common_mel_lsd_db'))} | {_num(r.get('common_mr_stft_db'))} |"
        )
    lines += [
        "",
        "Speed, x real time (seconds of 4 s notes voiced per second), batch 1 / batch 16: best of 3 calls after a",
        "warm-up (NNLS Griffin-Lim, a note at a time: one call). One subprocess per Keras backend; only the vocoder",
        "runs on it (`tf_mel_to_audio` is TensorFlow, the others numpy/librosa, whatever the backend).",
        "",
    ]
    lines += ["| inverse | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for name in dict.fromkeys(r["inverse"] for r in speeds):
        cells = {r["backend"]: r for r in speeds if r["inverse"] == name}
        lines.append(
            f"| {name} | "
            + " | ".join(f"{_num(cells[b]['speed_b1'], 1)} / {_num(cells[b]['speed_b16'], 1)}" for b in backends)
            + " |"
        )
    checks = [f"{r['backend']} {r['mel_lsd_db']:.3f}" for r in speeds if "mel_lsd_db" in r]
    lines += ["", f"The vocoder's mel LSD on each backend (same notes, same weights): {', '.join(checks)} dB.", ""]
    return lines


def progress_lines(rows: list[dict]) -> list[str]:
    lines = [
        "## Training progress (one vocoder row at a time)",
        "",
        "Metrics `v1`: the rows before the audio metrics were shared, by this script's own helpers then: MR-STFT",
        "on scipy's STFT rescaled to librosa's units (a full-scale sinusoid reads 20 log10(n_fft / 4) dB), floored",
        "at 1e-3 (-60 dB in those units, -102 to -114 dB re full scale); f0 the median over notes of each note's",
        "median. The mel LSD is the same in both. `audio_metrics` rows: as above.",
        "",
        "| when | inverse | steps | notes | metrics | mel LSD (dB) | per kind | MR-STFT (dB) | per kind "
        "| x real time b1 | b16 | f0 error (cents) | backend, CPUs | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("table", "progress") != "progress":
            continue
        lines.append(
            f"| {r['time']} | {r['inverse']} | {r.get('steps') or '-'} | {r['notes']} | {r.get('metrics', 'v1')} "
            f"| {r['mel_lsd_db']:.2f} | {_pair(r, 'mel_lsd_db')} | {r['mr_stft_db']:.2f} | {_pair(r, 'mr_stft_db')} "
            f"| {_num(r['speed_b1'], 1)} | {_num(r.get('speed_b16'), 0)} | {_num(r.get('f0_error_cents'), 0)} "
            f"| {r['backend']}, {r['cpus']} ({r['cpu_flags']}) | {r['weights_mb']:.1f} |"
        )
    return lines


def write_markdown(rows: list[dict]) -> None:
    header = ["# Vocoder benchmark (benchmarks/bench_vocoder.py)", ""]
    (RESULTS / "vocoder.md").write_text("\n".join(header + comparison_lines(rows) + progress_lines(rows)) + "\n")


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocoder", help="a .keras file or train-vocoder run directory (default: the shipped one)")
    parser.add_argument("--label", help="name of the vocoder row")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--notes", type=int, default=20)
    parser.add_argument("--griffin-lim-notes", type=int, default=8, help="notes NNLS Griffin-Lim voices (slow)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--progress", action="store_true", help="one training-progress row of --vocoder only")
    parser.add_argument(
        "--diagnose", action="store_true", help="also the vocoder's magnitude with the true phase and with Griffin-Lim"
    )
    parser.add_argument("--timing-worker", metavar="NPZ", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    frontend = FrontendConfig()
    if args.timing_worker:
        print(json.dumps(timing_worker(args.timing_worker, args.vocoder, args.label, args.griffin_lim_notes)))
        return 0
    rows = [progress_row(args, frontend)] if args.progress else comparison(args, frontend)
    for row in rows:
        print(json.dumps(row))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        store = RESULTS / "vocoder.json"
        old = json.loads(store.read_text()) if store.is_file() else []
        store.write_text(json.dumps(old + rows, indent=1) + "\n")
        write_markdown(old + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
