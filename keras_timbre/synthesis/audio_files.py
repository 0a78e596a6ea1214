"""A run's model on the user's own audio files: reconstruct, interpolate, and for a
pitch-conditioned run (variant "hierarchical") synthesise and transfer.

Each checks its outputs before loading anything, reads the files through the
run's frontend, and writes WAVs and a figure. The WAVs are rendered by
`vocoder` (`keras_timbre.vocoder.render.renderer_for`: by default the shipped
vocoder where it fits the run's features, else Griffin-Lim of `n_iter`). A pitch or velocity
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
from keras_timbre.data.labels import is_whole
from keras_timbre.outputs import check_output_file, check_output_folder
from keras_timbre.models.inference import decode_db, latent_means, reconstruct_db
from keras_timbre.training import run as runs
from keras_timbre.analysis import plots
from keras_timbre.audio.frontend import log_mel
from keras_timbre.data import load_audio
from keras_timbre.data.labels import estimate_pitch
from keras_timbre.data.readers import NoteRecord
from keras_timbre.models.family import MAX_TEMPERATURE
from keras_timbre.vocoder.render import renderer_for, write_wavs

MIN_STEPS = 2
STEPS_RULE = "must be >= 2 (both ends, A and B)"
# What `interpolate` writes: an output folder holding only these is an earlier morph, replaced whole.
MORPH_FILE = re.compile(r"strip\.png|step_\d+\.wav")
# The bound of the library and the CLI (`keras_timbre.cli.arguments.temperature`) is the model family's;
# a model may render less (`TimbreModel.max_temperature`).
TEMPERATURE_RULE = f"a number from 0 to {MAX_TEMPERATURE:g} (0: each latent group at its prior mean, 1: its prior)"
# The velocity synthesis uses when none is given, if the run was trained on it (else the closest one).


class ConditioningError(ValueError):
    """A pitch, velocity or run that conditioned synthesis cannot take; the message names the argument."""


def reconstruct_file(
    run: runs.Run | str | os.PathLike,
    audio_path: str | os.PathLike,
    out: str | os.PathLike,
    n_iter: int = 64,
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Reconstructs one audio file: writes `out` (WAV, rendered by `vocoder`) and a side-by-side PNG next to it.

    `out` and the PNG must not exist unless `overwrite` (see `keras_timbre.outputs`).

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FileNotFoundError: `audio_path` does not exist.
        ValueError: `audio_path` is not decodable audio (the message names it).
        ConditioningError: for a conditioned run, the note's pitch or velocity
            (from its name, or its pitch by pYIN) is not one the run was trained on.
        FrontendMismatchError: `vocoder` was trained on other features than the run's.
    """

    out, figure = _output_pair(out, overwrite)
    audio_path = existing_file(audio_path)
    run = _loaded(run)
    renderer = renderer_for(run.frontend, vocoder, n_iter)
    target = read_log_mel(run, audio_path)[None]
    recon = reconstruct_db(run.model, target, run.stats, records=note_records(run, [audio_path], velocity_used=True))
    write_wavs(renderer, [out], recon)
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
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
) -> list[Path]:
    """A timbre morph: decodes `steps` points on the line between the latent means of A and B.

    Writes `strip.png` and `step_XX.wav` into `out_dir`, all at once
    (`atomic.atomic_directory`): an earlier morph there is replaced whole if
    `overwrite`, a folder holding anything else is refused. Decoding uses z alone
    (`model.decode`), as sampling would, so skip variants show what z carries.
    A pitch-conditioned run renders every point at `pitch` (required) and
    `velocity` (default: the model's `default_velocity`) with `decode_db`.

    Raises:
        ValueError: `steps` below 2, or a file that is not audio.
        OutputPathError: `out_dir` is a file or holds other files (checked first).
        ConditioningError: a conditioned run without `pitch`, a pitch or
            velocity it was not trained on, or a paper-variant run given either.
    """

    if steps < MIN_STEPS:
        raise ValueError(f"steps {STEPS_RULE}, got {steps}")
    out_dir = check_output_folder(
        out_dir, lambda path: MORPH_FILE.fullmatch(path.name) is not None, overwrite=overwrite
    )
    audio_a, audio_b = existing_file(audio_a), existing_file(audio_b)
    run = _loaded(run)
    renderer = renderer_for(run.frontend, vocoder, n_iter)
    condition = _line_condition(run, pitch, velocity)
    names = (audio_a.name, audio_b.name)
    z_mean = note_codes(run, (audio_a, audio_b), np.stack([read_log_mel(run, audio_a), read_log_mel(run, audio_b)]))
    alphas = np.linspace(0.0, 1.0, steps)
    decoded = decode_line(run, z_mean[0], z_mean[1], alphas, *condition)
    wavs = [f"step_{i:02d}.wav" for i in range(steps)]
    with atomic.atomic_directory(out_dir, replace=True) as tmp:
        plots.plot_interpolation(tmp / "strip.png", decoded, run.frontend, alphas, names)
        write_wavs(renderer, [tmp / name for name in wavs], decoded)
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
        return decode_db(run.model, z, run.stats, pitch, velocity)
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
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Synthesises one note of a conditioned run at `pitch`: writes `out` (WAV, by `vocoder`) and a PNG beside it.

    The timbre code is the posterior mean of audio file `like`, or without it
    a draw from the run's code prior (`Run.code_prior`) seeded by `seed`. Every latent group sits at its prior
    mean at `temperature` 0; above, each is sampled with its prior's std scaled
    by `temperature` (that noise comes from the model's own seed generators,
    not from `seed`).

    Args:
        run: A run directory (or loaded `Run`) of a conditioned model.
        out: The output WAV; the PNG gets the same name.
        pitch: MIDI pitch, within the run's `pitch_range`.
        velocity: One of the run's `velocities`; None: the model's `default_velocity`.
        like: An audio file whose code to use; None draws a random code.
        temperature: Scale of the latent groups' prior std, from 0 to `MAX_TEMPERATURE`.
        seed: Seed of the random code (ignored with `like`).
        griffin_lim_iters: Griffin-Lim iterations of the WAV, where Griffin-Lim renders it.
        overwrite: Replace an existing `out` and PNG (see `keras_timbre.outputs`).
        vocoder: What renders the WAV (`keras_timbre.vocoder.render.renderer_for`).

    Returns:
        `(wav, png)` paths.

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FrontendMismatchError: `vocoder` was trained on other features than the run's.
        FileNotFoundError: `like` does not exist.
        ValueError: `like` is not decodable audio (the message names it), or `temperature` out of range.
        ConditioningError: a paper-variant run, or a pitch or velocity the run was not trained on.
    """
    out, figure = _output_pair(out, overwrite)
    like = None if like is None else existing_file(like)
    temperature = check_temperature(temperature)
    run = _loaded(run)
    renderer = renderer_for(run.frontend, vocoder, griffin_lim_iters)
    pitch, velocity = check_condition(run, pitch, velocity)
    if like is None:
        target = None
        code = run.code_prior.sample(1, seed)
        label = f"random code (seed {seed})"
    else:
        target = read_log_mel(run, like)[None]
        code = note_codes(run, [like], target)
        label = like.name
    synthesized = decode_db(run.model, code, run.stats, pitch, velocity, run.model.check_temperature(temperature))
    check_renderable(run, synthesized, f"temperature {temperature:g}")
    write_wavs(renderer, [out], synthesized)
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
    overwrite: bool = False,
    vocoder: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Re-renders one note at another `pitch`: its code's mean, synthesised there; WAV + input-beside-output PNG.

    `synthesize_file` with `like=audio_path`.

    Args:
        run: A run directory (or loaded `Run`) of a conditioned model.
        audio_path: The note to re-render.
        pitch: MIDI pitch, within the run's `pitch_range`.
        out: The output WAV; the PNG gets the same name.
        velocity: One of the run's `velocities`; None: the model's `default_velocity`.
        temperature: Scale of the latent groups' prior std, from 0 to `MAX_TEMPERATURE` (see `synthesize_file`).
        griffin_lim_iters: Griffin-Lim iterations of the WAV, where Griffin-Lim renders it.
        overwrite: Replace an existing `out` and PNG (see `keras_timbre.outputs`).
        vocoder: What renders the WAV (`keras_timbre.vocoder.render.renderer_for`).

    Returns:
        `(wav, png)` paths.

    Raises:
        OutputPathError: `out` or the PNG beside it cannot be written (checked first).
        FrontendMismatchError: `vocoder` was trained on other features than the run's.
        FileNotFoundError: `audio_path` does not exist.
        ValueError: `audio_path` is not decodable audio (the message names it), or `temperature` out of range.
        ConditioningError: a paper-variant run, or a pitch or velocity the run was not trained on.
    """
    return synthesize_file(
        run,
        out,
        pitch,
        velocity,
        like=audio_path,
        temperature=temperature,
        griffin_lim_iters=griffin_lim_iters,
        overwrite=overwrite,
        vocoder=vocoder,
    )


class RenderingError(ValueError):
    """A rendered note beyond what any real note reaches: refused, not written."""


def check_renderable(run: runs.Run, log_mel_db, what: str) -> None:
    """Raises `RenderingError` if a note of `log_mel_db` leaves the training notes' dB range (`beyond_range`)."""
    beyond = run.stats.beyond_range(log_mel_db)
    if beyond.any():
        peak = "unknown" if run.stats.peak_db is None else f"{run.stats.peak_db:.1f} dB"
        raise RenderingError(
            f"run {run.path} rendered {int(beyond.sum())} of {len(beyond)} notes at {what} louder than any "
            f"training note (their peak: {peak}; this one {np.max(log_mel_db):.0f} dB) or not finite: nothing "
            "was written; lower --temperature or draw another --seed"
        )


def check_condition(run: runs.Run, pitch, velocity=None) -> tuple[int, int]:
    """`(pitch, velocity)` checked against what the run's conditioned model was trained on.

    `velocity` None is the model's `default_velocity`.

    Raises:
        ConditioningError: a paper-variant run (no pitch input), a pitch outside
            the model's `pitch_range`, or a velocity not among its `velocities`.
    """
    model = run.model
    if not model.is_conditioned:
        raise ConditioningError(
            f"run {run.path} is a {run.variant} model, which has no pitch input; train --variant hierarchical"
        )
    if not allowed_pitch(pitch, model.pitch_range):
        raise ConditioningError(
            f"pitch {pitch} is not in run {run.path}'s trained pitch range: give {pitch_rule(model.pitch_range)}"
        )
    if velocity is None:
        return int(pitch), model.default_velocity
    if not allowed_velocity(velocity, model.velocities):
        raise ConditioningError(
            f"velocity {velocity} is not one run {run.path} was trained on; give {velocity_rule(model.velocities)}"
        )
    return int(pitch), int(velocity)


# The one statement of what a conditioned run takes, for its pitch, velocity and a source note's
# pitch alike: `check_condition`, `note_records` and the exported graph (export.signatures) use these.
def pitch_rule(pitch_range) -> str:
    """What a pitch must be for a model trained on `pitch_range`, in words.

    Example:
    >>> pitch_rule((36, 84))
    'a whole MIDI pitch from 36 to 84'
    """
    return f"a whole MIDI pitch from {int(pitch_range[0])} to {int(pitch_range[1])}"


def allowed_pitch(pitch, pitch_range) -> bool:
    """Whether `pitch` is `pitch_rule(pitch_range)`: a whole number (not a bool) within the range.

    Example:
    >>> [allowed_pitch(p, (36, 84)) for p in (36, 60.0, 40.5, 85, True)]
    [True, True, False, False, False]
    """
    return is_whole(pitch) and pitch_range[0] <= pitch <= pitch_range[1]


def velocity_rule(velocities) -> str:
    """What a velocity must be for a model trained on `velocities`, in words.

    Example:
    >>> velocity_rule((25, 100))
    'one of the trained velocities 25, 100'
    """
    return "one of the trained velocities " + ", ".join(str(int(v)) for v in velocities)


def allowed_velocity(velocity, velocities) -> bool:
    """Whether `velocity` is `velocity_rule(velocities)`.

    Example:
    >>> [allowed_velocity(v, (25, 100)) for v in (100, 100.0, 99, 100.5)]
    [True, True, False, False]
    """
    return is_whole(velocity) and int(velocity) in {int(v) for v in velocities}


def _line_condition(run: runs.Run, pitch, velocity) -> tuple:
    """`(pitch, velocity)` for `interpolate`: both None for a paper variant, checked for a conditioned run."""
    if run.model.is_conditioned:
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


def _output_pair(out: str | os.PathLike, overwrite: bool) -> tuple[Path, Path]:
    """`out` (a WAV) and the PNG beside it, both checked writable."""
    out = check_output_file(out, overwrite=overwrite, suffixes=(".wav",))
    return out, check_output_file(out.with_suffix(".png"), "the figure beside --out,", overwrite=overwrite)


def check_temperature(temperature) -> float:
    """`temperature` as a float if synthesis takes it: a finite number from 0 to `MAX_TEMPERATURE`.

    Raises:
        ValueError: anything else (NaN, inf, negative, too large); the message says what is allowed.

    Example:
    >>> check_temperature(0.5)
    0.5
    >>> check_temperature(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: temperature must be a number from 0 to 1 (0: each latent group at its prior mean, 1: its prior), got inf
    """
    value = float(temperature)
    if not 0.0 <= value <= MAX_TEMPERATURE:  # NaN fails too
        raise ValueError(f"temperature must be {TEMPERATURE_RULE}, got {temperature}")
    return value


def _plot_rendering(path: Path, run: runs.Run, rendered, target, label: str, condition: str) -> Path:
    """The rendering beside its input note, or alone (its column titled as the rendering, not "input")."""

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


def note_records(run: runs.Run, paths, velocity_used: bool = False) -> list | None:
    """NoteRecords of audio files for a conditioned model (pitch and velocity filled in), None for the others.

    Pitch and velocity come from an NSynth-style name; else the pitch is
    estimated with pYIN and the velocity is the model's `default_velocity`.
    The code is read relative to the note's pitch, so it must be one the run
    was trained on (`allowed_pitch`), as must a velocity that is used
    (`velocity_used`: reconstruction; a code does not depend on it).

    Raises:
        ConditioningError: a note's pitch (or used velocity) the run was not
            trained on; the message names the file and where the value came from.
        ValueError: pYIN cannot tell an unnamed note's pitch.
    """

    if not run.model.is_conditioned:
        return None
    records = [_source_labels(run, NoteRecord.from_path(path), velocity_used) for path in paths]
    return [r if r.velocity > 0 else dataclasses.replace(r, velocity=run.model.default_velocity) for r in records]


def _source_labels(run: runs.Run, record, velocity_used: bool):
    """`record` with its pitch (from its name, else pYIN) checked, and its named velocity if used."""
    pitch, origin = (
        (record.pitch, "from its name") if record.pitch >= 0 else (_estimated_pitch(run, record.path), "by pYIN")
    )
    if not allowed_pitch(pitch, run.model.pitch_range):
        raise ConditioningError(
            f"{record.path}: the note's pitch {pitch} ({origin}) is not in run {run.path}'s trained pitch range; "
            f"its code is read relative to its pitch, so give a note at {pitch_rule(run.model.pitch_range)}"
        )
    if velocity_used and record.velocity > 0 and not allowed_velocity(record.velocity, run.model.velocities):
        raise ConditioningError(
            f"{record.path}: the note's velocity {record.velocity} (from its name) is not one run {run.path} "
            f"was trained on; give a note at {velocity_rule(run.model.velocities)}"
        )
    return dataclasses.replace(record, pitch=int(pitch))


def _estimated_pitch(run: runs.Run, path) -> int:

    waveform = load_audio(existing_file(path), run.frontend.sample_rate, run.frontend.num_samples)
    pitch = estimate_pitch(waveform, run.frontend.sample_rate)
    if pitch is None:
        raise ValueError(f"{path}: cannot tell the note's pitch (pYIN found no voiced frames); the code needs it")
    return int(pitch)


def read_log_mel(run: runs.Run, path: str | os.PathLike) -> np.ndarray:
    """One audio file's log-mel (dB) through the run's frontend, cropped or padded to a note."""

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
