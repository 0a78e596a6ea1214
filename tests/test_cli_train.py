"""keras-timbre train/evaluate/reconstruct/interpolate/ablation: help, outputs, exit codes."""

import json

import numpy as np
import pytest
import soundfile as sf

from keras_timbre.training import trainer as training
from keras_timbre.cli import main
from keras_timbre.data import make_synthetic_dataset
from tests.testing import TINY_FRONTEND

COMMANDS = ("train", "evaluate", "reconstruct", "interpolate", "synthesize", "transfer", "ablation")
TINY_FRONTEND = TINY_FRONTEND


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, notes_dir):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    training.train(
        out,
        data=notes_dir,
        frontend=TINY_FRONTEND,
        model_kwargs={"filters": (4, 8), "latent_dim": 4},
        epochs=1,
        batch_size=4,
        val_fraction=0.5,
        verbose=0,
    )
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: keras-timbre " + command in capsys.readouterr().out


def test_train_cli_on_tiny_frontend(tmp_path, notes_dir, capsys):
    # The default model on 32 x 64 features: small enough for a test.
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(notes_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--n-mels",
        "32",
        "--duration",
        "1.0",
        "--variant",
        "grad",
        "--val-fraction",
        "0.5",
        "--batch-size",
        "8",
        "--distribute",
        "auto",
    ]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["variant"] == "grad"
    assert "Training grad on 10 notes (10 held out)" in capsys.readouterr().out
    # Resuming the run with other settings is refused, naming the setting; --restart starts over.
    argv[argv.index("--batch-size") + 1] = "4"
    assert main(argv) == 2
    assert "cannot be resumed: hyperparameters.batch_size 8 -> 4" in capsys.readouterr().err
    argv[argv.index("32")] = "16"
    assert main(argv) == 2
    assert "n_mels: run has 32, requested frontend has 16" in capsys.readouterr().err
    assert main(argv + ["--restart"]) == 0
    assert json.loads((out / "frontend.json").read_text())["n_mels"] == 16


def test_evaluate_cli(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), "--out", str(tmp_path / "m.json")]) == 0
    assert '"lsd_db"' in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["notes"] == 10 and np.isfinite(metrics["lsd_db"])


def test_reconstruct_and_interpolate(tiny_run, notes_dir, tmp_path):
    wavs = sorted((notes_dir / "audio").glob("*.wav"))
    out = tmp_path / "recon.wav"
    assert main(["reconstruct", str(tiny_run), str(wavs[0]), "--out", str(out), "--griffin-lim-iters", "4"]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (16000,) and np.isfinite(audio).all()
    assert out.with_suffix(".png").stat().st_size > 5000
    morph = tmp_path / "morph"
    assert (
        main(
            [
                "interpolate",
                str(tiny_run),
                str(wavs[0]),
                str(wavs[-1]),
                "--steps",
                "3",
                "--out",
                str(morph),
                "--griffin-lim-iters",
                "4",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in morph.iterdir()) == ["step_00.wav", "step_01.wav", "step_02.wav", "strip.png"]


def test_an_existing_out_is_refused_unless_overwrite(tiny_run, notes_dir, tmp_path, capsys):
    wav = str(sorted((notes_dir / "audio").glob("*.wav"))[0])
    existing = tmp_path / "mine.wav"
    existing.write_bytes(b"mine")
    reconstruct = ["reconstruct", str(tiny_run), wav, "--out", str(existing), "--griffin-lim-iters", "2"]
    assert main(reconstruct) == 2
    assert f"--out {existing} already exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"mine" and not existing.with_suffix(".png").exists()
    assert main(reconstruct + ["--overwrite"]) == 0
    assert sf.read(existing)[0].shape == (16000,)
    explore = ["explore", str(tiny_run), "--out", str(existing), "--overwrite", "--morph-notes", "0"]
    assert main(explore) == 2  # never HTML into a WAV
    assert "must end in .html or .htm" in capsys.readouterr().err
    morph = tmp_path / "morph"
    interpolate = [
        "interpolate",
        str(tiny_run),
        wav,
        wav,
        "--steps",
        "2",
        "--out",
        str(morph),
        "--griffin-lim-iters",
        "2",
    ]
    assert main(interpolate) == 0
    assert main(interpolate) == 2 and "holds an earlier output; pass --overwrite" in capsys.readouterr().err
    assert main(interpolate + ["--overwrite"]) == 0


def test_bad_input_exits_non_zero_with_a_clear_message(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing_run")]) == 2
    assert "missing_run does not exist" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "r")]) == 2
    assert "no_data does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--variant", "unet"])
    assert exit_info.value.code == 2
    assert "unknown variant 'unet'" in capsys.readouterr().err.lower()
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 100)
    assert main(["reconstruct", str(tiny_run), str(text), "--out", str(tmp_path / "x.wav")]) == 2
    assert "notes.wav" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    assert main(["reconstruct", str(tiny_run), str(tmp_path / "gone.wav"), "--out", str(tmp_path / "y.wav")]) == 2
    assert "gone.wav does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--seed", "-1"],
        ["train", "--split-seed", "4294967296"],
        ["make-dataset", "synthetic", "--out", "x", "--seed", "-1"],
        ["ablation", "--out", "x", "--seeds", "0", "-3"],
        ["search", "--out", "x", "--seed", "1.5"],
    ],
)
def test_seeds_are_checked_by_name_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    flag = next(a for a in argv if a.startswith("--") and "seed" in a)
    assert f"argument {flag}: must be an integer from 0 to 4294967295" in capsys.readouterr().err.splitlines()[-1]
