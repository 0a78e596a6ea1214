"""Start-up: `import keras_timbre` changes nothing global; the command line and `quiet_start()` are quiet.

The command line prints no absl / oneDNN / CUDA start-up lines unless --verbose
or KERAS_TIMBRE_VERBOSE=1; a script that imports the package sees exactly what
`import keras` shows, unless it calls `keras_timbre_quiet.quiet_start()` first.
"""

import doctest
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import types
from pathlib import Path

import pytest

import keras_timbre_quiet as quiet

REPO = Path(__file__).resolve().parents[1]
NOISE_MARKERS = ("absl::InitializeLog", "port.cc:", "cudart_stub.cc:", "cpu_feature_guard.cc:", "cuInit")


def _env(**extra: str) -> dict:
    """This environment without the settings that hide (or show) the lines by themselves; this checkout first."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)}
    path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # The start-up lines are TensorFlow's: every run here loads it, whichever backend the suite runs under.
    return {**env, "PYTHONPATH": path, "KERAS_BACKEND": "tensorflow", **extra}


def _run(args, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env(**extra_env), check=False)


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(marker in line for marker in NOISE_MARKERS)]


# Runs argv[1] and reports, as one JSON line, what it changed in the process: every meta-path finder seen
# at any import (an import hook that removes itself still shows), whether fd 2 pointed anywhere else at any
# import (a redirection undone by the end still shows), and the environment variables it set or changed.
PROBE = """
import json, os, sys

def finder(f):
    kind = f if isinstance(f, type) else type(f)
    return kind.__module__ + "." + kind.__qualname__

def stderr_file():
    status = os.fstat(2)
    return (status.st_dev, status.st_ino)

environ, finders, stderr_files = dict(os.environ), set(), {stderr_file()}

def watch(event, args):
    if event == "import":
        finders.update(finder(f) for f in sys.meta_path)
        stderr_files.add(stderr_file())

sys.addaudithook(watch)
exec(sys.argv[1])
finders.update(finder(f) for f in sys.meta_path)
changed = sorted(k for k in set(environ) | set(os.environ) if environ.get(k) != os.environ.get(k))
report = {"finders": sorted(finders), "fd 2 redirected": len(stderr_files) > 1}
report["environment"] = {k: os.environ.get(k) for k in changed}
print(json.dumps(report))
"""
_ABSL_HEADER = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ")  # the time and thread differ from run to run


def _probe(code: str) -> dict:
    result = _run([sys.executable, "-c", PROBE, code])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = [_ABSL_HEADER.sub(r"\1 ", line) for line in result.stderr.splitlines()]
    return report


def _differences(report: dict, baseline: dict) -> list[str]:
    """What `report` shows that `baseline` does not, one entry per kind of change."""
    names = {"finders": "import hooks", "fd 2 redirected": "fd 2 redirected", "environment": "environment"}
    found = [f"{name}: {report[key]}" for key, name in names.items() if report[key] != baseline[key]]
    if report["stderr"] != baseline["stderr"]:
        found.append(f"stderr: {report['stderr']} instead of {baseline['stderr']}")
    return found


@pytest.fixture(scope="module")
def import_keras():
    return _probe("import keras")


def test_import_keras_timbre_changes_nothing_that_import_keras_does_not(import_keras):
    # TensorFlow's own start-up lines included: they appear exactly as after `import keras`.
    assert _differences(_probe("import keras_timbre"), import_keras) == []
    assert import_keras["fd 2 redirected"] is False
    assert not any(finder.startswith("keras_timbre") for finder in import_keras["finders"])


def test_the_probe_catches_a_hook_a_redirection_and_an_environment_variable(import_keras):
    # A test of the test: the command line's quiet start, run in a script, is all three.
    report = _probe("import keras_timbre_quiet as q\nq.start_command_line([])\nimport keras_timbre")
    kinds = [difference.split(":")[0] for difference in _differences(report, import_keras)]
    assert kinds == ["import hooks", "fd 2 redirected", "environment", "stderr"]
    assert "keras_timbre_quiet._QuietTensorFlowFinder" in report["finders"]
    assert report["environment"]["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert _noise("\n".join(report["stderr"])) == []


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    from keras_timbre.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("quiet") / "data", notes=3)


def test_a_command_that_runs_tensorflow_ops_prints_no_start_up_lines(notes):
    result = _run([sys.executable, "-m", "keras_timbre.cli", "inspect", str(notes)])
    assert result.returncode == 0, result.stderr
    assert _noise(result.stderr) == []
    assert "3" in result.stdout  # it did read the notes


# The console script's entry, under a name that `cli_arguments()` does not recognise: main() alone is quiet.
CONSOLE_SCRIPT = "import sys, keras_timbre_quiet\nsys.argv = ['kt', *sys.argv[1:]]\nsys.exit(keras_timbre_quiet.main())"


def test_the_console_script_starts_quietly_before_the_package_loads():
    result = _run([sys.executable, "-c", CONSOLE_SCRIPT, "--help"])
    assert result.returncode == 0, result.stderr
    assert "usage: keras-timbre" in result.stdout
    assert [line for line in result.stderr.splitlines() if quiet.is_noise(line)] == []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["keras-timbre"] == "keras_timbre_quiet:main"
    assert "keras_timbre_quiet" in project["tool"]["setuptools"]["py-modules"]  # shipped beside the package


def test_ctrl_c_while_the_console_script_loads_the_package_is_interrupted():
    process = subprocess.Popen(
        [sys.executable, "-c", CONSOLE_SCRIPT, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.0)  # while Python imports Keras and TensorFlow
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the package had loaded before the signal")
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted." and "Traceback" not in err


def test_verbose_flag_brings_the_lines_back():
    # Which lines TensorFlow prints depends on the CPU (oneDNN's only on some, cpu_feature_guard's on others):
    # assert that --verbose shows start-up lines and that each is one the quiet start hides, whichever they are.
    quiet_run = _run([sys.executable, "-m", "keras_timbre.cli", "--help"])
    verbose_run = _run([sys.executable, "-m", "keras_timbre.cli", "--verbose", "--help"])
    assert quiet_run.returncode == verbose_run.returncode == 0
    assert [line for line in verbose_run.stderr.splitlines() if quiet.is_noise(line)], verbose_run.stderr
    assert [line for line in quiet_run.stderr.splitlines() if quiet.is_noise(line)] == []


def test_environment_variable_brings_the_lines_back():
    result = _run([sys.executable, "-m", "keras_timbre.cli", "--help"], **{quiet.VERBOSE_ENV: "1"})
    assert result.returncode == 0
    assert _noise(result.stderr)


SCRIPT = """
import os
from keras_timbre_quiet import quiet_start
quiet_start()
import keras_timbre
import tensorflow as tf
print(int(tf.constant(2) + 1))
# After the import window nothing is filtered, not even a line that looks like start-up noise.
os.write(2, b"I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on (from the user's program)\\n")
os.write(2, b"the user's own error\\n")
"""


def test_quiet_start_quiets_a_script_and_keeps_its_own_errors():
    result = _run([sys.executable, "-c", SCRIPT])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert result.stderr.splitlines() == [
        "I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on (from the user's program)",
        "the user's own error",
    ]


def test_quiet_start_after_tensorflow_is_loaded_warns_and_installs_nothing(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow", types.ModuleType("tensorflow")))
    before = list(sys.meta_path)
    with pytest.warns(UserWarning, match="after TensorFlow was imported"):
        quiet.quiet_start()
    assert sys.meta_path == before


def test_filtered_stderr_drops_only_known_lines(capfd):
    with quiet.filtered_stderr():
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
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    monkeypatch.setattr(sys, "orig_argv", ["python", "-W", "ignore", "-m", "keras_timbre.cli", "--verbose", "train"])
    assert quiet.cli_arguments() == ["--verbose", "train"]
    assert quiet.verbose_requested()
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--verbose"])
    for script in (["python", "my_script.py", "--verbose"], ["python", "my_script.py", "-m", "keras_timbre.cli"]):
        monkeypatch.setattr(sys, "orig_argv", script)
        assert quiet.cli_arguments() is None and not quiet.verbose_requested()
    monkeypatch.setattr(sys, "orig_argv", ["python", "/usr/bin/keras-timbre", "train"])
    monkeypatch.setattr(sys, "argv", ["/usr/bin/keras-timbre", "train"])
    assert quiet.cli_arguments() == ["train"]


def test_the_module_docstring_examples():
    # .ci/run's --doctest-modules covers the package only; this module sits beside it.
    assert doctest.testmod(quiet).failed == 0
