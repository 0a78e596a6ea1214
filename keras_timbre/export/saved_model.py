"""SavedModel export for TF Serving: raw audio in, timbre out.

The exported graph holds the whole inference path: the log-mel frontend
(`frontend.tf_log_mel`, with the run's `FrontendConfig`), the run's per-mel-bin
normalisation (`FeatureStats`, baked in as constants), the VAE, and on the way
out the inverse normalisation and a Griffin-Lim vocoder written with
`tf.signal`. A client sends float32 samples at the run's sample rate; no Python
feature code is needed on its side.

Signatures (every input and output is named):

| signature                        | input                       | outputs                                  |
|----------------------------------|-----------------------------|------------------------------------------|
| `serving_default`, `reconstruct` | `waveform` [batch, samples] | `log_mel` [batch, n_mels, n_frames] dB,  |
|                                  |                             | `z_mean`, `z_log_var` [batch, latent]    |
| `encode`                         | `waveform` [batch, samples] | `z_mean`, `z_log_var`                    |
| `decode`                         | `z` [batch, latent]         | `log_mel` (decoder without skips)        |
| `synthesize`                     | `z` [batch, latent]         | `waveform` [batch, num_samples]          |

Any batch size is accepted; big batches run in slices of `CHUNK_SIZE` notes
inside the graph, which is faster on CPU and gives the same results.
Waveforms of any length are accepted: the graph crops or zero-pads them to the
run's `num_samples` (4 s by default), exactly as training did. An empty batch,
a waveform with no samples, and NaN or Inf samples (or latents) fail the
request with an `InvalidArgumentError` whose message names the input; a wrong
dtype or rank is refused by the typed signature before the graph runs.

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
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig

SIGNATURES = ("serving_default", "reconstruct", "encode", "decode", "synthesize")
# TF Serving ignores assets.extra/ (apart from warm-up requests): our export record lives there.
METADATA_PATH = Path("assets.extra") / "keras_timbre.json"
GRIFFIN_LIM_ITERS = 32
GRIFFIN_LIM_MOMENTUM = 0.99
# Notes per slice inside `encode`/`reconstruct` (see `_build_archive`).
CHUNK_SIZE = 8


class ExportExistsError(FileExistsError):
    """The output folder already holds something else; pass `overwrite=True`."""


# ----------------------------------------------------------------------------
# In-graph Griffin-Lim.


def tf_mel_to_audio(
    log_mel_db,
    config: FrontendConfig,
    n_iter: int = GRIFFIN_LIM_ITERS,
    momentum: float = GRIFFIN_LIM_MOMENTUM,
):
    """Inverts log-mel (dB) to audio with fast Griffin-Lim, as a TensorFlow op.

    The graph twin of `frontend.mel_to_audio` (librosa): mel power goes back to
    linear power through the pseudo-inverse of the mel filter bank (a constant,
    clipped at zero), then `n_iter` iterations of fast Griffin-Lim (Perraudin et
    al., 2013; librosa's default momentum) with `tf.signal.stft` and
    `tf.signal.inverse_stft`. The initial phase is a fixed pseudo-random draw,
    so the result is deterministic.

    Args:
        log_mel_db: float32 tensor (batch, n_mels, n_frames) in dB, not normalised.
        config: The frontend config the features were computed with.
        n_iter: Griffin-Lim iterations.
        momentum: Fast Griffin-Lim momentum; 0 gives plain Griffin-Lim.

    Returns:
        float32 tensor (batch, config.num_samples), each example peak-limited
        to [-1, 1].

    Example:
    >>> import numpy as np
    >>> from keras_timbre.frontend import FrontendConfig, tf_log_mel
    >>> config = FrontendConfig(n_mels=32, duration=1.0, n_fft=512)
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)[None].astype("float32")
    >>> tf_mel_to_audio(tf_log_mel(tone, config), config, n_iter=4).shape
    TensorShape([1, 16000])
    """
    import tensorflow as tf

    from keras_timbre.audio.frontend import fit_to_length
    from keras_timbre.audio.frontend import mel_filters

    log_mel_db = tf.convert_to_tensor(log_mel_db, tf.float32)
    power = tf.pow(10.0, log_mel_db / 10.0)
    # Silence was floored at log_floor: set it back to zero, not a noise bed.
    power = tf.where(log_mel_db <= config.floor_db + 1e-3, tf.zeros_like(power), power)
    power = tf.linalg.matrix_transpose(power)  # (batch, frames, mels)
    # Centred framing gives one frame more than the features keep: repeat the last.
    power = tf.concat([power, power[:, -1:, :]], axis=1)
    inverse_filters = np.linalg.pinv(mel_filters(config)).T.astype(np.float32)  # (mels, bins)
    magnitude = tf.sqrt(tf.nn.relu(tf.tensordot(power, tf.constant(inverse_filters), axes=1)))
    magnitude = tf.complex(magnitude, tf.zeros_like(magnitude))

    def stft(signal):
        return tf.signal.stft(
            signal,
            frame_length=config.n_fft,
            frame_step=config.hop_length,
            fft_length=config.n_fft,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )

    def istft(spectrum):
        return tf.signal.inverse_stft(
            spectrum,
            frame_length=config.n_fft,
            frame_step=config.hop_length,
            fft_length=config.n_fft,
            window_fn=tf.signal.inverse_stft_window_fn(config.hop_length, tf.signal.hann_window),
        )

    def unit_phase(spectrum):
        scale = tf.cast(tf.abs(spectrum), tf.complex64) + 1e-16
        return spectrum / scale

    phase_seed = tf.constant([1234, 5678], tf.int32)
    random_phase = tf.random.stateless_uniform(tf.shape(magnitude), phase_seed, 0.0, 2.0 * np.pi)
    angles = tf.exp(tf.complex(tf.zeros_like(random_phase), random_phase))
    rebuilt = tf.zeros_like(angles)
    blend = momentum / (1.0 + momentum)

    def step(i, angles, rebuilt):
        previous = rebuilt
        rebuilt = stft(istft(magnitude * angles))
        angles = unit_phase(rebuilt - tf.cast(blend, tf.complex64) * previous)
        return i + 1, angles, rebuilt

    _, angles, _ = tf.while_loop(lambda i, *_: i < n_iter, step, (tf.constant(0), angles, rebuilt))
    audio = istft(magnitude * angles)
    half = config.n_fft // 2
    audio = fit_to_length(audio[:, half:], config.num_samples)
    peak = tf.reduce_max(tf.abs(audio), axis=-1, keepdims=True)
    return audio / tf.maximum(peak, 1.0)


# ----------------------------------------------------------------------------
# Export.


def model_fingerprint(model, frontend: FrontendConfig, stats: FeatureStats) -> str:
    """sha256 over the model's weights, frontend and stats: equal exports have equal ones.

    It depends on values only, not on the backend the model was loaded in.
    """
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy(), np.float32)).tobytes())
    digest.update(json.dumps(frontend.to_dict(), sort_keys=True).encode())
    digest.update(stats.mean.tobytes())
    digest.update(stats.std.tobytes())
    return digest.hexdigest()


def export_saved_model(
    model,
    path: str | os.PathLike,
    frontend: FrontendConfig,
    stats: FeatureStats,
    overwrite: bool = False,
    griffin_lim_iters: int = GRIFFIN_LIM_ITERS,
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
        griffin_lim_iters: Iterations of the `synthesize` signature's vocoder.

    Returns:
        The path of the SavedModel folder.

    Under a backend other than TensorFlow, the model is saved to a temporary
    `.keras` file and exported by a TensorFlow-backend subprocess.

    Example:
    >>> export_saved_model(model, "exported/timbre/1", config, stats)  # doctest: +SKIP
    """
    import keras

    path = _check_version_folder(path)
    _check_stats(frontend, stats)
    fingerprint = model_fingerprint(model, frontend, stats)
    if _existing_export_is_current(path, fingerprint, griffin_lim_iters, overwrite):
        return path
    if keras.backend.backend() != "tensorflow":
        from keras_timbre.training import run as runs

        with tempfile.TemporaryDirectory(prefix="keras_timbre_export_") as run_dir:
            variant = str(getattr(model, "variant", "unknown"))
            runs.create_run(run_dir, frontend, stats, {"variant": variant, "data": "export_saved_model"})
            runs.save_model(run_dir, model)
            _export_in_subprocess(run_dir, path, overwrite, griffin_lim_iters)
        return path
    metadata = {"fingerprint": fingerprint, "source": None}
    return _write_saved_model(model, path, frontend, stats, overwrite, griffin_lim_iters, metadata)


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    griffin_lim_iters: int = GRIFFIN_LIM_ITERS,
) -> Path:
    """Exports a run directory (`keras_timbre.runs`) for TF Serving.

    Whatever backend trained the run, the export runs under TensorFlow: in this
    process if Keras runs on TensorFlow, else in a subprocess with
    `KERAS_BACKEND=tensorflow`.

    Args:
        run_dir: The run directory.
        out_dir: The version folder to write, e.g. `exported/timbre/1`.
        overwrite: Replace a different existing export at `out_dir`.
        griffin_lim_iters: Iterations of the `synthesize` signature's vocoder.

    Returns:
        The path of the SavedModel folder.

    Example:
    >>> export_run("runs/skip_gdl", "exported/timbre/1")  # doctest: +SKIP
    """
    import keras

    run_dir = Path(run_dir)
    out_dir = _check_version_folder(out_dir)
    model, frontend, stats = load_run_for_export(run_dir)
    fingerprint = model_fingerprint(model, frontend, stats)
    if _existing_export_is_current(out_dir, fingerprint, griffin_lim_iters, overwrite):
        return out_dir
    if keras.backend.backend() != "tensorflow":
        _export_in_subprocess(run_dir, out_dir, overwrite, griffin_lim_iters)
        return out_dir
    metadata = {"fingerprint": fingerprint, "source": str(run_dir.resolve())}
    return _write_saved_model(model, out_dir, frontend, stats, overwrite, griffin_lim_iters, metadata)


def load_run_for_export(run_dir: str | os.PathLike):
    """Loads (model, FrontendConfig, FeatureStats) from a run directory.

    Raises:
        FileNotFoundError: naming the run directory or the missing file.
    """
    from keras_timbre.training import run as runs

    run = runs.load_run(run_dir)
    return run.model, run.frontend, run.stats


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The keras-timbre record of an export (fingerprint, frontend, signatures), or None."""
    record = Path(path) / METADATA_PATH
    if not record.is_file():
        return None
    return json.loads(record.read_text())


def _check_version_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.name.isdigit():
        raise ValueError(
            f"Export folder {path} must be a numeric version folder: TF Serving loads "
            f"MODEL_BASE/<version>/, so pass e.g. {path / '1'}"
        )
    return path


def _check_stats(frontend: FrontendConfig, stats: FeatureStats) -> None:
    if stats.n_mels != frontend.n_mels:
        raise ValueError(
            f"Feature statistics have {stats.n_mels} mel bins but the frontend has n_mels={frontend.n_mels}"
        )


def _existing_export_is_current(path: Path, fingerprint: str, griffin_lim_iters: int, overwrite: bool) -> bool:
    """True if `path` already holds this export; raises if it holds something else."""
    if not path.exists():
        return False
    if not path.is_dir():
        raise ExportExistsError(f"Export folder {path} exists and is not a folder")
    if not any(path.iterdir()):
        return False
    metadata = read_export_metadata(path)
    if metadata is not None and (metadata.get("fingerprint"), metadata.get("griffin_lim_iters")) == (
        fingerprint,
        griffin_lim_iters,
    ):
        return True
    if overwrite:
        return False
    if metadata is not None:
        what = (
            f"a different model or export settings (exported {metadata.get('exported_at')} from "
            f"{metadata.get('source')}, griffin_lim_iters={metadata.get('griffin_lim_iters')})"
        )
    elif (path / "saved_model.pb").is_file():
        what = "a SavedModel not written by keras-timbre"
    else:
        what = "other files"
    raise ExportExistsError(
        f"Export folder {path} already holds {what}; pass --overwrite (overwrite=True) "
        f"to replace it, or export to a new version folder such as {path.parent / str(int(path.name) + 1)}"
    )


def _export_in_subprocess(run_dir, out_dir, overwrite: bool, griffin_lim_iters: int) -> None:
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [
        sys.executable,
        "-m",
        "keras_timbre.cli",
        "export",
        str(run_dir),
        "--out",
        str(out_dir),
        "--griffin-lim-iters",
        str(griffin_lim_iters),
    ]
    if overwrite:
        command.append("--overwrite")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("keras-timbre export: error:")]
        detail = errors[-1] if errors else "\n".join(lines[-15:])
        raise RuntimeError(f"Export under the TensorFlow backend failed ({' '.join(command)}):\n{detail}")


def _write_saved_model(model, path: Path, frontend, stats, overwrite, griffin_lim_iters, metadata) -> Path:
    """Builds the signatures, writes them to a temporary folder, then renames it into place."""
    archive, latent_shape = _build_archive(model, frontend, stats, griffin_lim_iters)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        archive.write_out(str(tmp), verbose=False)
        import keras
        import tensorflow as tf

        record = dict(
            metadata,
            exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            frontend=frontend.to_dict(),
            latent_shape=list(latent_shape),
            signatures=list(SIGNATURES),
            griffin_lim_iters=griffin_lim_iters,
            model_class=type(model).__name__,
            variant=getattr(model, "variant", None),
            versions={"keras": keras.__version__, "tensorflow": tf.__version__},
        )
        atomic.write_json(tmp / METADATA_PATH, record)
        _make_readable(tmp)
        _replace_folder(tmp, path, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def _make_readable(folder: Path) -> None:
    # mkdtemp and the atomic writer create owner-only files; a server may run as another user.
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.rglob("*"):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def _replace_folder(new: Path, target: Path, overwrite: bool) -> None:
    # Checked again here: another export may have landed while this one ran.
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise ExportExistsError(f"Export folder {target} appeared while exporting; pass --overwrite")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        if target.exists():
            target.rmdir()
        os.replace(new, target)


def _build_archive(model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int):
    import keras
    import tensorflow as tf

    from keras_timbre.audio.frontend import fit_to_length
    from keras_timbre.audio.frontend import tf_log_mel

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("_build_archive needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    mean = tf.constant(stats.mean[:, None])
    std = tf.constant(stats.std[:, None])

    # Probe the model once: it must take the frontend's features, and gives the latent shape.
    probe = np.zeros((1, *frontend.feature_shape, 1), np.float32)
    try:
        z_mean, _ = model.encode(probe)
    except Exception as error:
        raise ValueError(
            f"The model does not take the frontend's features {(None, *frontend.feature_shape, 1)}: {error}"
        ) from error
    latent_shape = tuple(int(d) for d in z_mean.shape[1:])

    def checked(tensor, name, shape):
        # The signature's shape is not enforced at run time (TF folds rank checks against
        # it); EnsureShape is, and its error names the input and the expected shape.
        tensor = tf.ensure_shape(tensor, shape, name=name)
        checks = [
            tf.debugging.assert_greater(
                tf.shape(tensor)[0], 0, message=f"{name}: empty batch; send at least one example"
            )
        ]
        if name == "waveform":
            checks.append(tf.debugging.assert_greater(tf.shape(tensor)[1], 0, message="waveform: no samples"))
        with tf.control_dependencies(checks):
            return tf.debugging.check_numerics(tensor, f"{name}: contains NaN or Inf")

    def features(waveform):
        return ((tf_log_mel(waveform, frontend) - mean) / std)[..., None]

    def to_db(normalised):
        return normalised[..., 0] * std + mean

    output_shapes = {
        "log_mel": list(frontend.feature_shape),
        "z_mean": list(latent_shape),
        "z_log_var": list(latent_shape),
    }

    def in_chunks(fn, keys):
        """Runs `fn` on CHUNK_SIZE-note slices of the batch, one after another.

        A 64-note batch of 4 s notes makes 67 MB frames and 134 MB first-layer
        activations; slices of 8 stay in cache and run ~2x faster per note on CPU
        (benchmarks/results/export.md). The results are the same as one call.
        """

        def chunked(waveform):
            waveform = fit_to_length(checked(waveform, "waveform", [None, None]), frontend.num_samples)
            full = tf.shape(waveform)[0] // CHUNK_SIZE * CHUNK_SIZE
            chunks = tf.reshape(waveform[:full], [-1, CHUNK_SIZE, frontend.num_samples])
            specs = {k: tf.TensorSpec([CHUNK_SIZE, *output_shapes[k]], tf.float32) for k in keys}
            head = tf.map_fn(fn, chunks, fn_output_signature=specs, parallel_iterations=1)
            # TF's CPU convolutions fail on an empty batch: skip an empty tail.
            tail = tf.cond(
                full < tf.shape(waveform)[0],
                lambda: fn(waveform[full:]),
                lambda: {k: tf.zeros([0, *output_shapes[k]]) for k in specs},
            )
            return {k: tf.concat([tf.reshape(head[k], [-1, *output_shapes[k]]), tail[k]], 0) for k in specs}

        return chunked

    def reconstruct_rows(waveform):
        outputs = model(features(waveform), training=False)
        return {
            "log_mel": to_db(outputs["reconstruction"]),
            "z_mean": outputs["z_mean"],
            "z_log_var": outputs["z_log_var"],
        }

    def encode_rows(waveform):
        z_mean, z_log_var = model.encode(features(waveform))
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    reconstruct = in_chunks(reconstruct_rows, ("log_mel", "z_mean", "z_log_var"))
    encode = in_chunks(encode_rows, ("z_mean", "z_log_var"))

    def decode(z):
        return {"log_mel": to_db(model.decode(checked(z, "z", [None, *latent_shape])))}

    def synthesize(z):
        log_mel_db = to_db(model.decode(checked(z, "z", [None, *latent_shape])))
        return {"waveform": tf_mel_to_audio(log_mel_db, frontend, n_iter=griffin_lim_iters)}

    waveform_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
    z_spec = tf.TensorSpec([None, *latent_shape], tf.float32, name="z")
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also written as serving_default (ExportArchive.write_out).
    for name, fn, spec in (
        ("reconstruct", reconstruct, waveform_spec),
        ("encode", encode, waveform_spec),
        ("decode", decode, z_spec),
        ("synthesize", synthesize, z_spec),
    ):
        archive.add_endpoint(name, fn, input_signature=[spec])
    return archive, latent_shape
