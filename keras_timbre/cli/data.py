"""Data commands: `make-dataset KIND ...` and `inspect DATA_DIR`.

`make-dataset` has one sub-command per kind of dataset (`synthetic`,
`nsynth-mini`, ...), so new kinds are new sub-parsers of `kinds` below;
`make-dataset labels` adds estimated labels to an audio folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_timbre.cli.arguments import add_overwrite_option, seed
from keras_timbre.data.synthetic import DEFAULT_NOTES


def register(subparsers) -> None:
    make = subparsers.add_parser(
        "make-dataset",
        help="write a dataset: the synthetic default data, an NSynth subset, or a feature cache",
        description="Write a dataset. KIND is one of the sub-commands below.",
    )
    kinds = make.add_subparsers(dest="kind", metavar="KIND", required=True)

    synthetic = kinds.add_parser(
        "synthetic",
        help="deterministic synthetic NSynth-format notes (the built-in default data)",
    )
    synthetic.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    add_overwrite_option(synthetic)
    synthetic.add_argument("--notes", type=int, default=DEFAULT_NOTES, help="number of notes (default: %(default)s)")
    synthetic.add_argument("--seed", type=seed, default=0, help="seed; the same seed writes the same files")
    synthetic.set_defaults(func=_make_synthetic)

    mini = kinds.add_parser(
        "nsynth-mini",
        help="a filtered subset of an NSynth download (jsonwav, TFRecord or audio folder), written as jsonwav",
    )
    mini.add_argument("--source", required=True, type=Path, help="the NSynth download")
    mini.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    add_overwrite_option(mini)
    add_filter_arguments(mini)
    mini.add_argument("--per-family", type=int, default=None, help="at most N notes per family")
    mini.set_defaults(func=_make_nsynth_mini)

    cache = kinds.add_parser(
        "cache-features",
        help="log-mel of every note, computed once into sharded TFRecords (for data that does not fit in memory)",
        description="Runs the notes of DATA through the training pipeline once and writes their log-mel "
        "and labels to a feature cache (see keras_timbre.data.feature_cache). A fresh cache for the same "
        "notes and frontend is reused; a stale one is rebuilt.",
    )
    cache.add_argument("source", type=Path, metavar="DATA", help="data directory (any layout)")
    cache.add_argument("--out", required=True, type=Path, help="cache folder")
    cache.add_argument("--frontend", type=Path, default=None, help="frontend.json (default: FrontendConfig())")
    cache.add_argument("--notes-per-shard", type=int, default=None, metavar="N", help="notes per TFRecord shard")
    add_filter_arguments(cache)
    cache.set_defaults(func=_cache_features)

    labels = kinds.add_parser(
        "labels",
        help="estimate MIDI pitch (pYIN) and velocity (peak RMS) of notes without labels, into DATA_DIR/labels.json",
        description="Estimates the MIDI pitch (pYIN) and velocity (peak RMS) of every note of the audio folder "
        "DATA_DIR whose name does not give them, into DATA_DIR/labels.json, which read_notes then applies. "
        "Entries already in labels.json are kept, so an interrupted run resumes. Notes without a pitch "
        "(unpitched, silent or unreadable) are skipped and listed.",
    )
    labels.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder of audio files")
    labels.set_defaults(func=_make_labels)

    inspect = subparsers.add_parser(
        "inspect",
        help="read every note through the training pipeline and report",
        description="Reads every note of DATA_DIR through the training pipeline and prints notes per "
        "family and source, every skipped file with its reason, feature statistics and notes/s. "
        "Exits 0 when at least one note was read.",
    )
    inspect.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    inspect.add_argument("--frontend", type=Path, default=None, help="frontend.json (default: FrontendConfig())")
    add_filter_arguments(inspect)
    inspect.set_defaults(func=_inspect)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The `read_notes` filters as options."""
    parser.add_argument("--families", nargs="+", default=None, metavar="FAMILY", help="keep these families")
    parser.add_argument("--sources", nargs="+", default=None, metavar="SOURCE", help="keep these sources")
    parser.add_argument(
        "--pitch-range",
        nargs=2,
        type=int,
        default=None,
        metavar=("LOW", "HIGH"),
        help="keep MIDI pitches in [LOW, HIGH]",
    )
    parser.add_argument("--velocities", nargs="+", type=int, default=None, metavar="V", help="keep these velocities")
    parser.add_argument("--per-instrument", type=int, default=None, metavar="N", help="at most N notes per instrument")


def filter_kwargs(args: argparse.Namespace) -> dict:
    """`read_notes` keyword arguments from `add_filter_arguments` options."""
    return dict(
        families=args.families,
        sources=args.sources,
        pitch_range=tuple(args.pitch_range) if args.pitch_range else None,
        velocities=args.velocities,
        max_per_instrument=args.per_instrument,
    )


def _make_synthetic(args: argparse.Namespace) -> int:
    from keras_timbre.data import synthetic

    start = time.perf_counter()
    path = synthetic.make_synthetic_dataset(args.out, notes=args.notes, seed=args.seed, overwrite=args.overwrite)
    print(f"Wrote {args.notes} synthetic notes (seed {args.seed}) to {path} in {time.perf_counter() - start:.1f} s")
    return 0


def _make_nsynth_mini(args: argparse.Namespace) -> int:
    from keras_timbre.data.readers import read_notes
    from keras_timbre.data.subset import make_subset

    start = time.perf_counter()
    path = make_subset(
        args.source, args.out, max_per_family=args.per_family, overwrite=args.overwrite, **filter_kwargs(args)
    )
    count = len(read_notes(path))
    print(f"Wrote {count} notes to {path} in {time.perf_counter() - start:.1f} s")
    return 0


def _cache_features(args: argparse.Namespace) -> int:
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.data import feature_cache
    from keras_timbre.data.readers import read_notes
    from keras_timbre.data.skips import SkipReport

    frontend = FrontendConfig.load(args.frontend) if args.frontend else FrontendConfig()
    skips = SkipReport()
    records = read_notes(args.source, skips=skips, **filter_kwargs(args))
    shard = args.notes_per_shard or feature_cache.DEFAULT_NOTES_PER_SHARD
    start = time.perf_counter()
    cache = feature_cache.ensure_feature_cache(records, args.out, frontend, notes_per_shard=shard, skips=skips)
    print(
        f"Feature cache {args.out}: {cache.num_notes} notes in {len(cache.shards)} shards "
        f"({time.perf_counter() - start:.1f} s); {len(cache.build_skips)} note(s) skipped when it was built"
    )
    return 0


def _make_labels(args: argparse.Namespace) -> int:
    from keras_timbre.data.labels import label_notes
    from keras_timbre.data.skips import SkipReport

    skips = SkipReport(verbose=False)
    start = time.perf_counter()
    summary = label_notes(args.data_dir, skips=skips)
    print(
        f"{summary['path']}: {summary['labelled']} note(s) labelled, {summary['reused']} kept from before, "
        f"{summary['skipped']} skipped ({time.perf_counter() - start:.1f} s)"
    )
    print(skips.summary())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from keras_timbre.audio.frontend import FrontendConfig
    from keras_timbre.data.readers import count_labels
    from keras_timbre.data.readers import read_notes
    from keras_timbre.data.skips import SkipReport

    frontend = FrontendConfig.load(args.frontend) if args.frontend else FrontendConfig()
    start = time.perf_counter()
    skips = SkipReport(verbose=False)
    records = read_notes(args.data_dir, skips=skips, **filter_kwargs(args))
    counts = count_labels(records)
    print(f"{args.data_dir}: {len(records)} notes listed")
    for label in ("family", "source"):
        print(f"  notes per {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts[label].items())))
    accumulator, extremes = _read_features(records, frontend, skips)
    seconds = time.perf_counter() - start

    print(skips.summary())
    if accumulator.notes == 0:
        print(f"No note of {args.data_dir} could be read.", file=sys.stderr)
        return 1
    _print_feature_summary(accumulator, extremes, frontend)
    read = accumulator.notes
    print(f"read {read} of {len(records)} notes in {seconds:.1f} s: {read / seconds:.0f} notes/s")
    return 0


def _read_features(records, frontend, skips):
    """Every note through the training pipeline: the stats accumulator and (min, max, bins at the floor)."""
    import numpy as np
    from tqdm.auto import tqdm

    from keras_timbre.audio.stats import FeatureStatsAccumulator
    from keras_timbre.data.pipeline import feature_dataset

    dataset = feature_dataset(records, frontend, None, batch_size=64, cache=False, with_labels=True, skips=skips)
    accumulator = FeatureStatsAccumulator(frontend.n_mels)
    low, high, at_floor = np.inf, -np.inf, 0
    for x, _ in tqdm(dataset, total=-(-len(records) // 64), desc="reading", unit="batch", disable=None):
        x = x.numpy()
        accumulator.add(x)
        low, high = min(low, float(x.min())), max(high, float(x.max()))
        at_floor += int(np.sum(x <= frontend.floor_db + 1e-3))
    return accumulator, (low, high, at_floor)


def _print_feature_summary(accumulator, extremes, frontend) -> None:
    import numpy as np

    low, high, at_floor = extremes
    stats = accumulator.result()
    mean, std = stats.mean.astype(np.float64), stats.std.astype(np.float64)
    print(f"features: {accumulator.notes} notes x {frontend.feature_shape} log-mel (dB)")
    print(
        f"  mean {mean.mean():.1f} dB, std {np.sqrt(np.mean(std**2 + (mean - mean.mean())**2)):.1f} dB, "
        f"min {low:.1f} dB, max {high:.1f} dB, {100 * at_floor / (accumulator.frames * frontend.n_mels):.1f}% of "
        f"bins at the floor ({frontend.floor_db:.0f} dB)"
    )
    quarters = np.array_split(np.arange(frontend.n_mels), 4)
    print("  mean dB by mel quarter (low to high): " + ", ".join(f"{mean[q].mean():.1f}" for q in quarters))
