"""The paper's 2x2 ablation: baseline, skip, grad and skip+grad under one budget.

Every variant trains on the same notes with the same seeds, epochs and
hyperparameters, and is evaluated on the same held-out notes (pitches held out
per instrument). `run_ablation` writes into `out`:

- `<variant>_seed<S>/`: one run directory per variant and seed (reused when
  finished, resumed when interrupted);
- `results.json`: every metric of every run, and mean/std over seeds;
- `ablation.md`: the Markdown table (mean ± std over seeds);
- `figures/ablation_grid.png`: input against each variant, with zooms on the
  high-frequency partials and the onset; `figures/latent_pca_<variant>.png`;
- `audio/`: Griffin-Lim audio of the input and of each variant's reconstruction.

Example:
>>> print(run_ablation("runs/ablation", data="../shared/nsynth-mini", epochs=10, seeds=[0, 1]))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from keras_timbre import atomic
from keras_timbre.evaluation import evaluator as evaluation
from keras_timbre.training import run as runs
from keras_timbre.data.split import diverse_notes
from keras_timbre.models.inference import latent_means, reconstruct_db
from keras_timbre.synthesis.figures import write_synthesis_figures
from keras_timbre.models.variants import VARIANTS, check_variant
from keras_timbre.outputs import check_output_folder
from keras_timbre.training.trainer import train
from keras_timbre.analysis import plots
from keras_timbre.vocoder.render import renderer_for, write_wavs

TABLE_METRICS = (
    ("lsd_db", "LSD (dB) ↓"),
    ("spectral_convergence", "spectral conv. ↓"),
    ("mel_grad_error", "mel-grad err (dB) ↓"),
    ("onset_error", "onset err (dB) ↓"),
    ("harmonic_contrast_ratio", "harm. contrast (→1)"),
    ("kl_nats", "KL (nats)"),
    ("active_units", "active units"),
    ("family_probe_accuracy", "family probe ↑"),
    ("pitch_probe_accuracy", "pitch probe"),
    ("skip_reliance", "skip reliance (dB)"),
    ("decode_code_lsd_db", "from the code alone: LSD (dB) ↓"),
)
# The code on its own (keras_timbre.evaluation.code_metrics): as a synthesiser, and as a description;
# what it renders judged by classifiers fit on real notes, beside the judges' scores on real notes.
CODE_METRICS = (
    ("decode_code_harmonic_contrast_ratio", "code alone: harm. contrast (→1)"),
    ("novel_pitch_lsd_db", "novel pitch LSD (dB) ↓"),
    ("nearest_pitch_copy_lsd_db", "nearest-pitch copy (dB)"),
    ("pitch_shift_lsd_db", "pitch-shifted copy (dB)"),
    ("sample_pitch_accuracy_t0", "sample pitch acc. t=0 ↑"),
    ("pitch_probe_transfer_accuracy", "pitch probe train→held-out ↓"),
    ("family_probe_unseen_accuracy", "family probe, unseen instruments ↑"),
    ("mfcc_pitch_probe_transfer_accuracy", "MFCC pitch probe"),
    ("mfcc_family_probe_unseen_accuracy", "MFCC family probe"),
    ("pitch_judge_real_accuracy", "pitch judge, real held-out (ceiling)"),
    ("family_judge_real_accuracy", "family judge, real held-out (ceiling)"),
    ("real_family_fd", "family FD, real train→held-out (floor)"),
    ("real_family_fd_same_size", "the same, as many train notes as held-out"),
    ("sample_pitch_accuracy", "sample pitch acc. t=1 ↑"),
    ("sample_pitch_accuracy_t05", "sample pitch acc. t=0.5 ↑"),
    ("sample_family_fd", "sample family FD t=1 ↓"),
    ("sample_family_fd_t05", "sample family FD t=0.5 ↓"),
    ("sample_max_db", "sample max t=1 (dB, ≤ real max)"),
    ("sample_beyond_range_notes", "samples beyond real dB range ↓"),
    ("sample_above_real_peak_notes", "samples above the real peak"),
    ("rerender_t1_lsd_db", "re-render t=1 LSD (dB) ↓"),
    ("rerender_t1_harmonic_contrast_ratio", "re-render t=1 harm. contrast (→1)"),
    ("transfer_family_accuracy", "swap: family judge ↑"),
    ("transfer_pitch_accuracy", "swap: pitch judge ↑"),
    ("transfer_pitch_shift_family_accuracy", "swap by pitch shift: family judge"),
    ("transfer_pitch_shift_pitch_accuracy", "swap by pitch shift: pitch judge"),
    ("transfer_in_range_family_accuracy", "swap in family's pitches: family judge ↑"),
    ("transfer_in_range_pitch_accuracy", "swap in family's pitches: pitch judge ↑"),
    ("transfer_in_range_pitch_shift_family_accuracy", "same by pitch shift: family judge"),
    ("transfer_in_range_pitch_shift_pitch_accuracy", "same by pitch shift: pitch judge"),
    ("copy_pitch_accuracy", "copy: pitch judge"),
    ("copy_family_accuracy", "copy: family judge"),
    ("copy_family_fd", "copy: family FD"),
    ("pitch_shift_pitch_accuracy", "pitch shift: pitch judge"),
    ("pitch_shift_family_accuracy", "pitch shift: family judge"),
    ("pitch_shift_family_fd", "pitch shift: family FD"),
)
# Code metrics only a conditioned model has (it renders at a pitch): absent from a paper variant's metrics.
CONDITIONED_CODE_METRICS = frozenset(
    key for key, _ in CODE_METRICS if key.startswith(("sample_", "rerender_", "transfer_"))
)
GRID_NOTES = 2
_RUN_NAME = re.compile(r"[a-z_]+_seed-?\d+")  # run_name's


def run_name(variant: str, seed: int) -> str:
    return f"{variant.replace('+', '_')}_seed{seed}"


def is_ablation_output(path: Path) -> bool:
    """Whether `path`, in an ablation's folder, is what the ablation writes (its runs, tables, figures, audio)."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return path.name in ("figures", "audio") or _RUN_NAME.fullmatch(path.name) is not None
    return path.name in ("results.json", "ablation.md")


def summarize(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {metric: {"mean", "std", "n"}}} over seeds (std is 0 with one seed)."""
    summary = {}
    for variant, by_seed in results.items():
        summary[variant] = {}
        for key, _ in TABLE_METRICS + CODE_METRICS:
            values = np.array([float(m[key]) for m in by_seed.values() if key in m], np.float64)
            if values.size:
                summary[variant][key] = {
                    "mean": float(np.nanmean(values)),
                    "std": float(np.nanstd(values, ddof=1)) if values.size > 1 else 0.0,
                    "n": int(values.size),
                }
    return summary


def markdown_table(summary, seeds: Sequence[int], columns=TABLE_METRICS) -> str:
    """The ablation table, one row per variant, `mean ± std` over seeds, of the metrics in `columns`."""
    header = "| variant | " + " | ".join(label for _, label in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    rows = [header, rule]
    for variant, metrics in summary.items():
        cells = []
        for key, _ in columns:
            if key not in metrics:
                cells.append("–")
                continue
            digits = 1 if key == "active_units" else 3
            cell = f"{metrics[key]['mean']:.{digits}f}"
            if len(seeds) > 1:
                cell += f" ± {metrics[key]['std']:.{digits}f}"
            cells.append(cell)
        rows.append(f"| {variant} | " + " | ".join(cells) + " |")
    note = f"\nMean ± standard deviation over seeds {list(seeds)}." if len(seeds) > 1 else f"\nOne seed ({seeds[0]})."
    return "\n".join(rows) + "\n" + note + "\n"


def run_ablation(
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] = tuple(VARIANTS),
    **train_kwargs: Any,
) -> str:
    """Trains and evaluates each variant for each seed; writes the table, figures and audio.

    Args:
        out: Output directory.
        data: Data directory (None: the built-in synthetic notes).
        seeds: Seeds; each seed changes weights and sampling but, so every
            variant and seed is scored on the same notes, not the split
            (the split uses `split_seed`, default 0).
        variants: Variants to compare.
        **train_kwargs: Passed to `keras_timbre.training.train` (epochs, batch_size, ...).

    Returns:
        The Markdown table.
    """
    # New, empty, or an earlier ablation (resumed): never a folder holding anything else.
    out = check_output_folder(out, is_ablation_output, overwrite=True)
    variants = [check_variant(v) for v in variants]
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    split_seed = int(train_kwargs.pop("split_seed", 0))
    started = time.perf_counter()
    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in variants}
    loaded: dict[str, runs.Run] = {}
    total = len(variants) * len(seeds)
    for seed in seeds:
        for variant in variants:
            index = seeds.index(seed) * len(variants) + variants.index(variant) + 1
            elapsed = time.perf_counter() - started
            print(f"\n=== ablation {index}/{total}: {variant}, seed {seed} ({elapsed:.0f} s so far) ===")
            path = out / run_name(variant, seed)
            run = train(path, data=data, variant=variant, seed=seed, split_seed=split_seed, **train_kwargs)
            metrics = _finished_metrics(path / runs.METRICS_FILE) or evaluation.evaluate(run, write_media=False)
            results[variant][seed] = metrics
            if seed == seeds[0]:
                loaded[variant] = run
    summary = summarize(results)
    table = markdown_table(summary, seeds)
    atomic.write_json(out / "results.json", {"runs": results, "summary": summary, "seeds": seeds, "variants": variants})
    code_table = markdown_table(summary, seeds, CODE_METRICS)
    atomic.write_text(out / "ablation.md", "# Ablation\n\n" + table + "\n## The code on its own\n\n" + code_table)
    write_ablation_media(out, loaded)
    print(f"Ablation finished in {time.perf_counter() - started:.0f} s; table at {out / 'ablation.md'}")
    return table


def _finished_metrics(path: Path) -> dict[str, Any] | None:
    """A run's earlier metrics on its held-out notes, or None (none yet, or `evaluate --data` scored others)."""
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    # Metrics written before a code metric existed are computed again: every code metric for a conditioned
    # run (it has group KLs), the others for a paper variant.
    conditioned = "group_kl_nats" in metrics
    current = all(key in metrics for key, _ in CODE_METRICS if conditioned or key not in CONDITIONED_CODE_METRICS)
    return metrics if current and metrics.get("notes") and metrics.get("held_out", True) else None


def write_ablation_media(out: Path, loaded: dict[str, runs.Run]) -> None:
    """Figure grid (input vs each variant, with zooms), latent PCAs and audio, for the first seed."""

    first = next(iter(loaded.values()))
    # The same held-out notes every run was scored on (from the run's own data path).
    records, log_mel_db = evaluation.held_out_notes(first)
    if not len(records):
        return
    picks = diverse_notes(records, GRID_NOTES)
    targets = log_mel_db[picks]
    shown = [records[i] for i in picks]
    recons = {variant: reconstruct_db(run.model, targets, run.stats, records=shown) for variant, run in loaded.items()}
    titles = [records[i].note_str for i in picks]
    plots.plot_reconstructions(
        out / "figures" / "ablation_grid.png", targets, recons, first.frontend, titles=titles, zoom=True
    )
    for variant, run in loaded.items():
        z_mean, _ = latent_means(run.model, log_mel_db, run.stats, records=records)
        plots.plot_latent_pca(
            out / "figures" / f"latent_pca_{variant.replace('+', '_')}.png",
            z_mean,
            [r.family for r in records],
            title=f"{variant}: latent means of held-out notes (PCA)",
        )
    for variant, run in loaded.items():
        if run.model.is_conditioned:
            train_records, train_db, _, _ = evaluation.run_split(run)
            write_synthesis_figures(run, out / variant, train_records, train_db, records, log_mel_db)
    renderer = renderer_for(first.frontend)
    for i, note in enumerate(titles):
        sounds = {"input": targets[i], **{variant: recon[i] for variant, recon in recons.items()}}
        paths = [out / "audio" / f"{note}_{name.replace('+', '_')}.wav" for name in sounds]
        write_wavs(renderer, paths, np.stack(list(sounds.values())))
