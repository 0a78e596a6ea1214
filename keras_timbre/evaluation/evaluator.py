"""`evaluate(run)`: metrics of a trained run on held-out notes, written to metrics.json.

By default the notes are the run's own validation split (pitches held out per
instrument, re-derived from `config.json`); `data=DIR` evaluates every note of
another directory instead. `docs/evaluation.md` defines each metric.

Besides `metrics.json`, evaluation draws a reconstruction grid and the latent
PCA into `RUN/figures/` and writes input/reconstruction audio (Griffin-Lim)
into `RUN/audio/`.

Example:
>>> metrics = evaluate("runs/demo")  # doctest: +SKIP
>>> round(metrics["lsd_db"], 1)  # doctest: +SKIP
6.3
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.analysis import metrics
from keras_timbre.training import run as runs
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.locate import check_data_dir
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, diverse_notes, load_log_mel, load_split
from keras_timbre.models.inference import latent_means, reconstruct_db

METRIC_KEYS = (
    "lsd_db",
    "spectral_convergence",
    "mel_grad_error",
    "onset_error",
    "harmonic_contrast_ratio",
    "kl_nats",
    "active_units",
    "family_probe_accuracy",
    "pitch_probe_accuracy",
    "skip_reliance",
)
AUDIO_NOTES = 2
FIGURE_NOTES = 3


def held_out_notes(run: runs.Run, data: str | os.PathLike | None = None):
    """`(records, log_mel_db)` to evaluate: the run's validation split, or all notes of `data`."""
    from keras_timbre.data import read_notes

    if data is None:
        split = run.config.get("split", {})
        data_path = check_data_dir(run.config["data"])
        _, _, records, log_mel_db = load_split(
            data_path,
            run.frontend,
            split.get("val_fraction", DEFAULT_VAL_FRACTION),
            split.get("split_seed", 0),
            run.config.get("hyperparameters", {}).get("max_per_instrument"),
        )
        return records, log_mel_db
    data_path = check_data_dir(data)
    saved_frontend = data_path / runs.FRONTEND_FILE
    if saved_frontend.is_file():
        # Features prepared for another frontend (e.g. another n_mels) cannot feed this model.
        run.frontend.check_matches(FrontendConfig.load(saved_frontend), f"data at {data_path}")
    log_mel_db, records = load_log_mel(read_notes(data_path), run.frontend)
    return records, log_mel_db


def compute_metrics(run: runs.Run, records, log_mel_db: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """Every metric of `run` on `log_mel_db` (notes, mels, frames) in dB with labels from `records`."""
    if len(records) == 0:
        raise ValueError("No notes to evaluate")
    model, stats, floor = run.model, run.stats, run.frontend.floor_db
    model.check_feature_shape(run.frontend.feature_shape)
    reconstruction = reconstruct_db(model, log_mel_db, stats, batch_size)
    without_skips = reconstruct_db(model, log_mel_db, stats, batch_size, skips=False)
    z_mean, z_log_var = latent_means(model, log_mel_db, stats, batch_size)
    families = [r.family for r in records]
    pitches = [r.pitch for r in records]
    result: dict[str, Any] = metrics.reconstruction_metrics(log_mel_db, reconstruction, floor)
    decoded_z = metrics.reconstruction_metrics(log_mel_db, without_skips, floor)
    result.update(
        kl_nats=metrics.kl_nats(z_mean, z_log_var),
        active_units=metrics.active_units(z_mean),
        family_probe_accuracy=metrics.family_probe_accuracy(z_mean, families),
        pitch_probe_accuracy=metrics.pitch_probe_accuracy(z_mean, pitches),
        skip_reliance=decoded_z["lsd_db"] - result["lsd_db"],
        family_probe_chance=metrics.chance_accuracy(families),
        pitch_probe_chance=metrics.chance_accuracy(pitches),
        latent_dim=int(z_mean.shape[1]),
        notes=len(records),
    )
    # decode(z) alone: what sampling or interpolating in z gives, whatever the skips did.
    result.update({f"decode_z_{name}": value for name, value in decoded_z.items()})
    return result


def evaluate(
    run: runs.Run | str | os.PathLike,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 32,
    write_media: bool = True,
) -> dict[str, Any]:
    """Evaluates a run on held-out notes and writes the metrics as JSON.

    Args:
        run: A `Run` or a run directory.
        data: Evaluate every note of this directory instead of the run's
            validation split.
        out: JSON path; `RUN/metrics.json` by default.
        batch_size: Notes per model call.
        write_media: Also write a reconstruction grid, the latent PCA and audio.

    Returns:
        The metrics dict (also written to `out`).
    """
    if not isinstance(run, runs.Run):
        run = runs.load_run(run)
    started = time.perf_counter()
    records, log_mel_db = held_out_notes(run, data)
    if len(records) == 0:
        raise ValueError(f"No held-out notes to evaluate for {run.path} (data: {data or run.config.get('data')})")
    print(f"Evaluating {run.variant} on {len(records)} held-out notes ...")
    result = compute_metrics(run, records, log_mel_db, batch_size)
    result.update(variant=run.variant, data=str(data or run.config.get("data")), run=str(run.path))
    out = Path(out) if out is not None else run.path / runs.METRICS_FILE
    atomic.write_json(out, result)
    if write_media:
        write_examples(run, records, log_mel_db)
    print(f"Evaluated in {time.perf_counter() - started:.0f} s; metrics at {out}")
    return result


def write_examples(run: runs.Run, records, log_mel_db: np.ndarray) -> None:
    """Reconstruction grid, latent PCA and a few WAVs (input, reconstruction, decode(z))."""
    import soundfile as sf

    from keras_timbre.analysis import plots
    from keras_timbre.audio.vocoder import mel_to_audio

    shown = diverse_notes(records, FIGURE_NOTES)
    chosen = log_mel_db[shown]
    recon = reconstruct_db(run.model, chosen, run.stats)
    columns = {run.variant: recon}
    if run.model.use_skips:
        columns["decode(z), skips zeroed"] = reconstruct_db(run.model, chosen, run.stats, skips=False)
    titles = [records[i].note_str for i in shown]
    plots.plot_reconstructions(
        run.path / "figures" / "evaluation_reconstructions.png", chosen, columns, run.frontend, titles, zoom=True
    )
    z_mean, _ = latent_means(run.model, log_mel_db, run.stats)
    if len(z_mean) >= 3:
        plots.plot_latent_pca(run.path / "figures" / "latent_pca.png", z_mean, [r.family for r in records])
    for record, target, output in list(zip([records[i] for i in shown], chosen, recon))[:AUDIO_NOTES]:
        for kind, spectrogram in (("input", target), ("reconstruction", output)):
            audio = mel_to_audio(spectrogram, run.frontend)
            with atomic.atomic_path(run.path / "audio" / f"{record.note_str}_{kind}.wav") as tmp:
                sf.write(tmp, audio, run.frontend.sample_rate, format="WAV")


def reconstruct_file(
    run: runs.Run | str | os.PathLike, audio_path: str | os.PathLike, out: str | os.PathLike, n_iter: int = 64
) -> tuple[Path, Path]:
    """Reconstructs one audio file: writes `out` (WAV, Griffin-Lim) and a side-by-side PNG next to it.

    Raises:
        FileNotFoundError: `audio_path` does not exist.
        ValueError: `audio_path` is not decodable audio (the message names it).
    """
    import soundfile as sf

    from keras_timbre.analysis import plots
    from keras_timbre.data import load_audio
    from keras_timbre.audio.frontend import log_mel
    from keras_timbre.audio.vocoder import mel_to_audio

    if not isinstance(run, runs.Run):
        run = runs.load_run(run)
    audio_path, out = Path(audio_path), Path(out)
    if not audio_path.is_file():
        raise FileNotFoundError(f"Input audio {audio_path} does not exist")
    waveform = load_audio(audio_path, run.frontend.sample_rate, run.frontend.num_samples)
    target = log_mel(waveform, run.frontend.sample_rate, run.frontend)[None]
    recon = reconstruct_db(run.model, target, run.stats)
    audio = mel_to_audio(recon[0], run.frontend, n_iter=n_iter)
    with atomic.atomic_path(out, suffix=".wav") as tmp:
        sf.write(tmp, audio, run.frontend.sample_rate, format="WAV")
    figure = plots.plot_reconstructions(
        out.with_suffix(".png"),
        target,
        {f"{run.variant} reconstruction": recon},
        run.frontend,
        titles=[audio_path.name],
        zoom=True,
    )
    return out, figure


def interpolate(
    run: runs.Run | str | os.PathLike,
    audio_a: str | os.PathLike,
    audio_b: str | os.PathLike,
    out_dir: str | os.PathLike,
    steps: int = 5,
    n_iter: int = 64,
) -> list[Path]:
    """A timbre morph: decodes `steps` points on the line between the latent means of A and B.

    Writes `strip.png` and `step_XX.wav` into `out_dir`. Decoding uses z alone
    (`model.decode`), as sampling would, so skip variants show what z carries.
    """
    import keras
    import soundfile as sf

    from keras_timbre.analysis import plots
    from keras_timbre.data import load_audio
    from keras_timbre.audio.frontend import log_mel
    from keras_timbre.audio.vocoder import mel_to_audio

    if steps < 2:
        raise ValueError(f"--steps must be >= 2, got {steps}")
    if not isinstance(run, runs.Run):
        run = runs.load_run(run)
    spectrograms = []
    for path in (Path(audio_a), Path(audio_b)):
        if not path.is_file():
            raise FileNotFoundError(f"Input audio {path} does not exist")
        waveform = load_audio(path, run.frontend.sample_rate, run.frontend.num_samples)
        spectrograms.append(log_mel(waveform, run.frontend.sample_rate, run.frontend))
    z_mean, _ = latent_means(run.model, np.stack(spectrograms), run.stats)
    alphas = np.linspace(0.0, 1.0, steps)
    z = ((1 - alphas[:, None]) * z_mean[0] + alphas[:, None] * z_mean[1]).astype(np.float32)
    decoded = run.stats.denormalize(keras.ops.convert_to_numpy(run.model.decode(z))[..., 0])
    out_dir = Path(out_dir)
    written = [
        plots.plot_interpolation(
            out_dir / "strip.png", decoded, run.frontend, alphas, (Path(audio_a).name, Path(audio_b).name)
        )
    ]
    for i, spectrogram in enumerate(decoded):
        with atomic.atomic_path(out_dir / f"step_{i:02d}.wav", suffix=".wav") as tmp:
            sf.write(
                tmp, mel_to_audio(spectrogram, run.frontend, n_iter=n_iter), run.frontend.sample_rate, format="WAV"
            )
        written.append(out_dir / f"step_{i:02d}.wav")
    return written
