"""The exported graph: raw audio in, timbre out, as named, typed TF Serving signatures.

`build_archive` wraps a model with the run's frontend and normalisation in a
`keras.export.ExportArchive` with the endpoints of `SIGNATURES`. Needs the
TensorFlow backend.

Every request is checked before the model runs (an empty batch, no samples,
NaN or Inf: an `InvalidArgumentError` naming the input), and finite input
always gives finite output: a waveform peak above `MAX_AMPLITUDE` is scaled
down to it, a latent is clipped to +-`LATENT_LIMIT`, and Griffin-Lim caps the
level it is given (`audio.vocoder.MAX_DB`). Real audio (peak 1) and real
latents (a standard-normal prior) are far inside these bounds.
"""

from __future__ import annotations

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats

# The first endpoint is also written as serving_default (ExportArchive.write_out).
SIGNATURES = ("serving_default", "reconstruct", "encode", "decode", "synthesize")
# Notes per slice inside `encode`/`reconstruct` (see `ServingGraph.in_chunks`).
CHUNK_SIZE = 8
# 120 dB above full scale: the STFT power of a louder waveform overflows float32 (1e19 gave NaN embeddings).
MAX_AMPLITUDE = 1e6
# Latents come from N(0, I); a thousand standard deviations keeps the decoder's activations finite.
LATENT_LIMIT = 1e3


def build_archive(model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int):
    """`(archive, latent_shape)`: the model's serving endpoints, ready for `archive.write_out`."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("build_archive needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    graph = ServingGraph(model, frontend, stats, griffin_lim_iters)
    waveform_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
    z_spec = tf.TensorSpec([None, *graph.latent_shape], tf.float32, name="z")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, spec in (
        ("reconstruct", graph.reconstruct, waveform_spec),
        ("encode", graph.encode, waveform_spec),
        ("decode", graph.decode, z_spec),
        ("synthesize", graph.synthesize, z_spec),
    ):
        archive.add_endpoint(name, fn, input_signature=[spec])
    return archive, graph.latent_shape


def latent_shape_of(model, frontend: FrontendConfig) -> tuple[int, ...]:
    """Probes the model once: it must take the frontend's features; returns the latent shape."""
    probe = np.zeros((1, *frontend.feature_shape, 1), np.float32)
    try:
        z_mean, _ = model.encode(probe)
    except Exception as error:
        raise ValueError(
            f"The model does not take the frontend's features {(None, *frontend.feature_shape, 1)}: {error}"
        ) from error
    return tuple(int(d) for d in z_mean.shape[1:])


def checked_input(tensor, name: str, shape):
    """`tensor` with its shape, batch, sample count and values checked; errors name the input."""
    import tensorflow as tf

    # The signature's shape is not enforced at run time (TF folds rank checks against
    # it); EnsureShape is, and its error names the input and the expected shape.
    tensor = tf.ensure_shape(tensor, shape, name=name)
    checks = [
        tf.debugging.assert_greater(tf.shape(tensor)[0], 0, message=f"{name}: empty batch; send at least one example")
    ]
    if name == "waveform":
        checks.append(tf.debugging.assert_greater(tf.shape(tensor)[1], 0, message="waveform: no samples"))
    with tf.control_dependencies(checks):
        return tf.debugging.check_numerics(tensor, f"{name}: contains NaN or Inf")


def bounded_level(waveform):
    """Each row scaled down to a peak of `MAX_AMPLITUDE` if above it; others untouched."""
    import tensorflow as tf

    peak = tf.reduce_max(tf.abs(waveform), axis=-1, keepdims=True)
    return waveform * tf.minimum(1.0, MAX_AMPLITUDE / peak)  # a silent row: 0 * min(1, inf)


def bounded_latent(z):
    """`z` clipped to +-`LATENT_LIMIT`."""
    import tensorflow as tf

    return tf.clip_by_value(z, -LATENT_LIMIT, LATENT_LIMIT)


class ServingGraph:
    """The signature functions of one model, frontend and normalisation (built under TensorFlow)."""

    def __init__(self, model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int):
        import tensorflow as tf

        self.model = model
        self.frontend = frontend
        self.griffin_lim_iters = griffin_lim_iters
        self.latent_shape = latent_shape_of(model, frontend)
        self.mean = tf.constant(stats.mean[:, None])
        self.std = tf.constant(stats.std[:, None])
        self.chunk_size = CHUNK_SIZE
        self.output_shapes = {
            "log_mel": list(frontend.feature_shape),
            "z_mean": list(self.latent_shape),
            "z_log_var": list(self.latent_shape),
        }

    def features(self, waveform):
        from keras_timbre.audio.frontend import tf_log_mel

        return ((tf_log_mel(waveform, self.frontend) - self.mean) / self.std)[..., None]

    def to_db(self, normalised):
        return normalised[..., 0] * self.std + self.mean

    def reconstruct(self, waveform):
        return self.in_chunks(self._reconstruct_rows, ("log_mel", "z_mean", "z_log_var"), waveform)

    def encode(self, waveform):
        return self.in_chunks(self._encode_rows, ("z_mean", "z_log_var"), waveform)

    def decode(self, z):
        return {"log_mel": self._decode_db(z)}

    def synthesize(self, z):
        from keras_timbre.audio.vocoder import tf_mel_to_audio

        return {"waveform": tf_mel_to_audio(self._decode_db(z), self.frontend, n_iter=self.griffin_lim_iters)}

    def _decode_db(self, z):
        z = bounded_latent(checked_input(z, "z", [None, *self.latent_shape]))
        return self.to_db(self.model.decode(z))

    def _reconstruct_rows(self, waveform):
        outputs = self.model(self.features(waveform), training=False)
        return {
            "log_mel": self.to_db(outputs["reconstruction"]),
            "z_mean": outputs["z_mean"],
            "z_log_var": outputs["z_log_var"],
        }

    def _encode_rows(self, waveform):
        z_mean, z_log_var = self.model.encode(self.features(waveform))
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def in_chunks(self, rows_fn, keys, waveform):
        """Runs `rows_fn` on `chunk_size`-note slices of the checked batch, one after another.

        A 64-note batch of 4 s notes makes 67 MB frames and 134 MB first-layer
        activations; slices of 8 stay in cache and run ~2x faster per note on CPU
        (benchmarks/results/export.md). The results are the same as one call.
        """
        import tensorflow as tf

        from keras_timbre.audio.frontend import fit_to_length

        num_samples, size = self.frontend.num_samples, self.chunk_size
        waveform = fit_to_length(checked_input(waveform, "waveform", [None, None]), num_samples)
        waveform = bounded_level(waveform)
        full = tf.shape(waveform)[0] // size * size
        chunks = tf.reshape(waveform[:full], [-1, size, num_samples])
        shapes = {key: self.output_shapes[key] for key in keys}
        specs = {key: tf.TensorSpec([size, *shape], tf.float32) for key, shape in shapes.items()}
        head = tf.map_fn(rows_fn, chunks, fn_output_signature=specs, parallel_iterations=1)
        # TF's CPU convolutions fail on an empty batch: skip an empty tail.
        tail = tf.cond(
            full < tf.shape(waveform)[0],
            lambda: rows_fn(waveform[full:]),
            lambda: {key: tf.zeros([0, *shape]) for key, shape in shapes.items()},
        )
        return {key: tf.concat([tf.reshape(head[key], [-1, *shape]), tail[key]], 0) for key, shape in shapes.items()}
