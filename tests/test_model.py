"""TimbreVAE: training, variants, skips, errors, saving (on every backend)."""

import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_timbre.models.variants import VARIANTS
from keras_timbre.models import losses
from keras_timbre.models.losses import LOG_VAR_RANGE
from keras_timbre.models.timbre_vae import TimbreVAE
from tests.testing import assert_outputs_close
from tests.testing import to_numpy

SHAPE = (32, 64, 1)
TINY = {"input_shape": SHAPE, "latent_dim": 4, "filters": (4, 8)}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spectrograms(n=8, seed=0):
    """Harmonic combs at random pitches with onsets: structured enough to learn."""
    rng = np.random.default_rng(seed)
    mel = np.arange(SHAPE[0])[:, None]
    frame = np.arange(SHAPE[1])[None, :]
    out = []
    for _ in range(n):
        spacing, onset = rng.integers(3, 8), rng.integers(0, 16)
        comb = np.where(mel % spacing == 0, 1.5, -0.5) * np.exp(-np.maximum(frame - onset, 0) / 40.0)
        out.append(np.where(frame >= onset, comb, -0.5))
    return np.stack(out)[..., None].astype("float32")


@pytest.fixture(scope="module")
def trained():
    """A tiny skip+grad model after a few epochs, with its history (trained once per backend)."""
    keras.utils.set_random_seed(0)
    model = TimbreVAE.from_variant("skip+grad", time_grad_weight=0.5, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = _spectrograms()
    history = model.fit(x, batch_size=4, epochs=6, validation_data=(x,), verbose=0).history
    return model, history, x


@pytest.mark.backend
def test_a_few_fit_steps_lower_the_loss_and_report_every_term(trained):
    _, history, _ = trained
    for name in ("loss", "reconstruction_loss", "kl_loss", "mel_grad_loss", "time_grad_loss"):
        assert name in history and f"val_{name}" in history, sorted(history)
    # Without normalisation (the default) this tiny model learns slowly: 6 epochs give -4 to -6 %,
    # depending on the shuffle order the backend draws.
    assert history["loss"][-1] < 0.97 * history["loss"][0]
    assert history["reconstruction_loss"][-1] < history["reconstruction_loss"][0]
    # The total is the weighted sum of the tracked terms (batches of equal size).
    expected = (
        np.array(history["reconstruction_loss"])
        + 1e-3 * np.array(history["kl_loss"])
        + np.array(history["mel_grad_loss"])
        + 0.5 * np.array(history["time_grad_loss"])
    )
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-4)


@pytest.mark.backend
def test_outputs_encode_decode_and_skip_reliance():
    model = TimbreVAE.from_variant("skip", **TINY)
    x = _spectrograms(3)
    out = model(x)
    assert set(out) == {"reconstruction", "z_mean", "z_log_var"}
    assert tuple(out["reconstruction"].shape) == (3,) + SHAPE
    z_mean, z_log_var = model.encode(x)
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (3, 4)
    np.testing.assert_allclose(to_numpy(out["z_mean"]), to_numpy(z_mean), atol=1e-6)
    # Inference is deterministic: the mean, all skips.
    np.testing.assert_allclose(to_numpy(model(x)["reconstruction"]), to_numpy(out["reconstruction"]), atol=1e-6)
    np.testing.assert_allclose(to_numpy(model.reconstruct(x)), to_numpy(out["reconstruction"]), atol=1e-6)
    # decode(z) alone = reconstruction with the skips zeroed, which differs from using them.
    no_skips = to_numpy(model.reconstruct(x, from_code=True))
    np.testing.assert_allclose(to_numpy(model.decode(z_mean)), no_skips, atol=1e-5)
    assert not np.allclose(no_skips, to_numpy(out["reconstruction"]), atol=1e-4)
    # Without skips the two coincide.
    baseline = TimbreVAE.from_variant("baseline", **TINY)
    np.testing.assert_allclose(
        to_numpy(baseline.reconstruct(x, from_code=True)), to_numpy(baseline.reconstruct(x)), atol=1e-6
    )


def test_variants_differ_only_in_skips_and_gradient_loss():
    models = {name: TimbreVAE.from_variant(name, **TINY) for name in VARIANTS}
    assert [(m.use_skips, float(to_numpy(m.grad_weight)) > 0) for m in models.values()] == list(VARIANTS.values())
    assert [m.variant for m in models.values()] == list(VARIANTS)
    configs = [m.get_config() for m in models.values()]
    for key in ("latent_dim", "filters", "beta", "seed", "skip_dropout", "reconstruction"):
        assert len({str(c[key]) for c in configs}) == 1, key
    assert models["baseline"].count_params() == models["grad"].count_params()
    with pytest.raises(ValueError, match="Unknown variant 'unet'; choose one of baseline, skip, grad, skip\\+grad"):
        TimbreVAE.from_variant("unet")


# A value unlike the default for every constructor argument; as JSON would hold it.
NON_DEFAULTS = {
    "input_shape": [16, 32, 1],
    "latent_dim": 3,
    "filters": [4, 8],
    "use_skips": False,
    "skip_dropout": 0.25,
    "beta": 0.01,
    "grad_weight": 0.5,
    "time_grad_weight": 0.25,
    "reconstruction": "l1",
    "free_bits": 0.1,
    "normalization": "group",
    "activation": "relu",
    "seed": 5,
}


def _constructor_arguments():
    parameters = inspect.signature(TimbreVAE.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD}


@pytest.mark.backend
def test_every_constructor_argument_survives_config_and_keras_file(tmp_path):
    arguments = _constructor_arguments()
    missing = sorted(set(arguments) - set(NON_DEFAULTS))
    assert not missing, f"new TimbreVAE arguments {missing}: add a non-default value to NON_DEFAULTS"
    for name, default in arguments.items():
        assert NON_DEFAULTS[name] != (list(default) if isinstance(default, tuple) else default), name
    model = TimbreVAE(name="custom_vae", **NON_DEFAULTS)
    model.save(tmp_path / "model.keras")
    clones = {
        "from_config": TimbreVAE.from_config(model.get_config()),
        ".keras": keras.saving.load_model(tmp_path / "model.keras", safe_mode=True),
    }
    x = np.random.default_rng(0).normal(size=(2, 16, 32, 1)).astype("float32")
    expected = model(x, training=True)  # first draw of the seeded noise
    for how, clone in clones.items():
        config = clone.get_config()
        for name, value in NON_DEFAULTS.items():
            assert config[name] == value, f"{name} lost by {how}: {config[name]!r}"
        assert config["name"] == "custom_vae"
        clone.set_weights(model.get_weights())
        # The same weights, seed and activation give the same training-mode draw.
        assert_outputs_close(clone(x, training=True), expected, how)


def test_wrong_input_shape_names_the_expected_shape():
    model = TimbreVAE(**TINY)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 32, 64, 1\).*got \(2, 32, 48, 1\)"):
        model(np.zeros((2, 32, 48, 1), "float32"))
    with pytest.raises(ValueError, match="add a trailing channel axis"):
        model(np.zeros((2, 32, 64), "float32"))
    with pytest.raises(ValueError, match=r"feature config gives .*\(64, 64\).*expects \(32, 64\)"):
        model.check_feature_shape((64, 64))
    model.check_feature_shape((32, 64))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (30, 64, 1)}, "divisible by 2\\*\\*len\\(filters\\) = 4"),
        ({"reconstruction": "huber"}, "reconstruction must be one of"),
        ({"skip_dropout": 1.0}, "skip_dropout"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"normalization": "instance"}, "normalization"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimbreVAE(**{**TINY, **kwargs})


def _auto_jit_compile_expected() -> bool:
    # What Keras 3 resolves jit_compile="auto" to (Trainer._resolve_auto_jit_compile).
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())
    return backend == "jax"


@pytest.mark.backend
def test_compile_defaults_and_refuses_a_loss():
    model = TimbreVAE(**TINY)
    model.compile()
    assert model.optimizer.clipnorm == 1.0
    assert float(to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert model.jit_compile is _auto_jit_compile_expected()
    model.compile(jit_compile=False)
    assert model.jit_compile is False
    with pytest.raises(ValueError, match="computes its own loss"):
        model.compile(loss="mse")


@pytest.mark.backend
def test_sample_weight_weights_every_loss_term():
    model = TimbreVAE.from_variant("skip+grad", time_grad_weight=0.5, free_bits=0.01, **TINY)
    x = _spectrograms(3)
    y_pred = model(x)

    def loss_and_terms(inputs, outputs, sample_weight):
        for tracker in model.metrics:
            tracker.reset_state()
        total = model.compute_loss(inputs, y_pred=outputs, sample_weight=sample_weight, training=False)
        return [float(to_numpy(total))] + [float(to_numpy(m.result())) for m in model.metrics]

    unweighted = loss_and_terms(x, y_pred, None)
    np.testing.assert_allclose(loss_and_terms(x, y_pred, np.ones(3, "float32")), unweighted, rtol=1e-5)
    # Weight 3 on the middle example alone: every term is that example's own.
    alone = loss_and_terms(x[1:2], {k: v[1:2] for k, v in y_pred.items()}, None)
    np.testing.assert_allclose(loss_and_terms(x, y_pred, np.array([0.0, 3.0, 0.0], "float32")), alone, rtol=1e-5)
    assert not np.allclose(alone, unweighted, rtol=1e-3)
    with pytest.raises(ValueError, match="one weight per example"):
        model.compute_loss(x, y_pred=y_pred, sample_weight=np.ones_like(x))


def test_fit_honours_sample_weight():
    # An example of weight 0 contributes nothing: fitting [a, b] or [a, c] with weights
    # [1, 0] takes the same steps. (Group normalisation: no statistics across the batch.)
    x = _spectrograms(3)

    def fit_weights(data, sample_weight):
        keras.utils.set_random_seed(3)
        model = TimbreVAE.from_variant("skip", normalization="group", **TINY)
        model.compile(optimizer=keras.optimizers.SGD(1e-2))
        model.fit(data, data, sample_weight=sample_weight, batch_size=2, epochs=2, shuffle=False, verbose=0)
        return [to_numpy(w) for w in model.trainable_weights]

    weights = np.array([1.0, 0.0], "float32")
    for got, want in zip(fit_weights(x[[0, 1]], weights), fit_weights(x[[0, 2]], weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    unweighted = zip(fit_weights(x[[0, 1]], None), fit_weights(x[[0, 2]], None))
    assert not all(np.allclose(got, want, atol=1e-6) for got, want in unweighted)


def test_sample_weight_without_a_target_is_refused():
    # Keras would silently drop the weights of fit(x, sample_weight=w).
    model = TimbreVAE(**TINY)
    model.compile()
    x, weights = _spectrograms(2), np.ones(2, "float32")
    for method in (model.fit, model.evaluate):
        with pytest.raises(ValueError, match=r"drops sample_weight when y is None.*\(x, x, sample_weight=w\)"):
            method(x, sample_weight=weights, verbose=0)


@pytest.mark.backend
def test_log_variance_is_clipped_once_where_the_kl_sees_it():
    model = TimbreVAE(**TINY)
    model.encoder.z_log_var.bias.assign(np.full(4, 50.0, "float32"))  # far outside the range
    x = _spectrograms(2)
    out = model(x, training=True)
    np.testing.assert_allclose(to_numpy(out["z_log_var"]), LOG_VAR_RANGE[1])
    assert model.sampling.log_var_range is None  # Sampling does not clip a second time
    kl = losses.kl_divergence(out["z_mean"], out["z_log_var"])
    assert np.isfinite(float(to_numpy(kl))) and np.all(np.isfinite(to_numpy(out["reconstruction"])))


def test_skip_dropout_trains_decoding_from_z_alone():
    # With skips always dropped in training the skip-free decoder is the one
    # trained, so decode(z) improves; with skip_dropout=0 it is never trained.
    x = _spectrograms()
    errors = {}
    for dropout in (0.0, 0.9):
        keras.utils.set_random_seed(1)
        model = TimbreVAE.from_variant("skip", skip_dropout=dropout, **TINY)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(x, batch_size=4, epochs=8, verbose=0)
        errors[dropout] = float(np.mean((to_numpy(model.reconstruct(x, from_code=True)) - x) ** 2))
    assert errors[0.9] < errors[0.0]


@pytest.mark.backend
def test_save_load_gives_identical_outputs(trained, tmp_path):
    model, _, x = trained
    model.beta.assign(0.25)  # scheduled state travels with the weights
    path = tmp_path / "model.keras"
    model.save(path)
    model.beta.assign(1e-3)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, TimbreVAE)
    assert float(to_numpy(loaded.beta)) == 0.25
    for key, value in model(x).items():
        np.testing.assert_array_equal(to_numpy(loaded(x)[key]), to_numpy(value))
    # It is compiled (optimizer and its state restored) and keeps training.
    assert float(to_numpy(loaded.optimizer.learning_rate)) == pytest.approx(1e-2)
    assert int(to_numpy(loaded.optimizer.iterations)) == int(to_numpy(model.optimizer.iterations)) > 0
    before = [to_numpy(w).copy() for w in loaded.trainable_weights]
    loaded.fit(x, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(b, to_numpy(w)) for b, w in zip(before, loaded.trainable_weights))


_LOAD_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, keras
    import keras_timbre  # registers the classes
    model = keras.saving.load_model(sys.argv[1])
    x = np.load(sys.argv[2])
    out = model(x)
    np.savez(sys.argv[3], **{k: keras.ops.convert_to_numpy(v) for k, v in out.items()},
             skipless=keras.ops.convert_to_numpy(model.reconstruct(x, from_code=True)))
    """)


@pytest.mark.backend
@pytest.mark.slow
def test_model_saved_here_loads_under_the_other_backends(trained, tmp_path):
    model, _, x = trained
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(_LOAD_SCRIPT)
    here = keras.backend.backend()
    for other in sorted({"tensorflow", "jax", "torch"} - {here}):
        env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [
                sys.executable,
                str(script),
                str(tmp_path / "model.keras"),
                str(tmp_path / "x.npy"),
                str(tmp_path / f"{other}.npz"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{here} -> {other} load failed:\n{result.stderr[-3000:]}"
        got = np.load(tmp_path / f"{other}.npz")
        for key, value in model(x).items():
            np.testing.assert_allclose(got[key], to_numpy(value), rtol=1e-4, atol=1e-4, err_msg=f"{here}->{other}")
        np.testing.assert_allclose(
            got["skipless"], to_numpy(model.reconstruct(x, from_code=True)), rtol=1e-4, atol=1e-4
        )


@pytest.mark.backend
def test_mixed_bfloat16_trains_with_float32_weights_posterior_and_output(tmp_path):
    keras.utils.set_random_seed(0)
    model = TimbreVAE(dtype="mixed_bfloat16", **TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = _spectrograms()
    losses_by_epoch = model.fit(x, batch_size=4, epochs=10, verbose=0).history["loss"]
    assert losses_by_epoch[-1] < losses_by_epoch[0]
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}
    assert model.encoder.blocks[0].conv.compute_dtype == "bfloat16"
    out = model(x)
    assert {keras.backend.standardize_dtype(v.dtype) for v in out.values()} == {"float32"}
    model.save(tmp_path / "bf16.keras")
    loaded = keras.saving.load_model(tmp_path / "bf16.keras")
    assert loaded.decoder.blocks[0].upsample.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(to_numpy(loaded(x)["reconstruction"]), to_numpy(out["reconstruction"]))
