"""train / evaluate / ablation on a tiny model and a few synthetic notes."""

import csv
import json

import keras
import numpy as np
import pytest

from keras_timbre.evaluation import ablation
from keras_timbre.evaluation import evaluator as evaluation
from keras_timbre.training import run as runs
from keras_timbre.training import trainer as training
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig

TINY_FRONTEND = FrontendConfig(n_mels=32, duration=1.0, n_fft=512, hop_length=250)
TINY_MODEL = {"filters": (4, 8), "latent_dim": 4}


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    # 20 notes over 10 families, 2 pitches each: one pitch per instrument is held out.
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)


def tiny_train(out, data, **kwargs):
    kwargs.setdefault("epochs", 2)
    return training.train(
        out,
        data=data,
        frontend=TINY_FRONTEND,
        model_kwargs=TINY_MODEL,
        batch_size=4,
        val_fraction=0.5,
        warmup_epochs=1,
        verbose=0,
        **kwargs,
    )


def history_rows(path):
    with open(path / runs.HISTORY_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, notes_dir):
    return tiny_train(tmp_path_factory.mktemp("runs") / "run", notes_dir, variant="skip+grad")


@pytest.mark.backend
def test_train_then_evaluate_writes_a_complete_run(trained_run):
    run = trained_run
    for name in ("model.keras", "frontend.json", "stats.npz", "config.json", "history.csv"):
        assert (run.path / name).is_file(), name
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
    assert metrics["skip_reliance"] == pytest.approx(metrics["decode_z_lsd_db"] - metrics["lsd_db"])
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
    in_memory = FeatureStats.from_features(training.load_split(notes_dir, TINY_FRONTEND, 0.5, 0)[1])
    np.testing.assert_allclose(run.stats.mean, in_memory.mean, atol=1e-3)
    assert (run.path / "figures" / "reconstruction_epoch_001.png").is_file()
    capsys.readouterr()
    tiny_train(tmp_path / "run2", notes_dir, cache=cache, epochs=1, variant="baseline")
    assert capsys.readouterr().out.count("reusing feature cache") == 2  # train and val


def test_a_finished_run_asked_for_more_epochs_continues_from_its_model(tmp_path, notes_dir):
    first = tiny_train(tmp_path / "run", notes_dir, epochs=1, variant="baseline")
    before = [np.array(w) for w in first.model.get_weights()]
    more = tiny_train(tmp_path / "run", notes_dir, epochs=2, variant="baseline")
    assert [int(r["epoch"]) for r in history_rows(more.path)] == [0, 1]
    reloaded = keras.saving.load_model(more.path / runs.MODEL_FILE)
    assert any(not np.allclose(a, b) for a, b in zip(before, reloaded.get_weights()))


def test_evaluation_held_out_pitches_were_not_trained_on(trained_run, notes_dir):
    records, _ = evaluation.held_out_notes(trained_run)
    train_records, _, val_records, _ = training.load_split(notes_dir, TINY_FRONTEND, 0.5, 0)
    assert [r.note_str for r in records] == [r.note_str for r in val_records]
    seen = {(r.instrument, r.pitch) for r in train_records}
    assert not any((r.instrument, r.pitch) in seen for r in records)


class StopAfter(keras.callbacks.Callback):
    """Simulates an interruption (Ctrl-C) once `epochs` epochs have finished."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_interrupted_training_resumes_without_losing_epochs(tmp_path, notes_dir):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        tiny_train(out, notes_dir, epochs=3, callbacks=[StopAfter(2)])
    assert [int(r["epoch"]) for r in history_rows(out)] == [0, 1]
    assert (out / "model.keras").is_file()  # the last finished epoch's model is on disk
    tiny_train(out, notes_dir, epochs=3)
    assert [int(r["epoch"]) for r in history_rows(out)] == [0, 1, 2]
    # A finished run is left alone by the same command.
    before = (out / "model.keras").stat().st_mtime_ns
    tiny_train(out, notes_dir, epochs=3)
    assert (out / "model.keras").stat().st_mtime_ns == before
    assert len(history_rows(out)) == 3
    with pytest.raises(ValueError, match="already holds a 'skip\\+grad' run; cannot resume it as 'baseline'"):
        tiny_train(out, notes_dir, epochs=3, variant="baseline")


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
