"""A small test-case base class for keras_timbre layers (pytest style).

`LayerTestCase.run_layer_round_trip` checks what every layer must do:
config round trip, serialization, `compute_output_shape` against the actual
output, identical outputs after deserialization, and one `fit` step that
changes the trainable weights.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops


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

    def run_layer_round_trip(
        self,
        layer_cls: type[keras.layers.Layer],
        init_kwargs: dict[str, Any],
        call_args: Sequence[Any],
        call_kwargs: dict[str, Any] | None = None,
        expected_output_shape=None,
        expect_trainable_weights: bool = True,
    ) -> keras.layers.Layer:
        """Runs the checks on `layer_cls(**init_kwargs)(*call_args, **call_kwargs)`.

        Args:
            layer_cls: the layer class.
            init_kwargs: constructor arguments.
            call_args: positional call arguments (numpy arrays or lists of them).
            call_kwargs: extra keyword call arguments (not `training`).
            expected_output_shape: the output shape (or tuple of shapes); checked if given.
            expect_trainable_weights: whether one fit step must change weights.

        Returns:
            The layer after its fit step.
        """
        call_kwargs = dict(call_kwargs or {})
        layer = layer_cls(**init_kwargs)

        # Config round trip: from_config(get_config()) rebuilds the same layer.
        config = layer.get_config()
        clone = layer_cls.from_config(config)
        assert clone.get_config() == config

        # Output shape: compute_output_shape agrees with what call returns.
        outputs = layer(*call_args, **call_kwargs)
        input_shapes = keras.tree.map_structure(lambda a: tuple(np.shape(a)), list(call_args))
        predicted = layer.compute_output_shape(*input_shapes)
        assert _shapes(predicted) == _shapes(outputs), f"compute_output_shape {predicted} != actual"
        if expected_output_shape is not None:
            assert _shapes(outputs) == _shapes(expected_output_shape)

        # Serialization: a deserialized layer with copied weights gives the same output.
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is layer_cls
        assert restored.get_config() == config
        restored(*call_args, **call_kwargs)
        restored.set_weights(layer.get_weights())
        for got, want in zip(keras.tree.flatten(restored(*call_args, **call_kwargs)), keras.tree.flatten(outputs)):
            np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-5, atol=1e-6)

        # One fit step trains the layer inside a model on this backend.
        model = _OneLayerModel(layer, call_kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        before = [to_numpy(w).copy() for w in layer.trainable_weights]
        history = model.fit(
            tuple(call_args), epochs=1, batch_size=len(np.asarray(keras.tree.flatten(call_args)[0])), verbose=0
        )
        assert np.isfinite(history.history["loss"][0])
        if expect_trainable_weights:
            assert before, f"{layer_cls.__name__} has no trainable weights"
            changed = [not np.array_equal(b, to_numpy(w)) for b, w in zip(before, layer.trainable_weights)]
            assert any(changed), "one fit step left every trainable weight unchanged"
        return layer
