"""Hyperparameter search: the space, its checks, and tiny real searches on each backend."""

import csv
import json

import keras
import keras_tuner as kt
import numpy as np
import pytest

from keras_timbre.evaluation import evaluator as evaluation
from keras_timbre.models.inference import reconstruct_db
from keras_timbre.training import run as runs
from keras_timbre.tuning import hypermodel as space
from keras_timbre.tuning import search as tuning
from keras_timbre.tuning.best_run import BEST_RUN
from keras_timbre.tuning.objective import check_objective, objective
from keras_timbre.tuning.report import TRIALS_CSV, TRIALS_MD
from keras_timbre.tuning.settings import SEARCH_FILE, varied
from keras_timbre.tuning.tuners import PROJECT_NAME, TUNERS, make_tuner
from keras_timbre.cli import main
from keras_timbre.cli.search import hyperparameters_from_arguments
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.analysis.metrics import lsd_db
from tests.testing import TINY_FRONTEND

FRONTEND = TINY_FRONTEND
TINY = dict(frontend=FRONTEND, filters=(4, 8), epochs=1, batch_size=8, verbose=0)
Fixed, Float, Choice = (
    kt.engine.hyperparameters.Fixed,
    kt.engine.hyperparameters.Float,
    kt.engine.hyperparameters.Choice,
)


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    from keras_timbre.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("notes"), notes=32, seed=0, progress=False)


def _stats():
    return FeatureStats(mean=np.full(32, -40.0), std=np.full(32, 20.0))


def _hypermodel():
    return space.TimbreHyperModel(FRONTEND, _stats(), filters=(4, 8))


def _pins(**values) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def _entries(hp: kt.HyperParameters) -> dict:
    return {entry.name: entry for entry in hp.space}


# ------------------------------------------------------------------ the space


def test_declared_entries_keep_their_declaration_and_the_rest_take_the_defaults():
    pins = _pins(reconstruction="l1", use_skips=False)
    pins.Float("beta", 1e-3, 0.1, sampling="log")
    pins.Float("time_grad_weight", 0.0, 1.0)  # fixed at 0 by default, opened up
    entries = _entries(space.search_space(pins))
    assert isinstance(entries["beta"], Float) and (entries["beta"].min_value, entries["beta"].max_value) == (1e-3, 0.1)
    assert isinstance(entries["reconstruction"], Fixed) and entries["reconstruction"].value == "l1"
    assert isinstance(entries["time_grad_weight"], Float)
    assert isinstance(entries["free_bits"], Fixed) and entries["free_bits"].value == 0.0
    assert entries["latent_dim"].values == [16, 32, 64, 128] and entries["learning_rate"].sampling == "log"
    assert varied(space.search_space(pins)) >= {"beta", "time_grad_weight", "latent_dim"}
    assert not varied(space.search_space(pins)) & {"reconstruction", "use_skips", "free_bits"}
    assert len(pins.space) == 4  # the caller's object is not changed


def test_a_pinned_search_samples_only_the_pinned_values(tmp_path):
    pins = _pins(beta=0.02, reconstruction="l1", skip_dropout=0.3)
    tuner = make_tuner(_hypermodel(), tmp_path, "random", max_trials=30, hyperparameters=pins)
    # What tuner.search() does first: the hypermodel declares its space into the oracle's.
    declared = tuner.oracle.get_space()
    tuner.hypermodel.declare_hyperparameters(declared)
    tuner.oracle.update_space(declared)
    trials = [tuner.oracle.create_trial(f"worker{i}").hyperparameters.values for i in range(20)]
    assert {t["beta"] for t in trials} == {0.02} and {t["reconstruction"] for t in trials} == {"l1"}
    assert {t["skip_dropout"] for t in trials} == {0.3}  # pinned for every trial, with or without skips
    # ... while the entries left out are searched over their defaults.
    assert {t["latent_dim"] for t in trials} == {16, 32, 64, 128} and {t["use_skips"] for t in trials} == {False, True}
    assert len({t["grad_weight"] for t in trials}) == 20 and all(0.0 <= t["grad_weight"] <= 2.0 for t in trials)
    assert len(pins.space) == 3


def test_cli_options_map_to_keras_tuner_entries():
    hp = hyperparameters_from_arguments(
        [("beta", "0.01"), ("use_skips", "false"), ("latent_dim", "8")],
        [("learning_rate", "1e-4:1e-3"), ("grad_weight", "0:1"), ("reconstruction", "l1,mse")],
    )
    entries = _entries(hp)
    assert isinstance(entries["beta"], Fixed) and entries["beta"].value == 0.01
    assert entries["use_skips"].value is False and entries["latent_dim"].value == 8
    assert isinstance(entries["learning_rate"], Float) and entries["learning_rate"].sampling == "log"  # the default's
    assert entries["grad_weight"].sampling == "linear" and entries["grad_weight"].max_value == 1.0
    assert isinstance(entries["reconstruction"], Choice) and entries["reconstruction"].values == ["l1", "mse"]


@pytest.mark.parametrize(
    "fix, ranges, message",
    [
        ([("betta", "0.1")], [], "--fix betta=0.1: unknown hyperparameter; known: beta"),
        ([], [("beta", "1:0.1")], "--range beta=1:0.1: .*min_value 1.0 is greater than the max_value 0.1"),
        ([], [("beta", "0:0.1")], "--range beta=0:0.1: .*sampling='log'"),
        ([], [("latent_dim", "16:64")], "--range latent_dim=16:64: latent_dim is a choice"),
        ([("use_skips", "maybe")], [], "--fix use_skips=maybe: expected true or false"),
        ([("latent_dim", "12.5")], [], "--fix latent_dim=12.5: expected an integer"),
        ([("beta", "0.1")], [("beta", "0.01:1")], "--range beta=0.01:1: beta is already pinned or ranged"),
    ],
)
def test_bad_cli_space_is_one_clear_line(fix, ranges, message):
    with pytest.raises(ValueError, match=message):
        hyperparameters_from_arguments(fix, ranges)


@pytest.mark.parametrize(
    "pins, message",
    [
        (dict(betta=0.1), "Unknown hyperparameter.*betta.*known: beta"),
        (dict(reconstruction="huber"), "reconstruction must be one of mse, l1, got 'huber'"),
        (dict(use_skips="maybe"), "use_skips must be true or false"),
        (dict(latent_dim=12.5), "latent_dim must be a positive integer"),
        (dict(beta=-1.0), "beta must be a finite number >= 0"),
        (dict(grad_weight="a lot"), "grad_weight must be a number"),
    ],
)
def test_invalid_pins_are_a_clear_error(pins, message):
    with pytest.raises(ValueError, match=message):
        space.search_space(_pins(**pins))


def test_build_gives_a_built_compiled_model_with_the_pinned_values():
    hp = _pins(
        beta=0.02,
        grad_weight=1.5,
        reconstruction="l1",
        latent_dim=8,
        learning_rate=5e-4,
        use_skips=True,
        skip_dropout=0.25,
    )
    model = _hypermodel().build(hp)
    assert model.built and model.compiled  # get_best_models() loads checkpoints into it
    assert float(keras.ops.convert_to_numpy(model.beta)) == pytest.approx(0.02)
    assert float(keras.ops.convert_to_numpy(model.grad_weight)) == pytest.approx(1.5)
    assert (model.reconstruction, model.latent_dim, model.use_skips, model.skip_dropout) == ("l1", 8, True, 0.25)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert isinstance(_entries(hp)["beta"], Fixed)  # nothing left to sample


def test_skip_dropout_is_only_sampled_with_skips():
    hp = _pins(use_skips=False)
    model = _hypermodel().build(hp)
    assert not model.use_skips and model.skip_dropout == 0.0
    assert "skip_dropout" not in hp.values  # inactive: not part of this trial
    assert space.variant_of({"use_skips": False, "grad_weight": 0.3}) == "grad"


def test_objective_must_be_reported_and_independent_of_the_searched_space():
    hypermodel, searched = _hypermodel(), space.default_space()
    check_objective("val_lsd", hypermodel, searched)
    with pytest.raises(ValueError, match="No trial reports the objective 'val_accuracy'.*val_reconstruction_loss"):
        check_objective("val_accuracy", hypermodel, searched)
    with pytest.raises(ValueError, match="'val_loss' changes with beta, grad_weight.*reconstruction"):
        check_objective("val_loss", hypermodel, searched)
    with pytest.raises(ValueError, match="changes with reconstruction"):
        check_objective("val_reconstruction_loss", hypermodel, searched)
    check_objective("val_reconstruction_loss", hypermodel, space.search_space(_pins(reconstruction="mse")))
    assert objective().direction == "min"


# ------------------------------------------------------------ bad input, early


def test_missing_data_dir_fails_before_any_trial(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_notes"):
        tuning.run_search(tmp_path / "out", data=tmp_path / "no_such_notes", **TINY)
    assert not (tmp_path / "out" / PROJECT_NAME).exists()


def test_bad_space_fails_before_reading_data(tmp_path):
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        tuning.run_search(
            tmp_path / "out", data=tmp_path / "no_such_notes", hyperparameters=_pins(latent_dim=12.5), **TINY
        )


def test_unknown_objective_fails_before_any_trial(notes, tmp_path):
    with pytest.raises(ValueError, match="No trial reports the objective 'val_lsd_db'"):
        tuning.run_search(tmp_path / "out", data=notes, objective_name="val_lsd_db", **TINY)
    assert not (tmp_path / "out" / PROJECT_NAME).exists()
    assert not (tmp_path / "out" / SEARCH_FILE).exists()


def test_cli_rejects_bad_input_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["search", "--data", str(tmp_path / "missing"), "--out", out]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["search", "--fix", "nope=1", "--out", out]) == 2
    assert "--fix nope=1: unknown hyperparameter" in capsys.readouterr().err
    assert main(["search", "--range", "beta=1:0.1", "--out", out]) == 2
    assert (
        "--range beta=1:0.1: For HyperParameters.Float(name='beta'), min_value 1.0 is greater"
        in capsys.readouterr().err
    )
    assert main(["search", "--fix", "reconstruction=huber", "--out", out]) == 2
    assert "reconstruction must be one of mse, l1, got 'huber'" in capsys.readouterr().err
    assert main(["search", "--range", "latent_dim=16:64", "--out", out]) == 2
    assert "latent_dim is a choice" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["search", "--out", str(tmp_path / "a_file")]) == 2
    assert "a_file exists and is not a directory" in capsys.readouterr().err


# ------------------------------------------------------------- real searches


@pytest.mark.backend
def test_random_search_writes_table_figure_and_the_best_run(notes, tmp_path):
    out = tmp_path / "search"
    result = tuning.run_search(out, data=notes, max_trials=2, **TINY)
    assert result.role == "single" and result.trials_run == ["0", "1"]
    assert [row["status"] for row in result.rows] == ["COMPLETED"] * 2

    with open(out / TRIALS_CSV, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["trial"] for row in table] == ["0", "1"]
    assert set(space.HYPERPARAMETERS) <= set(table[0]) and "val_lsd" in table[0]
    scores = [float(row["val_lsd"]) for row in table]
    assert all(0 < s < 100 for s in scores)  # dB
    assert all(1e-4 <= float(row["beta"]) <= 1.0 for row in table)
    assert "| trial | status | beta |" in (out / TRIALS_MD).read_text()
    assert (out / "figures" / tuning.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"

    # The best run is the best trial's checkpoint: its held-out LSD is the table's minimum.
    assert result.best["val_lsd"] == pytest.approx(min(scores))
    run = runs.load_run(result.best_run)
    assert run.config["search"]["trial"] == result.best["trial"]
    assert run.config["hyperparameters"]["beta"] == pytest.approx(result.best["beta"])
    assert run.config["variant"] == space.variant_of(result.best)
    # `keras-timbre evaluate` picks the same held-out notes from the run's config.json.
    records, val_db = evaluation.held_out_notes(run)
    assert len(records) == run.config["split"]["val_notes"]
    reconstructed = reconstruct_db(run.model, val_db, run.stats)
    assert lsd_db(val_db, reconstructed, floor_db=FRONTEND.floor_db) == pytest.approx(min(scores), rel=1e-4)
    assert (result.best_run / runs.HISTORY_FILE).is_file()


class _InterruptSecondTrial(keras.callbacks.Callback):
    """Stands in for Ctrl-C (or a lost machine) during the second trial."""

    trials_started = 0

    def on_train_begin(self, logs=None):
        type(self).trials_started += 1
        if type(self).trials_started == 2:
            raise KeyboardInterrupt


def test_interrupted_search_resumes_where_it_stopped(notes, tmp_path):
    out = tmp_path / "search"
    _InterruptSecondTrial.trials_started = 0
    with pytest.raises(KeyboardInterrupt):
        tuning.run_search(out, data=notes, max_trials=2, callbacks=[_InterruptSecondTrial()], **TINY)
    assert (out / PROJECT_NAME / "trial_0" / "checkpoint.weights.h5").is_file()
    assert not (out / TRIALS_CSV).exists()

    # Rerunning continues: trial 0 is kept and only the interrupted trial 1 is run.
    result = tuning.run_search(out, data=notes, max_trials=2, **TINY)
    assert result.trials_run == ["1"]
    assert [row["status"] for row in result.rows] == ["COMPLETED"] * 2
    # ... and ends where an unbroken search with the same seed ends: same values, same scores.
    unbroken = tuning.run_search(tmp_path / "unbroken", data=notes, max_trials=2, **TINY)
    for resumed_row, unbroken_row in zip(result.rows, unbroken.rows):
        assert resumed_row["beta"] == unbroken_row["beta"]
        assert resumed_row["val_lsd"] == pytest.approx(unbroken_row["val_lsd"], rel=1e-4)
    # A finished search reruns nothing; a larger max_trials extends it; a different one is refused.
    assert tuning.run_search(out, data=notes, max_trials=2, **TINY).trials_run == []
    assert tuning.run_search(out, data=notes, max_trials=3, **TINY).trials_run == ["2"]
    with pytest.raises(
        ValueError, match="holds a different search \\(space.beta: \\{.*'Float'.*\\} before, .*'value': 0.1.* now"
    ):
        tuning.run_search(out, data=notes, max_trials=3, hyperparameters=_pins(beta=0.1), **TINY)


class _DivergeWithLatent8(keras.callbacks.Callback):
    """Makes the trial with latent_dim 8 diverge: its loss is NaN from the first step."""

    def on_train_begin(self, logs=None):
        if self.model.latent_dim == 8:
            for variable in self.model.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, "float32"))


def test_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(notes, tmp_path):
    pins = _pins(beta=1e-3, grad_weight=0.5, reconstruction="mse", learning_rate=1e-3, use_skips=False)
    pins.Choice("latent_dim", [4, 8])
    result = tuning.run_search(
        tmp_path / "search",
        data=notes,
        tuner="bayesian",
        max_trials=2,
        hyperparameters=pins,
        callbacks=[_DivergeWithLatent8()],
        **TINY,
    )
    by_latent = {row["latent_dim"]: row for row in result.rows}
    assert sorted(by_latent) == [4, 8]
    assert by_latent[8]["status"] == "FAILED" and "diverged" in by_latent[8]["error"]
    assert by_latent[8]["val_lsd"] is None
    assert by_latent[4]["status"] == "COMPLETED" and np.isfinite(by_latent[4]["val_lsd"])
    assert result.best["latent_dim"] == 4 and runs.load_run(result.best_run).model.latent_dim == 4
    assert "## Failed trials" in (tmp_path / "search" / TRIALS_MD).read_text()
    # The figure is drawn with the failed trial in it (a red cross at the top).
    assert (tmp_path / "search" / "figures" / tuning.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"


def test_cli_hyperband_search(notes, tmp_path, capsys):
    out = tmp_path / "search"
    code = main(
        [
            "search",
            "--data",
            str(notes),
            "--tuner",
            "hyperband",
            "--max-trials",
            "2",
            "--epochs",
            "3",
            "--n-mels",
            "32",
            "--duration",
            "1.0",
            "--filters",
            "4,8",
            "--batch-size",
            "8",
            "--fix",
            "use_skips=true",
            "--range",
            "beta=1e-3:1e-2",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "single: ran trials 0, 1" in capsys.readouterr().out
    with open(out / TRIALS_CSV, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2
    assert all(row["tuner/epochs"] == "1" for row in table)  # Hyperband's first, shortest round
    assert all(1e-3 <= float(row["beta"]) <= 1e-2 and row["use_skips"] == "True" for row in table)
    settings = json.loads((out / SEARCH_FILE).read_text())
    assert settings["tuner"] == "hyperband" and settings["space"]["use_skips"]["value"] is True
    assert {k: settings["space"]["beta"][k] for k in ("type", "min_value", "max_value", "sampling")} == {
        "type": "Float",
        "min_value": 1e-3,
        "max_value": 1e-2,
        "sampling": "log",
    }
    assert runs.load_run(out / BEST_RUN, load_model=False).config["variant"] in ("skip", "skip+grad")


@pytest.mark.parametrize("script", ["quick_random.py", "bayesian.py", "hyperband.py"])
def test_ready_made_scripts_declare_valid_searches(script):
    import runpy
    from pathlib import Path

    namespace = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tuning" / script), run_name="tuning_script")
    beta = _entries(space.search_space(namespace["HYPERPARAMETERS"]))["beta"]
    assert isinstance(beta, Float) and beta.sampling == "log" and beta.max_value < 1.0  # narrowed
    assert namespace["SETTINGS"]["tuner"] in TUNERS
    assert namespace["SETTINGS"]["objective_name"] == "val_lsd"
