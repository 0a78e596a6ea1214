"""The trials of a search as a table: rows from the oracle, written as trials.csv and trials.md.

Example:
>>> rows = [{"trial": "0", "status": "COMPLETED", "beta": 0.01, "val_lsd": 9.5, "error": None},
...         {"trial": "1", "status": "FAILED", "beta": 0.9, "val_lsd": None, "error": "Trial diverged"}]
>>> print(markdown_table(rows, "val_lsd"))  # doctest: +NORMALIZE_WHITESPACE
# Search results: 2 trials, objective val_lsd (lower is better)
<BLANKLINE>
| trial | status | beta | val_lsd |
|---|---|---|---|
| 0 | COMPLETED | 0.01 | 9.5 |
| 1 | FAILED | 0.9 |  |
<BLANKLINE>
## Failed trials
<BLANKLINE>
- trial 1: Trial diverged
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import keras_tuner as kt
import numpy as np

from keras_timbre import atomic
from keras_timbre.tuning.tuners import WORKER_FILE

TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"


def trials_table(search: kt.Tuner, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per trial: id, status, hyperparameters `names` (then any others), the objective,
    its best epoch, the worker that ran it and the error of a failed trial."""
    oracle = search.oracle
    return [
        _row(search, oracle.trials[trial_id], list(names))
        for trial_id in sorted(oracle.trials, key=lambda t: int(t) if t.isdigit() else t)
    ]


def _row(search: kt.Tuner, trial, names: list[str]) -> dict[str, Any]:
    values = trial.hyperparameters.values
    extra = sorted(k for k in values if k not in names)  # Hyperband's tuner/epochs etc.
    worker_file = Path(search.get_trial_dir(trial.trial_id)) / WORKER_FILE
    score = trial.score if trial.status == "COMPLETED" else None
    row = {"trial": trial.trial_id, "status": trial.status}
    row.update({name: values.get(name) for name in names + extra})
    row[search.oracle.objective.name] = None if score is None or not np.isfinite(score) else float(score)
    # Hyperband's promoted trials count epochs from their parent's.
    row["best_epoch"] = None if score is None else int(trial.best_step) + 1 + values.get("tuner/initial_epoch", 0)
    row["worker"] = worker_file.read_text().strip() if worker_file.is_file() else None
    row["error"] = _last_line(trial.message) if trial.status != "COMPLETED" else None
    return row


def _last_line(message: str | None) -> str | None:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else None


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def csv_table(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, in trial order; None is an empty cell."""
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


def markdown_table(rows: list[dict[str, Any]], objective_name: str) -> str:
    """The rows as Markdown, best first, and a list of the failed trials' errors."""
    ranked = sorted(rows, key=lambda r: (r.get(objective_name) is None, r.get(objective_name) or 0.0))
    columns = [c for c in _columns(rows) if c != "error"]
    lines = [
        f"# Search results: {len(rows)} trials, objective {objective_name} (lower is better)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_format(row.get(c)) for c in columns) + " |" for row in ranked]
    failed = [row for row in rows if row["status"] != "COMPLETED"]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {row['trial']}: {row['error'] or row['status']}" for row in failed]
    return "\n".join(lines)


def write_tables(rows: list[dict[str, Any]], out: Path, objective_name: str) -> None:
    """`out/trials.csv` (in trial order) and `out/trials.md` (best first, failed trials last)."""
    atomic.write_text(Path(out) / TRIALS_CSV, csv_table(rows))
    atomic.write_text(Path(out) / TRIALS_MD, markdown_table(rows, objective_name) + "\n")
