"""β warm-up and the NaN guard, on every backend."""

import keras
import numpy as np
import pytest

from keras_timbre.training.callbacks import BetaWarmup
from keras_timbre.training.callbacks import NaNGuard
from keras_timbre.training.callbacks import NonFiniteLossError
from keras_timbre.training.callbacks import beta_schedule
from keras_timbre.models.timbre_vae import TimbreVAE
from tests.testing import to_numpy

TINY = {"input_shape": (16, 32, 1), "latent_dim": 4, "filters": (4, 8)}


def _data(n=8):
    return np.random.default_rng(0).normal(size=(n,) + TINY["input_shape"]).astype("float32")


def test_linear_and_cyclical_schedules():
    assert [beta_schedule(e, 2.0, 4) for e in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    cyclical = [beta_schedule(e, 1.0, 0, "cyclical", cycle_epochs=4, ramp_fraction=0.5) for e in range(8)]
    assert cyclical == [1.0] * 8  # warmup_epochs=0 disables any schedule
    cyclical = [beta_schedule(e, 1.0, 3, "cyclical", cycle_epochs=4, ramp_fraction=0.5) for e in range(8)]
    assert cyclical == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="schedule must be one of"):
        BetaWarmup(schedule="cosine")


@pytest.mark.backend
def test_warmup_sets_the_beta_that_the_train_step_uses():
    keras.utils.set_random_seed(0)
    model = TimbreVAE.from_variant("baseline", beta=0.5, **TINY)
    model.compile()
    history = model.fit(_data(), batch_size=4, epochs=3, verbose=0, callbacks=[BetaWarmup(warmup_epochs=2)]).history
    assert history["beta"] == [0.0, 0.25, 0.5]
    assert float(to_numpy(model.beta)) == 0.5
    # The loss each epoch is recon + beta_epoch * KL: the scheduled value reached the
    # compiled train step (on JAX too, where variables live in the trainer's state).
    expected = np.array(history["reconstruction_loss"]) + np.array(history["beta"]) * np.array(history["kl_loss"])
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-4)
    # The target defaults to the model's configured beta, not the scheduled value.
    assert model.get_config()["beta"] == 0.5


class _PoisonAt(keras.callbacks.Callback):
    """Makes the loss NaN from epoch `epoch` on (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.beta.assign(float("nan"))


@pytest.mark.backend
def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = TimbreVAE.from_variant("baseline", **TINY)
    model.compile()
    path = tmp_path / "last_good.keras"
    guard = NaNGuard(path)
    x = _data()
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 3, batch 1.*end of epoch 2"):
        model.fit(x, batch_size=4, epochs=5, verbose=0, callbacks=[_PoisonAt(2), guard])
    assert guard.last_good_epoch == 1
    good = keras.saving.load_model(path)
    assert all(np.all(np.isfinite(to_numpy(w))) for w in good.weights)
    assert np.all(np.isfinite(to_numpy(good(x)["reconstruction"])))


def test_nan_guard_without_a_path_raises_before_any_epoch_end_callback(tmp_path):
    model = TimbreVAE.from_variant("baseline", **TINY)
    model.compile()
    checkpoint = tmp_path / "checkpoint.keras"
    callbacks = [_PoisonAt(1), NaNGuard(), keras.callbacks.ModelCheckpoint(str(checkpoint))]
    with pytest.raises(NonFiniteLossError, match="checkpoints already on disk were left untouched"):
        model.fit(_data(), batch_size=4, epochs=3, verbose=0, callbacks=callbacks)
    # ModelCheckpoint saved after epoch 1 and never saw the NaN epoch.
    saved = keras.saving.load_model(checkpoint)
    assert all(np.all(np.isfinite(to_numpy(w))) for w in saved.weights)
