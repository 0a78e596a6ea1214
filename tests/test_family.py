"""The model family: one meaning per method on every variant, conditioning asked of the model, old files re-pathed."""

import warnings

import h5py
import keras
import numpy as np
import pytest

from keras_timbre.models import legacy_weights
from keras_timbre.models.family import TimbreModel
from keras_timbre.models.variants import ALL_VARIANTS, CONDITIONED_VARIANTS, build_model, model_class
from tests.testing import to_numpy

SHAPE = (16, 32, 1)
TINY = {"input_shape": SHAPE, "filters": (4, 8), "latent_dim": 3}
LABELLED = {"pitch_range": (48, 72), "velocities": (75, 100)}


def _model(variant):
    return build_model(variant, **TINY, **(LABELLED if variant in CONDITIONED_VARIANTS else {}))


def _inputs(model, batch=2):
    x = np.random.default_rng(0).normal(size=(batch,) + SHAPE).astype("float32")
    if not model.is_conditioned:
        return model.model_inputs(x)
    return model.model_inputs(x, np.full(batch, 60.0), np.full(batch, 100.0))


@pytest.mark.backend
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_answers_the_family_api(variant):
    model = _model(variant)
    assert isinstance(model, TimbreModel) and model.variant == variant
    assert model.is_conditioned == (variant in CONDITIONED_VARIANTS) == ("pitch" in model_class(variant).INPUT_KEYS)
    inputs = _inputs(model)
    z_mean, z_log_var = model.encode(inputs)
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (2, 3)
    labels = (60, 100) if model.is_conditioned else ()
    from_code = to_numpy(model.reconstruct(inputs, from_code=True))
    np.testing.assert_allclose(from_code, to_numpy(model.decode(z_mean, *labels)), atol=1e-5)
    assert to_numpy(model.reconstruct(inputs)).shape == (2,) + SHAPE
    assert to_numpy(model.sample(3, *labels, seed=1)).shape == (3,) + SHAPE
    # A variant without skips or groups reconstructs from its code alone (an untrained hierarchical
    # model too: its posteriors start at their priors); one with skips does not.
    differs = not np.allclose(to_numpy(model.reconstruct(inputs)), from_code, atol=1e-6)
    assert differs if getattr(model, "use_skips", False) else model.renders_beyond_code or not differs
    assert set(model.run_settings()) == set(model.RUN_KEYS)


def test_decode_names_what_a_variant_needs():
    code = np.zeros((1, 3), "float32")
    with pytest.raises(ValueError, match="not conditioned on pitch"):
        _model("skip+grad").decode(code, 60, 100)
    with pytest.raises(ValueError, match="pitch and velocity"):
        _model("hierarchical").decode(code)
    with pytest.raises(ValueError, match="pitch and velocity"):
        _model("hierarchical").model_inputs(np.zeros((1,) + SHAPE, "float32"))


def test_use_skips_still_means_not_from_code_with_a_warning():
    model = _model("skip")
    inputs = _inputs(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = to_numpy(model.reconstruct(inputs, use_skips=False))
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    np.testing.assert_array_equal(old, to_numpy(model.reconstruct(inputs, from_code=True)))


def test_the_notes_decide_a_conditioned_models_ranges():
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.data.readers import NoteRecord

    records = [NoteRecord(f"n{i}.wav", f"n{i}", pitch=p, velocity=v) for i, (p, v) in enumerate([(50, 75), (64, 100)])]
    settings = model_class("hierarchical").settings_from_notes(records, FrontendConfig())
    assert settings["pitch_range"] == [50, 64] and settings["velocities"] == [75, 100]
    assert model_class("skip+grad").settings_from_notes(records, FrontendConfig()) == {}
    with pytest.raises(ValueError, match="pitch and velocity labels"):
        model_class("hierarchical").settings_from_notes([NoteRecord("x.wav", "x")], FrontendConfig())


def test_a_file_in_this_layout_is_left_alone_and_an_old_one_is_repathed(tmp_path):
    model = _model("skip+grad")
    model.save_weights(tmp_path / "new.weights.h5")
    # The same weights in 0.2's layout (every layer on the model itself), as Keras wrote it then.
    old_paths = {
        "encoder/blocks": "encoder_blocks",
        "encoder/z_mean": "layers/dense",
        "encoder/z_log_var": "layers/dense_1",
        "decoder/decoder_dense": "decoder_dense",
        "decoder/blocks": "decoder_blocks",
        "decoder/output_conv": "layers/conv2d_transpose",
        "vars": "vars",
    }
    with h5py.File(tmp_path / "new.weights.h5") as new, h5py.File(tmp_path / "old.weights.h5", "w") as old:
        assert not legacy_weights.is_legacy_file(new)
        for path, old_path in old_paths.items():
            new.copy(new[path], old, old_path)
        assert legacy_weights.is_legacy_file(old)
    fresh = _model("skip+grad")
    fresh.load_weights(tmp_path / "old.weights.h5")
    inputs = _inputs(model)
    np.testing.assert_array_equal(to_numpy(fresh(inputs)["reconstruction"]), to_numpy(model(inputs)["reconstruction"]))
    (tmp_path / "missing.weights.h5").write_bytes(b"")
    with h5py.File(tmp_path / "missing.weights.h5", "w") as broken, h5py.File(tmp_path / "old.weights.h5") as old:
        for name in ("encoder_blocks", "vars"):
            old.copy(old[name], broken, name)
    with pytest.raises(ValueError, match="z_mean"):
        _model("skip+grad").load_weights(tmp_path / "missing.weights.h5")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the reference draws are TensorFlow's")
def test_a_seed_gives_timbre_vae_the_initial_weights_0_2_gave():
    # Per-weight sums of build_model("skip+grad", (16, 32, 1), filters (4, 8), latent 3) after
    # keras.utils.set_random_seed(0), computed by 0.2.0: the parts create their layers in its order.
    keras.utils.set_random_seed(0)
    model = build_model("skip+grad", **TINY)
    kernels = [round(float(np.sum(to_numpy(w))), 4) for w in model.weights if w.path.endswith("kernel")]
    assert kernels == [0.2112, 2.4927, -4.2788, -1.8594, 1.8887, 1.4307, 1.7725, -1.1022]
