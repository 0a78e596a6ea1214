"""A run's model on the user's own audio files: reconstruct one note, interpolate between two.

Both check their outputs before loading anything, read the files through the
run's frontend, and write Griffin-Lim WAVs and a figure.

Example:
>>> reconstruct_file("runs/demo", "note.wav", "recon.wav")  # doctest: +SKIP
(PosixPath('recon.wav'), PosixPath('recon.png'))
>>> interpolate("runs/demo", "flute.wav", "organ.wav", "morph", steps=5)[0]  # doctest: +SKIP
PosixPath('morph/strip.png')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from keras_timbre import atomic
from keras_timbre.evaluation.evaluator import write_wav
from keras_timbre.evaluation.outputs import check_output_file, check_output_folder
from keras_timbre.models.inference import latent_means, reconstruct_db
from keras_timbre.training import run as runs

MIN_STEPS = 2
STEPS_RULE = "must be >= 2 (both ends, A and B)"
# What `interpolate` writes: an output folder holding only these is an earlier morph, replaced whole.
MORPH_FILE = re.compile(r"strip\.png|step_\d+\.wav")


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
    recon = reconstruct_db(run.model, target, run.stats)
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
) -> list[Path]:
    """A timbre morph: decodes `steps` points on the line between the latent means of A and B.

    Writes `strip.png` and `step_XX.wav` into `out_dir`, all at once
    (`atomic.atomic_directory`): an earlier morph there is replaced whole, a
    folder holding anything else is refused. Decoding uses z alone
    (`model.decode`), as sampling would, so skip variants show what z carries.

    Raises:
        ValueError: `steps` below 2, or a file that is not audio.
        OutputPathError: `out_dir` is a file or holds other files (checked first).
    """
    from keras_timbre.analysis import plots

    if steps < MIN_STEPS:
        raise ValueError(f"steps {STEPS_RULE}, got {steps}")
    out_dir = check_output_folder(out_dir, lambda path: MORPH_FILE.fullmatch(path.name) is not None)
    audio_a, audio_b = existing_file(audio_a), existing_file(audio_b)
    run = _loaded(run)
    names = (audio_a.name, audio_b.name)
    z_mean, _ = latent_means(run.model, np.stack([read_log_mel(run, audio_a), read_log_mel(run, audio_b)]), run.stats)
    alphas = np.linspace(0.0, 1.0, steps)
    decoded = decode_line(run, z_mean[0], z_mean[1], alphas)
    wavs = [f"step_{i:02d}.wav" for i in range(steps)]
    with atomic.atomic_directory(out_dir, replace=True) as tmp:
        plots.plot_interpolation(tmp / "strip.png", decoded, run.frontend, alphas, names)
        for name, spectrogram in zip(wavs, decoded):
            write_wav(tmp / name, spectrogram, run.frontend, n_iter=n_iter)
    return [out_dir / "strip.png"] + [out_dir / name for name in wavs]


def decode_line(run: runs.Run, z_a: np.ndarray, z_b: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Log-mel (dB) decoded from `(1 - alpha) * z_a + alpha * z_b` for each alpha, through z alone."""
    import keras

    z = ((1 - alphas[:, None]) * z_a + alphas[:, None] * z_b).astype(np.float32)
    return run.stats.denormalize(keras.ops.convert_to_numpy(run.model.decode(z))[..., 0])


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
