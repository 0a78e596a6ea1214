"""A test-case base class for keras_timbre layers (pytest style), after keras-hub's `run_layer_test`.

`LayerTestCase.run_layer_test` checks what every layer must do, on the
running backend:

- a symbolic call on `keras.KerasTensor`s (batch None) builds the layer with
  the expected numbers of trainable and non-trainable weights, and its
  output shapes equal `compute_output_shape` and the eager output's;
- eager outputs have the expected shapes and the layer's compute dtype, and
  under a mixed dtype policy the outputs (eager and symbolic) have the compute
  dtype while the weights keep the variable dtype;
- a JSON round trip of the serialized layer gives an equal config and, with
  the same weights, the same outputs;
- a `.keras` save/load round trip of a model around it gives the same outputs;
- one `fit` step inside a model changes the trainable weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from keras_timbre.audio.frontend import FrontendConfig

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
# The tests' frontend: 1 s notes as (32, 64) features, small enough for a tiny model to train in seconds.
TINY_FRONTEND = FrontendConfig(n_mels=32, duration=1.0, n_fft=512, hop_length=250)
# The same frontend and a tiny model as `keras-timbre train` options.
TINY_TRAIN_ARGS = ["--n-mels", "32", "--duration", "1.0", "--latent-dim", "4", "--batch-size", "4"]


# Half-second notes of 32 mels: features (32, 32), 8000 samples.
HALF_SECOND_FRONTEND = FrontendConfig(n_mels=32, duration=0.5, n_fft=512, hop_length=250)


def train_tiny_hierarchical(tmp_path_factory, frontend: FrontendConfig = HALF_SECOND_FRONTEND):
    """One tiny finished hierarchical run (3 epochs) on 20 synthetic notes; returns its `Run`.

    3 epochs, not 1: after one, the harmonic envelope's untrained channel rendered every note some
    13 dB above the training notes' peak (before the output ceiling bounded renders at peak + 1 dB).
    """
    from keras_timbre.data import make_synthetic_dataset
    from keras_timbre.training import trainer

    notes = make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)
    return trainer.train(
        tmp_path_factory.mktemp("runs") / "hier",
        data=notes,
        variant="hierarchical",
        frontend=frontend,
        model_kwargs={"filters": (4, 8), "latent_dim": 4},
        epochs=3,
        batch_size=4,
        val_fraction=0.5,
        verbose=0,
    )


def save_tiny_vocoder(path, frontend: FrontendConfig = None, channels: int = 8):
    """An untrained one-block `Vocoder` of `frontend`'s features saved at `path`: what renders, not how well."""
    from keras_timbre.vocoder import Vocoder

    keras.utils.set_random_seed(0)
    Vocoder(frontend or TINY_FRONTEND, channels=channels, num_blocks=1).save(path)
    return path


def to_numpy(x) -> np.ndarray:
    """Any backend tensor (or array) as a numpy array."""
    return np.asarray(ops.convert_to_numpy(x))


def _shapes(tree) -> list[tuple]:
    """Flat list of shapes from tensors, or from (nested tuples of) shape tuples."""
    if hasattr(tree, "shape"):
        return [tuple(tree.shape)]
    if all(d is None or isinstance(d, int) for d in tree):
        return [tuple(tree)]
    return [shape for item in tree for shape in _shapes(item)]


def _without_batch(shapes: list[tuple]) -> list[tuple]:
    return [(None,) + tuple(shape[1:]) for shape in shapes]


def assert_outputs_close(got, want, message: str = "") -> None:
    """Every tensor of two (nested) outputs is numerically the same (float32 rounding)."""
    got, want = keras.tree.flatten(got), keras.tree.flatten(want)
    assert len(got) == len(want), f"{message}: {len(got)} outputs, expected {len(want)}"
    for g, w in zip(got, want):
        np.testing.assert_allclose(to_numpy(g), to_numpy(w), rtol=1e-5, atol=1e-6, err_msg=message)


class _OneLayerModel(keras.Model):
    """Wraps one layer; its loss is the mean square of all outputs."""

    def __init__(self, layer: keras.layers.Layer, call_kwargs: dict[str, Any]):
        super().__init__(name="one_layer_model")
        self.layer = layer
        self.call_kwargs = call_kwargs

    def call(self, inputs, training=False):
        return self.layer(*inputs, training=training, **self.call_kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return sum(ops.mean(ops.square(out)) for out in keras.tree.flatten(y_pred))


class LayerTestCase:
    """Base class for layer tests; subclass it as `class TestFoo(LayerTestCase)`."""

    def run_layer_test(
        self,
        layer_cls: type[keras.layers.Layer],
        init_kwargs: dict[str, Any],
        call_args: Sequence[Any],
        expected_output_shape,
        expected_num_trainable_weights: int,
        expected_num_non_trainable_weights: int = 0,
        call_kwargs: dict[str, Any] | None = None,
        run_training_check: bool = True,
        run_precision_check: bool = True,
    ) -> keras.layers.Layer:
        """Runs every check on `layer_cls(**init_kwargs)(*call_args, **call_kwargs)`.

        Args:
            layer_cls: the layer class.
            init_kwargs: constructor arguments.
            call_args: positional call arguments (numpy float32 arrays, or lists of them).
            expected_output_shape: the eager output shape (or tuple of shapes).
            expected_num_trainable_weights: `len(layer.trainable_weights)` once built.
            expected_num_non_trainable_weights: `len(layer.non_trainable_weights)` once built.
            call_kwargs: extra keyword call arguments (not `training`).
            run_training_check: run one fit step, which must change a trainable weight.
            run_precision_check: check output and weight dtypes under mixed policies.

        Returns:
            The (eagerly called) layer.
        """
        call_kwargs = dict(call_kwargs or {})
        counts = (expected_num_trainable_weights, expected_num_non_trainable_weights)
        symbolic_shapes = self.check_symbolic_call(layer_cls, init_kwargs, call_args, call_kwargs, counts)

        layer = layer_cls(**init_kwargs)
        outputs = layer(*call_args, **call_kwargs)
        assert _shapes(outputs) == _shapes(expected_output_shape), f"output shapes {_shapes(outputs)}"
        assert _without_batch(_shapes(outputs)) == symbolic_shapes, "eager and symbolic output shapes differ"
        for out in keras.tree.flatten(outputs):
            assert keras.backend.standardize_dtype(out.dtype) == layer.compute_dtype

        self.check_json_round_trip(layer, call_args, call_kwargs, outputs)
        self.check_keras_file_round_trip(layer, call_args, call_kwargs, outputs)
        if run_precision_check:
            for policy in MIXED_POLICIES:
                self.check_precision(layer_cls, init_kwargs, call_args, call_kwargs, policy)
        if run_training_check:
            self.check_training_step(layer, call_args, call_kwargs)
        return layer

    def check_symbolic_call(self, layer_cls, init_kwargs, call_args, call_kwargs, counts) -> list[tuple]:
        """Calls a fresh layer on KerasTensors (batch None); returns the output shapes."""
        symbolic = keras.tree.map_structure(lambda a: keras.KerasTensor((None,) + np.shape(a)[1:]), list(call_args))
        layer = layer_cls(**init_kwargs)
        outputs = layer(*symbolic, **call_kwargs)
        assert layer.built, "a symbolic call must build the layer"
        trainable, non_trainable = counts
        assert len(layer.trainable_weights) == trainable, f"trainable weights: {layer.trainable_weights}"
        assert len(layer.non_trainable_weights) == non_trainable, f"non-trainable: {layer.non_trainable_weights}"
        input_shapes = keras.tree.map_structure(lambda t: tuple(t.shape), symbolic)
        predicted = _shapes(layer.compute_output_shape(*input_shapes))
        assert _shapes(outputs) == predicted, f"symbolic {_shapes(outputs)} != compute_output_shape {predicted}"
        return predicted

    def check_json_round_trip(self, layer, call_args, call_kwargs, outputs) -> None:
        """serialize -> JSON text -> deserialize: an equal config and, with the same weights, equal outputs."""
        text = json.dumps(keras.saving.serialize_keras_object(layer))
        restored = keras.saving.deserialize_keras_object(json.loads(text))
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()
        restored(*call_args, **call_kwargs)  # builds the weights
        restored.set_weights(layer.get_weights())
        assert_outputs_close(restored(*call_args, **call_kwargs), outputs, "after a JSON round trip")

    def check_keras_file_round_trip(self, layer, call_args, call_kwargs, outputs) -> None:
        """A functional model around `layer`, saved to .keras and loaded (safe mode), gives the same outputs."""
        inputs = keras.tree.map_structure(lambda a: keras.Input(np.shape(a)[1:]), list(call_args))
        model = keras.Model(keras.tree.flatten(inputs), layer(*inputs, **call_kwargs))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "layer.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        restored = next(sub for sub in loaded.layers if type(sub) is type(layer))
        assert restored.get_config() == layer.get_config()
        flat_args = keras.tree.flatten(list(call_args))
        assert_outputs_close(loaded(flat_args), outputs, "after a .keras round trip")

    def check_precision(self, layer_cls, init_kwargs, call_args, call_kwargs, policy_name: str) -> None:
        """Under a mixed policy: outputs in the compute dtype, weights (and sublayers' weights) in float32."""
        policy = keras.DTypePolicy(policy_name)
        layer = layer_cls(**{**init_kwargs, "dtype": policy})
        outputs = layer(*call_args, **call_kwargs)
        symbolic = keras.tree.map_structure(lambda a: keras.KerasTensor(np.shape(a)), list(call_args))
        for out in keras.tree.flatten(outputs) + keras.tree.flatten(layer(*symbolic, **call_kwargs)):
            assert keras.backend.standardize_dtype(out.dtype) == policy.compute_dtype, f"{policy_name}: {out.dtype}"
        for weight in layer.weights:
            assert keras.backend.standardize_dtype(weight.dtype) == policy.variable_dtype, weight.path
        for sublayer in layer._flatten_layers(include_self=False):
            assert sublayer.compute_dtype == policy.compute_dtype, f"{sublayer.name} computes in {sublayer.dtype}"

    def check_training_step(self, layer, call_args, call_kwargs) -> None:
        """One fit step trains the layer inside a model; its trainable weights change."""
        model = _OneLayerModel(layer, call_kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        before = [to_numpy(w).copy() for w in layer.trainable_weights]
        batch = len(np.asarray(keras.tree.flatten(list(call_args))[0]))
        history = model.fit(tuple(call_args), epochs=1, batch_size=batch, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert before, f"{type(layer).__name__} has no trainable weights to train"
        changed = [not np.array_equal(b, to_numpy(w)) for b, w in zip(before, layer.trainable_weights)]
        assert any(changed), "one fit step left every trainable weight unchanged"
