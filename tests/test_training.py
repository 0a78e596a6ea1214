"""train / evaluate / ablation on a tiny model and a few synthetic notes."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest

from keras_timbre.evaluation import ablation
from keras_timbre.evaluation import evaluator as evaluation
from keras_timbre.training import run as runs
from keras_timbre.training import trainer as training
from keras_timbre.data import make_synthetic_dataset, read_notes
from keras_timbre.data.split import load_log_mel, load_split
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from tests.testing import TINY_FRONTEND

TINY_FRONTEND = TINY_FRONTEND
TINY_MODEL = {"filters": (4, 8), "latent_dim": 4}


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    # 20 notes over 10 families, 2 pitches each: one pitch per instrument is held out.
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)


def tiny_train(out, data, **kwargs):
    settings = dict(
        epochs=2, frontend=TINY_FRONTEND, model_kwargs=TINY_MODEL, batch_size=4, val_fraction=0.5, warmup_epochs=1
    )
    return training.train(out, data=data, verbose=0, **{**settings, **kwargs})


def history_rows(path):
    with open(path / runs.HISTORY_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, notes_dir):
    return tiny_train(tmp_path_factory.mktemp("runs") / "run", notes_dir, variant="skip+grad")


@pytest.mark.backend
def test_train_then_evaluate_writes_a_complete_run(trained_run):
    run = trained_run
    for name in ("model.keras", "frontend.json", "stats.npz", "config.json", "history.csv", "code_prior.npz"):
        assert (run.path / name).is_file(), name
    assert not run.code_prior.is_standard and run.code_prior.dim == 4  # fit to the training codes
    assert (run.path / "figures" / "reconstruction_epoch_002.png").is_file()
    assert (run.path / "figures" / "training_curves.png").is_file()
    assert any((run.path / "logs").rglob("events.out.tfevents*"))
    rows = history_rows(run.path)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert "val_loss" in rows[0] and np.isfinite(float(rows[-1]["loss"]))
    assert run.config["split"]["val_notes"] == 10 and run.config["split"]["train_notes"] == 10

    metrics = evaluation.evaluate(run.path)
    assert set(evaluation.METRIC_KEYS) <= set(metrics)
    assert metrics["notes"] == 10
    assert metrics["lsd_db"] > 0 and metrics["mel_grad_error"] > 0
    assert 0 <= metrics["active_units"] <= 4
    assert metrics["skip_reliance"] == pytest.approx(metrics["decode_code_lsd_db"] - metrics["lsd_db"])
    on_disk = json.loads((run.path / "metrics.json").read_text())
    assert on_disk["lsd_db"] == pytest.approx(metrics["lsd_db"])
    assert list((run.path / "audio").glob("*_reconstruction.wav"))
    assert (run.path / "figures" / "evaluation_reconstructions.png").is_file()


def test_train_streams_from_a_feature_cache_and_reuses_it(tmp_path, notes_dir, capsys):
    cache = tmp_path / "cache"
    run = tiny_train(tmp_path / "run", notes_dir, cache=cache, epochs=1)
    assert (cache / "train" / "manifest.json").is_file() and (cache / "val" / "manifest.json").is_file()
    assert [int(r["epoch"]) for r in history_rows(run.path)] == [0]
    assert np.isfinite(float(history_rows(run.path)[0]["val_loss"]))
    assert run.config["feature_cache"] == str(cache) and run.config["split"]["train_notes"] == 10
    # The statistics are the training cache's, so streamed and in-memory features agree.
    in_memory = FeatureStats.from_features(load_split(notes_dir, TINY_FRONTEND, 0.5, 0)[1])
    np.testing.assert_allclose(run.stats.mean, in_memory.mean, atol=1e-3)
    assert (run.path / "figures" / "reconstruction_epoch_001.png").is_file()
    capsys.readouterr()
    tiny_train(tmp_path / "run2", notes_dir, cache=cache, epochs=1, variant="baseline")
    assert capsys.readouterr().out.count("reusing feature cache") == 2  # train and val


def losses(path):
    return np.array([[float(r["loss"]), float(r["val_loss"])] for r in history_rows(path)])


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory, notes_dir):
    """3 epochs in one go: what every resumed run must reproduce."""
    return tiny_train(tmp_path_factory.mktemp("runs") / "unbroken", notes_dir, epochs=3, variant="skip+grad")


@pytest.mark.backend
def test_a_finished_run_asked_for_more_epochs_continues_from_its_model(tmp_path, notes_dir, unbroken_run):
    tiny_train(tmp_path / "run", notes_dir, epochs=1, variant="skip+grad")
    more = tiny_train(tmp_path / "run", notes_dir, epochs=3, variant="skip+grad")
    assert [int(r["epoch"]) for r in history_rows(more.path)] == [0, 1, 2]
    # Continued, not started again: epochs 2 and 3 are those of the unbroken run, weights too.
    np.testing.assert_allclose(losses(more.path), losses(unbroken_run.path), rtol=1e-4)
    reloaded = keras.saving.load_model(more.path / runs.MODEL_FILE)
    for continued, unbroken in zip(reloaded.get_weights(), unbroken_run.model.get_weights()):
        np.testing.assert_allclose(continued, unbroken, rtol=1e-3, atol=1e-5)


def test_a_finished_run_without_its_code_prior_gets_it_back_without_training(tmp_path, trained_run, notes_dir):
    out = tmp_path / "run"
    shutil.copytree(trained_run.path, out)
    (out / runs.CODE_PRIOR_FILE).unlink()
    assert runs.load_run(out).code_prior.is_standard  # a run without one draws from N(0, I)
    before = (out / runs.MODEL_FILE).stat().st_mtime_ns
    tiny_train(out, notes_dir, variant="skip+grad")
    assert (out / runs.MODEL_FILE).stat().st_mtime_ns == before  # nothing trained
    restored, original = runs.load_run(out).code_prior, trained_run.code_prior
    np.testing.assert_allclose(restored.means, original.means, atol=1e-4)  # the same codes, the same fit
    np.testing.assert_allclose(restored.weights, original.weights, atol=1e-4)


def test_the_code_prior_reads_a_bounded_number_of_notes(tmp_path, trained_run, notes_dir, monkeypatch, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained_run.path, out)
    run = runs.load_run(out)
    notes = read_notes(notes_dir)  # 20
    assert len(training.fit_code_prior(run, notes).weights) == 10  # min(10 components, 20 codes // 2)
    monkeypatch.setattr(training, "CODE_PRIOR_NOTES", 4)
    assert len(training.fit_code_prior(run, notes).weights) == 2  # 4 evenly spaced notes read
    assert "fit to 4 training codes" in capsys.readouterr().out
    assert len(runs.load_run(out).code_prior.weights) == 2  # the file written last


def test_the_model_trains_on_the_training_split_only(trained_run, notes_dir):
    records, _ = evaluation.held_out_notes(trained_run)
    everything = read_notes(notes_dir)
    held_out = {(r.instrument, r.pitch) for r in records}
    training_notes = [r for r in everything if (r.instrument, r.pitch) not in held_out]
    assert len(records) == 10 and len(training_notes) == 10  # every velocity of a held-out pitch is held out
    assert {r.note_str for r in records} | {r.note_str for r in training_notes} == {r.note_str for r in everything}
    # The statistics the run normalised with are those of the training notes alone, not of all notes.
    train_db, _ = load_log_mel(training_notes, TINY_FRONTEND)
    np.testing.assert_allclose(trained_run.stats.mean, FeatureStats.from_features(train_db).mean, atol=1e-3)
    all_db, _ = load_log_mel(everything, TINY_FRONTEND)
    assert not np.allclose(trained_run.stats.mean, FeatureStats.from_features(all_db).mean, atol=1e-2)


class StopAfter(keras.callbacks.Callback):
    """Simulates an interruption (Ctrl-C) once `epochs` epochs have finished."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.mark.backend
def test_an_interrupted_run_resumes_as_the_unbroken_run(tmp_path, notes_dir, unbroken_run):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        tiny_train(out, notes_dir, epochs=3, callbacks=[StopAfter(1)])
    assert [int(r["epoch"]) for r in history_rows(out)] == [0]
    assert (out / "model.keras").is_file()  # the last finished epoch's model is on disk
    tiny_train(out, notes_dir, epochs=3)
    assert [int(r["epoch"]) for r in history_rows(out)] == [0, 1, 2]
    # Weights, optimizer, beta schedule, sampling/dropout RNG and data order all carried over.
    np.testing.assert_allclose(losses(out), losses(unbroken_run.path), rtol=1e-4)
    # A finished run is left alone by the same command.
    before = (out / "model.keras").stat().st_mtime_ns
    tiny_train(out, notes_dir, epochs=3)
    assert (out / "model.keras").stat().st_mtime_ns == before
    assert len(history_rows(out)) == 3
    with pytest.raises(ValueError, match="already holds a 'skip\\+grad' run; cannot resume it as 'baseline'"):
        tiny_train(out, notes_dir, epochs=3, variant="baseline")


def test_resuming_with_other_data_or_settings_is_refused_until_restart(tmp_path, notes_dir):
    out = tmp_path / "run"
    tiny_train(out, notes_dir, epochs=1, variant="baseline")
    before = {name: (out / name).read_bytes() for name in ("stats.npz", "config.json", "history.csv")}
    other_notes = make_synthetic_dataset(tmp_path / "other", notes=20, seed=1, progress=False)
    with pytest.raises(ValueError, match=r"cannot be resumed: data_fingerprint '\w+' -> '\w+'.*--restart"):
        tiny_train(out, other_notes, epochs=2, variant="baseline")
    with pytest.raises(ValueError, match=r"hyperparameters.learning_rate 0.001 -> 0.01"):
        tiny_train(out, notes_dir, epochs=2, variant="baseline", learning_rate=0.01)
    with pytest.raises(ValueError, match=r"split.val_fraction 0.5 -> 0.25"):
        tiny_train(out, notes_dir, epochs=2, variant="baseline", val_fraction=0.25)
    with pytest.raises(ValueError, match=r"split.split_seed 0 -> 1"):
        tiny_train(out, notes_dir, epochs=2, variant="baseline", split_seed=1)
    # Refused before anything was written: the run is as it was.
    assert {name: (out / name).read_bytes() for name in before} == before
    # The same notes copied elsewhere are the same data: resuming from the copy is allowed.
    copy = tmp_path / "copy"
    shutil.copytree(notes_dir, copy)
    tiny_train(out, copy, epochs=2, variant="baseline")
    assert len(history_rows(out)) == 2
    restarted = tiny_train(out, other_notes, epochs=1, variant="baseline", restart=True)
    assert len(history_rows(out)) == 1 and restarted.config["data"] == str(other_notes.resolve())
    assert not (out / "figures" / "reconstruction_epoch_002.png").exists()


def test_the_split_follows_the_seed_unless_given(tmp_path, notes_dir):
    many_pitches = make_synthetic_dataset(tmp_path / "notes", notes=40, seed=0, progress=False)
    held_out = {}
    for seed, split_seed in ((0, None), (1, None), (1, 0)):
        run = tiny_train(tmp_path / f"run{seed}{split_seed}", many_pitches, epochs=1, seed=seed, split_seed=split_seed)
        assert run.config["split"]["split_seed"] == (seed if split_seed is None else split_seed)
        held_out[seed, split_seed] = {r.note_str for r in evaluation.held_out_notes(run)[0]}
    assert held_out[0, None] != held_out[1, None]
    assert held_out[0, None] == held_out[1, 0]


def test_bad_arguments_are_clear(tmp_path, notes_dir):
    with pytest.raises(ValueError, match="Unknown variant 'unet'"):
        tiny_train(tmp_path / "a", notes_dir, variant="unet")
    with pytest.raises(FileNotFoundError, match="Data path .*nowhere does not exist"):
        tiny_train(tmp_path / "b", tmp_path / "nowhere")
    existing = runs.run_config("skip+grad", {}, str(notes_dir), {}, seed=0)
    runs.create_run(tmp_path / "c", TINY_FRONTEND, FeatureStats.from_features(np.zeros((1, 32, 64))), existing)
    other = FrontendConfig(n_mels=16, duration=1.0, n_fft=512, hop_length=250)
    with pytest.raises(ValueError, match="n_mels: run has 32, requested frontend has 16"):
        training.train(tmp_path / "c", data=notes_dir, frontend=other, epochs=2, verbose=0)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_precision_is_the_models_policy_and_recorded_in_the_run(tmp_path, notes_dir, precision):
    run = tiny_train(tmp_path / "run", notes_dir, epochs=1, precision=precision)
    assert run.model.dtype_policy.name == precision
    assert run.model.decoder.blocks[0].upsample.compute_dtype == precision.replace("mixed_", "")
    assert json.loads((tmp_path / "run" / runs.CONFIG_FILE).read_text())["hyperparameters"]["precision"] == precision
    reloaded = runs.load_run(tmp_path / "run")
    assert reloaded.model.dtype_policy.name == precision
    other = "float32" if precision == "mixed_bfloat16" else "mixed_bfloat16"
    with pytest.raises(ValueError, match="precision"):  # resuming in another precision is refused
        tiny_train(tmp_path / "run", notes_dir, epochs=2, precision=other)


@pytest.mark.parametrize("cpu_has_bf16", [True, False])
def test_resolve_precision(monkeypatch, cpu_has_bf16):
    from keras_timbre.models import training_defaults as timbre_vae

    # Both CPUs are simulated, so the test means the same on a machine with AVX512-BF16 and on one without.
    monkeypatch.setattr(timbre_vae, "_cpu_has_bf16", lambda: cpu_has_bf16)
    monkeypatch.setattr(timbre_vae, "_has_accelerator", lambda: False)
    assert timbre_vae.resolve_precision("float32") == "float32"
    native = cpu_has_bf16 and keras.backend.backend() in timbre_vae.BF16_BACKENDS
    assert timbre_vae.resolve_precision("auto") == ("mixed_bfloat16" if native else "float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        timbre_vae.resolve_precision("float16")


def test_ablation_table_and_media(tmp_path, notes_dir):
    table = ablation.run_ablation(
        tmp_path / "abl",
        data=notes_dir,
        seeds=[3],
        variants=["baseline", "skip+grad"],
        epochs=1,
        frontend=TINY_FRONTEND,
        model_kwargs=TINY_MODEL,
        batch_size=4,
        val_fraction=0.5,
        verbose=0,
    )
    assert "| baseline |" in table and "| skip+grad |" in table and "One seed (3)" in table
    results = json.loads((tmp_path / "abl" / "results.json").read_text())
    assert set(results["summary"]) == {"baseline", "skip+grad"}
    # Both variants were scored on the same held-out notes.
    assert results["runs"]["baseline"]["3"]["notes"] == results["runs"]["skip+grad"]["3"]["notes"] == 10
    # Without skips, decode(z) is the reconstruction: no reliance on skips.
    assert results["runs"]["baseline"]["3"]["skip_reliance"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "abl" / "figures" / "ablation_grid.png").is_file()
    assert len(list((tmp_path / "abl" / "audio").glob("*.wav"))) == 2 * 3  # 2 notes x (input + 2 variants)
    # Rerunning reuses the finished runs instead of training again.
    before = (tmp_path / "abl" / "baseline_seed3" / "model.keras").stat().st_mtime_ns
    ablation.run_ablation(
        tmp_path / "abl",
        data=notes_dir,
        seeds=[3],
        variants=["baseline"],
        epochs=1,
        frontend=TINY_FRONTEND,
        model_kwargs=TINY_MODEL,
        batch_size=4,
        val_fraction=0.5,
        verbose=0,
    )
    assert (tmp_path / "abl" / "baseline_seed3" / "model.keras").stat().st_mtime_ns == before


def test_ablation_summary_over_seeds():
    results = {
        "baseline": {0: {"lsd_db": 8.0, "active_units": 10}, 1: {"lsd_db": 6.0, "active_units": 12}},
        "skip+grad": {0: {"lsd_db": 2.0, "active_units": 20}, 1: {"lsd_db": 2.0, "active_units": 20}},
    }
    summary = ablation.summarize(results)
    assert summary["baseline"]["lsd_db"] == {"mean": 7.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}
    assert summary["skip+grad"]["lsd_db"]["std"] == 0.0
    table = ablation.markdown_table(summary, [0, 1])
    assert "| baseline | 7.000 ± 1.414 |" in table
    assert "11.0 ± 1.4" in table and "–" in table  # missing metrics are dashes


@pytest.mark.parametrize("streamed", [False, True])
def test_shown_notes_are_the_held_out_notes_with_their_own_labels(tmp_path, notes_dir, streamed):
    # The projector's notes come from the validation set already read: each spectrogram must
    # belong to the record it is labelled with.
    from keras_timbre.data.split import split_data
    from keras_timbre.training.data import training_data

    split = split_data(notes_dir, 0.5, 0)
    train_records, val_records = split.train, split.val
    cache = tmp_path / "cache" if streamed else None
    data = training_data(train_records, val_records, TINY_FRONTEND, batch_size=4, seed=0, cache=cache)
    assert {r.note_str for r in data.shown_records} == {r.note_str for r in val_records}
    expected, kept = load_log_mel(data.shown_records, TINY_FRONTEND)
    assert [r.note_str for r in kept] == [r.note_str for r in data.shown_records]
    np.testing.assert_allclose(data.shown_db, expected, atol=1e-3)
    assert data.counts == {"train_notes": len(train_records), "val_notes": len(val_records)}
