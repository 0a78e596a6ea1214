"""A run's model on the user's own audio files: reconstruct, interpolate, and for a
pitch-conditioned run (variant "hierarchical") synthesise and transfer.

Each checks its outputs before loading anything, reads the files through the
run's frontend, and writes Griffin-Lim WAVs and a figure. A pitch or velocity
the run was not trained on, or a paper-variant run given a pitch, is a
`ConditioningError` (a ValueError) naming the argument and what is allowed.

Example:
>>> reconstruct_file("runs/demo", "note.wav", "recon.wav")  # doctest: +SKIP
(PosixPath('recon.wav'), PosixPath('recon.png'))
>>> interpolate("runs/demo", "flute.wav", "organ.wav", "morph", steps=5)[0]  # doctest: +SKIP
PosixPath('morph/strip.png')
>>> synthesize_file("runs/hier", "flute_c5.wav", pitch=72, like="flute_c4.wav")  # doctest: +SKIP
(PosixPath('flute_c5.wav'), PosixPath('flute_c5.png'))
>>> transfer_file("runs/hier", "flute_c4.wav", 67, "flute_g4.wav")  # doctest: +SKIP
(PosixPath('flute_g4.wav'), PosixPath('flute_g4.png'))
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from keras_timbre import atomic
from keras_timbre.evaluation.evaluator import write_wav
from keras_timbre.evaluation.outputs import check_output_file, check_output_folder
from keras_timbre.models.inference import is_conditioned_model, latent_means, reconstruct_db, synthesize_db
from keras_timbre.training import run as runs

MIN_STEPS = 2
STEPS_RULE = "must be >= 2 (both ends, A and B)"
# What `interpolate` writes: an output folder holding only these is an earlier morph, replaced whole.
MORPH_FILE = re.compile(r"strip\.png|step_\d+\.wav")
# The velocity synthesis uses when none is given, if the run was trained on it (else the closest one).


class ConditioningError(ValueError):
    """A pitch, velocity or run that conditioned synthesis cannot take; the message names the argument."""


def reconstruct_file(
    run: runs.Run | str | os.PathLike, audio_path: str | os.PathLike, out: str | os.PathLike, n_iter: int = 64
) -> tuple[Path, Path]:
    """Reconstructs one audio file: writes `out` (WAV, Griffin-Lim) and a side-by-side PNG next to it.

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FileNotFoundError: `audio_path` does not exist.
        ValueError: `audio_path` is not decodable audio (the message names it).
    """
    from keras_timbre.analysis import plots

    out = check_output_file(out)
    figure = check_output_file(out.with_suffix(".png"), "the figure beside --out,")
    audio_path = existing_file(audio_path)
    run = _loaded(run)
    target = read_log_mel(run, audio_path)[None]
    recon = reconstruct_db(run.model, target, run.stats, records=note_records(run, [audio_path]))
    write_wav(out, recon[0], run.frontend, n_iter=n_iter)
    plots.plot_reconstructions(
        figure, target, {f"{run.variant} reconstruction": recon}, run.frontend, titles=[audio_path.name], zoom=True
    )
    return out, figure


def interpolate(
    run: runs.Run | str | os.PathLike,
    audio_a: str | os.PathLike,
    audio_b: str | os.PathLike,
    out_dir: str | os.PathLike,
    steps: int = 5,
    n_iter: int = 64,
    pitch: int | None = None,
    velocity: int | None = None,
) -> list[Path]:
    """A timbre morph: decodes `steps` points on the line between the latent means of A and B.

    Writes `strip.png` and `step_XX.wav` into `out_dir`, all at once
    (`atomic.atomic_directory`): an earlier morph there is replaced whole, a
    folder holding anything else is refused. Decoding uses z alone
    (`model.decode`), as sampling would, so skip variants show what z carries.
    A pitch-conditioned run renders every point at `pitch` (required) and
    `velocity` (default: the model's `default_velocity`) with `synthesize_db`.

    Raises:
        ValueError: `steps` below 2, or a file that is not audio.
        OutputPathError: `out_dir` is a file or holds other files (checked first).
        ConditioningError: a conditioned run without `pitch`, a pitch or
            velocity it was not trained on, or a paper-variant run given either.
    """
    from keras_timbre.analysis import plots

    if steps < MIN_STEPS:
        raise ValueError(f"steps {STEPS_RULE}, got {steps}")
    out_dir = check_output_folder(out_dir, lambda path: MORPH_FILE.fullmatch(path.name) is not None)
    audio_a, audio_b = existing_file(audio_a), existing_file(audio_b)
    run = _loaded(run)
    condition = _line_condition(run, pitch, velocity)
    names = (audio_a.name, audio_b.name)
    z_mean = note_codes(run, (audio_a, audio_b), np.stack([read_log_mel(run, audio_a), read_log_mel(run, audio_b)]))
    alphas = np.linspace(0.0, 1.0, steps)
    decoded = decode_line(run, z_mean[0], z_mean[1], alphas, *condition)
    wavs = [f"step_{i:02d}.wav" for i in range(steps)]
    with atomic.atomic_directory(out_dir, replace=True) as tmp:
        plots.plot_interpolation(tmp / "strip.png", decoded, run.frontend, alphas, names)
        for name, spectrogram in zip(wavs, decoded):
            write_wav(tmp / name, spectrogram, run.frontend, n_iter=n_iter)
    return [out_dir / "strip.png"] + [out_dir / name for name in wavs]


def decode_line(
    run: runs.Run,
    z_a: np.ndarray,
    z_b: np.ndarray,
    alphas: np.ndarray,
    pitch: int | None = None,
    velocity: int | None = None,
) -> np.ndarray:
    """Log-mel (dB) decoded from `(1 - alpha) * z_a + alpha * z_b` for each alpha, through z alone.

    With `pitch` and `velocity` (a conditioned run), each point is synthesised there.
    """
    import keras

    z = ((1 - alphas[:, None]) * z_a + alphas[:, None] * z_b).astype(np.float32)
    if pitch is not None:
        return synthesize_db(run.model, z, pitch, velocity, run.stats)
    return run.stats.denormalize(keras.ops.convert_to_numpy(run.model.decode(z))[..., 0])


def synthesize_file(
    run: runs.Run | str | os.PathLike,
    out: str | os.PathLike,
    pitch: int,
    velocity: int | None = None,
    like: str | os.PathLike | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    griffin_lim_iters: int = 64,
) -> tuple[Path, Path]:
    """Synthesises one note of a conditioned run at `pitch`: writes `out` (WAV, Griffin-Lim) and a PNG beside it.

    The timbre code is the posterior mean of audio file `like`, or without it
    a draw from N(0, I) seeded by `seed`. Every latent group sits at its prior
    mean at `temperature` 0; above, each is sampled with its prior's std scaled
    by `temperature` (that noise comes from the model's own seed generators,
    not from `seed`).

    Args:
        run: A run directory (or loaded `Run`) of a conditioned model.
        out: The output WAV; the PNG gets the same name.
        pitch: MIDI pitch, within the run's `pitch_range`.
        velocity: One of the run's `velocities`; None: the model's `default_velocity`.
        like: An audio file whose code to use; None draws a random code.
        temperature: Scale of the latent groups' prior std, >= 0.
        seed: Seed of the random code (ignored with `like`).
        griffin_lim_iters: Griffin-Lim iterations of the WAV.

    Returns:
        `(wav, png)` paths.

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FileNotFoundError: `like` does not exist.
        ValueError: `like` is not decodable audio (the message names it), or `temperature` < 0.
        ConditioningError: a paper-variant run, or a pitch or velocity the run was not trained on.
    """
    out, figure = _output_pair(out)
    like = None if like is None else existing_file(like)
    _check_temperature(temperature)
    run = _loaded(run)
    pitch, velocity = check_condition(run, pitch, velocity)
    if like is None:
        target = None
        code = np.random.default_rng(seed).standard_normal((1, run.model.latent_dim)).astype(np.float32)
        label = f"random code (seed {seed})"
    else:
        target = read_log_mel(run, like)[None]
        code = note_codes(run, [like], target)
        label = like.name
    synthesized = synthesize_db(run.model, code, pitch, velocity, run.stats, temperature)
    write_wav(out, synthesized[0], run.frontend, n_iter=griffin_lim_iters)
    _plot_rendering(figure, run, synthesized, target, label, f"pitch {pitch}, velocity {velocity}")
    return out, figure


def transfer_file(
    run: runs.Run | str | os.PathLike,
    audio_path: str | os.PathLike,
    pitch: int,
    out: str | os.PathLike,
    velocity: int | None = None,
    temperature: float = 0.0,
    griffin_lim_iters: int = 64,
) -> tuple[Path, Path]:
    """Re-renders one note at another `pitch`: its code's mean, synthesised there; WAV + input-beside-output PNG.

    `synthesize_file` with `like=audio_path`.

    Args:
        run: A run directory (or loaded `Run`) of a conditioned model.
        audio_path: The note to re-render.
        pitch: MIDI pitch, within the run's `pitch_range`.
        out: The output WAV; the PNG gets the same name.
        velocity: One of the run's `velocities`; None: the model's `default_velocity`.
        temperature: Scale of the latent groups' prior std, >= 0 (see `synthesize_file`).
        griffin_lim_iters: Griffin-Lim iterations of the WAV.

    Returns:
        `(wav, png)` paths.

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FileNotFoundError: `audio_path` does not exist.
        ValueError: `audio_path` is not decodable audio (the message names it), or `temperature` < 0.
        ConditioningError: a paper-variant run, or a pitch or velocity the run was not trained on.
    """
    return synthesize_file(
        run, out, pitch, velocity, like=audio_path, temperature=temperature, griffin_lim_iters=griffin_lim_iters
    )


def check_condition(run: runs.Run, pitch, velocity=None) -> tuple[int, int]:
    """`(pitch, velocity)` checked against what the run's conditioned model was trained on.

    `velocity` None is the model's `default_velocity`.

    Raises:
        ConditioningError: a paper-variant run (no pitch input), a pitch outside
            the model's `pitch_range`, or a velocity not among its `velocities`.
    """
    model = run.model
    if not is_conditioned_model(model):
        raise ConditioningError(
            f"run {run.path} is a {run.variant} model, which has no pitch input; train --variant hierarchical"
        )
    low, high = model.pitch_range
    if not _is_whole(pitch) or not low <= pitch <= high:
        raise ConditioningError(
            f"pitch {pitch} is not in run {run.path}'s trained pitch range: "
            f"give a whole MIDI pitch from {low} to {high}"
        )
    if velocity is None:
        return int(pitch), model.default_velocity
    if not _is_whole(velocity) or velocity not in model.velocities:
        allowed = ", ".join(str(v) for v in model.velocities)
        raise ConditioningError(f"velocity {velocity} is not one run {run.path} was trained on; choose from {allowed}")
    return int(pitch), int(velocity)


def _is_whole(value) -> bool:
    """Whether `value` is a whole number (an int, or a float such as 60.0; not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value % 1 == 0


def _line_condition(run: runs.Run, pitch, velocity) -> tuple:
    """`(pitch, velocity)` for `interpolate`: both None for a paper variant, checked for a conditioned run."""
    if is_conditioned_model(run.model):
        if pitch is None:
            low, high = run.model.pitch_range
            raise ConditioningError(
                f"pitch is required: run {run.path} is a {run.variant} model, conditioned on pitch; "
                f"pass a MIDI pitch from {low} to {high}"
            )
        return check_condition(run, pitch, velocity)
    if pitch is not None or velocity is not None:
        check_condition(run, pitch, velocity)  # raises: a paper variant has no pitch input
    return None, None


def _output_pair(out: str | os.PathLike) -> tuple[Path, Path]:
    """`out` and the PNG beside it, both checked writable."""
    out = check_output_file(out)
    return out, check_output_file(out.with_suffix(".png"), "the figure beside --out,")


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: every latent group at its prior mean), got {temperature}")


def _plot_rendering(path: Path, run: runs.Run, rendered, target, label: str, condition: str) -> Path:
    """The rendering beside its input note, or alone (its column titled as the rendering, not "input")."""
    from keras_timbre.analysis import plots

    name = condition  # every conditioned run is a hierarchical one: the pitch and velocity say what it shows
    if target is not None:
        return plots.plot_reconstructions(path, target, {name: rendered}, run.frontend, titles=[label], zoom=True)
    figure = plots.reconstruction_figure(rendered, {}, run.frontend, titles=[label], zoom=True)
    for ax in figure.axes:
        if ax.get_title().startswith("input"):
            ax.set_title(ax.get_title().replace("input", name, 1), fontsize=9)
    return plots.save_figure(figure, path)


def note_codes(run: runs.Run, paths, log_mel_db: np.ndarray) -> np.ndarray:
    """Code means of notes read from `paths`; a conditioned model also needs each note's own pitch.

    The pitch comes from an NSynth-style name, else from pYIN (`keras_timbre.data.labels.estimate_pitch`).
    """
    return latent_means(run.model, log_mel_db, run.stats, records=note_records(run, paths))[0]


def note_records(run: runs.Run, paths) -> list | None:
    """NoteRecords of audio files for a conditioned model (pitch and velocity filled in), None for the others.

    Pitch and velocity come from an NSynth-style name; else the pitch is
    estimated with pYIN and the velocity is the model's `default_velocity`.
    """
    from keras_timbre.data.readers import NoteRecord

    if not is_conditioned_model(run.model):
        return None
    records = [NoteRecord.from_path(path) for path in paths]
    records = [r if r.pitch >= 0 else dataclasses.replace(r, pitch=_estimated_pitch(run, r.path)) for r in records]
    return [r if r.velocity > 0 else dataclasses.replace(r, velocity=run.model.default_velocity) for r in records]


def _estimated_pitch(run: runs.Run, path) -> int:
    from keras_timbre.data import load_audio
    from keras_timbre.data.labels import estimate_pitch

    waveform = load_audio(existing_file(path), run.frontend.sample_rate, run.frontend.num_samples)
    pitch = estimate_pitch(waveform, run.frontend.sample_rate)
    if pitch is None:
        raise ValueError(f"{path}: cannot tell the note's pitch (pYIN found no voiced frames); the code needs it")
    return int(pitch)


def read_log_mel(run: runs.Run, path: str | os.PathLike) -> np.ndarray:
    """One audio file's log-mel (dB) through the run's frontend, cropped or padded to a note."""
    from keras_timbre.audio.frontend import log_mel
    from keras_timbre.data import load_audio

    waveform = load_audio(existing_file(path), run.frontend.sample_rate, run.frontend.num_samples)
    return log_mel(waveform, run.frontend.sample_rate, run.frontend)


def existing_file(path: str | os.PathLike) -> Path:
    """`path` as a Path; FileNotFoundError naming it if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Input audio {path} does not exist")
    return path


def _loaded(run: runs.Run | str | os.PathLike) -> runs.Run:
    return run if isinstance(run, runs.Run) else runs.load_run(run)
