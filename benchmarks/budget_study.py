"""Training-budget study: every held-out metric against epochs, for hierarchical and skip+grad, 2 seeds.

Each (variant, seed) run is trained on nsynth-mini in stages (`--stages`, epochs in total); after each
stage a copy of the run's inference files (`model.keras`, `config.json`, `frontend.json`, `stats.npz`,
`history.csv`) is kept as `RUN@EPOCHS`, and every copy is evaluated (`keras_timbre.evaluate`, the
run's own held-out split: pitches each instrument never played in training). Extending a finished run
to more epochs resumes it exactly (constant learning rate, warm-up done), so each copy is what a run
of that many epochs gives. Everything resumes: rerun the command after an interruption.

    python benchmarks/budget_study.py --data ../shared/nsynth-mini --out ../budget   # hours on 2 cores

Writes `benchmarks/results/budget.json` (every copy's metrics, the machine) and `budget.md` / `budget.png`
(each code metric against epochs, mean and both seeds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import environment  # noqa: E402

INFERENCE_FILES = ("model.keras", "config.json", "frontend.json", "stats.npz", "history.csv")
# (metrics.json key, label, lower is better)
CURVES = (
    ("lsd_db", "reconstruction LSD (dB)", True),
    ("onset_error", "onset error (dB)", True),
    ("decode_code_lsd_db", "code alone LSD (dB)", True),
    ("novel_pitch_lsd_db", "novel pitch LSD (dB)", True),
    ("pitch_probe_transfer_accuracy", "pitch probe, train -> held-out", True),
    ("family_probe_unseen_accuracy", "family probe, unseen instruments", False),
    ("sample_pitch_accuracy", "prior-sample pitch accuracy (t=1)", False),
    ("sample_family_fd", "prior-sample family FD (t=1)", True),
    ("transfer_family_accuracy", "swap: family judge accuracy", False),
    ("transfer_pitch_accuracy", "swap: pitch judge accuracy", False),
)


def train_stages(data: Path, root: Path, variant: str, seed: int, stages, duration: float) -> list[Path]:
    """Trains `root/VARIANT-sSEED` through `stages`, keeping `@EPOCHS` copies; returns the copies."""
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.training.trainer import train

    run = root / f"{variant.replace('+', '_')}-s{seed}"
    copies = []
    for epochs in stages:
        copy = run.with_name(f"{run.name}@{epochs}")
        if not (copy / "model.keras").is_file():
            train(
                run,
                data,
                variant=variant,
                epochs=epochs,
                seed=seed,
                split_seed=0,
                frontend=FrontendConfig(duration=duration),
                verbose=2,
            )
            partial = copy.with_name(copy.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for name in INFERENCE_FILES:
                shutil.copy2(run / name, partial / name)
            partial.rename(copy)
        copies.append(copy)
    return copies


def evaluate_copy(copy: Path) -> dict:
    """The copy's metrics.json, evaluated once: `evaluate`'s spectrogram and code metrics, without its audio
    metrics (pYIN and the vocoder over every copy would double the study; the budget moves the code)."""
    from keras_timbre import atomic
    from keras_timbre.evaluation.code_metrics import code_metrics
    from keras_timbre.evaluation.evaluator import compute_metrics, notes_to_score
    from keras_timbre.training import run as runs

    metrics_file = copy / "metrics.json"
    if not metrics_file.is_file():
        run = runs.load_run(copy)
        notes = notes_to_score(run)
        result = compute_metrics(run, notes.records, notes.log_mel_db)
        result.update(code_metrics(run, notes.train_records, notes.train_db, notes.records, notes.log_mel_db))
        result.update(variant=run.variant, run=str(run.path), scored=notes.label)
        atomic.write_json(metrics_file, result)
    return json.loads(metrics_file.read_text())


def write_report(results: dict, out: Path) -> None:
    """`budget.md` (one table per variant: epochs x curves, mean of the seeds ± half their spread) and `budget.png`."""
    import numpy as np

    lines = [
        "# Training-budget study (held-out notes of nsynth-mini, 2 s notes)",
        "",
        f"Machine: {results['machine']['cpu_model']} ({results['machine']['cpu_flags']}), "
        f"{results['machine']['cpus']} cores. Command: `{results['command']}`.",
        "",
    ]
    for variant, runs in results["runs"].items():
        lines += [f"## {variant}", "", "| epochs | " + " | ".join(label for _, label, _ in CURVES) + " |"]
        lines.append("|---" * (len(CURVES) + 1) + "|")
        for epochs in results["stages"]:
            cells = []
            for key, _, _ in CURVES:
                values = [r[str(epochs)].get(key) for r in runs.values() if str(epochs) in r]
                values = [v for v in values if isinstance(v, (int, float))]
                cells.append(f"{np.mean(values):.3f} ± {np.ptp(values) / 2:.3f}" if values else "—")
            lines.append(f"| {epochs} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "budget.md").write_text("\n".join(lines) + "\n")
    _plot(results, out / "budget.png")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(CURVES) + 1) // 2, figsize=(4 * ((len(CURVES) + 1) // 2), 7))
    for ax, (key, label, lower) in zip(axes.ravel(), CURVES):
        for variant, runs in results["runs"].items():
            for seed, by_epoch in runs.items():
                epochs = [int(e) for e in by_epoch if isinstance(by_epoch[e].get(key), (int, float))]
                values = [by_epoch[str(e)][key] for e in epochs]
                ax.plot(epochs, values, "o-", label=f"{variant} {seed}", alpha=0.8)
        ax.set_title(label + (" ↓" if lower else " ↑"), fontsize=9)
        ax.set_xlabel("epochs")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "nsynth-mini")
    parser.add_argument("--out", type=Path, default=REPO.parent / "budget")
    parser.add_argument("--variants", nargs="+", default=["hierarchical", "skip+grad"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--stages", nargs="+", type=int, default=[10, 20, 40])
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--train-only", action="store_true", help="train every stage; evaluate on a later run")
    args = parser.parse_args()
    results = {
        "command": "python benchmarks/budget_study.py " + " ".join(sys.argv[1:]),
        "machine": environment(),
        "stages": args.stages,
        "runs": {},
    }
    for seed in args.seeds:  # seed 0 of every variant first: the first curves come in early
        for variant in args.variants:
            copies = train_stages(args.data, args.out, variant, seed, args.stages, args.duration)
            if args.train_only:
                continue
            by_epoch = {str(e): evaluate_copy(c) for e, c in zip(args.stages, copies)}
            results["runs"].setdefault(variant, {})[f"seed {seed}"] = by_epoch
            (args.results / "budget.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
            write_report(results, args.results)


if __name__ == "__main__":
    main()
