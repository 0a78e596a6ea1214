"""A quiet command line: no absl / oneDNN / CUDA start-up lines unless --verbose or KERAS_TIMBRE_VERBOSE=1."""

import os
import subprocess
import sys

import pytest

from keras_timbre import _startup

NOISE_MARKERS = ("absl::InitializeLog", "port.cc:", "cudart_stub.cc:", "cpu_feature_guard.cc:", "cuInit")


def _env(**extra: str) -> dict:
    """This environment without the settings that hide (or show) the lines by themselves."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", _startup.VERBOSE_ENV)}
    return {**env, **extra}


def _run(args, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env(**extra_env), check=False)


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(marker in line for marker in NOISE_MARKERS)]


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    from keras_timbre.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("quiet") / "data", notes=3)


def test_a_command_that_runs_tensorflow_ops_prints_no_start_up_lines(notes):
    result = _run([sys.executable, "-m", "keras_timbre.cli", "inspect", str(notes)])
    assert result.returncode == 0, result.stderr
    assert _noise(result.stderr) == []
    assert "3" in result.stdout  # it did read the notes


def test_verbose_flag_brings_the_lines_back():
    # Which lines TensorFlow prints depends on the CPU (oneDNN's only on some, cpu_feature_guard's on others):
    # assert that --verbose shows start-up lines and that each is one the quiet start hides, whichever they are.
    quiet = _run([sys.executable, "-m", "keras_timbre.cli", "--help"])
    verbose = _run([sys.executable, "-m", "keras_timbre.cli", "--verbose", "--help"])
    assert quiet.returncode == verbose.returncode == 0
    shown = [line for line in verbose.stderr.splitlines() if _startup.is_noise(line)]
    assert shown, verbose.stderr
    assert [line for line in quiet.stderr.splitlines() if _startup.is_noise(line)] == []


def test_environment_variable_brings_the_lines_back():
    result = _run([sys.executable, "-m", "keras_timbre.cli", "--help"], **{_startup.VERBOSE_ENV: "1"})
    assert result.returncode == 0
    assert _noise(result.stderr)


LIBRARY_SCRIPT = """
import os
from keras_timbre import _startup
_startup.quiet_native_logs()
import tensorflow as tf
print(int(tf.constant(2) + 1))
# After the import window nothing is filtered, not even a line that looks like start-up noise.
os.write(2, b"I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on (from the user's program)\\n")
os.write(2, b"the user's own error\\n")
"""


def test_library_users_get_a_quiet_import_and_keep_their_own_errors():
    result = _run([sys.executable, "-c", LIBRARY_SCRIPT])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert result.stderr.splitlines() == [
        "I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on (from the user's program)",
        "the user's own error",
    ]


def test_filtered_stderr_drops_only_known_lines(capfd):
    with _startup.filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"E0000 00:00:1.0   7 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n")
        os.write(2, b"E0000 00:00:1.0   7 loader.cc:9] a real error during the import\n")
        os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with")
        os.write(2, b" the appropriate compiler flags.\nand a last line without a newline")
    captured = capfd.readouterr()
    assert captured.err.splitlines() == [
        "E0000 00:00:1.0   7 loader.cc:9] a real error during the import",
        "and a last line without a newline",
    ]


def test_cli_arguments_read_from_the_original_command_line(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "keras_timbre.cli", "--verbose", "train"])
    assert _startup.cli_arguments() == ["--verbose", "train"]
    monkeypatch.delenv(_startup.VERBOSE_ENV, raising=False)
    assert _startup.verbose_requested()
    monkeypatch.setattr(sys, "orig_argv", ["python", "my_script.py", "--verbose"])
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--verbose"])
    assert _startup.cli_arguments() is None and not _startup.verbose_requested()
