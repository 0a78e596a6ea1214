"""TimbreHyperModel: TimbreVAE as a KerasTuner HyperModel, with its search space declared in KerasTuner's terms.

The space is declared the way any KerasTuner model declares it, with
`hp.Float`, `hp.Choice`, `hp.Boolean` and `hp.Fixed` in `build`. To pin or
narrow an entry, declare it yourself in a `keras_tuner.HyperParameters` and
pass that to the tuner as `hyperparameters=`, with `tune_new_entries=True`
(KerasTuner's "Tailor the search space" guide): an entry you declared keeps
your declaration, the others are searched with the defaults below.

| name | default |
|---|---|
| beta | Float 1e-4 ... 1, log |
| grad_weight | Float 0 ... 2 |
| reconstruction | Choice mse, l1 |
| latent_dim | Choice 16, 32, 64, 128 |
| learning_rate | Float 1e-4 ... 3e-3, log |
| use_skips | Boolean |
| skip_dropout | Float 0 ... 0.75, only while use_skips is true |
| time_grad_weight | Fixed 0 |
| free_bits | Fixed 0 |

Example:
>>> import keras_tuner as kt
>>> pins = kt.HyperParameters()
>>> pins.Fixed("beta", 0.01)
0.01
>>> from keras_timbre.tuning.settings import varied
>>> space = search_space(pins)
>>> type(space.space[0]).__name__, sorted(varied(space))[:3]
('Fixed', ['grad_weight', 'latent_dim', 'learning_rate'])
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import keras_tuner as kt
import numpy as np

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.models.timbre_vae import TimbreVAE
from keras_timbre.models.training_defaults import default_optimizer
from keras_timbre.tuning.objective import DEFAULT_OBJECTIVE, LogSpectralDistance
from keras_timbre.tuning.settings import possible_values

# Every name is a TimbreVAE constructor argument except `learning_rate` (Adam).
HYPERPARAMETERS = (
    "beta",
    "grad_weight",
    "reconstruction",
    "latent_dim",
    "learning_rate",
    "use_skips",
    "skip_dropout",
    "time_grad_weight",
    "free_bits",
)


def declare_space(hp: kt.HyperParameters) -> dict[str, Any]:
    """Declares the search space in `hp` and returns this trial's values (None for an inactive one).

    An entry `hp` already holds (a pin or a narrowed range) keeps its
    declaration: KerasTuner returns the existing entry's value.
    """
    values = {
        "beta": hp.Float("beta", 1e-4, 1.0, sampling="log"),
        "grad_weight": hp.Float("grad_weight", 0.0, 2.0),
        "reconstruction": hp.Choice("reconstruction", ["mse", "l1"]),
        "latent_dim": hp.Choice("latent_dim", [16, 32, 64, 128]),
        "learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log"),
        "use_skips": hp.Boolean("use_skips", default=True),
        "time_grad_weight": hp.Fixed("time_grad_weight", 0.0),
        "free_bits": hp.Fixed("free_bits", 0.0),
    }
    # KerasTuner tells entries apart by name and condition: one the caller declared
    # for every trial (no condition) must stay that one, not gain a conditional twin.
    if any(entry.name == "skip_dropout" and not entry.conditions for entry in hp.space):
        values["skip_dropout"] = hp.Float("skip_dropout", 0.0, 0.75)
    else:
        with hp.conditional_scope("use_skips", [True]):
            values["skip_dropout"] = hp.Float("skip_dropout", 0.0, 0.75)
    return values


def default_space() -> kt.HyperParameters:
    """The search space with nothing pinned: every entry's default declaration."""
    hp = kt.HyperParameters()
    declare_space(hp)
    return hp


def search_space(hyperparameters: kt.HyperParameters | None = None) -> kt.HyperParameters:
    """The space a tuner given `hyperparameters` (and `tune_new_entries=True`) explores.

    Raises:
        ValueError: naming an unknown hyperparameter or a value TimbreVAE cannot take.
    """
    space = kt.HyperParameters() if hyperparameters is None else hyperparameters.copy()
    check_hyperparameters(space)
    declare_space(space)
    return space


def check_hyperparameters(hyperparameters: kt.HyperParameters) -> None:
    """Raises a ValueError naming an unknown entry, or a value of the wrong kind, in pins or ranges.

    KerasTuner itself refuses a minimum above its maximum and a log range from 0.

    Example:
    >>> pins = kt.HyperParameters()
    >>> _ = pins.Fixed("latent_dim", 12.5)
    >>> check_hyperparameters(pins)
    Traceback (most recent call last):
    ...
    ValueError: Hyperparameter latent_dim must be a positive integer, got 12.5
    """
    unknown = sorted({entry.name for entry in hyperparameters.space} - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"Unknown hyperparameter(s): {', '.join(unknown)}; known: {', '.join(HYPERPARAMETERS)}")
    defaults = {entry.name: entry for entry in default_space().space}
    for entry in hyperparameters.space:
        for value in possible_values(entry):
            _check_value(entry.name, value, defaults[entry.name])


def _check_value(name: str, value: Any, default: kt.engine.hyperparameters.HyperParameter) -> None:
    kinds = {type(v) for v in possible_values(default)}
    if bool in kinds:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"Hyperparameter {name} must be true or false, got {value!r}")
    elif str in kinds:
        if value not in default.values:
            raise ValueError(f"Hyperparameter {name} must be one of {', '.join(default.values)}, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"Hyperparameter {name} must be a number, got {value!r}")
    elif int in kinds and (not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"Hyperparameter {name} must be a positive integer, got {value!r}")
    elif not math.isfinite(value) or value < 0:
        raise ValueError(f"Hyperparameter {name} must be a finite number >= 0, got {value!r}")


def variant_of(hyperparameters: dict[str, Any]) -> str:
    """The paper's variant a set of hyperparameters belongs to (skips on/off, gradient loss on/off).

    Example:
    >>> variant_of({"use_skips": True, "grad_weight": 0.0})
    'skip'
    """
    skips = bool(hyperparameters.get("use_skips"))
    grad = float(hyperparameters.get("grad_weight") or 0.0) > 0
    return {(False, False): "baseline", (True, False): "skip", (False, True): "grad", (True, True): "skip+grad"}[
        (skips, grad)
    ]


class TimbreHyperModel(kt.HyperModel):
    """A KerasTuner HyperModel of `TimbreVAE`, reporting `val_lsd` (dB) every epoch.

    `build(hp)` returns a compiled, built model (TimbreVAE builds its weights
    in its constructor), so `tuner.get_best_models()` can load checkpoints
    into it. `fit` adds the `val_lsd` metric and stops a trial whose loss
    turns NaN, which KerasTuner then records as failed. The space is
    `declare_space`; pin or narrow entries through the tuner's `hyperparameters=`.

    Args:
        frontend: The feature config; fixes the model's input shape.
        stats: Feature statistics of the training split (to compute LSD in dB).
        filters: Encoder channels; TimbreVAE's default if None.
        seed: Seed of the sampling noise and skip dropout.

    Example:
    >>> pins = kt.HyperParameters()
    >>> _ = pins.Fixed("beta", 0.01)
    >>> hypermodel = TimbreHyperModel(FrontendConfig(n_mels=32, duration=1.0), stats)  # doctest: +SKIP
    >>> tuner = kt.RandomSearch(hypermodel, objective=objective(), max_trials=4,
    ...                         hyperparameters=pins, tune_new_entries=True)  # doctest: +SKIP
    >>> tuner.search(x_train, x_train, validation_data=(x_val, x_val), epochs=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        frontend: FrontendConfig,
        stats: FeatureStats,
        filters: Sequence[int] | None = None,
        seed: int = 0,
        name: str = "timbre_vae",
    ):
        super().__init__(name=name)
        if stats.n_mels != frontend.n_mels:
            raise ValueError(f"stats have {stats.n_mels} mel bins, the frontend has {frontend.n_mels}")
        self.frontend = frontend
        self.stats = stats
        self.filters = None if filters is None else tuple(int(f) for f in filters)
        self.seed = int(seed)

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        declare_space(hp)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = declare_space(hp)
        learning_rate = values.pop("learning_rate")
        if values["skip_dropout"] is None or not values["use_skips"]:  # unused without skips
            values["skip_dropout"] = 0.0
        if self.filters is not None:
            values["filters"] = self.filters
        # The same seed for every trial: a trial's result depends on its hyperparameters
        # only, not on the trials before it, and a resumed search matches an unbroken one.
        keras.utils.set_random_seed(self.seed)
        model = TimbreVAE(input_shape=(*self.frontend.feature_shape, 1), seed=self.seed, name=self.name, **values)
        model.compile(optimizer=default_optimizer(learning_rate))
        # Checkpoints hold the optimizer's slots too: create them so they load.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, validation_data=None, callbacks=None, **kwargs):
        if validation_data is None:
            raise kt.errors.FatalValueError(f"TimbreHyperModel needs validation_data to report {DEFAULT_OBJECTIVE}")
        held_out = validation_data[0] if isinstance(validation_data, (tuple, list)) else validation_data
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            LogSpectralDistance(held_out, self.stats, self.frontend.floor_db),
            *(callbacks or []),
        ]
        history = model.fit(*args, validation_data=validation_data, callbacks=callbacks, **kwargs)
        bad = [epoch for epoch, value in enumerate(history.history.get("loss", [])) if not np.isfinite(value)]
        if bad:
            # FailedTrialError: KerasTuner records the trial as failed, without retries, and goes on.
            epoch = bad[0] + 1 + kwargs.get("initial_epoch", 0)
            raise kt.errors.FailedTrialError(
                f"Trial diverged: the training loss became NaN or infinite in epoch {epoch} "
                f"(hyperparameters {hp.values})"
            )
        return history
