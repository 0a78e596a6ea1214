"""`evaluate(run)`: metrics of a trained run, written to metrics.json, with figures and audio.

By default the notes are the run's own validation split (pitches held out per
instrument, re-derived from `config.json`): "held-out notes of DATA". With
`data=DIR`, every note of that directory is scored instead: "notes of DIR".
The printed summary, `metrics.json` (`scored`, `held_out`) and the figure
titles say which. `docs/evaluation.md` defines each metric.

Besides `metrics.json`, evaluation draws a reconstruction grid and the latent
PCA into `RUN/figures/` and writes input/reconstruction audio (Griffin-Lim)
into `RUN/audio/`.

Example:
>>> metrics = evaluate("runs/demo")  # doctest: +SKIP
>>> round(metrics["lsd_db"], 1), metrics["scored"]  # doctest: +SKIP
(6.3, 'held-out notes of data/nsynth-mini')
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.analysis import metrics
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.locate import check_data_dir
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, diverse_notes, load_log_mel, load_split
from keras_timbre.evaluation.code_metrics import code_metrics
from keras_timbre.outputs import check_output_file
from keras_timbre.models.inference import latent_means, reconstruct_db
from keras_timbre.training import run as runs
from keras_timbre.analysis import plots
from keras_timbre.audio.griffin_lim import write_wav
from keras_timbre.data import read_notes

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


def evaluate(
    run: runs.Run | str | os.PathLike,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 32,
    write_media: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluates a run on its held-out notes (or every note of `data`) and writes the metrics as JSON.

    Args:
        run: A `Run` or a run directory.
        data: Evaluate every note of this directory instead of the run's
            validation split.
        out: JSON path; `RUN/metrics.json` by default (the run's own file,
            replaced by every evaluation).
        batch_size: Notes per model call.
        write_media: Also write a reconstruction grid, the latent PCA and audio.
        overwrite: Replace an existing `out` (a given one; see `keras_timbre.outputs`).

    Returns:
        The metrics dict (also written to `out`).

    Raises:
        OutputPathError: `out` cannot be written (checked before any work).
    """
    if out is None:
        run_path = run.path if isinstance(run, runs.Run) else Path(run)
        out = check_output_file(run_path / runs.METRICS_FILE, "the run's metrics file", overwrite=True)
    else:
        out = check_output_file(out, overwrite=overwrite)
    if not isinstance(run, runs.Run):
        run = runs.load_run(run)
    started = time.perf_counter()
    notes = notes_to_score(run, data)
    if len(notes.records) == 0:
        raise ValueError(f"No {notes.label} to evaluate for {run.path}")
    print(f"Evaluating {run.variant} on {len(notes.records)} {notes.label} ...")
    result = compute_metrics(run, notes.records, notes.log_mel_db, batch_size)
    if notes.train_records:
        result.update(
            code_metrics(run, notes.train_records, notes.train_db, notes.records, notes.log_mel_db, batch_size)
        )
    result.update(variant=run.variant, data=str(notes.data), run=str(run.path))
    result.update(held_out=notes.held_out, scored=notes.label)
    atomic.write_json(out, result)
    if write_media:
        write_examples(run, notes)
    print(f"Evaluated in {time.perf_counter() - started:.0f} s; metrics at {out}")
    return result


@dataclasses.dataclass
class ScoredNotes:
    """The notes an evaluation scores, with their log-mel (dB) and where they come from."""

    records: list
    log_mel_db: np.ndarray
    data: Path
    held_out: bool
    train_records: list
    train_db: np.ndarray

    @property
    def label(self) -> str:
        """What the notes are, for people: "held-out notes of DATA" or "notes of DIR"."""
        return f"{'held-out ' if self.held_out else ''}notes of {self.data}"


def notes_to_score(run: runs.Run, data: str | os.PathLike | None = None) -> ScoredNotes:
    """The run's validation split (re-derived from config.json), or every note of `data`."""

    if data is None:
        train_records, train_db, records, log_mel_db = run_split(run)
        return ScoredNotes(records, log_mel_db, runs.locate_data(run), True, train_records, train_db)
    data_path = Path(data)
    check_data_dir(data_path)
    saved_frontend = data_path / runs.FRONTEND_FILE
    if saved_frontend.is_file():
        # Features prepared for another frontend (e.g. another n_mels) cannot feed this model.
        run.frontend.check_matches(FrontendConfig.load(saved_frontend), f"data at {data_path}")
    log_mel_db, records = load_log_mel(read_notes(data_path), run.frontend)
    try:  # the run's own training notes give the codes and the probes' fits
        train_records, train_db, _, _ = run_split(run)
    except (FileNotFoundError, ValueError) as error:
        print(f"keras-timbre: code metrics skipped, the run's training notes are needed: {error}")
        train_records, train_db = [], None
    return ScoredNotes(records, log_mel_db, data_path, False, train_records, train_db)


def run_split(run: runs.Run):
    """`(train_records, train_db, val_records, val_db)` of the run's own split, re-derived from config.json."""
    split = run.config.get("split", {})
    return load_split(
        runs.locate_data(run),
        run.frontend,
        split.get("val_fraction", DEFAULT_VAL_FRACTION),
        split.get("split_seed", 0),
        run.config.get("hyperparameters", {}).get("max_per_instrument"),
    )


def held_out_notes(run: runs.Run, data: str | os.PathLike | None = None):
    """`(records, log_mel_db)` to evaluate: the run's validation split, or all notes of `data`."""
    notes = notes_to_score(run, data)
    return notes.records, notes.log_mel_db


def compute_metrics(run: runs.Run, records, log_mel_db: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """Every metric of `run` on `log_mel_db` (notes, mels, frames) in dB with labels from `records`."""
    if len(records) == 0:
        raise ValueError("No notes to evaluate")
    model, stats, floor = run.model, run.stats, run.frontend.floor_db
    model.check_feature_shape(run.frontend.feature_shape)
    reconstruction = reconstruct_db(model, log_mel_db, stats, batch_size, records=records)
    # From the code alone: decode(z) for the paper's variants; code + pitch + velocity, groups at the prior mean.
    without_skips = reconstruct_db(model, log_mel_db, stats, batch_size, from_code=True, records=records)
    z_mean, z_log_var = latent_means(model, log_mel_db, stats, batch_size, records=records)
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
    result.update({f"decode_code_{name}": value for name, value in decoded_z.items()})
    return result


def write_examples(run: runs.Run, notes: ScoredNotes) -> None:
    """Reconstruction grid, latent PCA and a few WAVs (input, reconstruction), titled with what the notes are."""

    records = notes.records
    shown = diverse_notes(records, FIGURE_NOTES)
    chosen = notes.log_mel_db[shown]
    chosen_records = [records[i] for i in shown]
    recon = reconstruct_db(run.model, chosen, run.stats, records=chosen_records)
    columns = {run.variant: recon}
    if run.model.renders_beyond_code:
        columns["from the code alone"] = reconstruct_db(
            run.model, chosen, run.stats, from_code=True, records=chosen_records
        )
    plots.plot_reconstructions(
        run.path / "figures" / "evaluation_reconstructions.png",
        chosen,
        columns,
        run.frontend,
        titles=[records[i].note_str for i in shown],
        zoom=True,
        title=f"{run.variant} on {notes.label}",
    )
    z_mean, _ = latent_means(run.model, notes.log_mel_db, run.stats, records=records)
    if len(z_mean) >= 3:
        title = f"{run.variant}: latent means of {notes.label} (PCA)"
        plots.plot_latent_pca(run.path / "figures" / "latent_pca.png", z_mean, [r.family for r in records], title)
    for i, target, output in list(zip(shown, chosen, recon))[:AUDIO_NOTES]:
        for kind, spectrogram in (("input", target), ("reconstruction", output)):
            write_wav(run.path / "audio" / f"{records[i].note_str}_{kind}.wav", spectrogram, run.frontend)
