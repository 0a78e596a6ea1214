"""Presets: a finished run shipped inside the package (keras_timbre/pretrained/NAME/), loaded by name, read-only."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import keras_timbre
from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.cli import main
from keras_timbre.models.inference import decode_db
from keras_timbre.training import presets
from keras_timbre.training import run as runs
from testing import train_tiny_hierarchical

FRONTEND = FrontendConfig(n_mels=32, duration=0.5, n_fft=512, hop_length=250)  # features (32, 32)
REPO = Path(__file__).resolve().parents[1]
GL = ["--vocoder", "griffin-lim", "--griffin-lim-iters", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny finished hierarchical run (3 epochs)."""
    return train_tiny_hierarchical(tmp_path_factory, FRONTEND).path


@pytest.fixture(scope="module")
def notes_dir(run_dir):
    return Path(runs.load_run(run_dir, load_model=False).config["data"])


@pytest.fixture
def root(tmp_path, monkeypatch):
    """The package's preset folder, moved to a temporary one for the test."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    monkeypatch.setattr(atomic, "PRESETS_ROOT", folder)
    return folder


@pytest.fixture
def shipped(run_dir, root):
    return presets.save_preset(run_dir, "tiny")


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def error_line(capsys, command):
    """The command's one error line (after what earlier commands of the test reported)."""
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"keras-timbre {command}: error:"), err
    return err


# ---------------------------------------------------------------------------- shipping and loading


@pytest.mark.backend
def test_a_shipped_preset_loads_by_name_and_renders_as_its_run(run_dir, root, shipped):
    assert shipped == root / "tiny"
    assert sorted(p.name for p in shipped.iterdir()) == sorted([*runs.PRESET_FILES, presets.README_FILE])
    assert runs.preset_names() == ["tiny"]
    preset, run = keras_timbre.load_run("tiny"), runs.load_run(run_dir)
    np.testing.assert_array_equal(preset.code_prior.sample(3, seed=0), run.code_prior.sample(3, seed=0))
    assert preset.path == shipped and runs.is_preset(preset.path) and not runs.is_preset(run_dir)
    assert preset.config["preset"] == {"name": "tiny", "source": str(run_dir.resolve()), "epochs": 3}
    assert preset.config["data"] == run.config["data"] and preset.config["data_fingerprint"]
    assert preset.frontend == run.frontend
    np.testing.assert_array_equal(preset.stats.mean, run.stats.mean)
    code = np.random.default_rng(0).normal(size=(2, run.model.latent_dim)).astype("float32")
    pitch, velocity = run.model.pitch_range[0], run.model.default_velocity
    np.testing.assert_allclose(
        decode_db(preset.model, code, preset.stats, pitch, velocity),
        decode_db(run.model, code, run.stats, pitch, velocity),
        rtol=0,
        atol=1e-5,
    )


def test_the_preset_model_has_no_optimizer_state(run_dir, shipped):
    def weight_groups(path):
        import io

        import h5py

        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            return set(h5.keys())

    assert "optimizer" in weight_groups(run_dir / runs.MODEL_FILE)
    assert "optimizer" not in weight_groups(shipped / runs.MODEL_FILE)
    assert (shipped / runs.MODEL_FILE).stat().st_size < (run_dir / runs.MODEL_FILE).stat().st_size
    assert getattr(runs.load_run("tiny").model, "optimizer", None) is None  # loaded uncompiled


def test_an_existing_directory_wins_over_a_preset_of_its_name(run_dir, shipped, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(run_dir, work / "tiny")
    monkeypatch.chdir(work)
    assert runs.load_run("tiny", load_model=False).path == Path("tiny")
    assert runs.run_directory(str(shipped)) == shipped  # a preset's folder by its path


def test_an_unknown_name_is_refused_listing_the_presets(shipped, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"Run directory nope does not exist.*\(presets: tiny\)"):
        runs.load_run("nope")
    assert main(["synthesize", "nope", "--random", "--pitch", "60", "--out", str(tmp_path / "n.wav")]) == 2
    assert "(presets: tiny)" in error_line(capsys, "synthesize")


def test_a_folder_without_a_whole_preset_is_not_listed(root):
    (root / "half").mkdir()
    (root / "half" / runs.CONFIG_FILE).write_text("{}")
    (root / "Upper").mkdir()
    assert runs.preset_names() == []
    with pytest.raises(FileNotFoundError, match="none installed"):
        runs.load_run("half")


def test_the_commands_help_names_the_presets(shipped, capsys):
    with pytest.raises(SystemExit):
        main(["synthesize", "--help"])
    assert "shipped with the package (tiny)" in " ".join(capsys.readouterr().out.split())


def test_ship_refuses_to_overwrite_a_preset_unless_asked(run_dir, shipped, capsys):
    before = snapshot(shipped)
    with pytest.raises(ValueError, match="preset tiny already exists.*--overwrite"):
        presets.save_preset(run_dir, "tiny")
    assert main(["ship-preset", str(run_dir), "--name", "tiny"]) == 2
    assert "--overwrite" in error_line(capsys, "ship-preset")
    assert snapshot(shipped) == before
    assert main(["ship-preset", str(run_dir), "--name", "tiny", "--overwrite"]) == 0
    assert snapshot(shipped) != before and runs.preset_names() == ["tiny"]
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["tiny"]  # no temporaries left


def test_ship_refuses_a_run_that_is_not_finished_or_not_a_run(run_dir, root, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    config = json.loads((unfinished / runs.CONFIG_FILE).read_text())
    config["hyperparameters"]["epochs"] = 5
    (unfinished / runs.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="is not finished: 3 of 5 epochs"):
        presets.save_preset(unfinished, "tiny")
    training = tmp_path / "training"
    shutil.copytree(run_dir, training)
    (training / runs.LOCK_FILE).write_text(f"{os.getpid()}\n")  # a live process holds it
    with pytest.raises(ValueError, match=f"is being trained \\(PID {os.getpid()}\\)"):
        presets.save_preset(training, "tiny")
    assert main(["ship-preset", str(tmp_path / "missing"), "--name", "tiny"]) == 2
    assert "missing does not exist" in error_line(capsys, "ship-preset")
    with pytest.raises(ValueError, match="preset name"):
        presets.save_preset(run_dir, "../escape")
    older = tmp_path / "older"
    shutil.copytree(run_dir, older)
    (older / runs.CODE_PRIOR_FILE).unlink()  # trained before 0.7
    with pytest.raises(ValueError, match="has no code_prior.npz .*run the same `keras-timbre train` command"):
        presets.save_preset(older, "tiny")
    assert list(root.iterdir()) == []


def test_a_preset_is_not_shipped_again_as_a_run(shipped):
    with pytest.raises(ValueError, match="is already a preset"):
        presets.save_preset(shipped, "again")


# ---------------------------------------------------------------------------- read-only


def test_commands_given_a_preset_write_only_where_out_says(shipped, tmp_path, capsys):
    before = snapshot(shipped)
    out = tmp_path / "note.wav"
    pitch = str(runs.load_run("tiny").model.pitch_range[0])
    assert main(["synthesize", "tiny", "--random", "--pitch", pitch, "--out", str(out)] + GL) == 0
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert main(["evaluate", "tiny"] + GL[:2]) == 2  # its default, RUN/metrics.json, is inside the package
    assert "pass --out FILE.json" in error_line(capsys, "evaluate")
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "tiny", "--out", str(metrics)] + GL[:2]) == 0
    assert json.loads(metrics.read_text())["run"] == str(shipped)
    inside = shipped / "inside.wav"
    assert main(["synthesize", "tiny", "--random", "--pitch", pitch, "--out", str(inside)] + GL) == 1
    assert "inside the shipped preset tiny, which is read-only" in error_line(capsys, "synthesize")
    assert snapshot(shipped) == before


def test_the_library_evaluate_of_a_preset_name_writes_nothing_in_it_or_beside(shipped, tmp_path, monkeypatch):
    from keras_timbre.evaluation.evaluator import evaluate

    monkeypatch.chdir(tmp_path)
    before = snapshot(shipped)
    for kwargs in ({}, {"out": tmp_path / "m.json"}):  # the default out, or figures and audio, go into the run
        with pytest.raises(ValueError, match="preset shipped with the package.*give out=FILE.json"):
            evaluate("tiny", **kwargs)
    assert snapshot(shipped) == before and not (tmp_path / "tiny").exists()


def test_explore_of_a_preset_finds_its_notes_or_names_data(shipped, notes_dir, tmp_path, capsys, monkeypatch):
    page = tmp_path / "explore.html"
    argv = ["explore", "tiny", "--out", str(page), "--max-notes", "4", "--morph-notes", "0"] + GL
    assert main(argv) == 0 and page.stat().st_size > 0
    moved = tmp_path / "moved"
    shutil.copytree(shipped, moved / "tiny")
    config = json.loads((moved / "tiny" / runs.CONFIG_FILE).read_text())
    (moved / "tiny" / runs.CONFIG_FILE).write_text(json.dumps({**config, "data": str(tmp_path / "gone")}))
    monkeypatch.setattr(atomic, "PRESETS_ROOT", moved)  # the preset, its notes no longer where it says
    assert main(argv + ["--overwrite"]) == 2
    assert "pass --data DIR" in error_line(capsys, "explore")
    assert main(argv + ["--overwrite", "--data", str(notes_dir)]) == 0


def test_nothing_writes_inside_a_preset_but_shipping(shipped, root):
    for write in (
        lambda: atomic.write_text(shipped / "x.txt", "x"),
        lambda: atomic.write_json(shipped / "figures" / "a.json", {}),
        lambda: atomic.atomic_directory(shipped / "morph").__enter__(),
    ):
        with pytest.raises(atomic.OutputWriteError, match="inside the shipped preset tiny"):
            write()
    atomic.write_text(root / "vocoder.md", "the root's own files are not a preset's")
    with pytest.raises(ValueError, match="inside the package's shipped presets"):
        runs.check_run_directory(shipped)  # train --out
    with pytest.raises(ValueError, match="inside the package's shipped presets"):
        runs.check_run_directory(root / "new")


# ---------------------------------------------------------------------------- packaging


def test_the_wheel_and_git_carry_a_presets_files(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    files = [*runs.PRESET_FILES, presets.README_FILE]
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    tree = tmp_path / "keras_timbre"
    for name in files:
        (tree / "pretrained" / "nsynth-mini").mkdir(parents=True, exist_ok=True)
        (tree / "pretrained" / "nsynth-mini" / name).write_text("")
    matched = {p.name for pattern in patterns["keras_timbre"] for p in tree.glob(pattern)}
    assert matched >= set(files)
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [f"keras_timbre/pretrained/nsynth-mini/{name}" for name in files]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == []


@pytest.mark.slow
def test_export_of_a_preset_records_its_folder_as_the_source(shipped, tmp_path):
    import keras

    from keras_timbre.export import export_run, read_export_metadata

    if keras.backend.backend() != "tensorflow":
        pytest.skip("exported under the TensorFlow backend")
    before = snapshot(shipped)
    path = export_run("tiny", tmp_path / "exported" / "1", griffin_lim_iters=2)
    assert read_export_metadata(path)["source"] == str(shipped.resolve())
    assert snapshot(shipped) == before


@pytest.mark.backend
def test_the_shipped_nsynth_mini_preset_renders_notes_at_the_asked_pitch():
    from keras_timbre.models.hierarchy import mel_centres

    run = runs.load_run("nsynth-mini")  # the real one, in the package
    assert run.variant == "hierarchical" and run.model.max_temperature == 1.0
    assert not run.code_prior.is_standard and run.code_prior.dim == run.model.latent_dim
    codes = run.code_prior.sample(16, seed=0)  # what synthesize --random draws
    centres = mel_centres(run.frontend.n_mels, run.frontend.fmin, run.frontend.fmax)
    for pitch in (48, 72):
        db = decode_db(run.model, codes, run.stats, pitch, 100, temperature=1.0)
        assert db.shape == (16,) + run.frontend.feature_shape
        assert run.stats.beyond_range(db).sum() <= 4  # refused draws stay rare (0.3: all)
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        lowest_loud = [centres[np.flatnonzero(s.mean(axis=1) > s.mean(axis=1).max() - 20)[0]] for s in db]
        assert np.median(np.abs(np.log2(np.array(lowest_loud) / f0))) < 0.25  # the fundamental where asked
