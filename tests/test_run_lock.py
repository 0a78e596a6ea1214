"""One train per run directory: a second process is refused naming the holder; a dead holder does not block."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from keras_timbre.data import make_synthetic_dataset
from keras_timbre.training import lock
from keras_timbre.training.lock import RunLockedError, holder_pid, lock_run
from tests.testing import TINY_TRAIN_ARGS

HOLD = textwrap.dedent("""
    import sys, time
    from keras_timbre.training.lock import lock_run
    with lock_run(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """)


@pytest.fixture
def holder(tmp_path):
    """A real process holding the lock of tmp_path/run."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_train_exits_2_naming_the_holder_and_a_dead_holder_does_not_block(tmp_path, holder):
    notes = make_synthetic_dataset(tmp_path / "notes", notes=20, seed=0, progress=False)
    argv = ["train", "--out", str(tmp_path / "run"), "--data", str(notes), "--epochs", "1", *TINY_TRAIN_ARGS]
    result = subprocess.run([sys.executable, "-m", "keras_timbre.cli", *argv], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"in use by another train process (PID {holder.pid})" in result.stderr
    assert not (tmp_path / "run" / "config.json").exists()  # refused before writing anything
    with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
        with lock_run(tmp_path / "run"):
            pass
    # Killed while holding it: the lock file still names the dead PID, but nothing holds it.
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder_pid(tmp_path / "run") == holder.pid
    with pytest.raises(ProcessLookupError):
        os.kill(holder.pid, 0)
    with lock_run(tmp_path / "run"):
        assert holder_pid(tmp_path / "run") == os.getpid()
    assert (tmp_path / "run" / lock.LOCK_FILE).read_text() == ""


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with lock_run(tmp_path / "run"):
            raise KeyError("boom")
    with lock_run(tmp_path / "run"):  # not left held
        pass
