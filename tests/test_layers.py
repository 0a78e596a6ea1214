"""Layers: round trips on every backend, sampling statistics, skip handling."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_timbre.models.layers import Conv2DTranspose
from keras_timbre.models.layers import DecoderBlock
from keras_timbre.models.layers import EncoderBlock
from keras_timbre.models.layers import Sampling
from keras_timbre.models.layers import SkipMix
from tests.testing import LayerTestCase
from tests.testing import to_numpy

RNG = np.random.default_rng(0)


def _normal(*shape):
    return RNG.normal(size=shape).astype("float32")


@pytest.mark.backend
class TestSampling(LayerTestCase):
    @pytest.mark.parametrize("log_var_range", [(-5.0, 5.0), None])
    def test_layer(self, log_var_range):
        mean, log_var = _normal(4, 6), _normal(4, 6)
        self.run_layer_test(
            Sampling,
            {"seed": 3, "log_var_range": log_var_range},
            [[mean, log_var]],
            expected_output_shape=(4, 6),
            expected_num_trainable_weights=0,
            run_training_check=False,
        )

    def test_inference_returns_the_mean(self):
        mean, log_var = _normal(4, 6), _normal(4, 6)
        np.testing.assert_array_equal(to_numpy(Sampling(seed=1)([mean, log_var])), mean)
        np.testing.assert_array_equal(to_numpy(Sampling(seed=1)([mean, log_var], training=False)), mean)

    def test_training_draws_from_the_posterior(self):
        mean = np.full((20000, 2), [1.0, -2.0], "float32")
        log_var = np.full((20000, 2), [0.0, np.log(0.25)], "float32")
        z = to_numpy(Sampling(seed=0)([mean, log_var], training=True))
        np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.03)
        np.testing.assert_allclose(z.std(axis=0), [1.0, 0.5], atol=0.03)

    def test_seed_makes_draws_reproducible(self):
        mean, log_var = np.zeros((3, 4), "float32"), np.zeros((3, 4), "float32")
        a = to_numpy(Sampling(seed=7)([mean, log_var], training=True))
        b = to_numpy(Sampling(seed=7)([mean, log_var], training=True))
        c = to_numpy(Sampling(seed=8)([mean, log_var], training=True))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_log_var_is_clipped_unless_the_range_is_none(self):
        mean = np.zeros((1000, 3), "float32")
        clipped = Sampling(seed=0, log_var_range=(-4.0, 4.0))
        z = to_numpy(clipped([mean, np.full((1000, 3), 1e4, "float32")], training=True))
        np.testing.assert_allclose(z.std(), np.exp(2.0), rtol=0.1)  # the std of log-variance 4
        z = to_numpy(Sampling(seed=0, log_var_range=None)([mean, np.full((1000, 3), 6.0, "float32")], training=True))
        np.testing.assert_allclose(z.std(), np.exp(3.0), rtol=0.1)  # 6 is outside (-4, 4) yet kept

    def test_bad_range(self):
        with pytest.raises(ValueError, match="log_var_range"):
            Sampling(log_var_range=(1.0, -1.0))


@pytest.mark.backend
class TestEncoderBlock(LayerTestCase):
    # (normalization, trainable: kernel [+ bias] [+ gamma, beta], non-trainable: BatchNorm's moving stats)
    @pytest.mark.parametrize(
        "normalization, trainable, non_trainable", [("batch", 3, 2), ("group", 3, 0), (None, 2, 0)]
    )
    def test_layer(self, normalization, trainable, non_trainable):
        self.run_layer_test(
            EncoderBlock,
            {"filters": 4, "normalization": normalization, "activation": "relu"},
            [_normal(2, 16, 32, 3)],
            expected_output_shape=(2, 8, 16, 4),
            expected_num_trainable_weights=trainable,
            expected_num_non_trainable_weights=non_trainable,
        )

    def test_odd_sizes_round_up(self):
        assert tuple(EncoderBlock(2, strides=(2, 1))(_normal(1, 9, 5, 1)).shape) == (1, 5, 5, 2)

    def test_bad_normalization(self):
        with pytest.raises(ValueError, match="normalization"):
            EncoderBlock(4, normalization="instance")


@pytest.mark.backend
class TestDecoderBlock(LayerTestCase):
    def test_layer_with_skip(self):
        # Trainable: up-sampling kernel, skip-mix kernel, gamma, beta (no biases under a norm);
        # BatchNorm's moving stats.
        x, skip = _normal(2, 4, 8, 6), _normal(2, 8, 16, 3)
        block = self.run_layer_test(
            DecoderBlock,
            {"filters": 5, "skip_channels": 3},
            [x, skip],
            expected_output_shape=(2, 8, 16, 5),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=2,
        )
        assert block.upsample.count_params() == 4 * 4 * 6 * 5

    def test_layer_without_skip_or_normalization(self):
        self.run_layer_test(
            DecoderBlock,
            {"filters": 4, "normalization": None, "kernel_size": 2},
            [_normal(2, 4, 8, 6)],
            expected_output_shape=(2, 8, 16, 4),
            expected_num_trainable_weights=2,
        )

    def test_missing_skip_means_zeros(self):
        block = DecoderBlock(4, skip_channels=3)
        x = _normal(2, 4, 8, 6)
        zeros = np.zeros((2, 8, 16, 3), "float32")
        without = to_numpy(block(x))
        np.testing.assert_allclose(without, to_numpy(block(x, zeros)), atol=1e-6)
        assert not np.allclose(without, to_numpy(block(x, _normal(2, 8, 16, 3) + 3.0)))

    def test_skip_mix_is_a_1x1_convolution_of_the_concatenation(self):
        # The block mixes without concatenating (two channel matmuls); the
        # result must be the 1x1 convolution of [up-sampled, skip] it replaces.
        block = DecoderBlock(5, skip_channels=3, normalization=None, activation="linear")
        x, skip = _normal(2, 4, 8, 6), _normal(2, 8, 16, 3)
        mixed = to_numpy(block(x, skip))
        conv = keras.layers.Conv2D(5, 1)
        conv.build((None, 8, 16, 8))
        conv.set_weights(block.skip_conv.get_weights())
        expected = conv(ops.concatenate([block.upsample(x), skip], axis=-1))
        np.testing.assert_allclose(mixed, to_numpy(expected), atol=1e-5)

    def test_skip_channel_mismatch(self):
        block = DecoderBlock(4, skip_channels=3)
        with pytest.raises(ValueError, match="skip_channels=3"):
            block(_normal(1, 4, 8, 2), _normal(1, 8, 16, 5))
        with pytest.raises(ValueError, match="skip_channels=0"):
            DecoderBlock(4)(_normal(1, 4, 8, 2), _normal(1, 8, 16, 2))


@pytest.mark.backend
class TestSkipMix(LayerTestCase):
    @pytest.mark.parametrize("use_bias, trainable", [(True, 2), (False, 1)])
    def test_layer(self, use_bias, trainable):
        self.run_layer_test(
            SkipMix,
            {"filters": 4, "skip_channels": 3, "use_bias": use_bias},
            [_normal(2, 8, 16, 5), _normal(2, 8, 16, 3)],
            expected_output_shape=(2, 8, 16, 4),
            expected_num_trainable_weights=trainable,
        )

    def test_equals_a_conv2d_over_the_concatenation_with_bias(self):
        mix = SkipMix(4, skip_channels=3)
        x, skip = _normal(2, 8, 16, 5), _normal(2, 8, 16, 3)
        mix(x, skip)
        mix.bias.assign(np.arange(4, dtype="float32"))
        conv = keras.layers.Conv2D(4, 1)
        conv.build((None, 8, 16, 8))
        conv.set_weights(mix.get_weights())  # the same weight shapes and order as a Conv2D
        expected = conv(ops.concatenate([x, skip], axis=-1))
        np.testing.assert_allclose(to_numpy(mix(x, skip)), to_numpy(expected), atol=1e-5)
        zeros = np.zeros_like(skip)
        np.testing.assert_allclose(to_numpy(mix(x)), to_numpy(mix(x, zeros)), atol=1e-6)


@pytest.mark.backend
class TestConv2DTranspose(LayerTestCase):
    def test_layer(self):
        self.run_layer_test(
            Conv2DTranspose,
            {"filters": 3, "kernel_size": 4, "strides": 2, "padding": "same"},
            [_normal(2, 4, 8, 5)],
            expected_output_shape=(2, 8, 16, 3),
            expected_num_trainable_weights=2,
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"kernel_size": 4, "strides": 2, "padding": "same"},  # sub-pixel
            {"kernel_size": 4, "strides": 2, "padding": "same", "use_bias": False, "activation": "relu"},
            {"kernel_size": 3, "strides": 2, "padding": "same"},  # Keras' own
            {"kernel_size": 4, "strides": 2, "padding": "valid"},
        ],
    )
    def test_equals_keras_conv2d_transpose_with_the_same_weights(self, kwargs):
        x = _normal(2, 5, 6, 3)
        ours, keras_layer = Conv2DTranspose(4, **kwargs), keras.layers.Conv2DTranspose(4, **kwargs)
        ours.sub_pixel_backends = (keras.backend.backend(),)  # the sub-pixel form, whatever the default
        ours(x), keras_layer(x)
        weights = [_normal(*w.shape) for w in keras_layer.weights]
        keras_layer.set_weights(weights)
        ours.set_weights(weights)  # the same variables, shapes and order
        np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(keras_layer(x)), atol=1e-4)
