"""A vocoder checkpoint against Griffin-Lim on held-out real notes: quality and speed.

Every inverse voices the *true* log-mel of each note (a perfect model); its
audio is analysed again and compared with the real note:

- re-analysed mel LSD (dB): `numpy_log_mel(audio)` against the note's log-mel,
  `keras_timbre.analysis.metrics.lsd_db` above the frontend's floor;
- multi-resolution STFT distance (dB): mean |20 log10 |S_audio| - 20 log10 |S_note||
  over FFT sizes 512/1024/2048 (hop a quarter, Hann, magnitudes floored at
  1e-3, i.e. -60 dB), averaged over the three sizes;
- `--f0`: the median f0 error in cents (pYIN on the held 3 s of both, an
  octave either side of the labelled pitch, frames voiced in both);
- speed: seconds of audio per second of wall time (x real time) of a batch
  of 1 and of 16 four-second notes, after a warm-up call.

`--diagnose` adds two rows that say where the vocoder's error is: its
predicted STFT magnitude with the real note's phase, and with 16 iterations
of Griffin-Lim started from its predicted phase (not timed).

The held-out notes are those `keras_timbre.training.vocoder.vocoder_split`
keeps out of training: half from held-out pitches of trained instruments,
half from instruments never trained on (each list spread evenly).

Usage (from the repository root; needs ../shared/nsynth-mini or --data):
    python benchmarks/bench_vocoder.py --vocoder /work/vocoder-runs/default [--notes 20] [--label NAME]
        [--griffin-lim] [--griffin-lim-notes 8]

Appends its rows to benchmarks/results/vocoder.json and rewrites vocoder.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from keras_timbre.analysis.metrics import lsd_db  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel  # noqa: E402
from keras_timbre.data.readers import read_notes  # noqa: E402
from keras_timbre.training.vocoder import load_notes, vocoder_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "nsynth-mini"
STFT_SIZES = (512, 1024, 2048)


def stft_db(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """20 log10 |STFT| (centred Hann frames, hop n_fft / 4), floored at -60 dB."""
    import scipy.signal

    _, _, spectrum = scipy.signal.stft(
        audio, nperseg=n_fft, noverlap=n_fft - n_fft // 4, boundary="zeros", padded=True, scaling="spectrum"
    )
    magnitude = np.abs(spectrum) * n_fft / 2  # undo scipy's 1 / sum(window) scaling: librosa's units
    return 20.0 * np.log10(np.maximum(magnitude, 1e-3))


def mr_stft_distance(audio: np.ndarray, reference: np.ndarray) -> float:
    """Mean |dB difference| of STFT magnitudes over FFT sizes 512/1024/2048."""
    return float(np.mean([np.mean(np.abs(stft_db(audio, n) - stft_db(reference, n))) for n in STFT_SIZES]))


def score(audio: np.ndarray, notes, frontend: FrontendConfig, unseen_pitch: int | None = None) -> dict:
    """Both metrics over all notes and, given `unseen_pitch` (the first notes), per kind of held-out note."""
    reanalysed = numpy_log_mel(audio, frontend)

    def metrics(part):
        return (
            lsd_db(notes.log_mel_db[part], reanalysed[part], floor_db=frontend.floor_db),
            mr_stft_distance(audio[part], notes.waveforms[part]),
        )

    row = dict(zip(("mel_lsd_db", "mr_stft_db"), metrics(slice(None))))
    if unseen_pitch is not None and 0 < unseen_pitch < len(audio):
        row.update(zip(("pitch_mel_lsd_db", "pitch_mr_stft_db"), metrics(slice(0, unseen_pitch))))
        row.update(zip(("instrument_mel_lsd_db", "instrument_mr_stft_db"), metrics(slice(unseen_pitch, None))))
    return row


def f0_error_cents(audio: np.ndarray, notes, frontend: FrontendConfig) -> float:
    """Median over notes of the median |f0 difference| (cents), pYIN on the held 3 s, frames voiced in both."""
    import librosa

    errors = []
    for clip, real, record in zip(audio, notes.waveforms, notes.records):
        if record.pitch < 0:
            continue
        hz = librosa.midi_to_hz(record.pitch)
        held = slice(0, 3 * frontend.sample_rate)
        kwargs = dict(fmin=hz / 2, fmax=min(hz * 2, frontend.sample_rate / 2 - 1), sr=frontend.sample_rate)
        f_real, v_real, _ = librosa.pyin(real[held], frame_length=2048, hop_length=512, **kwargs)
        f_clip, v_clip, _ = librosa.pyin(clip[held], frame_length=2048, hop_length=512, **kwargs)
        both = v_real & v_clip
        if both.any():
            errors.append(float(np.median(np.abs(1200 * np.log2(f_clip[both] / f_real[both])))))
    return float(np.median(errors)) if errors else float("nan")


def speed(voice, features: np.ndarray, frontend: FrontendConfig, batch: int, repeats: int = 2) -> float:
    """x real time of `voice(features[:batch])`, best of `repeats` after a warm-up."""
    clip = np.resize(features, (batch, *features.shape[1:]))
    voice(clip)
    best = min(_timed(voice, clip) for _ in range(repeats))
    return batch * frontend.duration / best


def _timed(voice, clip) -> float:
    start = time.perf_counter()
    voice(clip)
    return time.perf_counter() - start


def held_out(data: Path, count: int, frontend: FrontendConfig):
    """`count` held-out notes, half unseen pitches and half unseen instruments, each list spread evenly."""
    _, pitches, instruments = vocoder_split(read_notes(data))

    def spread(records, k):
        return [records[i] for i in np.linspace(0, len(records) - 1, k).astype(int)] if k else []

    picked = spread(pitches, count - count // 2) + spread(instruments, count // 2)
    notes = load_notes(picked, frontend)
    return notes, sum(record in pitches for record in notes.records)


def run_vocoder(path: str, notes, frontend: FrontendConfig, label: str, unseen_pitch: int, f0: bool = False) -> dict:
    from keras_timbre.vocoder import load_vocoder

    vocoder = load_vocoder(path)
    vocoder.check_frontend(frontend, "benchmark")
    row = {"inverse": label, "path": str(path), "weights_mb": vocoder.num_weight_bytes / 2**20}
    audio = vocoder.to_audio(notes.log_mel_db)
    row.update(score(audio, notes, frontend, unseen_pitch))
    if f0:
        row["f0_error_cents"] = f0_error_cents(audio, notes, frontend)
    row["speed_b1"] = speed(vocoder.to_audio, notes.log_mel_db, frontend, 1, repeats=3)
    row["speed_b16"] = speed(vocoder.to_audio, notes.log_mel_db, frontend, 16)
    return row


def run_griffin_lim(notes, frontend: FrontendConfig, count: int, unseen_pitch: int) -> dict:
    from keras_timbre.audio.griffin_lim import mel_to_audio

    # Half from each kind of held-out note, as the vocoder's rows.
    keep = list(range(min(count - count // 2, unseen_pitch))) + list(range(unseen_pitch, len(notes)))[: count // 2]
    subset = type(notes)(notes.waveforms[keep], notes.log_mel_db[keep], [notes.records[i] for i in keep])
    first = min(count - count // 2, unseen_pitch)
    start = time.perf_counter()
    audio = np.stack([mel_to_audio(db, frontend) for db in subset.log_mel_db])
    seconds = time.perf_counter() - start
    row = {"inverse": "mel_to_audio (NNLS Griffin-Lim, 64 it.)", "path": "", "weights_mb": 0.0}
    row.update(score(audio, subset, frontend, first))
    row.update(speed_b1=len(keep) * frontend.duration / seconds, speed_b16=None, notes=len(keep))
    return row


def run_diagnosis(path: str, notes, frontend: FrontendConfig, unseen_pitch: int, iterations: int = 16) -> list[dict]:
    """Where the vocoder's error is: its magnitude with the note's own phase, and with Griffin-Lim from its phase."""
    import librosa
    from keras import ops

    from keras_timbre.vocoder import load_vocoder

    vocoder = load_vocoder(path)
    features = notes.log_mel_db
    magnitude, phase = vocoder.head.spectrum(vocoder.backbone(features), features)
    magnitude = np.swapaxes(np.asarray(ops.convert_to_numpy(magnitude)), 1, 2)  # (notes, bins, frames)
    phase = np.swapaxes(np.asarray(ops.convert_to_numpy(phase)), 1, 2)
    stft = dict(n_fft=frontend.n_fft, hop_length=frontend.hop_length)

    def inverse(spectrum):
        return librosa.istft(spectrum, hop_length=frontend.hop_length, length=frontend.num_samples)

    frames = magnitude.shape[-1]
    own_phase = np.angle(librosa.stft(notes.waveforms, **stft))[..., :frames]
    rows = [("vocoder magnitude + the note's own phase", inverse(magnitude * np.exp(1j * own_phase)))]
    estimate = magnitude * np.exp(1j * phase)
    for _ in range(iterations):
        rebuilt = librosa.stft(inverse(estimate), **stft)[..., :frames]
        estimate = magnitude * np.exp(1j * np.angle(rebuilt))
    rows.append((f"vocoder magnitude + {iterations} it. Griffin-Lim from its phase", inverse(estimate)))
    out = []
    for label, audio in rows:
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        row = {"inverse": label, "path": str(path), "weights_mb": vocoder.num_weight_bytes / 2**20}
        out.append({**row, **score(audio, notes, frontend, unseen_pitch), "speed_b1": float("nan"), "speed_b16": None})
    return out


def environment() -> dict:
    import keras

    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = {f for f in ("avx", "avx2", "fma", "avx512f") if f" {f} " in text or f" {f}\n" in text}
        flags = ",".join(sorted(found))
    except OSError:
        pass
    return {
        "backend": keras.backend.backend(),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_flags": flags,
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_markdown(rows: list[dict]) -> None:
    lines = [
        "# Vocoder benchmark (benchmarks/bench_vocoder.py)",
        "",
        "True log-mel of held-out real nsynth-mini notes (4 s; half unseen pitches, half unseen instruments)",
        "voiced, re-analysed and compared with the real note. Speed: seconds of audio per second, after a warm-up.",
        "",
        "Per kind: unseen pitches / unseen instruments.",
        "",
        "| when | inverse | steps | notes | mel LSD (dB) | per kind | MR-STFT (dB) | per kind | x real time b1 | b16 "
        "| f0 error (cents) | backend, CPUs | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b16 = "-" if r.get("speed_b16") is None else f"{r['speed_b16']:.0f}"
        b1 = "-" if not np.isfinite(r["speed_b1"]) else f"{r['speed_b1']:.1f}"
        lines.append(
            f"| {r['time']} | {r['inverse']} | {r.get('steps', '-')} | {r['notes']} | {r['mel_lsd_db']:.2f} | "
            f"{_pair(r, 'mel_lsd_db')} | {r['mr_stft_db']:.2f} | {_pair(r, 'mr_stft_db')} | {b1} "
            f"| {b16} | {_cents(r)} | {r['backend']}, {r['cpus']} ({r['cpu_flags']}) | {r['weights_mb']:.1f} |"
        )
    (RESULTS / "vocoder.md").write_text("\n".join(lines) + "\n")


def _cents(row: dict) -> str:
    value = row.get("f0_error_cents")
    return "-" if value is None or not np.isfinite(value) else f"{value:.0f}"


def _pair(row: dict, key: str) -> str:
    if f"pitch_{key}" not in row:
        return "-"
    return f"{row[f'pitch_{key}']:.2f} / {row[f'instrument_{key}']:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocoder", help="a .keras file or train-vocoder run directory")
    parser.add_argument("--label", help="name of the vocoder row (default: the path)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--notes", type=int, default=20)
    parser.add_argument("--griffin-lim", action="store_true", help="also score librosa's NNLS Griffin-Lim")
    parser.add_argument("--griffin-lim-notes", type=int, default=8, help="notes Griffin-Lim voices (slow)")
    parser.add_argument(
        "--diagnose", action="store_true", help="also the vocoder's magnitude with the true phase and with Griffin-Lim"
    )
    parser.add_argument("--f0", action="store_true", help="also the median f0 error in cents (pYIN, slow)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    frontend = FrontendConfig()
    notes, unseen_pitch = held_out(Path(args.data), args.notes, frontend)
    env, rows = environment(), []
    if args.vocoder:
        row = run_vocoder(args.vocoder, notes, frontend, args.label or str(args.vocoder), unseen_pitch, args.f0)
        row["steps"] = _steps(Path(args.vocoder))
        rows.append({**env, "notes": len(notes), **row})
        if args.diagnose:
            steps = row["steps"]
            diagnosis = run_diagnosis(args.vocoder, notes, frontend, unseen_pitch)
            rows += [{**env, "notes": len(notes), **r, "steps": steps} for r in diagnosis]
    if args.griffin_lim:
        count = min(args.griffin_lim_notes, len(notes))
        rows.append({**env, **run_griffin_lim(notes, frontend, count, unseen_pitch)})
    for row in rows:
        print(json.dumps(row))
    if not args.no_write and rows:
        RESULTS.mkdir(exist_ok=True)
        store = RESULTS / "vocoder.json"
        old = json.loads(store.read_text()) if store.is_file() else []
        store.write_text(json.dumps(old + rows, indent=1) + "\n")
        write_markdown(old + rows)
    return 0


def _steps(path: Path) -> int | None:
    """Training steps of a run directory: finished epochs x steps per epoch."""
    if not (path / "config.json").is_file():
        return None
    config = json.loads((path / "config.json").read_text())
    history = (path / "history.csv").read_text().splitlines() if (path / "history.csv").is_file() else []
    return max(len(history) - 1, 0) * int(config["hyperparameters"]["steps_per_epoch"])


if __name__ == "__main__":
    sys.exit(main())
