"""Layers: round trips on every backend, sampling statistics, skip handling."""

import numpy as np
import pytest
from keras import ops

from keras_timbre.models.layers import DecoderBlock
from keras_timbre.models.layers import EncoderBlock
from keras_timbre.models.layers import Sampling
from tests.testing import LayerTestCase
from tests.testing import to_numpy

RNG = np.random.default_rng(0)


def _normal(*shape):
    return RNG.normal(size=shape).astype("float32")


@pytest.mark.backend
class TestSampling(LayerTestCase):
    def test_round_trip(self):
        mean, log_var = _normal(4, 6), _normal(4, 6)
        self.run_layer_round_trip(
            Sampling,
            {"seed": 3, "log_var_range": (-5.0, 5.0)},
            [[mean, log_var]],
            expected_output_shape=(4, 6),
            expect_trainable_weights=False,
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

    def test_log_var_is_clipped(self):
        mean, log_var = np.zeros((2, 3), "float32"), np.full((2, 3), 1e4, "float32")
        z = to_numpy(Sampling(seed=0, log_var_range=(-4.0, 4.0))([mean, log_var], training=True))
        assert np.all(np.isfinite(z))
        assert np.all(np.abs(z) < 20 * np.exp(2.0))

    def test_bad_range(self):
        with pytest.raises(ValueError, match="log_var_range"):
            Sampling(log_var_range=(1.0, -1.0))


@pytest.mark.backend
class TestEncoderBlock(LayerTestCase):
    @pytest.mark.parametrize("normalization", ["batch", "group"])
    def test_round_trip(self, normalization):
        x = _normal(2, 16, 32, 3)
        self.run_layer_round_trip(
            EncoderBlock,
            {"filters": 4, "normalization": normalization},
            [x],
            expected_output_shape=((2, 8, 16, 4), (2, 8, 16, 4)),
        )

    def test_odd_sizes_round_up(self):
        out, skip = EncoderBlock(2, strides=(2, 1))(_normal(1, 9, 5, 1))
        assert tuple(out.shape) == (1, 5, 5, 2) and tuple(skip.shape) == (1, 5, 5, 2)

    def test_bad_normalization(self):
        with pytest.raises(ValueError, match="normalization"):
            EncoderBlock(4, normalization="instance")


@pytest.mark.backend
class TestDecoderBlock(LayerTestCase):
    def test_round_trip_with_skip(self):
        x, skip = _normal(2, 4, 8, 6), _normal(2, 8, 16, 3)
        self.run_layer_round_trip(
            DecoderBlock, {"filters": 5, "skip_channels": 3}, [x, skip], expected_output_shape=(2, 8, 16, 5)
        )

    def test_round_trip_without_skip_or_normalization(self):
        self.run_layer_round_trip(
            DecoderBlock,
            {"filters": 4, "normalization": None},
            [_normal(2, 4, 8, 6)],
            expected_output_shape=(2, 8, 16, 4),
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
        expected = block.skip_conv(ops.concatenate([block.upsample(x), skip], axis=-1))
        np.testing.assert_allclose(mixed, to_numpy(expected), atol=1e-5)

    def test_skip_channel_mismatch(self):
        block = DecoderBlock(4, skip_channels=3)
        with pytest.raises(ValueError, match="skip_channels=3"):
            block(_normal(1, 4, 8, 2), _normal(1, 8, 16, 5))
        with pytest.raises(ValueError, match="skip_channels=0"):
            DecoderBlock(4)(_normal(1, 4, 8, 2), _normal(1, 8, 16, 2))
