"""HierarchicalTimbreVAE and its layers: shapes, serialisation, the loss falling, synthesis, every backend."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_timbre.models import hierarchy
from keras_timbre.models.hierarchy import mel_centres
from keras_timbre.models.hierarchical_vae import HierarchicalTimbreVAE
from keras_timbre.models.hierarchy import HarmonicEnvelope
from keras_timbre.models.hierarchy import LatentGroup
from keras_timbre.models.hierarchy import PitchConditioning
from keras_timbre.models.hierarchy import RelativeSpectrum
from keras_timbre.models.layers import pointwise_conv
from keras_timbre.models.losses import LOG_VAR_RANGE
from keras_timbre.models.variants import build_model
from tests.testing import LayerTestCase
from tests.testing import assert_outputs_close
from tests.testing import to_numpy

pytestmark = pytest.mark.backend
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (32, 32, 1)
TINY = dict(input_shape=SHAPE, latent_dim=4, filters=(4, 8, 8), pitch_range=(40, 80), velocities=(50, 100))


def _notes(n=8, seed=0):
    """Harmonic-comb spectrograms whose rows follow the pitch, so pitch is learnable from the input."""
    rng = np.random.default_rng(seed)
    pitch = rng.integers(40, 80, n)
    x = rng.normal(0, 0.1, (n,) + SHAPE).astype("float32")
    for i, p in enumerate(pitch):
        x[i, (p - 40) % SHAPE[0] :: 8, :, 0] += 2.0
    return {"log_mel": x, "pitch": pitch.astype("float32"), "velocity": np.full(n, 100.0, "float32")}


class TestLayers(LayerTestCase):
    def test_pitch_conditioning(self):
        self.run_layer_test(
            PitchConditioning,
            {"n_mels": 32, "fmin": 20.0, "fmax": 8000.0},
            [np.array([60.0, 72.0], "float32"), np.array([100.0, 50.0], "float32")],
            expected_output_shape=(2, 32, 1, 4),
            expected_num_trainable_weights=0,
            run_training_check=False,
        )

    def test_relative_spectrum(self):
        self.run_layer_test(
            RelativeSpectrum,
            {"n_mels": 32},
            [np.ones((2, 32, 8, 1), "float32"), np.array([60.0, 72.0], "float32")],
            expected_output_shape=(2, 32, 8, 2),
            expected_num_trainable_weights=0,
            run_training_check=False,
        )

    def test_harmonic_envelope(self):
        self.run_layer_test(
            HarmonicEnvelope,
            {"n_mels": 32, "harmonics": 8, "units": 6},
            [np.random.default_rng(0).normal(size=(2, 5)).astype("float32"), np.array([60.0, 72.0], "float32")],
            expected_output_shape=(2, 32, 1, 1),
            expected_num_trainable_weights=4,
        )

    def test_latent_group(self):
        h, feature = np.ones((2, 8, 8, 4), "float32"), np.ones((2, 8, 8, 3), "float32")
        for kernel_size in (3, 1):  # 1: the convolutions run as matmuls
            self.run_layer_test(
                LatentGroup,
                {"latent_channels": 2, "kernel_size": kernel_size, "seed": 0},
                [h, feature],
                expected_output_shape=((2, 8, 8, 4), (2,)),
                expected_num_trainable_weights=6,
                run_precision_check=False,
            )


def test_comb_marks_the_harmonics_of_the_pitch():
    layer = PitchConditioning(n_mels=128)
    centres = layer.centre_frequencies()
    comb = to_numpy(layer(np.array([57.0]), np.array([100.0])))[0, :, 0, 0]  # A3, 220 Hz
    for harmonic in (1, 2, 3):
        nearest = np.argmin(np.abs(centres - 220.0 * harmonic))
        assert comb[nearest] > 0.5, f"harmonic {harmonic}"
    between = np.argmin(np.abs(centres - 330.0))  # halfway between harmonics 1 and 2
    assert comb[between] < 0.05
    assert to_numpy(layer(np.array([57.0]), np.array([100.0])))[0, 0, 0, 2] == 1.0  # below f0


def test_the_envelope_puts_each_partials_level_where_that_partial_falls():
    layer = HarmonicEnvelope(n_mels=128, harmonics=8)
    layer(np.zeros((1, 3), "float32"), np.array([57.0]))
    levels = np.array([0.0, 1.5, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0], "float32")  # partial 2 loud, partial 4 quiet
    layer.levels.kernel.assign(np.zeros(layer.levels.kernel.shape))
    layer.levels.bias.assign(2.0 * np.arctanh(levels / 2.0))  # what 2 tanh(x / 2) maps onto `levels`
    centres = mel_centres(128, 20.0, 8000.0)
    for pitch in (57.0, 64.0):  # A3 and E4: the same levels, at other bins
        envelope = to_numpy(layer(np.zeros((1, 3), "float32"), np.array([pitch])))[0, :, 0, 0]
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        assert envelope[np.argmin(np.abs(centres - 2 * f0))] > 0.6  # 1.5 times the kernel at the nearest bin
        assert envelope[np.argmin(np.abs(centres - 4 * f0))] < -0.4
        assert abs(envelope[np.argmin(np.abs(centres - 2.5 * f0))]) < 0.1  # between partials: nothing
        assert abs(envelope[np.argmin(np.abs(centres - 6000.0))]) < 1e-3  # above the 8th partial: nothing


def test_relative_spectrum_puts_the_harmonics_of_every_pitch_on_the_same_rows():
    comb = PitchConditioning(n_mels=128)
    pitches = np.array([48.0, 60.0, 67.0], "float32")
    spectra = to_numpy(comb(pitches, np.full(3, 100.0)))[..., 0]  # (3, 128, 1): harmonic combs as spectra
    relative = to_numpy(RelativeSpectrum(n_mels=128)(np.repeat(spectra, 4, axis=2)[..., None], pitches))
    defined = relative[..., 0, 1].min(axis=0) > 0
    rows = relative[:, defined, 0, 0]
    assert np.corrcoef(rows)[0, 1:].min() > 0.8  # the same pattern whatever the pitch (0.82-0.96)
    assert np.corrcoef(spectra[:, :, 0])[0, 1:].max() < 0.7  # on the mel axis they differ (0.38-0.66)
    assert relative[..., 1].min() == 0.0  # some grid points fall outside the mel range


def test_a_1x1_group_computes_what_its_convolutions_would():
    rng = np.random.default_rng(0)
    h, feature = (rng.normal(size=(2, 8, 8, c)).astype("float32") for c in (4, 3))
    group = LatentGroup(2, kernel_size=1, seed=0)
    group(h, feature)
    for conv in (group.prior_conv, group.posterior_conv, group.merge):
        conv.kernel.assign(rng.normal(0.0, 3.0, conv.kernel.shape))  # log-variances beyond the clip range too
        conv.bias.assign(rng.normal(size=conv.bias.shape))
    mean, log_var = hierarchy._statistics(group.posterior_conv, [h, feature])
    direct = to_numpy(group.posterior_conv(np.concatenate([h, feature], axis=-1)))
    assert_outputs_close(mean, direct[..., :2])
    assert_outputs_close(log_var, np.clip(direct[..., 2:], *LOG_VAR_RANGE))
    assert np.abs(direct[..., 2:]).max() > LOG_VAR_RANGE[1]
    z = h[..., :2]
    assert_outputs_close(pointwise_conv(group.merge.kernel, group.merge.bias, [z], [2]), group.merge(z))


def test_latent_group_without_feature_is_the_prior():
    group = LatentGroup(2, seed=0)
    h = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    out, kl = group(h)
    again, _ = group(h)
    assert_outputs_close(out, again)  # temperature 0: the prior mean, deterministic
    assert float(np.abs(to_numpy(kl)).max()) == 0.0
    warm, _ = group(h, temperature=1.0)
    assert np.abs(to_numpy(warm) - to_numpy(out)).max() > 1e-4


def test_latent_group_prior_mask_takes_a_prior_draw_at_each_examples_temperature():
    group = LatentGroup(2, seed=0)
    rng = np.random.default_rng(0)
    h, feature = (rng.normal(size=(3, 8, 8, c)).astype("float32") for c in (4, 5))
    posterior, _ = group(h, feature)  # the first call builds the posterior for the feature's channels
    prior_mean, _ = group(h)
    mask = np.array([1.0, 1.0, 0.0], "float32")
    cold, _ = group(h, feature, prior_mask=mask)  # no temperature: the prior mean
    assert_outputs_close(to_numpy(cold)[:2], to_numpy(prior_mean)[:2])
    assert_outputs_close(to_numpy(cold)[2], to_numpy(posterior)[2])
    drawn = to_numpy(group(h, feature, prior_mask=mask, prior_temperature=np.array([0.0, 1.0, 1.0]))[0])
    assert_outputs_close(drawn[0], to_numpy(prior_mean)[0])  # temperature 0: the mean
    assert np.abs(drawn[1] - to_numpy(prior_mean)[1]).max() > 1e-3  # temperature 1: a draw around it
    assert_outputs_close(drawn[2], to_numpy(posterior)[2])  # unmasked: the posterior


def test_decode_refuses_temperatures_the_model_was_not_trained_to_render():
    model = HierarchicalTimbreVAE(**TINY)
    code = np.zeros((1, 4), "float32")
    assert model.max_temperature == 1.0
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a number from 0 to 1"):
            model.decode(code, 60, 100, temperature=bad)
    legacy = HierarchicalTimbreVAE.from_config({**model.get_config(), "prior_temperature": 0.0})
    assert legacy.max_temperature == 0.0
    with pytest.raises(ValueError, match="from 0 to 0 "):
        legacy.decode(code, 60, 100, temperature=0.5)


def test_a_config_without_the_new_settings_loads_as_it_was_trained():
    model = HierarchicalTimbreVAE(**TINY)
    config = model.get_config()
    new_settings = ("prior_temperature", "group_kernel_size", "feature_width", "code_time_pool")
    assert tuple(config[key] for key in new_settings) == (1.0, 1, 0.5, 2)
    assert tuple(model.features.filters) == tuple(f // 2 for f in TINY["filters"][:-1])
    for key in new_settings:
        config.pop(key)
    old = HierarchicalTimbreVAE.from_config(config)
    assert (old.prior_temperature, old.group_kernel_size, old.feature_width, old.code_time_pool) == (0.0, 3, 1.0, 1)
    assert tuple(old.groups[0].prior_conv.kernel.shape[:2]) == (3, 3)
    assert tuple(old.features.filters) == tuple(TINY["filters"][:-1])


def test_the_ceiling_bounds_every_rendering_and_travels_with_the_model(tmp_path):
    from keras_timbre.audio.stats import FeatureStats

    stats = FeatureStats(mean=np.linspace(-40.0, 0.0, SHAPE[0]), std=np.full(SHAPE[0], 10.0), peak_db=20.0)
    settings = HierarchicalTimbreVAE.settings_from_stats(stats)
    model = HierarchicalTimbreVAE(**TINY, **settings)
    wild = np.random.default_rng(0).normal(0.0, 300.0, (4, 4)).astype("float32")  # codes no note has
    unbounded = HierarchicalTimbreVAE(**TINY)
    unbounded.set_weights(model.get_weights())
    raw = stats.denormalize(to_numpy(unbounded.decode(wild, [40, 50, 60, 80], [100] * 4, temperature=1.0))[..., 0])
    db = stats.denormalize(to_numpy(model.decode(wild, [40, 50, 60, 80], [100] * 4, temperature=1.0))[..., 0])
    assert raw.max() > 21.0  # without it, these codes render louder than the peak + 1 dB
    assert db.max() <= 21.0 + 1e-3 and not stats.beyond_range(db, margin_db=1.001).any()
    quiet = raw < 15.0  # 6 dB below the ceiling the bound changes nothing that matters
    np.testing.assert_allclose(db[quiet], raw[quiet], atol=0.05)
    model.save(tmp_path / "bounded.keras")
    loaded = keras.saving.load_model(tmp_path / "bounded.keras")
    assert loaded.output_ceiling == model.output_ceiling and loaded.output_softness == model.output_softness
    assert HierarchicalTimbreVAE.settings_from_stats(FeatureStats(stats.mean, stats.std)) == {}  # no peak: unbounded
    legacy = {k: v for k, v in model.get_config().items() if k not in ("output_ceiling", "output_softness")}
    assert HierarchicalTimbreVAE.from_config(legacy).output_ceiling is None
    with pytest.raises(ValueError, match="one per mel bin"):
        HierarchicalTimbreVAE(**TINY, output_ceiling=[1.0, 2.0], output_softness=[0.1, 0.1])


def test_the_code_reads_the_relative_spectrum_pooled_in_time():
    notes = _notes(2)
    pooled = HierarchicalTimbreVAE(**TINY)
    assert pooled.encoder.blocks[0].conv.kernel.shape[2] == 2  # the relative spectrum and where it is defined
    # Two frames averaged into one: a note whose frames alternate around their mean has the mean's code.
    steady = {**notes, "log_mel": np.repeat(notes["log_mel"][:, :, ::2], 2, axis=2)}
    wobbly = {**steady, "log_mel": steady["log_mel"] + np.tile([0.5, -0.5], TINY["input_shape"][1] // 2)[:, None]}
    np.testing.assert_allclose(to_numpy(pooled.encode(steady)[0]), to_numpy(pooled.encode(wobbly)[0]), atol=1e-4)
    unpooled = HierarchicalTimbreVAE(**TINY, code_time_pool=1)
    assert np.abs(to_numpy(unpooled.encode(steady)[0]) - to_numpy(unpooled.encode(wobbly)[0])).max() > 1e-3
    with pytest.raises(ValueError, match="multiple of code_time_pool"):
        HierarchicalTimbreVAE(**{**TINY, "code_time_pool": 3})


def test_loss_falls_and_every_term_is_tracked():
    keras.utils.set_random_seed(0)
    model = HierarchicalTimbreVAE(**TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(_notes(16), batch_size=8, epochs=15, verbose=0).history
    assert {"group_0_kl", "group_1_kl", "kl_loss", "mel_grad_loss", "reconstruction_loss"} <= set(history)
    assert history["reconstruction_loss"][-1] < 0.7 * history["reconstruction_loss"][0]


def test_synthesize_is_deterministic_at_temperature_zero_and_follows_pitch():
    model = HierarchicalTimbreVAE(**TINY)
    code = np.zeros((2, 4), "float32")
    a = to_numpy(model.synthesize(code, [50, 70], [100, 100]))
    assert a.shape == (2,) + SHAPE
    assert_outputs_close(a, model.synthesize(code, [50, 70], [100, 100]))
    assert np.abs(a[0] - a[1]).max() > 1e-4  # the pitch changes the output
    warm = to_numpy(model.synthesize(code, [50, 70], [100, 100], temperature=1.0))
    assert np.abs(warm - a).max() > 1e-4
    assert to_numpy(model.sample(3, 60, 100, seed=1)).shape == (3,) + SHAPE
    notes = _notes(2)
    moved = to_numpy(model.transfer(notes, [60, 60]))
    code_of_notes = to_numpy(model.encode(notes)[0])
    assert_outputs_close(moved, model.synthesize(code_of_notes, [60, 60], [100, 100]))


def test_reconstruct_without_groups_is_synthesis_from_the_code():
    model = HierarchicalTimbreVAE(**TINY)
    notes = _notes(2)
    code = to_numpy(model.encode(notes)[0])
    assert_outputs_close(model.reconstruct(notes, from_code=True), model.synthesize(code, notes["pitch"], 100))


def test_bare_log_mel_is_refused_with_the_keys_it_needs():
    model = HierarchicalTimbreVAE(**TINY)
    with pytest.raises(ValueError, match="log_mel.*pitch.*velocity"):
        model(np.zeros((1,) + SHAPE, "float32"))
    with pytest.raises(ValueError, match="pitch and velocity"):
        model.decode(np.zeros((1, 4), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pitch_range": (80, 40)}, "pitch_range"),
        ({"velocities": (0,)}, "velocities"),
        ({"prior_dropout": 1.0}, "prior_dropout"),
        ({"group_kl_scale": -1.0}, "group_kl_scale"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalTimbreVAE(**{**TINY, **kwargs})


def test_pitch_adversary_trains_its_classifier():
    keras.utils.set_random_seed(0)
    model = HierarchicalTimbreVAE(**TINY, pitch_adversary_weight=1.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = to_numpy(model.pitch_adversary.kernel).copy()
    history = model.fit(_notes(16), batch_size=8, epochs=3, verbose=0).history
    assert "pitch_adversary_loss" in history
    assert np.abs(to_numpy(model.pitch_adversary.kernel) - before).max() > 0


def test_keras_file_round_trip(tmp_path):
    model = build_model("hierarchical", **TINY)
    notes = _notes(3)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, HierarchicalTimbreVAE) and loaded.pitch_range == (40, 80)
    assert_outputs_close(loaded(notes)["reconstruction"], model(notes)["reconstruction"])
    assert_outputs_close(
        loaded.synthesize(np.ones((1, 4), "float32"), 60, 100), model.synthesize(np.ones((1, 4)), 60, 100)
    )


_LOAD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    import keras_timbre  # noqa: F401
    model = keras.saving.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    notes = {k: data[k] for k in ("log_mel", "pitch", "velocity")}
    np.save(sys.argv[3], keras.ops.convert_to_numpy(model.synthesize(model.encode(notes)[0], notes["pitch"], 100)))
    """)


@pytest.mark.slow
def test_model_saved_here_synthesises_the_same_under_the_other_backends(tmp_path):
    model = HierarchicalTimbreVAE(**TINY)
    notes = _notes(2)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "notes.npz", **notes)
    want = to_numpy(model.synthesize(model.encode(notes)[0], notes["pitch"], 100))
    (tmp_path / "load.py").write_text(_LOAD_SCRIPT)
    for other in sorted({"tensorflow", "jax", "torch"} - {keras.backend.backend()}):
        env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = tmp_path / f"{other}.npy"
        args = [sys.executable, str(tmp_path / "load.py"), str(tmp_path / "m.keras"), str(tmp_path / "notes.npz")]
        result = subprocess.run(args + [str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-4, err_msg=other)
