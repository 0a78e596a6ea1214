"""The model family's parts: every layer check (`run_layer_test`), and what each part adds."""

import numpy as np
import pytest

from keras_timbre.models.parts import CodeEncoder, DecoderPath, FeatureEncoder, PitchCondition
from tests.testing import LayerTestCase, to_numpy

RNG = np.random.default_rng(0)


def _normal(*shape):
    return RNG.normal(size=shape).astype("float32")


@pytest.mark.backend
class TestParts(LayerTestCase):
    def test_code_encoder(self):
        # Precision: the posterior is float32 under any policy, by design (the KL needs it).
        encoder = self.run_layer_test(
            CodeEncoder,
            {"filters": (4, 8), "latent_dim": 3},
            [_normal(2, 16, 32, 1)],
            expected_output_shape=((2, 3), (2, 3), [(2, 8, 16, 4), (2, 4, 8, 8)]),
            expected_num_trainable_weights=8,
            run_precision_check=False,
        )
        _, z_log_var, _ = encoder(_normal(2, 16, 32, 1) * 1e4)
        assert np.abs(to_numpy(z_log_var)).max() <= 10.0  # LOG_VAR_RANGE, applied once here

    def test_feature_encoder(self):
        self.run_layer_test(
            FeatureEncoder,
            {"filters": (4, 8), "normalization": "batch"},
            [_normal(2, 16, 32, 1)],
            expected_output_shape=[(2, 8, 16, 4), (2, 4, 8, 8)],
            expected_num_trainable_weights=6,
            expected_num_non_trainable_weights=4,
        )

    @pytest.mark.parametrize("skip_channels", [False, True])
    def test_decoder_path(self, skip_channels):
        # Precision: the output is float32 under any policy (the losses need it).
        self.run_layer_test(
            DecoderPath,
            {"output_shape": (16, 32, 1), "filters": (4, 8), "skip_channels": skip_channels},
            [_normal(2, 3)],
            expected_output_shape=(2, 16, 32, 1),
            expected_num_trainable_weights=8 if skip_channels else 6,
            run_precision_check=False,
        )

    def test_pitch_condition(self):
        # Precision: the state keeps its dtype; only the projected map is cast to it.
        condition = PitchCondition(n_mels=16, mel_range=(20.0, 8000.0), filters=(4, 8))
        pitch_map = to_numpy(condition.pitch_map(np.array([48.0, 72.0]), np.array([100.0, 50.0])))
        self.run_layer_test(
            PitchCondition,
            {"n_mels": 16, "mel_range": (20.0, 8000.0), "filters": (4, 8)},
            [_normal(2, 4, 8, 8), pitch_map],
            expected_output_shape=(2, 4, 8, 8),
            expected_num_trainable_weights=4,
            run_precision_check=False,
        )


def test_the_decoder_path_runs_a_step_at_every_resolution():
    decoder = DecoderPath(output_shape=(16, 32, 1), filters=(4, 8, 8))
    seen = []

    def step(i, h):
        seen.append((i, tuple(h.shape)))
        return h * 0.0 if i == 2 else h  # the last state zeroed: only the output conv's bias is left

    out = to_numpy(decoder.run(_normal(2, 3), step))
    assert seen == [(0, (2, 2, 4, 8)), (1, (2, 4, 8, 8)), (2, (2, 8, 16, 4))]
    np.testing.assert_allclose(out, out.flat[0], atol=1e-6)


def test_skips_reach_the_decoder_only_when_it_takes_them():
    z = _normal(2, 3)
    skips = [_normal(2, 8, 16, 4)]
    with_skips = DecoderPath(output_shape=(16, 32, 1), filters=(4, 8), skip_channels=True)
    assert not np.allclose(to_numpy(with_skips(z, skips)), to_numpy(with_skips(z)))
    with pytest.raises(ValueError, match="skip_channels=0"):
        DecoderPath(output_shape=(16, 32, 1), filters=(4, 8))(z, skips)


def test_the_condition_depends_on_pitch_at_every_resolution():
    condition = PitchCondition(n_mels=16, mel_range=(20.0, 8000.0), filters=(4, 8))
    low, high = (condition.pitch_map(np.array([p]), np.array([100.0])) for p in (40.0, 80.0))
    for resolution, rows in ((0, 4), (1, 8)):
        h = np.zeros((1, rows, 8, (8, 4)[resolution]), "float32")
        a, b = (to_numpy(condition(h, m, resolution=resolution)) for m in (low, high))
        assert not np.allclose(a, b), resolution
