"""Run directory: metadata round trip, resume checks, clear errors."""

import json
import shutil

import numpy as np
import pytest

from keras_timbre.data import make_synthetic_dataset, read_notes

from keras_timbre.training import run as runs
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from tests.testing import TINY_FRONTEND

CONFIG = TINY_FRONTEND
STATS = FeatureStats(mean=np.linspace(-60, -20, 32), std=np.full(32, 10.0))


def make(path, variant="skip+grad", frontend=CONFIG):
    config = runs.run_config(variant, {"beta": 0.5}, "synthetic", {"val_fraction": 0.2}, seed=3)
    return runs.create_run(path, frontend, STATS, config)


def test_create_and_load_metadata(tmp_path):
    path = make(tmp_path / "run")
    for sub in runs.SUBDIRS:
        assert (path / sub).is_dir()
    run = runs.load_run(path, load_model=False)
    assert run.frontend == CONFIG
    np.testing.assert_allclose(run.stats.mean, STATS.mean)
    assert run.variant == "skip+grad"
    assert run.config["hyperparameters"] == {"beta": 0.5}
    assert run.config["seed"] == 3
    assert "keras" in run.config["versions"]
    assert json.loads((path / "config.json").read_text())["data"] == "synthetic"


def test_resume_same_variant_but_not_another(tmp_path):
    make(tmp_path / "run")
    make(tmp_path / "run")  # resuming is allowed
    with pytest.raises(ValueError, match="already holds a 'skip\\+grad' run"):
        make(tmp_path / "run", variant="baseline")
    with pytest.raises(ValueError, match="n_mels: run has 32, new training data has 64"):
        make(tmp_path / "run", frontend=FrontendConfig(n_mels=64, duration=1.0, n_fft=512, hop_length=250))


def test_load_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        runs.load_run(tmp_path / "nowhere")
    path = make(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="missing model.keras"):
        runs.load_run(path)
    (path / "stats.npz").unlink()
    with pytest.raises(FileNotFoundError, match="missing stats.npz"):
        runs.load_run(path, load_model=False)


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=10, seed=0, progress=False)


def run_on(path, data, fingerprint):
    config = runs.run_config("skip+grad", {}, str(data), {}, seed=0, data_fingerprint=fingerprint)
    runs.create_run(path, CONFIG, STATS, config)
    return runs.load_run(path, load_model=False)


def test_locate_data_finds_the_notes_from_anywhere_and_checks_them(tmp_path, notes_dir, monkeypatch):
    fingerprint = runs.notes_fingerprint(read_notes(notes_dir))
    run = run_on(tmp_path / "runs" / "a", notes_dir.resolve(), fingerprint)
    monkeypatch.chdir(tmp_path)  # another working directory
    assert runs.locate_data(run) == notes_dir.resolve()
    # A copy elsewhere holds the same notes; a changed copy does not.
    copy = tmp_path / "copy"
    shutil.copytree(notes_dir, copy)
    assert runs.locate_data(run, copy) == copy
    wav = sorted((copy / "audio").glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"copy holds other notes than run .* pass --data DIR"):
        runs.locate_data(run, copy)
    gone = run_on(tmp_path / "runs" / "b", tmp_path / "moved", fingerprint)
    with pytest.raises(FileNotFoundError, match=r"trained on notes in .*moved, which is not there.*pass --data DIR"):
        runs.locate_data(gone)


def test_locate_data_resolves_relative_paths_of_older_runs(tmp_path, notes_dir, monkeypatch):
    shutil.copytree(notes_dir, tmp_path / "synth")
    old = run_on(tmp_path / "old_run", "synth", None)  # as typed, no fingerprint
    monkeypatch.chdir(tmp_path / "old_run")
    assert runs.locate_data(old) == tmp_path / "synth"  # against the run directory's parent
    monkeypatch.chdir(tmp_path)
    elsewhere = run_on(tmp_path / "deep" / "run", "synth", None)
    assert runs.locate_data(elsewhere) == tmp_path / "synth"  # against the working directory
