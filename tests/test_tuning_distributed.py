"""KerasTuner's distributed search on localhost: one chief oracle, two workers, one search.

Each process runs the same `keras-timbre search` command; KERASTUNER_TUNER_ID
makes one the chief (it serves the oracle over gRPC on 127.0.0.1) and the
others workers that ask it for trials. Every trial must run exactly once.
"""

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_timbre.training import run as runs
from keras_timbre.tuning.best_run import BEST_RUN
from keras_timbre.tuning.report import TRIALS_CSV

REPO_ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 300
WORKERS = ("tuner0", "tuner1")


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    from keras_timbre.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("notes"), notes=32, seed=0, progress=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ran_trials(log: str, role: str) -> list[str]:
    lines = [line for line in log.splitlines() if line.startswith(f"{role}: ran trials ")]
    assert len(lines) == 1, log[-3000:]
    listed = lines[0].removeprefix(f"{role}: ran trials ")
    return [] if listed == "none" else listed.split(", ")


@pytest.mark.slow
def test_chief_and_two_workers_share_one_search_and_run_each_trial_once(notes, tmp_path):
    out = tmp_path / "search"
    command = [
        sys.executable,
        "-m",
        "keras_timbre.cli",
        "search",
        "--data",
        str(notes),
        "--max-trials",
        "4",
        "--epochs",
        "1",
        "--n-mels",
        "32",
        "--duration",
        "1.0",
        "--filters",
        "4,8",
        "--batch-size",
        "8",
        "--quiet",
        "--out",
        str(out),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        KERAS_BACKEND="tensorflow",
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(_free_port()),
    )
    processes, logs = {}, {}
    deadline = time.monotonic() + TIME_LIMIT_S
    try:
        for tuner_id in ("chief", *WORKERS):
            logs[tuner_id] = tmp_path / f"{tuner_id}.log"
            with open(logs[tuner_id], "w") as log:
                processes[tuner_id] = subprocess.Popen(
                    command,
                    env=dict(env, KERASTUNER_TUNER_ID=tuner_id),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
        for tuner_id in (*WORKERS, "chief"):
            code = processes[tuner_id].wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, f"{tuner_id} exited with {code}:\n{logs[tuner_id].read_text()[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    ran = {tuner_id: _ran_trials(logs[tuner_id].read_text(), "worker") for tuner_id in WORKERS}
    assert _ran_trials(logs["chief"].read_text(), "chief") == []  # the chief only serves the oracle
    assert all(ran[w] for w in WORKERS), ran  # both workers took part
    every = ran["tuner0"] + ran["tuner1"]
    assert sorted(every) == ["0", "1", "2", "3"], ran  # each trial ran once, none twice

    with open(out / TRIALS_CSV, newline="") as handle:
        table = {row["trial"]: row for row in csv.DictReader(handle)}
    assert sorted(table) == ["0", "1", "2", "3"]
    assert all(row["status"] == "COMPLETED" for row in table.values())
    for worker in WORKERS:
        assert {t for t, row in table.items() if row["worker"] == worker} == set(ran[worker])
    best = runs.load_run(out / BEST_RUN, load_model=False)
    assert best.config["search"]["value"] == pytest.approx(min(float(r["val_lsd"]) for r in table.values()))
