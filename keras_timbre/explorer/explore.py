"""`build_explorer(run, out)`: one self-contained HTML page to look at and listen to a run's timbre codes.

The page (see docs/explore.md) maps the held-out notes' posterior means in 2-D
(PCA and t-SNE), coloured by family or source; hovering a note names it,
clicking plays the note and then its reconstruction, and picking two of the
ringed "morph" notes shows and plays the decoded line between their codes.
Everything (script, audio, spectrograms) is inside the one file, so it opens
from disk with no server and no network.

What is precomputed, and why it stays fast (1,100 notes):

- every note's original audio (decoded and re-encoded as MP3) and its
  reconstruction, rendered by `vocoder` (`keras_timbre.vocoder.render`: the
  shipped vocoder where it fits the run's features, else batched Griffin-Lim);
- morphs only between `morph_notes` notes picked from different families
  (all pairs, `morph_steps` points each, the same renderer), so their number
  is bounded whatever the number of notes.

The page's title names the renderer.

Example:
>>> summary = build_explorer("runs/demo", "explore.html")  # doctest: +SKIP
>>> summary.notes, summary.morphs  # doctest: +SKIP
(1100, 28)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.outputs import check_output_file
from keras_timbre.data.split import diverse_notes
from keras_timbre.explorer import media
from keras_timbre.evaluation.evaluator import held_out_notes
from keras_timbre.explorer.maps import note_maps
from keras_timbre.explorer.page import render_page
from keras_timbre.models.inference import decode_db, latent_means, reconstruct_db
from keras_timbre.training import run as runs
from keras_timbre.audio.io import load_audio
from keras_timbre.vocoder.render import Renderer, renderer_for

DEFAULT_MORPH_NOTES = 8
DEFAULT_MORPH_STEPS = 5
# A pitch-conditioned run renders the morphs at middle C (or the nearest pitch it was trained on).
MORPH_PITCH = 60
DEFAULT_GRIFFIN_LIM_ITERS = 16
HTML_SUFFIXES = (".html", ".htm")
# Notes whose audio is decoded and inverted at once: bounds memory (complex STFTs) at 1,000s of notes.
AUDIO_CHUNK = 64


@dataclasses.dataclass
class ExplorerSummary:
    """What `build_explorer` wrote: the page, its counts, size and where the time went."""

    path: Path
    notes: int
    morphs: int
    clips: int
    size_bytes: int
    seconds: dict[str, float]

    def describe(self) -> str:
        stages = ", ".join(f"{name} {value:.1f} s" for name, value in self.seconds.items())
        return (
            f"Wrote {self.path} ({self.size_bytes / 1e6:.1f} MB): {self.notes} notes, {self.morphs} morphs, "
            f"{self.clips} audio clips in {sum(self.seconds.values()):.0f} s ({stages})"
        )


def build_explorer(
    run: runs.Run | str | os.PathLike,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    morph_notes: int = DEFAULT_MORPH_NOTES,
    morph_steps: int = DEFAULT_MORPH_STEPS,
    griffin_lim_iters: int = DEFAULT_GRIFFIN_LIM_ITERS,
    max_notes: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
) -> ExplorerSummary:
    """Writes the explorer page for a run's held-out notes (or every note of `data`).

    Args:
        run: A `Run` or a run directory.
        out: The HTML file to write (atomically).
        data: Map every note of this directory instead of the run's validation split.
        morph_notes: Notes (from different families first) between which all morphs are precomputed.
        morph_steps: Points per morph, both ends included.
        griffin_lim_iters: Griffin-Lim iterations, where Griffin-Lim renders the audio.
        max_notes: Keep only the first this many notes.
        seed: Seed of the t-SNE map.
        overwrite: Replace an existing `out` (see `keras_timbre.outputs`).
        vocoder: What renders the reconstructions and morphs (`keras_timbre.vocoder.render.renderer_for`).

    Returns:
        An `ExplorerSummary`.

    Raises:
        OutputPathError: `out` exists (without `overwrite`), is a directory or is not .html.
        ValueError: no notes, or an argument out of range (the message names it).
        FrontendMismatchError: `vocoder` was trained on other features than the run's.
    """
    out = check_output_file(out, overwrite=overwrite, suffixes=HTML_SUFFIXES)
    _check_arguments(morph_notes, morph_steps, griffin_lim_iters, max_notes)
    if not isinstance(run, runs.Run):
        run = runs.load_run(run)
    renderer = renderer_for(run.frontend, vocoder, griffin_lim_iters, fast=True)
    timer = _StageTimer()
    records, log_mel_db = held_out_notes(run, data)
    records, log_mel_db = list(records)[:max_notes], log_mel_db[:max_notes]
    if not records:
        raise ValueError(f"No notes to explore for {run.path} (data: {data or run.config.get('data')})")
    timer.lap("features")
    run.model.check_feature_shape(run.frontend.feature_shape)
    z_mean, _ = latent_means(run.model, log_mel_db, run.stats, records=records)
    reconstruction = reconstruct_db(run.model, log_mel_db, run.stats, records=records)
    timer.lap("model")
    maps = note_maps(z_mean, seed)
    timer.lap("maps")
    notes = _note_media(run, records, log_mel_db, reconstruction, renderer)
    timer.lap("note audio")
    anchors = diverse_notes(records, min(morph_notes, len(records)))
    morphs = _morphs(run, z_mean, anchors, morph_steps, renderer)
    timer.lap("morphs")
    payload = _payload(run, records, maps, notes, anchors, morphs, renderer)
    atomic.write_text(out, render_page(payload))
    timer.lap("page")
    clips = 2 * len(records) + sum(len(m["clips"]) for m in morphs)
    return ExplorerSummary(Path(out), len(records), len(morphs), clips, Path(out).stat().st_size, timer.seconds)


def _check_arguments(morph_notes: int, morph_steps: int, griffin_lim_iters: int, max_notes) -> None:
    for name, value, low in (
        ("morph_notes", morph_notes, 0),
        ("morph_steps", morph_steps, 2),
        ("griffin_lim_iters", griffin_lim_iters, 1),
        ("max_notes", 1 if max_notes is None else max_notes, 1),
    ):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")


class _StageTimer:
    """Seconds per named stage, in order."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now


def _note_media(
    run: runs.Run, records, log_mel_db: np.ndarray, reconstruction: np.ndarray, renderer: Renderer
) -> dict[str, list]:
    """Per note: MP3 of the original and of the reconstruction, and both spectrogram thumbnails."""

    frontend, floor = run.frontend, run.frontend.floor_db
    media_lists: dict[str, list] = {"audio": [], "recon_audio": [], "thumb": [], "recon_thumb": []}
    for start in range(0, len(records), AUDIO_CHUNK):
        chunk = slice(start, start + AUDIO_CHUNK)
        waveforms = np.stack([load_audio(r.path, frontend.sample_rate, frontend.num_samples) for r in records[chunk]])
        recon_audio = renderer.to_audio(reconstruction[chunk])
        media_lists["audio"] += media.mp3_base64_many(waveforms, frontend.sample_rate)
        media_lists["recon_audio"] += media.mp3_base64_many(recon_audio, frontend.sample_rate)
        media_lists["thumb"] += [media.thumbnail_base64(s, floor) for s in log_mel_db[chunk]]
        media_lists["recon_thumb"] += [media.thumbnail_base64(s, floor) for s in reconstruction[chunk]]
    return media_lists


def _morphs(run: runs.Run, z_mean: np.ndarray, anchors: list[int], steps: int, renderer: Renderer) -> list[dict]:
    """Decoded lines between every pair of anchor notes: `{"a", "b", "clips", "thumbs"}` each."""

    pairs = list(itertools.combinations(anchors, 2))
    if not pairs:
        return []
    alphas = np.linspace(0.0, 1.0, steps)[:, None]
    z = np.concatenate([(1 - alphas) * z_mean[a] + alphas * z_mean[b] for a, b in pairs]).astype(np.float32)
    labels = (None, None)
    if run.model.is_conditioned:  # a morph of timbres at one pitch
        labels = (int(np.clip(MORPH_PITCH, *run.model.pitch_range)), run.model.default_velocity)
    decoded = decode_db(run.model, z, run.stats, *labels)
    audio = _in_chunks(renderer.to_audio, decoded)
    rate, floor = run.frontend.sample_rate, run.frontend.floor_db
    return [
        {
            "a": int(a),
            "b": int(b),
            "clips": media.mp3_base64_many(audio[k * steps : (k + 1) * steps], rate),
            "thumbs": [media.thumbnail_base64(s, floor) for s in decoded[k * steps : (k + 1) * steps]],
        }
        for k, (a, b) in enumerate(pairs)
    ]


def _in_chunks(function, array: np.ndarray) -> np.ndarray:
    """`function` applied to `AUDIO_CHUNK` rows at a time, results concatenated."""
    return np.concatenate([function(array[i : i + AUDIO_CHUNK]) for i in range(0, len(array), AUDIO_CHUNK)])


def _payload(run: runs.Run, records, maps, notes, anchors, morphs, renderer: Renderer) -> dict[str, Any]:
    """Everything the page's script reads, as JSON-ready values."""
    return {
        "title": f"{run.path.name}: {run.variant}, {len(records)} notes, audio by {renderer.name}",
        "notes": [
            {
                "name": Path(r.path).name if "#" not in r.path else r.note_str,
                "family": r.family or "unknown",
                "source": r.source or "unknown",
                "pitch": r.pitch,
                "velocity": r.velocity,
            }
            for r in records
        ],
        "maps": {name: np.round(points, 4).tolist() for name, points in maps.items()},
        "thumbShape": list(media.THUMBNAIL_SHAPE),
        "audioType": "audio/mpeg",
        "anchors": [int(i) for i in anchors],
        "morphs": morphs,
        **notes,
    }
