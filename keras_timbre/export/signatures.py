"""The exported graph: raw audio in, timbre out, as named, typed TF Serving signatures.

`build_archive` wraps a model with the run's frontend and normalisation in a
`keras.export.ExportArchive` with the endpoints of `SIGNATURES` (the paper's
variants, `ServingGraph`) or, for a pitch-conditioned model (variant
"hierarchical", `ConditionedServingGraph`), of `CONDITIONED_SIGNATURES`:
`synthesize(code, pitch, velocity)`, `transfer(waveform, source_pitch, pitch)`,
`reconstruct(waveform, pitch, velocity)` and `encode(waveform, pitch)`, no
`decode`. The conditioned model reads a note's code relative to its own pitch
(`models.hierarchy.RelativeSpectrum`), so `encode` and `transfer` take the
input note's pitch too.
Needs the TensorFlow backend.

Every `waveform` output (`reconstruct`, `synthesize`, `transfer`) is rendered in
the graph from the signature's dB log-mel by a trained `keras_timbre.vocoder.Vocoder`
when the export is given one (its Keras layers traced into the graph, its
weights saved with the model's), else by Griffin-Lim (`audio.griffin_lim.tf_mel_to_audio`);
either way `num_samples` long and peak-limited to [-1, 1] (`ServingGraph.render`).

Every request is checked before the model runs (an empty batch, no samples,
NaN or Inf: an `InvalidArgumentError` naming the input), and finite input
always gives finite output: a waveform peak above `MAX_AMPLITUDE` is scaled
down to it, a latent is clipped to +-`LATENT_LIMIT`, and both renderers cap the
level they are given (`audio.griffin_lim.MAX_DB`, `vocoder.layers.MAX_DB`) and
zero any non-finite sample before the peak limit. Real audio (peak 1) and real
latents (a standard-normal prior) are far inside these bounds. A conditioned
model's pitch (and a `source_pitch`) must be a whole MIDI number in its
trained `pitch_range` and its velocity one of its trained `velocities`, one
value per note: the rules the library and the command line apply
(`synthesis.audio_files.allowed_pitch`, `allowed_velocity`); anything else
fails the request naming the input and the rule.
"""

from __future__ import annotations

import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import fit_to_length
from keras_timbre.audio.frontend import tf_log_mel
from keras_timbre.audio.griffin_lim import MAX_DB
from keras_timbre.audio.griffin_lim import peak_limit
from keras_timbre.audio.griffin_lim import tf_mel_to_audio
from keras_timbre.synthesis.audio_files import pitch_rule
from keras_timbre.synthesis.audio_files import velocity_rule

# The first endpoint is also written as serving_default (ExportArchive.write_out).
SIGNATURES = ("serving_default", "reconstruct", "encode", "decode", "synthesize")
# A pitch-conditioned model's: `synthesize` takes (code, pitch, velocity); it has no `decode` (z alone).
CONDITIONED_SIGNATURES = ("serving_default", "reconstruct", "encode", "synthesize", "transfer")
# Notes per slice inside `encode`/`reconstruct` (see `ServingGraph.in_chunks`).
CHUNK_SIZE = 8
# 120 dB above full scale: the STFT power of a louder waveform overflows float32 (1e19 gave NaN embeddings).
MAX_AMPLITUDE = 1e6
# Latents come from N(0, I); a thousand standard deviations keeps the decoder's activations finite.
LATENT_LIMIT = 1e3


def build_archive(model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int, vocoder=None):
    """`(archive, latent_shape)`: the model's serving endpoints, ready for `archive.write_out`.

    Args:
        model: The timbre model (float32).
        frontend: The run's frontend.
        stats: The run's normalisation.
        griffin_lim_iters: Iterations of the in-graph Griffin-Lim, where it renders.
        vocoder: A `keras_timbre.vocoder.Vocoder` of the run's features to render the
            waveform outputs, or None for Griffin-Lim.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("build_archive needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    graph_class = ConditionedServingGraph if model.is_conditioned else ServingGraph
    graph = graph_class(model, frontend, stats, griffin_lim_iters, vocoder)
    archive = keras.export.ExportArchive()
    # A conditioned model's own default save signature traces its call on a plain tensor, which it refuses
    # (it takes a dict); its built layers hold all its variables, and tracking them does not trace the model.
    resources = [layer for layer in model.layers if layer.built] if model.is_conditioned else [model]
    for resource in resources + ([] if vocoder is None else [vocoder]):
        archive.track(resource)
    for name, fn, specs in graph.endpoints(tf):
        archive.add_endpoint(name, fn, input_signature=specs)
    return archive, graph.latent_shape


def signature_names(model) -> tuple[str, ...]:
    """The signatures `build_archive` writes for `model`: `CONDITIONED_SIGNATURES` or `SIGNATURES`."""
    return CONDITIONED_SIGNATURES if model.is_conditioned else SIGNATURES


def export_record(model) -> dict:
    """What the export's record says of the graph: its signatures and, if conditioned, what they accept."""
    record = {"signatures": list(signature_names(model))}
    if model.is_conditioned:
        record["conditioning"] = {
            "pitch_range": [int(p) for p in model.pitch_range],
            "velocities": [int(v) for v in model.velocities],
            "transfer_velocity": model.default_velocity,
        }
    return record


def latent_shape_of(model, frontend: FrontendConfig) -> tuple[int, ...]:
    """Probes the model once: it must take the frontend's features; returns the latent shape."""
    probe = np.zeros((1, *frontend.feature_shape, 1), np.float32)
    if model.is_conditioned:
        probe = {"log_mel": probe, "pitch": np.array([float(model.pitch_range[0])], np.float32)}
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

    def __init__(self, model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int, vocoder=None):
        import tensorflow as tf

        self.model = model
        self.frontend = frontend
        self.griffin_lim_iters = griffin_lim_iters
        self.vocoder = vocoder
        self.latent_shape = latent_shape_of(model, frontend)
        self.mean = tf.constant(stats.mean[:, None])
        self.std = tf.constant(stats.std[:, None])
        self.chunk_size = CHUNK_SIZE
        self.output_shapes = {
            "log_mel": list(frontend.feature_shape),
            "z_mean": list(self.latent_shape),
            "z_log_var": list(self.latent_shape),
        }

    def endpoints(self, tf) -> list:
        """`(name, function, input specs)` of each signature but serving_default (= the first)."""
        waveform_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
        z_spec = tf.TensorSpec([None, *self.latent_shape], tf.float32, name="z")
        return [
            ("reconstruct", self.reconstruct, [waveform_spec]),
            ("encode", self.encode, [waveform_spec]),
            ("decode", self.decode, [z_spec]),
            ("synthesize", self.synthesize, [z_spec]),
        ]

    def features(self, waveform):

        return ((tf_log_mel(waveform, self.frontend) - self.mean) / self.std)[..., None]

    def to_db(self, normalised):
        return normalised[..., 0] * self.std + self.mean

    def reconstruct(self, waveform):
        outputs = self.in_chunks(
            self._reconstruct_rows, ("log_mel", "z_mean", "z_log_var"), self.checked_waveform(waveform)
        )
        return {**outputs, "waveform": self.render(outputs["log_mel"])}

    def encode(self, waveform):
        return self.in_chunks(self._encode_rows, ("z_mean", "z_log_var"), self.checked_waveform(waveform))

    def decode(self, z):
        return {"log_mel": self._decode_db(z)}

    def synthesize(self, z):
        return {"waveform": self.render(self._decode_db(z))}

    def render(self, log_mel_db):
        """Waveforms `[batch, num_samples]`, peak-limited, of dB log-mel: the vocoder's if given, else Griffin-Lim.

        The whole batch at once, after any `in_chunks`: Griffin-Lim's initial
        phase depends on a note's row in the batch, so this keeps `synthesize`'s
        Griffin-Lim audio what it was before the vocoder.
        """
        import tensorflow as tf
        import tensorflow.experimental.numpy as tnp

        if self.vocoder is None:
            return tf_mel_to_audio(log_mel_db, self.frontend, n_iter=self.griffin_lim_iters)
        # A note louder than MAX_DB is lowered as a whole, as Griffin-Lim's input is: a uniform gain the peak
        # limit undoes, which keeps the vocoder's activations finite for absurd latents (z = 3e38 is tested).
        # Real notes (full scale is ~40 dB) are untouched, so this is `Vocoder.to_audio` for them.
        excess = tf.maximum(tf.reduce_max(log_mel_db, axis=[1, 2], keepdims=True) - MAX_DB, 0.0)
        # As `Vocoder.to_audio`, then fitted to the note as `vocoder.render.VocoderRenderer` does: the vocoder
        # makes n_frames * hop samples, which may differ from the run's duration * sample_rate.
        audio = fit_to_length(self.vocoder(log_mel_db - excess, training=False), self.frontend.num_samples)
        return peak_limit(audio, tnp)

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

    def checked_waveform(self, waveform):
        """The request's waveform checked, cropped or padded to a note, and level-bounded."""

        waveform = fit_to_length(checked_input(waveform, "waveform", [None, None]), self.frontend.num_samples)
        return bounded_level(waveform)

    def in_chunks(self, rows_fn, keys, waveform, *per_note):
        """Runs `rows_fn` on `chunk_size`-note slices of the batch (`checked_waveform`), one after another.

        `per_note` are `[batch]` tensors (a conditioned model's pitch and
        velocity), sliced alongside and passed to `rows_fn` after the waveform.
        A 64-note batch of 4 s notes makes 67 MB frames and 134 MB first-layer
        activations; slices of 8 stay in cache and run ~2x faster per note on CPU
        (benchmarks/results/export.md). The results are the same as one call.
        """
        import tensorflow as tf

        num_samples, size = self.frontend.num_samples, self.chunk_size
        full = tf.shape(waveform)[0] // size * size
        chunks = (tf.reshape(waveform[:full], [-1, size, num_samples]),)
        chunks += tuple(tf.reshape(values[:full], [-1, size]) for values in per_note)
        shapes = {key: self.output_shapes[key] for key in keys}
        specs = {key: tf.TensorSpec([size, *shape], tf.float32) for key, shape in shapes.items()}
        head = tf.map_fn(lambda rows: rows_fn(*rows), chunks, fn_output_signature=specs, parallel_iterations=1)
        # TF's CPU convolutions fail on an empty batch: skip an empty tail.
        tail = tf.cond(
            full < tf.shape(waveform)[0],
            lambda: rows_fn(waveform[full:], *(values[full:] for values in per_note)),
            lambda: {key: tf.zeros([0, *shape]) for key, shape in shapes.items()},
        )
        return {key: tf.concat([tf.reshape(head[key], [-1, *shape]), tail[key]], 0) for key, shape in shapes.items()}


class ConditionedServingGraph(ServingGraph):
    """The signature functions of a pitch-conditioned model (`HierarchicalTimbreVAE`).

    `transfer` renders at `transfer_velocity`: `DEFAULT_VELOCITY` (100) if the
    model was trained on it, else the closest velocity it was trained on.
    """

    def __init__(self, model, frontend: FrontendConfig, stats: FeatureStats, griffin_lim_iters: int, vocoder=None):
        super().__init__(model, frontend, stats, griffin_lim_iters, vocoder)
        self.pitch_range = tuple(float(p) for p in model.pitch_range)
        self.velocities = tuple(float(v) for v in model.velocities)
        self.transfer_velocity = float(model.default_velocity)

    def endpoints(self, tf) -> list:
        waveform_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
        code_spec = tf.TensorSpec([None, *self.latent_shape], tf.float32, name="code")
        pitch_spec = tf.TensorSpec([None], tf.float32, name="pitch")
        velocity_spec = tf.TensorSpec([None], tf.float32, name="velocity")
        source_pitch_spec = tf.TensorSpec([None], tf.float32, name="source_pitch")
        return [
            ("reconstruct", self.reconstruct, [waveform_spec, pitch_spec, velocity_spec]),
            ("encode", self.encode, [waveform_spec, pitch_spec]),
            ("synthesize", self.synthesize, [code_spec, pitch_spec, velocity_spec]),
            ("transfer", self.transfer, [waveform_spec, source_pitch_spec, pitch_spec]),
        ]

    def reconstruct(self, waveform, pitch, velocity):
        waveform = self.checked_waveform(waveform)
        pitch, velocity = self.checked_pitch(pitch, waveform), self.checked_velocity(velocity, waveform)
        keys = ("log_mel", "z_mean", "z_log_var")
        outputs = self.in_chunks(self._reconstruct_rows, keys, waveform, pitch, velocity)
        return {**outputs, "waveform": self.render(outputs["log_mel"])}

    def synthesize(self, code, pitch, velocity):
        code = bounded_latent(checked_input(code, "code", [None, *self.latent_shape]))
        pitch, velocity = self.checked_pitch(pitch, code), self.checked_velocity(velocity, code)
        log_mel = self.to_db(self.model.synthesize(code, pitch, velocity))
        return {"waveform": self.render(log_mel), "log_mel": log_mel}

    def encode(self, waveform, pitch):
        waveform = self.checked_waveform(waveform)
        return self.in_chunks(self._encode_rows, ("z_mean", "z_log_var"), waveform, self.checked_pitch(pitch, waveform))

    def transfer(self, waveform, source_pitch, pitch):
        waveform = self.checked_waveform(waveform)
        source_pitch, pitch = self.checked_pitch(source_pitch, waveform, "source_pitch"), self.checked_pitch(
            pitch, waveform
        )
        log_mel = self.in_chunks(self._transfer_rows, ("log_mel",), waveform, source_pitch, pitch)["log_mel"]
        return {"waveform": self.render(log_mel), "log_mel": log_mel}

    def checked_pitch(self, pitch, notes, name: str = "pitch"):
        """`pitch` checked: one finite value per row of `notes`, each `audio_files.allowed_pitch`."""
        import tensorflow as tf

        low, high = self.pitch_range
        pitch = self._one_per_note(pitch, name, notes)
        # The library's rule (synthesis.audio_files.allowed_pitch), in the graph: whole and in range.
        allowed = tf.equal(pitch, tf.round(pitch)) & (pitch >= low) & (pitch <= high)
        message = f"{name}: not one the model was trained on: give {pitch_rule(self.pitch_range)}"
        check = tf.debugging.assert_equal(tf.reduce_all(allowed), True, message=message)
        with tf.control_dependencies([check]):
            return tf.identity(pitch)

    def checked_velocity(self, velocity, notes):
        """`velocity` checked: one finite value per row of `notes`, each `audio_files.allowed_velocity`."""
        import tensorflow as tf

        velocity = self._one_per_note(velocity, "velocity", notes)
        known = tf.reduce_any(tf.equal(velocity[:, None], tf.constant(self.velocities)[None]), axis=1)
        message = f"velocity: not one the model was trained on: give {velocity_rule(self.velocities)}"
        check = tf.debugging.assert_equal(tf.reduce_all(known), True, message=message)
        with tf.control_dependencies([check]):
            return tf.identity(velocity)

    @staticmethod
    def _one_per_note(values, name: str, notes):
        import tensorflow as tf

        values = checked_input(values, name, [None])
        check = tf.debugging.assert_equal(
            tf.shape(values)[0], tf.shape(notes)[0], message=f"{name}: give one value per note of the batch"
        )
        with tf.control_dependencies([check]):
            return tf.identity(values)

    def _reconstruct_rows(self, waveform, pitch, velocity):
        inputs = {"log_mel": self.features(waveform), "pitch": pitch, "velocity": velocity}
        outputs = self.model(inputs, training=False)
        return {
            "log_mel": self.to_db(outputs["reconstruction"]),
            "z_mean": outputs["z_mean"],
            "z_log_var": outputs["z_log_var"],
        }

    def _encode_rows(self, waveform, pitch):
        z_mean, z_log_var = self.model.encode({"log_mel": self.features(waveform), "pitch": pitch})
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def _transfer_rows(self, waveform, source_pitch, pitch):
        import tensorflow as tf

        code, _ = self.model.encode({"log_mel": self.features(waveform), "pitch": source_pitch})
        velocity = tf.fill(tf.shape(pitch), self.transfer_velocity)
        return {"log_mel": self.to_db(self.model.synthesize(code, pitch, velocity))}
