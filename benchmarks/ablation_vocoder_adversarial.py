"""Ablation: does an adversarial term (discriminators + feature matching) help the vocoder within the CPU budget?

Issue 22, item 1. From ONE starting checkpoint of the default vocoder run, two
copies are fine-tuned for the same wall-clock budget each, on the same crops
(global step `g` of `keras_timbre.training.vocoder.crop_batch` from
`numpy.random.default_rng([seed, g])`, the training notes of `vocoder_split`,
batch 16 of 1 s, continuing the run's own step count):

- A: the vocoder's own losses (`2 x mel L1 + 1 x MR-STFT`, as `Vocoder.compute_loss`);
- B: the same + a hinge GAN loss + L1 feature matching against a
  multi-resolution spectrogram discriminator (UnivNet / Vocos `DiscriminatorR`
  layout over log-magnitude STFTs at FFT 512/1024/2048), optionally also a small
  multi-period discriminator (HiFi-GAN layout, narrower; `--mpd`). To keep B's
  step near twice A's on one core, each spectrogram discriminator is 16 channels
  wide (Vocos: 64; `--channels`) and sees 8 of the 16 crops (`--d-batch`); the
  reconstruction losses see all 16. (One-core CPU seconds a step, measured
  under load: A 0.34; B 1.98 at 32 channels on all 16 crops, 1.11 at 16 on 16,
  0.73 at 32 on 4, 0.69 at 16 on 8, 0.79 at 16 on 4 with the multi-period one.)

The two arms are interleaved in chunks of `--chunk` seconds (A, B, A, B, ...)
in one process, so that the other work sharing the core slows both alike;
each arm stops when its own training wall time reaches `--budget` seconds.
Process CPU seconds are recorded beside the wall seconds.

Loss weights of B. Vocos (and HiFi-GAN) weight adversarial : feature matching :
mel L1 as 1 : 2 : 45, the mel L1 on the natural log of the mel *magnitude*.
This vocoder's mel L1 (`losses.mel_l1_loss`) is on the natural log of mel
*power*, twice the magnitude's, and has weight 2: 4 in magnitude units. So
the adversarial weight is 4 / 45 = 0.089 and feature matching 2 x 4 / 45 =
0.178 (`--adv-weight`, `--fm-weight`); the MR-STFT term stays as it is. The
sub-discriminators' losses are averaged (as Vocos), feature matching summed
over layers. For CPU economy the generator and the discriminator are updated
*simultaneously* from one forward pass (one tape: the discriminator's hinge
loss on its real and generated scores, the generator's loss through the same
generated scores), not alternately; the discriminator gets its own Adam
(`--d-learning-rate`, betas 0.8 / 0.9 as Vocos). The generator keeps the
checkpoint's Adam (its moments, 1e-3, clipnorm 1) in both arms.

Scored as `benchmarks/bench_vocoder.py` scores (its `held_out` and `score` are
imported, not copied; a minimal scorer over `keras_timbre.analysis.audio_metrics`
is the fallback if that file does not import): the true log-mel of 20 held-out
4 s real notes voiced, re-analysed mel LSD and multi-resolution STFT distance,
unseen pitches and unseen instruments separately, for the start and both arms.

Usage (from the repository root, one core and one thread; about 27 minutes):
    mkdir -p /work/vocoder-runs/adv-ab
    cp /work/vocoder-runs/default/model.keras /work/vocoder-runs/adv-ab/start.keras   # + its epoch's .json
    nohup taskset -c 0 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 \\
        python benchmarks/ablation_vocoder_adversarial.py --start /work/vocoder-runs/adv-ab/start.keras \\
        --out /work/vocoder-runs/adv-ab > /work/vocoder-runs/adv-ab.log 2>&1 &

Writes benchmarks/results/vocoder_adversarial.json and .md, and the two fine-tuned
models (A.keras, B.keras), B's discriminator weights (.npz) and per-step logs under `--out`.
Each arm's first step (tracing, graph building) is timed but not charged to its budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_vocoder, beside this file

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_timbre.analysis import audio_metrics  # noqa: E402
from keras_timbre.audio.frontend import FrontendConfig  # noqa: E402
from keras_timbre.data.readers import read_notes  # noqa: E402
from keras_timbre.training.vocoder import Notes, crop_batch, load_notes, vocoder_split  # noqa: E402
from keras_timbre.vocoder import losses  # noqa: E402
from keras_timbre.vocoder.model import Vocoder  # noqa: E402

try:  # the benchmark's own note choice and scoring (another session may be editing it)
    import bench_vocoder

    SCORER = "benchmarks/bench_vocoder.py (held_out, score)"
except Exception as error:  # pragma: no cover - the fallback is for a broken neighbour file only
    bench_vocoder = None
    SCORER = f"minimal scorer in this script (bench_vocoder did not import: {type(error).__name__}: {error})"

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "nsynth-mini"
RESOLUTIONS = (512, 1024, 2048)
PERIODS = (2, 3, 5, 7, 11)
# Vocos' adversarial : feature matching : mel = 1 : 2 : 45 on ln mel magnitude; ours is 2 x ln mel power = 4.
ADV_WEIGHT = 4.0 / 45.0
FM_WEIGHT = 2.0 * 4.0 / 45.0
LRELU_SLOPE = 0.1


# ---------------------------------------------------------------------------- discriminators


class SpectrogramDiscriminator(keras.layers.Layer):
    """One resolution of the multi-resolution discriminator: 2-D convs over a log-magnitude STFT.

    Vocos' `DiscriminatorR` (after UnivNet) in channels-last `(batch, frames, bins, 1)`: kernels
    (time 5, freq 7) stride 2x2, (3, 5) stride (1, 2), (3, 5) stride 2x2, 3x3 stride (1, 2), 3x3 stride 2x2,
    each LeakyReLU 0.1, then a 3x3 conv to one channel. Returns `(scores, feature maps)`.
    """

    def __init__(self, n_fft: int, channels: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.channels = int(n_fft), int(channels)
        specs = [((5, 7), (2, 2)), ((3, 5), (1, 2)), ((3, 5), (2, 2)), ((3, 3), (1, 2)), ((3, 3), (2, 2))]
        self.convs = [
            keras.layers.Conv2D(self.channels, k, strides=s, padding="same", name=f"conv_{i}")
            for i, (k, s) in enumerate(specs)
        ]
        self.post = keras.layers.Conv2D(1, (3, 3), padding="same", name="post")

    def call(self, audio):
        magnitude = losses.stft_magnitude(audio, self.n_fft)  # (batch, frames, bins), Hann, hop n_fft / 4
        x = ops.expand_dims(ops.log(magnitude + losses.MAGNITUDE_FLOOR), -1)
        features = []
        for conv in self.convs:
            x = ops.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return ops.reshape(x, (ops.shape(x)[0], -1)), features


class PeriodDiscriminator(keras.layers.Layer):
    """One period of a (narrow) multi-period discriminator: the waveform folded `(samples / p, p)`.

    HiFi-GAN's `DiscriminatorP` layout with `widths` channels instead of 32-128-512-1024-1024:
    (5, 1) kernels stride (3, 1), the last stride 1, LeakyReLU 0.1, then a (3, 1) conv to one channel.
    """

    def __init__(self, period: int, widths=(16, 32, 64, 128, 128), **kwargs):
        super().__init__(**kwargs)
        self.period, self.widths = int(period), tuple(int(w) for w in widths)
        last = len(self.widths) - 1
        self.convs = [
            keras.layers.Conv2D(w, (5, 1), strides=(1 if i == last else 3, 1), padding="same", name=f"conv_{i}")
            for i, w in enumerate(self.widths)
        ]
        self.post = keras.layers.Conv2D(1, (3, 1), padding="same", name="post")

    def call(self, audio):
        samples = audio.shape[-1]
        pad = (-samples) % self.period
        x = ops.pad(audio, [[0, 0], [0, pad]]) if pad else audio
        x = ops.reshape(x, (ops.shape(x)[0], (samples + pad) // self.period, self.period, 1))
        features = []
        for i, conv in enumerate(self.convs):
            x = ops.leaky_relu(conv(x), LRELU_SLOPE)
            if i > 0:
                features.append(x)
        x = self.post(x)
        features.append(x)
        return ops.reshape(x, (ops.shape(x)[0], -1)), features


class Discriminators(keras.layers.Layer):
    """Every sub-discriminator: `call(audio)` -> list of `(scores, feature maps)`."""

    def __init__(self, channels: int = 16, mpd: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.subs = [SpectrogramDiscriminator(n, channels, name=f"mrd_{n}") for n in RESOLUTIONS]
        if mpd:
            self.subs += [PeriodDiscriminator(p, name=f"mpd_{p}") for p in PERIODS]

    def call(self, audio):
        return [sub(audio) for sub in self.subs]


def discriminator_loss(real, fake):
    """Hinge loss of the discriminator, averaged over sub-discriminators (Vocos' `DiscriminatorLoss` / len)."""
    terms = [ops.mean(ops.relu(1.0 - r)) + ops.mean(ops.relu(1.0 + f)) for (r, _), (f, _) in zip(real, fake)]
    return sum(terms) / len(terms)


def generator_adv_loss(fake):
    """Hinge loss of the generator, averaged over sub-discriminators."""
    return sum(ops.mean(ops.relu(1.0 - f)) for f, _ in fake) / len(fake)


def feature_matching_loss(real, fake):
    """L1 of the feature maps, summed over layers, averaged over sub-discriminators (Vocos)."""
    terms = [
        sum(ops.mean(ops.abs(ops.stop_gradient(r) - g)) for r, g in zip(real_maps, fake_maps))
        for (_, real_maps), (_, fake_maps) in zip(real, fake)
    ]
    return sum(terms) / len(terms)


# ---------------------------------------------------------------------------- the two arms


class Arm:
    """One fine-tuned copy: its model, its compiled step, its clock and its log."""

    def __init__(self, name: str, model: Vocoder, adversarial: bool, args):
        import tensorflow as tf

        self.name, self.model, self.adversarial = name, model, adversarial
        self.steps, self.wall, self.cpu, self.first_step_s = 0, 0.0, 0.0, None
        self.log: list[dict] = []
        self.evals: list[dict] = []  # after each chunk: held-out mel LSD and MR-STFT (not timed)
        self.optimizer = model.optimizer
        self.mel_weight, self.stft_weight = model.mel_weight, model.stft_weight
        self.frontend = model.frontend
        if adversarial:
            self.disc = Discriminators(args.channels, args.mpd, name="discriminators")
            self.disc(np.zeros((1, args.crop_frames * self.frontend.hop_length), np.float32))
            self.d_optimizer = keras.optimizers.Adam(args.d_learning_rate, beta_1=0.8, beta_2=0.9)
            self.d_optimizer.build(self.disc.trainable_variables)
            self.adv_weight, self.fm_weight = args.adv_weight, args.fm_weight
            self.d_batch = min(args.d_batch or args.batch_size, args.batch_size)
            self._step = tf.function(self._adversarial_step)
        else:
            self._step = tf.function(self._plain_step)

    def _reconstruction(self, features, audio):
        prediction = self.model(features, training=True)
        mel = losses.mel_l1_loss(audio, prediction, self.frontend)
        stft = losses.multi_resolution_stft_loss(audio, prediction, self.model.stft_resolutions)
        return prediction, mel, stft

    def _plain_step(self, features, audio):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            _, mel, stft = self._reconstruction(features, audio)
            total = self.mel_weight * mel + self.stft_weight * stft
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return {"mel": mel, "stft": stft}

    def _adversarial_step(self, features, audio):
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            prediction, mel, stft = self._reconstruction(features, audio)
            # The discriminators see the first `d_batch` crops; the reconstruction losses all of them.
            real, fake = self.disc(audio[: self.d_batch]), self.disc(prediction[: self.d_batch])
            adv, fm = generator_adv_loss(fake), feature_matching_loss(real, fake)
            g_total = self.mel_weight * mel + self.stft_weight * stft + self.adv_weight * adv + self.fm_weight * fm
            d_total = discriminator_loss(real, fake)  # the generator's audio is a constant to the D's gradient
        g_vars, d_vars = self.model.trainable_variables, self.disc.trainable_variables
        g_grads, d_grads = tape.gradient(g_total, g_vars), tape.gradient(d_total, d_vars)
        del tape
        self.optimizer.apply_gradients(zip(g_grads, g_vars))
        self.d_optimizer.apply_gradients(zip(d_grads, d_vars))
        real_score = sum(ops.mean(r) for r, _ in real) / len(real)
        fake_score = sum(ops.mean(f) for f, _ in fake) / len(fake)
        return {
            "mel": mel,
            "stft": stft,
            "adv": adv,
            "fm": fm,
            "d": d_total,
            "d_real": real_score,
            "d_fake": fake_score,
        }

    def train_for(self, seconds: float, budget: float, notes: Notes, args, first_global_step: int) -> None:
        """Steps until this chunk's `seconds` or the arm's `budget` is used, each on its global step's crops."""
        import tensorflow as tf

        hop = self.frontend.hop_length
        chunk_end = self.wall + seconds
        while self.wall < min(chunk_end, budget):
            step = first_global_step + self.steps
            features, audio = crop_batch(
                notes, np.random.default_rng([args.seed, step]), args.batch_size, args.crop_frames, hop
            )
            wall0, cpu0 = time.perf_counter(), time.process_time()
            values = self._step(tf.constant(features), tf.constant(audio))
            values = {k: float(v) for k, v in values.items()}  # waits for the step
            took = time.perf_counter() - wall0
            if self.first_step_s is None:  # tracing and graph building: a one-off, reported but not charged
                self.first_step_s = took
            else:
                self.wall += took
                self.cpu += time.process_time() - cpu0
            self.steps += 1
            self.log.append({"step": self.steps, "wall_s": round(self.wall, 2), **values})
            if not np.isfinite(values["mel"]):
                raise FloatingPointError(f"arm {self.name}: non-finite loss at step {self.steps}")
            if self.steps % 25 == 0:
                shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
                print(
                    f"[{self.name}] step {self.steps} wall {self.wall:.0f} s ({took:.2f} s/step): {shown}", flush=True
                )

    def evaluate(self, held: Notes, frontend: FrontendConfig) -> None:
        """The held-out notes' mel LSD and MR-STFT now (`audio_metrics`, as bench_vocoder's; no f0): the trajectory."""
        if self.evals and self.evals[-1]["steps"] == self.steps:
            return
        audio = self.model.to_audio(held.log_mel_db)
        lsd = audio_metrics.reanalysed_lsd_db(audio, held.waveforms, frontend)
        mr = audio_metrics.mr_stft_distance_db(audio, held.waveforms)
        self.evals.append({"steps": self.steps, "wall_s": round(self.wall, 1), "mel_lsd_db": lsd, "mr_stft_db": mr})
        print(
            f"[{self.name}] after {self.steps} steps ({self.wall:.0f} s): mel LSD {lsd:.3f}, MR-STFT {mr:.3f}",
            flush=True,
        )

    def summary(self) -> dict:
        tail = self.log[-50:]
        mean = {f"train_{k}_last50": float(np.mean([row[k] for row in tail])) for k in tail[0] if k not in ("step",)}
        mean.pop("train_wall_s_last50", None)
        last = self.evals[-3:]
        return {
            "evals": self.evals,
            "last3_mean_mel_lsd_db": float(np.mean([e["mel_lsd_db"] for e in last])) if last else None,
            "last3_mean_mr_stft_db": float(np.mean([e["mr_stft_db"] for e in last])) if last else None,
            "steps": self.steps,
            "train_wall_s": round(self.wall, 1),
            "train_cpu_s": round(self.cpu, 1),
            "first_step_s": round(self.first_step_s or 0.0, 2),
            "s_per_step": round(self.wall / max(self.steps - 1, 1), 3),
            "cpu_s_per_step": round(self.cpu / max(self.steps - 1, 1), 3),
            **{k: round(v, 5) for k, v in mean.items()},
        }


# ---------------------------------------------------------------------------- scoring


def held_out_notes(data: Path, count: int, frontend: FrontendConfig) -> tuple[Notes, int]:
    if bench_vocoder is not None:
        return bench_vocoder.held_out(data, count, frontend)
    _, pitches, instruments = vocoder_split(read_notes(data))  # the same choice as bench_vocoder.held_out

    def spread(records, k):
        return [records[i] for i in np.linspace(0, len(records) - 1, k).astype(int)] if k else []

    notes = load_notes(spread(pitches, count - count // 2) + spread(instruments, count // 2), frontend)
    return notes, sum(record in pitches for record in notes.records)


def score(model: Vocoder, notes: Notes, unseen_pitch: int, frontend: FrontendConfig) -> dict:
    audio = model.to_audio(notes.log_mel_db)
    if bench_vocoder is not None:
        return bench_vocoder.score(audio, notes, frontend, unseen_pitch)
    row = {}
    for prefix, part in (
        ("", slice(None)),
        ("pitch_", slice(0, unseen_pitch)),
        ("instrument_", slice(unseen_pitch, None)),
    ):
        row[f"{prefix}mel_lsd_db"] = audio_metrics.reanalysed_lsd_db(audio[part], notes.waveforms[part], frontend)
        row[f"{prefix}mr_stft_db"] = audio_metrics.mr_stft_distance_db(audio[part], notes.waveforms[part])
    return {**row, "notes": len(notes)}


def environment() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    import tensorflow as tf

    return {
        "cpu_model": model,
        "cpu_flags": ",".join(f for f in ("avx", "avx2", "fma") if f in flags)
        + ("; AVX-512" if "avx512f" in flags else "; no AVX-512"),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "threads": {
            k: os.environ.get(k, "") for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
        },
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__},
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# ---------------------------------------------------------------------------- results


def _f(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(result: dict) -> str:
    a, b = result["rows"]["A"], result["rows"]["B"]
    d_lsd, d_mr = b["mel_lsd_db"] - a["mel_lsd_db"], b["mr_stft_db"] - a["mr_stft_db"]
    wins = d_lsd < 0 and d_mr < 0
    text = (
        f"At equal wall-clock ({result['budget_s']:.0f} s each) B {'beats' if wins else 'does not beat'} A: "
        f"mel LSD {b['mel_lsd_db']:.3f} vs {a['mel_lsd_db']:.3f} dB ({d_lsd:+.3f}), "
        f"MR-STFT {b['mr_stft_db']:.3f} vs {a['mr_stft_db']:.3f} dB ({d_mr:+.3f}), "
        f"with {b['steps']} generator steps against {a['steps']} "
        f"({b['s_per_step']:.2f} vs {a['s_per_step']:.2f} s/step)."
    )
    if a.get("last3_mean_mel_lsd_db") is not None and b.get("last3_mean_mel_lsd_db") is not None:
        text += (
            f" Mean of the last three evaluations: mel LSD {b['last3_mean_mel_lsd_db']:.3f} vs"
            f" {a['last3_mean_mel_lsd_db']:.3f}, MR-STFT {b['last3_mean_mr_stft_db']:.3f} vs"
            f" {a['last3_mean_mr_stft_db']:.3f} dB (B vs A)."
        )
    spread = [e["mel_lsd_db"] for e in a.get("evals", [])[len(a.get("evals", [])) // 2 :]]
    if spread:
        text += f" A's own held-out mel LSD wanders {min(spread):.3f}-{max(spread):.3f} dB over its second half."
    if result.get("same_steps"):
        last = result["same_steps"][-1]
        text += (
            f" On the same crops at the same steps ({last['steps']}), B's training mel L1 is {last['B_mel']:.4f}"
            f" against A's {last['A_mel']:.4f} and its MR-STFT {last['B_stft']:.4f} against {last['A_stft']:.4f}:"
            f" {'worse' if last['B_mel'] > last['A_mel'] else 'better'} step for step, not only per second."
        )
    return text


def same_steps(log_a: list[dict], log_b: list[dict], width: int = 200) -> list[dict]:
    """Training losses of both arms on the SAME crops (the same global steps), in windows of `width` steps."""
    rows, common = [], min(len(log_a), len(log_b))
    for first in list(range(0, common - width + 1, 2 * width)) + [max(common - width, 0)]:
        window = slice(first, min(first + width, common))
        row = {"steps": f"{first + 1}-{window.stop}"}
        for name, log in (("A", log_a), ("B", log_b)):
            part = log[window]
            row.update(
                {
                    f"{name}_{k}": float(np.mean([r[k] for r in part]))
                    for k in ("mel", "stft", "fm", "d")
                    if k in part[0]
                }
            )
        if not rows or rows[-1]["steps"] != row["steps"]:
            rows.append(row)
    return rows


def write_results(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vocoder_adversarial.json").write_text(json.dumps(result, indent=1) + "\n")
    env, rows = result["environment"], result["rows"]
    threads = " ".join(f"{k}={v}" for k, v in env["threads"].items())
    lines = [
        "# Vocoder ablation: the adversarial term (benchmarks/ablation_vocoder_adversarial.py)",
        "",
        f"Run {env['time']}; CPU: {env['cpu_model']} ({env['cpu_flags']}), pinned to core(s) {env['cpus_allowed']},",
        f"`{threads}`; other work shared the machine (a vocoder training on the other core). Versions:",
        ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        f"Start: `{result['start']}` ({result['start_note']}), global step {result['first_global_step']}.",
        f"Both arms: the same crops (step g from `rng([{result['seed']}, g])`, {result['train_notes']} training notes"
        f" of `vocoder_split`), batch {result['batch_size']} x {result['crop_frames']} frames (1 s), the checkpoint's",
        f"Adam for the generator; {result['budget_s']:.0f} s of training wall time each, interleaved in"
        f" {result['chunk_s']:.0f} s chunks.",
        f"B's discriminators: {result['discriminators']}; loss weights adversarial {result['adv_weight']:.3f},"
        f" feature matching {result['fm_weight']:.3f} (Vocos' 1 : 2 : 45 scaled to this vocoder's mel term),",
        f"discriminator Adam {result['d_learning_rate']:g} (0.8, 0.9); G and D updated simultaneously.",
        "",
        f"Scored on {rows['start']['notes']} held-out 4 s real notes (true log-mel in), {result['scorer']}.",
        "Per kind: unseen pitches / unseen instruments.",
        "",
        "| model | steps | s/step (wall) | CPU s/step | first step (s, not charged) | mel LSD (dB) | per kind "
        "| MR-STFT (dB) | per kind "
        "| mean of last 3 evals: mel LSD / MR-STFT | train mel L1 (last 50) | train MR-STFT (last 50) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in (("start", "start (checkpoint)"), ("A", "A: current losses"), ("B", "B: + adversarial + FM")):
        r = rows[key]
        lines.append(
            f"| {label} | {r.get('steps', 0)} | {_f(r.get('s_per_step'))} | {_f(r.get('cpu_s_per_step'))} "
            f"| {_f(r.get('first_step_s'), 1)} "
            f"| {r['mel_lsd_db']:.3f} | {_f(r.get('pitch_mel_lsd_db'), 3)} / {_f(r.get('instrument_mel_lsd_db'), 3)} "
            f"| {r['mr_stft_db']:.3f} | {_f(r.get('pitch_mr_stft_db'), 3)} / {_f(r.get('instrument_mr_stft_db'), 3)} "
            f"| {_f(r.get('last3_mean_mel_lsd_db'), 3)} / {_f(r.get('last3_mean_mr_stft_db'), 3)} "
            f"| {_f(r.get('train_mel_last50'), 4)} | {_f(r.get('train_stft_last50'), 4)} |"
        )
    lines += [
        "",
        "Trajectory (held-out mel LSD / MR-STFT in dB after each chunk, all 20 notes; the spread of one arm's",
        "successive values is the checkpoint-to-checkpoint noise at this constant learning rate):",
        "",
        "| arm | steps, train s: mel LSD / MR-STFT |",
        "|---|---|",
    ]
    for key in ("A", "B"):
        evals = rows[key].get("evals", [])
        cells = ", ".join(
            f"{e['steps']} ({e['wall_s']:.0f} s): {e['mel_lsd_db']:.3f} / {e['mr_stft_db']:.3f}" for e in evals
        )
        lines.append(f"| {key} | {cells} |")
    b = rows["B"]
    if "train_d_last50" in b:
        lines += [
            "",
            f"B, last 50 steps: discriminator hinge loss {b['train_d_last50']:.3f} (2.0 = chance), mean score real"
            f" {b['train_d_real_last50']:.3f} / generated {b['train_d_fake_last50']:.3f}; generator hinge"
            f" {b['train_adv_last50']:.3f}, feature matching {b['train_fm_last50']:.3f}.",
        ]
    if result.get("same_steps"):
        lines += [
            "",
            "The same crops at the same steps (training losses, means over windows of steps; B's first",
            f"{result['same_steps'][-1]['steps'].split('-')[1]} steps against A's first as many):",
            "",
            "| steps | A mel L1 | B mel L1 | A MR-STFT | B MR-STFT | B feature matching | B discriminator hinge |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["same_steps"]:
            lines.append(
                f"| {r['steps']} | {r['A_mel']:.4f} | {r['B_mel']:.4f} | {r['A_stft']:.4f} | {r['B_stft']:.4f} "
                f"| {_f(r.get('B_fm'), 3)} | {_f(r.get('B_d'), 3)} |"
            )
    lines += [
        "",
        "Caveats: both scores are spectral distances, what the reconstruction losses themselves minimise; what a",
        "GAN term usually buys (less metallic / phasey texture, heard) is not measured here, and nobody listened.",
        "One run, one seed. The discriminator's size was chosen for the CPU (one-core CPU s a step, measured under",
        "load beforehand: A 0.34; B 1.98 at 32 channels on all 16 crops, 1.11 at 16 on 16, 0.73 at 32 on 4, 0.69 at",
        "16 on 8 (this run), 0.79 at 16 on 4 with the narrow multi-period discriminator, `--mpd`).",
    ]
    lines += ["", "**Verdict.** " + result["verdict"], "", "Command:", "", "```sh", result["command"], "```", ""]
    (RESULTS / "vocoder_adversarial.md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, help="the vocoder .keras both arms start from (with its Adam)")
    parser.add_argument("--out", required=True, help="folder for the fine-tuned models")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--budget", type=float, default=700.0, help="training wall seconds per arm")
    parser.add_argument("--chunk", type=float, default=60.0, help="seconds an arm trains before the other's turn")
    parser.add_argument("--first-step", type=int, default=None, help="first global step (default: the start's)")
    parser.add_argument("--steps-per-epoch", type=int, default=200, help="to turn the start's epoch into steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-frames", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16, help="width of each spectrogram discriminator")
    parser.add_argument("--mpd", action="store_true", help="also a narrow multi-period discriminator")
    parser.add_argument("--d-batch", type=int, default=8, help="crops (of the batch) the discriminators see")
    parser.add_argument("--adv-weight", type=float, default=ADV_WEIGHT)
    parser.add_argument("--fm-weight", type=float, default=FM_WEIGHT)
    parser.add_argument("--d-learning-rate", type=float, default=5e-4)
    parser.add_argument("--notes", type=int, default=20, help="held-out notes scored")
    parser.add_argument("--arms", default="AB", help="which arms to train (AB; A or B alone for a timing probe)")
    parser.add_argument("--no-write", action="store_true", help="print only (a probe)")
    parser.add_argument("--rewrite", action="store_true", help="rewrite the results from the JSON and --out's logs")
    args = parser.parse_args(argv)
    if args.rewrite:  # no training: the same-step table and the markdown again from what the run wrote
        result = json.loads((RESULTS / "vocoder_adversarial.json").read_text())
        logs = [json.loads((Path(args.out) / f"{name}-log.json").read_text()) for name in "AB"]
        result["same_steps"] = same_steps(*logs)
        result["verdict"] = verdict(result)
        write_results(result)
        return 0
    command = "taskset -c 0 env " + " ".join(
        f"{k}={os.environ[k]}"
        for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    )
    command += " python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *(argv or sys.argv[1:])])
    started = time.perf_counter()
    out, start = Path(args.out), Path(args.start)
    out.mkdir(parents=True, exist_ok=True)
    frontend = FrontendConfig()
    start_json = start.with_suffix(".json")
    start_epoch = json.loads(start_json.read_text())["epoch"] if start_json.is_file() else None
    first_step = args.first_step if args.first_step is not None else (start_epoch or 0) * args.steps_per_epoch
    print(f"scorer: {SCORER}", flush=True)

    train_records, _, _ = vocoder_split(read_notes(Path(args.data)), seed=args.seed)
    train_notes = load_notes(train_records, frontend)
    held, unseen_pitch = held_out_notes(Path(args.data), args.notes, frontend)
    print(f"{len(train_notes)} training notes, {len(held)} held out; {time.perf_counter() - started:.0f} s", flush=True)

    rows = {"start": {"steps": 0, **score(keras.saving.load_model(start), held, unseen_pitch, frontend)}}
    print(f"start: {rows['start']}", flush=True)
    keras.utils.set_random_seed(args.seed)
    arms = {}
    for name in args.arms:
        model = keras.saving.load_model(start)  # the checkpoint's weights and Adam, afresh for each arm
        arms[name] = Arm(name, model, adversarial=name == "B", args=args)
    while any(arm.wall < args.budget for arm in arms.values()):
        for arm in arms.values():
            arm.train_for(args.chunk, args.budget, train_notes, args, first_step)
            arm.evaluate(held, frontend)
    for name, arm in arms.items():
        rows[name] = {**arm.summary(), **score(arm.model, held, unseen_pitch, frontend)}
        print(f"{name}: {rows[name]}", flush=True)
        if not args.no_write:
            arm.model.save(out / f"{name}.keras")
            if arm.adversarial:
                weights = {f"{i:03d}_{v.path.replace('/', '.')}": v.numpy() for i, v in enumerate(arm.disc.weights)}
                np.savez(out / "B-discriminators.npz", **weights)
            (out / f"{name}-log.json").write_text(json.dumps(arm.log) + "\n")
    disc = f"multi-resolution (FFT {'/'.join(map(str, RESOLUTIONS))}, {args.channels} channels,"
    disc += f" on {arms['B'].d_batch if 'B' in arms else args.d_batch} of the {args.batch_size} crops)"
    disc += f" + multi-period (periods {'/'.join(map(str, PERIODS))}, 16-128 channels)" if args.mpd else ""
    result = {
        "command": f"cd {Path.cwd()} && {command}",
        "environment": environment(),
        "scorer": SCORER,
        "start": str(start),
        "start_note": f"the default run's model.keras after epoch {start_epoch}" if start_epoch else "given checkpoint",
        "first_global_step": first_step,
        "seed": args.seed,
        "train_notes": len(train_notes),
        "batch_size": args.batch_size,
        "crop_frames": args.crop_frames,
        "budget_s": args.budget,
        "chunk_s": args.chunk,
        "discriminators": disc,
        "discriminator_parameters": int(sum(np.prod(v.shape) for v in arms["B"].disc.weights)) if "B" in arms else None,
        "adv_weight": args.adv_weight,
        "fm_weight": args.fm_weight,
        "d_learning_rate": args.d_learning_rate,
        "rows": rows,
        "run_seconds": round(time.perf_counter() - started),
    }
    if "A" in rows and "B" in rows:
        result["same_steps"] = same_steps(arms["A"].log, arms["B"].log)
        result["verdict"] = verdict(result)
        print(result["verdict"], flush=True)
    print(json.dumps(result, indent=1), flush=True)
    if not args.no_write and "A" in rows and "B" in rows:
        write_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
