"""Random codes from N(0, I) against the run's code prior (a Gaussian mixture fit to its training codes).

For each run: one prior sample per held-out note (its pitch and velocity, the groups drawn at
temperature 1), five draws of codes (seeds 0-4) from each prior, judged as `evaluate` judges them
(the family judge's Fréchet distance to the real held-out notes, the pitch judge, the dB range
check); and what `keras-timbre synthesize RUN --random --seed S --pitch 60` refuses of seeds 0-199
at temperatures 0, 0.5 and 1. The runs need their training notes (config.json's `data`).

    python benchmarks/bench_code_prior.py nsynth-mini RUN_SEED_1 --out benchmarks/results/code_prior

Writes `OUT/code_prior.json`, `code_prior.md` and `code_prior.png` (samples of both priors at MIDI 60).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import environment  # noqa: E402

DRAWS = 5
REFUSAL_SEEDS = 200
TEMPERATURES = (0.0, 0.5, 1.0)


def priors(run) -> dict:
    from keras_timbre.models.code_prior import CodePrior

    return {"N(0, I)": CodePrior.standard(run.model.latent_dim), "code prior": run.code_prior}


def judged_draws(run, notes, judges, prior) -> dict:
    """FD, pitch accuracy and samples beyond the range (peak + 1 dB) of `DRAWS` draws at temperature 1."""
    from keras_timbre.evaluation import code_metrics as cm
    from keras_timbre.models.inference import decode_db

    pitches, velocities = [r.pitch for r in notes.records], [r.velocity for r in notes.records]
    rows = []
    for seed in range(DRAWS):
        samples = decode_db(run.model, prior.sample(len(pitches), seed), run.stats, pitches, velocities, 1.0)
        rows.append(
            {
                "fd": cm._fd(judges, samples, notes.log_mel_db),
                "pitch_accuracy": cm._accuracy(judges.pitch, samples, pitches),
                "beyond": cm._level_check(samples, notes.log_mel_db)["sample_beyond_range_notes"],
            }
        )
    return {key: [row[key] for row in rows] for key in rows[0]}


def refusals(run, prior) -> dict:
    """Of `REFUSAL_SEEDS` random codes at MIDI 60, how many `synthesize` refuses at each temperature."""
    from keras_timbre.models.inference import decode_db

    codes = np.concatenate([prior.sample(1, seed) for seed in range(REFUSAL_SEEDS)])
    counts = {}
    for temperature in TEMPERATURES:
        rendered = decode_db(run.model, codes, run.stats, 60, run.model.default_velocity, temperature)
        counts[f"{temperature:g}"] = int(run.stats.beyond_range(rendered).sum())
    return counts


def measure(name: str) -> dict:
    from keras_timbre.evaluation.code_metrics import fit_judges
    from keras_timbre.evaluation.evaluator import notes_to_score
    from keras_timbre.training import run as runs

    run = runs.load_run(name)
    notes = notes_to_score(run)
    judges = fit_judges(notes.train_db, notes.train_records)
    result = {"run": str(run.path), "seed": run.config.get("seed"), "priors": {}}
    for label, prior in priors(run).items():
        result["priors"][label] = {**judged_draws(run, notes, judges, prior), "refused": refusals(run, prior)}
        print(name, label, _summary(result["priors"][label]), flush=True)
    return result


def _summary(row: dict) -> str:
    def spread(values, digits):
        return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"

    refused = ", ".join(f"t={t}: {n}" for t, n in row["refused"].items())
    return (
        f"FD {spread(row['fd'], 1)} | pitch {spread(row['pitch_accuracy'], 3)} | "
        f"beyond {spread(row['beyond'], 1)} | refused of {REFUSAL_SEEDS}: {refused}"
    )


def write_report(results: dict, out: Path) -> None:
    machine = results["machine"]
    lines = [
        "# Random codes: N(0, I) against the run's code prior",
        "",
        f"Machine: {machine['cpu_model']} ({machine['cpu_flags']}), {machine['cpus']} cores. "
        f"Command: `{results['command']}`.",
        "",
        f"Temperature 1, one sample per held-out note, {DRAWS} draws (mean ± std over the draws); "
        f"refusals: `synthesize --random --seed 0..{REFUSAL_SEEDS - 1} --pitch 60`.",
        "",
        "| run (seed) | codes from | family FD ↓ | pitch judge ↑ | beyond peak + 1 dB (of 167) "
        "| refused t=0 / 0.5 / 1 |",
        "|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        for label, row in run["priors"].items():
            refused = " / ".join(str(n) for n in row["refused"].values())
            fd = f"{np.mean(row['fd']):.1f} ± {np.std(row['fd']):.1f}"
            lines.append(
                f"| {Path(run['run']).name} ({run['seed']}) | {label} | {fd}"
                f" | {np.mean(row['pitch_accuracy']):.3f} | {np.mean(row['beyond']):.1f} | {refused} |"
            )
    (out / "code_prior.md").write_text("\n".join(lines) + "\n")


def plot_samples(name: str, path: Path, count: int = 6) -> None:
    """Spectrograms of `count` random codes from each prior, rendered at MIDI 60, temperature 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_timbre.models.inference import decode_db
    from keras_timbre.training import run as runs

    run = runs.load_run(name)
    fig, axes = plt.subplots(2, count, figsize=(2.2 * count, 4.6), sharex=True, sharey=True)
    for row, (label, prior) in enumerate(priors(run).items()):
        rendered = decode_db(run.model, prior.sample(count, seed=0), run.stats, 60, run.model.default_velocity)
        for col in range(count):
            axes[row, col].imshow(rendered[col], origin="lower", aspect="auto", vmin=-60, vmax=rendered.max())
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.suptitle(f"Random codes of {Path(run.path).name} at MIDI 60 (seed 0, groups at their prior means)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories or preset names")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "code_prior")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_code_prior.py " + " ".join(sys.argv[1:])
    results = {"machine": environment(), "command": command}
    results["runs"] = [measure(name) for name in args.runs]
    (args.out / "code_prior.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.out)
    plot_samples(args.runs[0], args.out / "code_prior.png")


if __name__ == "__main__":
    main()
