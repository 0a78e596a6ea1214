"""SavedModel export for TF Serving: raw audio in, timbre out.

The exported graph holds the whole inference path: the log-mel frontend
(`audio.frontend.tf_log_mel`, with the run's `FrontendConfig`), the run's
per-mel-bin normalisation (`FeatureStats`, baked in as constants), the VAE,
and on the way out the inverse normalisation and what renders the waveform
outputs: the trained neural vocoder (`keras_timbre.vocoder.Vocoder`, its layers
traced into the graph) or Griffin-Lim written with `tf.signal`
(`audio.griffin_lim.tf_mel_to_audio`). A client sends float32 samples at the
run's sample rate; no Python feature code is needed on its side.

`vocoder` chooses the renderer, as everywhere else in the package
(`keras_timbre.vocoder.render.renderer_for`): None or "default" is the shipped
vocoder where it was trained on the run's features, else Griffin-Lim;
"griffin-lim"; or a vocoder path (a `.keras` file or a train-vocoder run), a
`FrontendMismatchError` naming the fields if it was trained on other features.
The export's record (`assets.extra/keras_timbre.json`) says which rendered
(`renderer`, `waveform_renderer`, `vocoder_fingerprint`).

Signatures (every input and output is named):

| signature                        | input                       | outputs                                  |
|----------------------------------|-----------------------------|------------------------------------------|
| `serving_default`, `reconstruct` | `waveform` [batch, samples] | `log_mel` [batch, n_mels, n_frames] dB,  |
|                                  |                             | `z_mean`, `z_log_var` [batch, latent],   |
|                                  |                             | `waveform` [batch, num_samples]          |
| `encode`                         | `waveform` [batch, samples] | `z_mean`, `z_log_var`                    |
| `decode`                         | `z` [batch, latent]         | `log_mel` (decoder without skips)        |
| `synthesize`                     | `z` [batch, latent]         | `waveform` [batch, num_samples]          |

A pitch-conditioned model (variant "hierarchical") has no `decode`; its
`synthesize` takes `code`, `pitch` and `velocity` [batch] and returns `waveform`
and `log_mel`, `reconstruct` takes `waveform`, `pitch` and `velocity` (its outputs as above), and
`encode` and `transfer` (`waveform`, `source_pitch`, `pitch`) take the notes' own pitch too
(`signatures.CONDITIONED_SIGNATURES`, docs/export.md).

Any batch size is accepted; big batches run in slices of `CHUNK_SIZE` notes
inside the graph, which is faster on CPU and gives the same results.
Waveforms of any length are accepted: the graph crops or zero-pads them to the
run's `num_samples` (4 s by default), exactly as training did. An empty batch,
a waveform with no samples, and NaN or Inf samples (or latents) fail the
request with an `InvalidArgumentError` whose message names the input; a wrong
dtype or rank is refused by the typed signature before the graph runs. Finite
input gives finite output: absurd amplitudes and latents are bounded in the
graph (`keras_timbre.export.signatures`).

The export always runs under the TensorFlow backend. A model trained under JAX
or PyTorch is saved (it already is, in a run) as `.keras` and re-loaded under
TensorFlow in a subprocess: a `.keras` file loads in any backend.

Example:
>>> from keras_timbre.export import export_run
>>> export_run("runs/skip_gdl", "exported/timbre/1")  # doctest: +SKIP
>>> import tensorflow as tf, numpy as np  # doctest: +SKIP
>>> served = tf.saved_model.load("exported/timbre/1")  # doctest: +SKIP
>>> served.signatures["encode"](waveform=tf.zeros([2, 64000]))["z_mean"].shape  # doctest: +SKIP
TensorShape([2, 64])
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.export import signatures
from keras_timbre.export.signatures import CHUNK_SIZE, SIGNATURES
from keras_timbre.export.version_folder import (
    METADATA_PATH,
    ExportExistsError,
    check_version_folder,
    existing_export_is_current,
    model_fingerprint,
    read_export_metadata,
    weights_fingerprint,
)
from keras_timbre.training import run as runs
from keras_timbre.vocoder.render import DEFAULT, GRIFFIN_LIM, Renderer, renderer_for

__all__ = [
    "CHUNK_SIZE",
    "GRIFFIN_LIM_ITERS",
    "METADATA_PATH",
    "SIGNATURES",
    "ExportExistsError",
    "export_run",
    "export_saved_model",
    "export_renderer",
    "export_settings",
    "load_run_for_export",
    "model_fingerprint",
    "read_export_metadata",
]

# Iterations of the waveform outputs' Griffin-Lim where it renders, unless --griffin-lim-iters says otherwise.
GRIFFIN_LIM_ITERS = 32


def export_renderer(
    frontend: FrontendConfig, vocoder: str | os.PathLike | None = None, griffin_lim_iters: int = GRIFFIN_LIM_ITERS
) -> Renderer:
    """What renders the export's waveform outputs: `renderer_for(frontend, vocoder)` (module docstring).

    Raises:
        FileNotFoundError: `vocoder` is a path with no vocoder there.
        FrontendMismatchError: the vocoder at `vocoder` was trained on other features.

    Example:
    >>> from keras_timbre.audio.frontend import FrontendConfig
    >>> export_renderer(FrontendConfig(n_mels=32, duration=1.0), "griffin-lim").name
    'Griffin-Lim (32 it.)'
    """
    return renderer_for(frontend, vocoder, n_iter=griffin_lim_iters, fast=True)


def export_settings(griffin_lim_iters: int, renderer: Renderer | None = None) -> dict[str, Any]:
    """What, besides the model's values, makes two exports differ: recorded, and compared on re-export.

    A vocoder counts by its weights (`vocoder_fingerprint`), not by its path;
    Griffin-Lim's iterations count only where Griffin-Lim renders (None otherwise).
    `renderer` None is Griffin-Lim.
    """
    vocoder = getattr(renderer, "vocoder", None)
    return {
        "waveform_renderer": GRIFFIN_LIM if vocoder is None else "vocoder",
        "vocoder_fingerprint": None if vocoder is None else weights_fingerprint(vocoder),
        "griffin_lim_iters": int(griffin_lim_iters) if vocoder is None else None,
        "max_amplitude": signatures.MAX_AMPLITUDE,
        "latent_limit": signatures.LATENT_LIMIT,
    }


def export_saved_model(
    model,
    path: str | os.PathLike,
    frontend: FrontendConfig,
    stats: FeatureStats,
    overwrite: bool = False,
    griffin_lim_iters: int = GRIFFIN_LIM_ITERS,
    vocoder: str | os.PathLike | None = None,
) -> Path:
    """Exports a timbre VAE as a TF Serving SavedModel with the frontend inside.

    Args:
        model: A `keras_timbre.model.TimbreVAE` (or any Keras model with
            `encode(x) -> (z_mean, z_log_var)`, `decode(z)` and a `call(x)`
            returning a dict with "reconstruction", "z_mean" and "z_log_var"),
            taking normalised log-mel (batch, n_mels, n_frames, 1).
        path: The version folder to write, e.g. `exported/timbre/1`: its name
            must be an integer, the layout TF Serving expects.
        frontend: The run's frontend config (sample rate, mel parameters).
        stats: The run's normalisation statistics.
        overwrite: Replace an existing, different export at `path`. Without
            it, that is an `ExportExistsError`; exporting the same model again
            is a no-op.
        griffin_lim_iters: Iterations of the waveform outputs' Griffin-Lim, where it renders them.
        vocoder: What renders the waveform outputs: None or "default" (the shipped
            vocoder where it fits `frontend`, else Griffin-Lim), "griffin-lim", or a vocoder path.

    Returns:
        The path of the SavedModel folder.

    Raises:
        FrontendMismatchError: the vocoder at `vocoder` was trained on other features (before any work).

    Under a backend other than TensorFlow, the model is saved to a temporary
    `.keras` file and exported by a TensorFlow-backend subprocess.

    Example:
    >>> export_saved_model(model, "exported/timbre/1", config, stats)  # doctest: +SKIP
    """
    import keras

    path = check_version_folder(path)
    _check_stats(frontend, stats)
    renderer = export_renderer(frontend, vocoder, griffin_lim_iters)
    fingerprint = model_fingerprint(model, frontend, stats)
    settings = export_settings(griffin_lim_iters, renderer)
    if existing_export_is_current(path, fingerprint, settings, overwrite):
        return path
    if keras.backend.backend() != "tensorflow":

        with tempfile.TemporaryDirectory(prefix="keras_timbre_export_") as run_dir:
            variant = str(getattr(model, "variant", "unknown"))
            runs.create_run(run_dir, frontend, stats, {"variant": variant, "data": "export_saved_model"})
            runs.save_model(run_dir, model)
            _export_in_subprocess(run_dir, path, overwrite, griffin_lim_iters, vocoder)
        return path
    record = {"fingerprint": fingerprint, "source": None, **settings}
    return _write_saved_model(model, path, frontend, stats, renderer, record, overwrite)


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    griffin_lim_iters: int = GRIFFIN_LIM_ITERS,
    vocoder: str | os.PathLike | None = None,
) -> Path:
    """Exports a run directory (`keras_timbre.runs`) for TF Serving.

    Whatever backend trained the run, the export runs under TensorFlow: in this
    process if Keras runs on TensorFlow, else in a subprocess with
    `KERAS_BACKEND=tensorflow`.

    Args:
        run_dir: The run directory, or a shipped preset's name (`keras_timbre.training.run.run_directory`).
        out_dir: The version folder to write, e.g. `exported/timbre/1`.
        overwrite: Replace a different existing export at `out_dir`.
        griffin_lim_iters: Iterations of the waveform outputs' Griffin-Lim, where it renders them.
        vocoder: What renders the waveform outputs: None or "default" (the shipped
            vocoder where it fits the run's features, else Griffin-Lim), "griffin-lim", or a vocoder path.

    Returns:
        The path of the SavedModel folder.

    Raises:
        FileNotFoundError: the run, or the vocoder at `vocoder`, is missing.
        FrontendMismatchError: the vocoder at `vocoder` was trained on other features (before any work).

    Example:
    >>> export_run("runs/skip_gdl", "exported/timbre/1", vocoder="griffin-lim")  # doctest: +SKIP
    """
    import keras

    out_dir = check_version_folder(out_dir)
    run_dir = runs.run_directory(run_dir)  # a shipped preset's name: its folder, recorded as the source
    model, frontend, stats = load_run_for_export(run_dir)
    renderer = export_renderer(frontend, vocoder, griffin_lim_iters)
    fingerprint = model_fingerprint(model, frontend, stats)
    settings = export_settings(griffin_lim_iters, renderer)
    if existing_export_is_current(out_dir, fingerprint, settings, overwrite):
        return out_dir
    if keras.backend.backend() != "tensorflow":
        _export_in_subprocess(run_dir, out_dir, overwrite, griffin_lim_iters, vocoder)
        return out_dir
    record = {"fingerprint": fingerprint, "source": str(run_dir.resolve()), **settings}
    return _write_saved_model(model, out_dir, frontend, stats, renderer, record, overwrite)


def load_run_for_export(run_dir: str | os.PathLike):
    """Loads (model, FrontendConfig, FeatureStats) from a run directory.

    Raises:
        FileNotFoundError: naming the run directory or the missing file.
    """

    run = runs.load_run(run_dir)
    return run.model, run.frontend, run.stats


def _check_stats(frontend: FrontendConfig, stats: FeatureStats) -> None:
    if stats.n_mels != frontend.n_mels:
        raise ValueError(
            f"Feature statistics have {stats.n_mels} mel bins but the frontend has n_mels={frontend.n_mels}"
        )


def _export_in_subprocess(run_dir, out_dir, overwrite: bool, griffin_lim_iters: int, vocoder) -> None:
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "keras_timbre.cli", "export", str(run_dir), "--out", str(out_dir)]
    command += ["--griffin-lim-iters", str(griffin_lim_iters)] + (["--overwrite"] if overwrite else [])
    # A path as the parent sees it (absolute); "default" and "griffin-lim" as they are.
    choice = DEFAULT if vocoder is None else str(vocoder)
    command += ["--vocoder", choice if choice in (DEFAULT, GRIFFIN_LIM) else str(Path(choice).resolve())]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("keras-timbre export: error:")]
        detail = errors[-1] if errors else "\n".join(lines[-15:])
        raise RuntimeError(f"Export under the TensorFlow backend failed ({' '.join(command)}):\n{detail}")


def float32_copy(model):
    """`model`, or a float32 copy of it if it computes in another precision (e.g. trained in bfloat16).

    Serving hardware may lack fast bfloat16, and the weights are float32 anyway, so the
    exported graph computes in float32.

    Example:
    >>> from keras_timbre.models.timbre_vae import TimbreVAE
    >>> model = TimbreVAE(input_shape=(16, 32, 1), filters=(4,), latent_dim=2, dtype="mixed_bfloat16")
    >>> float32_copy(model).dtype_policy.name
    'float32'
    """
    if model.dtype_policy.name == "float32":
        return model
    copy = type(model).from_config({**model.get_config(), "dtype": "float32"})
    copy.set_weights(model.get_weights())
    return copy


def _write_saved_model(model, path: Path, frontend, stats, renderer: Renderer, record: dict, overwrite) -> Path:
    """Builds the signatures and writes them with their record, atomically (`atomic.atomic_directory`).

    `record` holds the fingerprint, the source and the `export_settings`; the rest is added here.
    """
    import keras
    import tensorflow as tf

    vocoder = getattr(renderer, "vocoder", None)
    griffin_lim_iters = getattr(renderer, "n_iter", GRIFFIN_LIM_ITERS)
    vocoder = None if vocoder is None else float32_copy(vocoder)
    archive, latent_shape = signatures.build_archive(float32_copy(model), frontend, stats, griffin_lim_iters, vocoder)
    record = dict(
        record,
        renderer=renderer.name,  # what made the waveform outputs, e.g. "vocoder (shipped default)"
        vocoder_source=getattr(renderer, "source", None),
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        frontend=frontend.to_dict(),
        latent_shape=list(latent_shape),
        **signatures.export_record(model),
        model_class=type(model).__name__,
        variant=getattr(model, "variant", None),
        versions={"keras": keras.__version__, "tensorflow": tf.__version__},
    )
    try:
        with atomic.atomic_directory(path, replace=overwrite) as tmp:
            archive.write_out(str(tmp), verbose=False)
            atomic.write_json(tmp / METADATA_PATH, record)
    except ExportExistsError:
        raise
    except FileExistsError as error:  # checked before building; another export landed meanwhile
        raise ExportExistsError(f"Export folder {path} appeared while exporting; pass --overwrite") from error
    return path
