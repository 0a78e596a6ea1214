"""`evaluate(run)`: metrics of a trained run, written to metrics.json, with figures and audio.

By default the notes are the run's own validation split (pitches held out per
instrument, re-derived from `config.json`): "held-out notes of DATA". With
`data=DIR`, every note of that directory is scored instead: "notes of DIR".
The printed summary, `metrics.json` (`scored`, `held_out`) and the figure
titles say which. `docs/evaluation.md` defines each metric.

The reconstructions are also heard: rendered by `vocoder`
(`keras_timbre.vocoder.render.renderer_for`: by default the shipped vocoder
where it fits the run's features, else Griffin-Lim) and scored against the
real notes' waveforms (`keras_timbre.analysis.audio_metrics`) on at most
`AUDIO_METRIC_NOTES` notes, f0 on at most `F0_NOTES` pitched ones.

Besides `metrics.json`, evaluation draws a reconstruction grid and the latent
PCA into `RUN/figures/` and writes input/reconstruction audio (the same
renderer) into `RUN/audio/`.

Example:
>>> metrics = evaluate("runs/demo")  # doctest: +SKIP
>>> round(metrics["lsd_db"], 1), metrics["scored"]  # doctest: +SKIP
(6.3, 'held-out notes of data/nsynth-mini')
>>> metrics["audio_renderer"]  # doctest: +SKIP
'vocoder (shipped default)'
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.analysis import audio_metrics, metrics
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.locate import check_data_dir
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, diverse_notes, load_log_mel, load_split
from keras_timbre.evaluation.code_metrics import code_metrics
from keras_timbre.outputs import check_output_file
from keras_timbre.models.inference import latent_means, reconstruct_db
from keras_timbre.training import run as runs
from keras_timbre.analysis import plots
from keras_timbre.data import read_notes
from keras_timbre.data.pipeline import waveform_dataset
from keras_timbre.data.skips import SkipReport
from keras_timbre.vocoder.render import Renderer, renderer_for, write_wavs

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
    "audio_mel_lsd_db",
    "audio_mr_stft_db",
    "audio_f0_error_cents",
)
AUDIO_NOTES = 2
FIGURE_NOTES = 3
# The audio metrics' bounds: on one core librosa's Griffin-Lim renders about 4 s of audio a second, the
# shipped vocoder 100-240 (benchmarks/results/vocoder.md), pYIN analyses about 40, so the audio metrics
# of 4 s notes take about 5 s with the vocoder and 40 s with Griffin-Lim, however many notes are held out.
AUDIO_METRIC_NOTES = 32
F0_NOTES = 8
F0_SECONDS = 3.0  # NSynth notes are held for 3 s, then released: the pitch is in the held part


def evaluate(
    run: runs.Run | str | os.PathLike,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 32,
    write_media: bool = True,
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
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
        vocoder: What renders the audio metrics' and the WAVs' audio: None or "default",
            "griffin-lim", or a vocoder path (`keras_timbre.vocoder.render.renderer_for`).

    Returns:
        The metrics dict (also written to `out`).

    Raises:
        OutputPathError: `out` cannot be written (checked before any work).
        FileNotFoundError: no vocoder at the path `vocoder`.
        FrontendMismatchError: the vocoder `vocoder` was trained on other features than the run's
            (a ValueError naming each field; checked before the notes are read).
    """
    run_path = run.path if isinstance(run, runs.Run) else runs.run_directory(run)
    if runs.is_preset(run_path) and (out is None or write_media):
        raise ValueError(
            f"{run} is a preset shipped with the package, which evaluation does not write into: "
            "give out=FILE.json and write_media=False (keras-timbre evaluate NAME --out FILE.json)"
        )
    if out is None:
        out = check_output_file(run_path / runs.METRICS_FILE, "the run's metrics file", overwrite=True)
    else:
        out = check_output_file(out, overwrite=overwrite)
    if not isinstance(run, runs.Run):
        run = runs.load_run(run_path)
    renderer = renderer_for(run.frontend, vocoder)
    started = time.perf_counter()
    notes = notes_to_score(run, data)
    if len(notes.records) == 0:
        raise ValueError(f"No {notes.label} to evaluate for {run.path}")
    print(f"Evaluating {run.variant} on {len(notes.records)} {notes.label} (audio: {renderer.name}) ...")
    result = compute_metrics(run, notes.records, notes.log_mel_db, batch_size, renderer)
    if notes.train_records:
        result.update(
            code_metrics(run, notes.train_records, notes.train_db, notes.records, notes.log_mel_db, batch_size)
        )
    result.update(variant=run.variant, data=str(notes.data), run=str(run.path))
    result.update(held_out=notes.held_out, scored=notes.label)
    atomic.write_json(out, result)
    if write_media:
        write_examples(run, notes, renderer)
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


def compute_metrics(
    run: runs.Run, records, log_mel_db: np.ndarray, batch_size: int = 32, renderer: Renderer | None = None
) -> dict[str, Any]:
    """Every metric of `run` on `log_mel_db` (notes, mels, frames) in dB with labels from `records`.

    With a `renderer`, also the audio metrics of the reconstructions (`audio_scores`).
    """
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
    if renderer is not None:
        result.update(audio_scores(run.frontend, records, reconstruction, renderer))
    return result


def audio_scores(
    frontend: FrontendConfig,
    records,
    reconstruction_db: np.ndarray,
    renderer: Renderer,
    count: int = AUDIO_METRIC_NOTES,
    f0_notes: int = F0_NOTES,
) -> dict[str, Any]:
    """The reconstructions, rendered, against the real notes' waveforms: `audio_*` metrics.

    At most `count` notes, spread evenly over `records`, are rendered; f0 is
    scored on at most `f0_notes` of them with a known pitch, on their first
    `F0_SECONDS`, pYIN searching an octave either side of the labelled pitch.

    Returns:
        `audio_mel_lsd_db`, `audio_mr_stft_db`, `audio_f0_error_cents` (NaN
        without a pitched note voiced in both), `audio_notes`, `audio_f0_notes`
        and `audio_renderer` (the renderer's name).
    """
    chosen = _spread(len(records), count)
    real, kept = note_waveforms([records[i] for i in chosen], frontend)
    chosen = [chosen[i] for i in kept]
    result: dict[str, Any] = {"audio_renderer": renderer.name, "audio_notes": len(chosen), "audio_f0_notes": 0}
    if not chosen:
        return {**result, **{key: float("nan") for key in METRIC_KEYS if key.startswith("audio_")}}
    audio = renderer.to_audio(reconstruction_db[chosen])
    cents, pitched = pitched_f0_error(audio, real, [records[i] for i in chosen], frontend, f0_notes)
    result.update(
        audio_mel_lsd_db=audio_metrics.reanalysed_lsd_db(audio, real, frontend),
        audio_mr_stft_db=audio_metrics.mr_stft_distance_db(audio, real),
        audio_f0_error_cents=cents,
        audio_f0_notes=pitched,
    )
    return result


def pitched_f0_error(audio: np.ndarray, real: np.ndarray, records, frontend: FrontendConfig, count: int = F0_NOTES):
    """`(f0 error in cents, notes scored)` on up to `count` notes with a known pitch, spread evenly."""
    rate = frontend.sample_rate
    # pYIN wants two periods of fmin in its frame, and fmax at most Nyquist.
    lowest = 2.0 * rate / audio_metrics.F0_FRAME_LENGTH * 1.01
    candidates = []
    for i, record in enumerate(records):
        hz = 440.0 * 2.0 ** ((record.pitch - 69) / 12.0)
        low, high = max(hz / 2, lowest), min(hz * 2, rate / 2)
        if record.pitch >= 0 and low < high:
            candidates.append((i, low, high))
    picked = [candidates[i] for i in _spread(len(candidates), count)]
    if not picked:
        return float("nan"), 0
    index, low, high = (list(column) for column in zip(*picked))
    held = slice(0, int(F0_SECONDS * rate))
    cents = audio_metrics.f0_error_cents(audio[index, held], real[index, held], rate, low, high)
    return cents, len(picked)


def note_waveforms(records, frontend: FrontendConfig) -> tuple[np.ndarray, list[int]]:
    """`(waveforms (N, num_samples), indices into records)` of the notes, read as training reads them.

    A note that cannot be read is left out (the indices say which were read). Quietly: the notes were
    read once already for their log-mel, and what reading them skipped or changed was reported then.
    """
    found = {}
    for waveform, index in waveform_dataset(list(records), frontend, SkipReport(verbose=False)).as_numpy_iterator():
        found[int(index)] = waveform
    kept = sorted(found)
    if not kept:
        return np.zeros((0, frontend.num_samples), np.float32), []
    return np.stack([found[i] for i in kept]).astype(np.float32), kept


def _spread(total: int, count: int) -> list[int]:
    """Up to `count` indices of `range(total)`, evenly spread, first and last included."""
    if total <= count:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count).round()]


def write_examples(run: runs.Run, notes: ScoredNotes, renderer: Renderer | None = None) -> None:
    """Reconstruction grid, latent PCA and a few WAVs (input, reconstruction), titled with what the notes are.

    The WAVs are rendered by `renderer` (by default `renderer_for(run.frontend)`).
    """

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
    paths, spectrograms = [], []
    for i, target, output in list(zip(shown, chosen, recon))[:AUDIO_NOTES]:
        for kind, spectrogram in (("input", target), ("reconstruction", output)):
            paths.append(run.path / "audio" / f"{records[i].note_str}_{kind}.wav")
            spectrograms.append(spectrogram)
    if renderer is None:
        renderer = renderer_for(run.frontend)
    write_wavs(renderer, paths, np.stack(spectrograms))
