"""`keras-timbre synthesize` numeric options: refused by argparse, naming the flag and its range, before any loading."""

import time

import pytest

from keras_timbre.cli import main
from keras_timbre.cli.arguments import MAX_SEED
from keras_timbre.synthesis import audio_files
from keras_timbre.training import run as runs


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if a run (and its model) is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run was loaded before the arguments were checked")

    monkeypatch.setattr(runs, "load_run", refuse)


@pytest.mark.parametrize(
    "flag, value, rule",
    [
        ("--temperature", "inf", "must be a number from 0 to 1"),
        ("--temperature", "1e308", "must be a number from 0 to 1"),
        ("--temperature", "-1", "must be a number from 0 to 1"),
        ("--temperature", "nan", "must be a number from 0 to 1"),
        ("--temperature", "warm", "must be a number"),
        ("--seed", "-1", f"must be an integer from 0 to {MAX_SEED}"),
        ("--seed", str(MAX_SEED + 1), f"must be an integer from 0 to {MAX_SEED}"),
        ("--seed", "1.5", f"must be an integer from 0 to {MAX_SEED}"),
    ],
)
def test_bad_numbers_exit_2_naming_the_flag_before_loading(tmp_path, capsys, no_loading, flag, value, rule):
    argv = ["synthesize", str(tmp_path / "run"), "--random", "--pitch", "60", "--out", str(tmp_path / "x.wav")]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main(argv + [flag, value])
    assert exit_info.value.code == 2
    assert time.perf_counter() - start < 5  # argparse's answer, not a model's
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [f"keras-timbre synthesize: error: argument {flag}: {rule}" + errors[0].split(rule, 1)[1]]
    assert value in errors[0]
    assert not (tmp_path / "x.wav").exists()


def test_the_library_takes_the_same_temperatures(tmp_path, no_loading):
    # synthesize_file refuses them itself (before loading), with the same rule and bound.
    for value in (float("inf"), 1e308, -1.0, float("nan"), audio_files.MAX_TEMPERATURE + 0.1):
        with pytest.raises(ValueError, match=f"temperature must be a number from 0 to {audio_files.MAX_TEMPERATURE:g}"):
            audio_files.synthesize_file(tmp_path / "run", tmp_path / "x.wav", 60, temperature=value)


def test_the_ranges_are_closed_and_good_values_reach_the_command(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(audio_files, "synthesize_file", lambda *args, **kwargs: seen.update(kwargs) or ("a", "b"))
    argv = ["synthesize", str(tmp_path), "--random", "--pitch", "60", "--out", str(tmp_path / "x.wav")]
    for value, seed in (("0", "0"), ("0.5", "7"), (str(audio_files.MAX_TEMPERATURE), str(MAX_SEED))):
        assert main(argv + ["--temperature", value, "--seed", seed]) == 0
        assert (seen["temperature"], seen["seed"]) == (float(value), int(seed))
    with pytest.raises(SystemExit):
        main(argv + ["--temperature", str(audio_files.MAX_TEMPERATURE * 1.001)])
    assert "argument --temperature: must be a number from 0 to 1" in capsys.readouterr().err
