"""Look and listen: what a pitch-conditioned run synthesises from its timbre code alone.

Three figures, each with audio of every panel (the run's renderer, `keras_timbre.vocoder.render`):

- a pitch ladder: one instrument's mean training code rendered across pitches,
  beside its real notes where they exist;
- a grid of prior samples (codes from the run's code prior) at several pitches;
- an interpolation between two instruments' codes at a fixed pitch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_timbre.analysis import plots
from keras_timbre.vocoder.render import renderer_for
from keras_timbre.audio.io import write_audio
from keras_timbre.models.inference import decode_db, latent_means

LADDER_STEPS = 7
SAMPLE_ROWS = 3
SAMPLE_PITCHES = (36, 48, 60, 72, 84)
INTERPOLATION_STEPS = 5


def write_synthesis_figures(run, out: Path, records, log_mel_db, held_records=(), held_db=None, seed: int = 0):
    """Writes the ladder, prior-sample and interpolation figures (PNG) and their audio under `out`.

    `records` and `log_mel_db` are the run's training notes, whose codes are
    rendered; the ladder shows them and the held-out notes of the same
    instrument (pitches it was never trained on) beside the synthesised ones.
    """
    z, _ = latent_means(run.model, log_mel_db, run.stats, records=records)
    instruments = np.array([r.instrument for r in records])
    low, high = run.model.pitch_range
    velocity = run.model.default_velocity
    real = _real_notes(records, log_mel_db, held_records, held_db)
    written = [_ladder(run, out, real, z, instruments, velocity)]
    pitches = [p for p in SAMPLE_PITCHES if low <= p <= high] or [int((low + high) // 2)]
    codes = run.code_prior.sample(SAMPLE_ROWS, seed)
    cells = [
        list(decode_db(run.model, np.repeat(c[None], len(pitches), 0), run.stats, pitches, velocity)) for c in codes
    ]
    written.append(
        _figure(
            run,
            out,
            "prior_samples",
            cells,
            [f"sample {i + 1}" for i in range(SAMPLE_ROWS)],
            [f"MIDI {p}" for p in pitches],
            "Prior samples (codes from the code prior), groups at the prior mean",
        )
    )
    written.append(_interpolation(run, out, records, z, instruments, velocity))
    return written


def _real_notes(records, log_mel_db, held_records, held_db) -> dict:
    """{instrument: {pitch: (log-mel, "trained" or "held out")}}."""
    real: dict = {}
    for notes, spectrograms, kind in ((records, log_mel_db, "trained"), (held_records, held_db, "held out")):
        for record, spectrogram in zip(notes, [] if spectrograms is None else spectrograms):
            real.setdefault(record.instrument, {}).setdefault(record.pitch, (spectrogram, kind))
    return real


def _ladder(run, out, real, z, instruments, velocity) -> Path:
    """The instrument with most notes: up to LADDER_STEPS of its pitches, and an octave beyond each end."""
    names, counts = np.unique(instruments, return_counts=True)
    instrument = names[np.argmax(counts)]
    own = sorted(real[instrument])
    low, high = run.model.pitch_range
    picks = [own[int(i)] for i in np.linspace(0, len(own) - 1, min(len(own), LADDER_STEPS - 2)).round()]
    pitches = sorted({max(low, own[0] - 12), *picks, min(high, own[-1] + 12)})
    code = z[instruments == instrument].mean(0, keepdims=True)
    rendered = decode_db(run.model, np.repeat(code, len(pitches), 0), run.stats, pitches, velocity)
    notes = [real[instrument].get(p) for p in pitches]
    cells = [list(rendered), [None if note is None else note[0] for note in notes]]
    labels = [f"MIDI {p}" + ("" if note is None else f" ({note[1]})") for p, note in zip(pitches, notes)]
    title = f"{instrument}: its mean training code across pitches, beside its real notes"
    return _figure(run, out, "pitch_ladder", cells, ["from the code", "real note"], labels, title)


def _interpolation(run, out, records, z, instruments, velocity) -> Path:
    families = np.array([r.family for r in records])
    first = 0
    second = next((i for i in range(len(records)) if families[i] != families[first]), len(records) - 1)
    a, b = (z[instruments == instruments[i]].mean(0) for i in (first, second))
    alphas = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)
    low, high = run.model.pitch_range
    pitch = int(np.clip(60, low, high))
    codes = np.stack([(1 - t) * a + t * b for t in alphas]).astype("float32")
    rendered = decode_db(run.model, codes, run.stats, pitch, velocity)
    labels = [f"alpha {t:.2f}" for t in alphas]
    title = f"{instruments[first]} → {instruments[second]} at MIDI {pitch}"
    return _figure(run, out, "interpolation", [list(rendered)], ["from the code"], labels, title)


def _figure(run, out: Path, name: str, cells, row_labels, column_labels, title: str) -> Path:
    path = plots.plot_spectrogram_grid(
        out / "figures" / f"{name}.png", cells, run.frontend, row_labels, column_labels, title
    )
    renderer = renderer_for(run.frontend, n_iter=32, fast=True)
    for r, row in enumerate(cells):
        shown = [(c, cell) for c, cell in enumerate(row) if cell is not None]
        audio = renderer.to_audio(np.stack([cell for _, cell in shown]))
        for (c, _), clip in zip(shown, audio):
            label = (
                f"{row_labels[r]}_{column_labels[c]}".replace(" ", "_")
                .replace("(", "")
                .replace(")", "")
                .replace("=", "")
            )
            write_audio(out / "audio" / name / f"{label}.wav", clip, run.frontend)
    return path
