"""Nothing lost: --restart, --overwrite and failed writes never touch what the package did not create.

Each destructive operation of the package (docs/destructive-operations.md) is
tried here against a path it did not create, and must leave it as it was.
"""

import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from keras_timbre import atomic
from keras_timbre.cli import main
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.outputs import OutputPathError, check_output_file, check_output_folder
from keras_timbre.training import run as runs
from keras_timbre.training.resume import clear_run
from tests.test_training import tiny_train
from tests.testing import TINY_TRAIN_ARGS


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restart_into_a_data_folder_deletes_nothing(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "data", notes=20, seed=0, progress=False)
    for name in ("figures", "logs", "checkpoints"):  # names a run also writes
        (data / name).mkdir()
        (data / name / "mine.txt").write_text(name)
    (data / "config.json").write_text('{"mine": true}')
    before = snapshot(data)
    argv = ["train", "--restart", "--data", str(data), "--out", str(data), "--epochs", "1"]
    assert main(argv) == 2
    assert "overlap" in capsys.readouterr().err
    assert snapshot(data) == before
    # A folder that is neither the data nor a run is refused too, before a lock file is written into it.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "audio").mkdir()
    (other / "audio" / "take1.wav").write_bytes(b"RIFF")
    argv = ["train", "--restart", "--data", str(data), "--out", str(other), "--epochs", "1"]
    assert main(argv) == 2
    assert "is not a keras-timbre run directory and holds other files (audio)" in capsys.readouterr().err
    assert sorted(p.name for p in other.rglob("*")) == ["audio", "take1.wav"]


def test_restart_checks_the_new_data_before_removing_anything(tmp_path, notes_dir, capsys):
    out = tmp_path / "run"
    tiny_train(out, notes_dir, epochs=1, variant="baseline")
    before = snapshot(out)
    empty = tmp_path / "no-notes"
    empty.mkdir()
    with pytest.raises(ValueError, match="No notes"):
        tiny_train(out, empty, epochs=1, variant="baseline", restart=True)
    bad_model = {"filters": (4, 8), "latent_dim": 4, "reconstruction": "l7"}
    with pytest.raises(ValueError, match="reconstruction must be one of"):  # a model that cannot be built
        tiny_train(out, notes_dir, epochs=1, variant="baseline", restart=True, model_kwargs=bad_model)
    assert snapshot(out) == before


def test_restart_removes_only_the_runs_own_files(tmp_path, notes_dir):
    out = tmp_path / "run"
    tiny_train(out, notes_dir, epochs=2, variant="baseline")
    mine = [out / "notes.txt", out / "audio" / "my_take.flac", out / "figures" / "keep" / "sketch.txt"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    epoch_two = out / "figures" / "reconstruction_epoch_002.png"
    assert epoch_two.is_file()
    tiny_train(out, notes_dir, epochs=1, variant="baseline", restart=True)
    assert all(path.read_text() == "mine" for path in mine)
    assert not epoch_two.exists() and (out / runs.MODEL_FILE).is_file()


def test_clear_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "history.csv").write_text("epoch\n0\n")
    with pytest.raises(ValueError, match="not a keras-timbre run directory"):
        clear_run(tmp_path)
    assert (tmp_path / "history.csv").is_file()


def test_train_out_a_file_is_one_line(tmp_path, notes_dir, capsys):
    target = tmp_path / "run.txt"
    target.write_text("mine")
    assert main(["train", "--data", str(notes_dir), "--out", str(target), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"keras-timbre train: error: --out {target} is a file, not a run directory; " "give a directory"
    ]
    assert target.read_text() == "mine"


def test_one_rule_for_output_files(tmp_path):
    existing = tmp_path / "x.wav"
    existing.write_bytes(b"mine")
    with pytest.raises(OutputPathError, match="already exists; pass --overwrite"):
        check_output_file(existing)
    assert check_output_file(existing, overwrite=True) == existing
    with pytest.raises(OutputPathError, match=r"must end in \.html"):
        check_output_file(existing, overwrite=True, suffixes=(".html",))
    link = tmp_path / "link.wav"
    link.symlink_to(existing)
    with pytest.raises(OutputPathError, match="not a regular file"):
        check_output_file(link, overwrite=True)
    assert existing.read_bytes() == b"mine"


def test_one_rule_for_output_folders(tmp_path):
    earlier = tmp_path / "morph"
    earlier.mkdir()
    (earlier / "step_00.wav").write_bytes(b"")
    is_step = lambda p: p.name.startswith("step_")  # noqa: E731
    with pytest.raises(OutputPathError, match="holds an earlier output; pass --overwrite"):
        check_output_folder(earlier, is_step)
    assert check_output_folder(earlier, is_step, overwrite=True) == earlier
    (earlier / "mine.txt").write_text("mine")
    with pytest.raises(OutputPathError, match=r"holds files this command did not write \(mine.txt\)"):
        check_output_folder(earlier, is_step, overwrite=True)


def test_make_dataset_refuses_a_used_folder_and_replaces_only_its_own(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["make-dataset", "synthetic", "--out", str(out), "--notes", "3"]) == 0
    first = snapshot(out)
    assert main(["make-dataset", "synthetic", "--out", str(out), "--notes", "4", "--seed", "1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and snapshot(out) == first
    assert main(["make-dataset", "synthetic", "--out", str(out), "--notes", "4", "--seed", "1", "--overwrite"]) == 0
    assert len(list((out / "audio").iterdir())) == 4
    (out / "readme.txt").write_text("mine")
    assert main(["make-dataset", "synthetic", "--out", str(out), "--notes", "3", "--overwrite"]) == 2
    assert "did not write (readme.txt)" in capsys.readouterr().err


def _limit_file_size(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def test_a_failed_write_keeps_the_old_file_and_names_the_path(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    script = f"from keras_timbre import atomic; atomic.write_text({str(target)!r}, 'x' * 100_000)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=_limit_file_size(10_000)
    )
    assert result.returncode == 1
    assert f"OutputWriteError: cannot write {target}: File too large" in result.stderr
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert str(atomic.OutputWriteError(target, OSError(28, "No space left on device"))).endswith(
        "metrics.json: No space left on device"
    )


def _cli(args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, "-m", "keras_timbre.cli", *args], capture_output=True, text=True, env=env, **kwargs
    )


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_is_one_line(tmp_path, notes_dir):
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(notes_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--val-fraction",
        "0.5",
        *TINY_TRAIN_ARGS,
    ]
    # 40 KB: the notes are read, the metadata written, and the first checkpoint (larger) fails.
    result = _cli(args, preexec_fn=_limit_file_size(40_000))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("keras-timbre train: error: cannot write ") and "File too large" in lines[-1]
    assert not (out / runs.MODEL_FILE).exists()  # no half-written model


def test_write_failure_in_a_command_is_one_line(tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise atomic.OutputWriteError(tmp_path / "synth" / "examples.json", OSError(28, "No space left on device"))

    monkeypatch.setattr(atomic, "write_json", full_disk)
    assert main(["make-dataset", "synthetic", "--out", str(tmp_path / "synth"), "--notes", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err == f"keras-timbre make-dataset: error: cannot write {tmp_path / 'synth' / 'examples.json'}: "
        "No space left on device"
    )
    assert not (tmp_path / "synth").exists()  # the half-made dataset was a temporary folder, now gone


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_ctrl_c_while_a_command_starts_is_interrupted_not_a_traceback(tmp_path, delay):
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_timbre.cli", "export", str(tmp_path / "run"), "--out", str(tmp_path / "1")],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)  # while Python imports Keras and TensorFlow
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 2 and "does not exist" in err:
        pytest.skip("the command had finished starting before the signal")
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted." and "Traceback" not in err


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_search_never_deletes_or_writes_into_a_folder_that_is_not_a_search(tmp_path, notes_dir, capsys, overwrite):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    argv = ["search", "--out", str(mine), "--data", str(notes_dir), "--max-trials", "1", "--epochs", "1", *overwrite]
    assert main(argv) == 2
    assert "not a keras-timbre search" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_ablation_never_writes_into_a_folder_holding_other_files(tmp_path, notes_dir):
    from keras_timbre.evaluation.ablation import run_ablation

    (tmp_path / "ablation.md").write_text("my notes")
    (tmp_path / "paper").mkdir()
    with pytest.raises(OutputPathError, match=r"did not write \(paper\)"):
        run_ablation(tmp_path, data=notes_dir, variants=["baseline"], epochs=1)
    assert (tmp_path / "ablation.md").read_text() == "my notes"
