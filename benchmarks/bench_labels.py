"""Octave errors of the estimated pitch (`make-dataset labels`) per instrument family, names hidden.

Each note of an NSynth-named folder is linked into a temporary folder under a
name that says nothing (`note-0001.flac`, ...), labelled there by
`keras_timbre.data.labels.label_notes` (what `keras-timbre make-dataset labels`
runs), and its estimate compared with the pitch its real name gives:

- exact: the estimate is the named pitch;
- octave up / down: it is off by a whole number of octaves (12, 24... semitones);
- other: off by anything else (a fifth, a semitone...);
- none: no pitch found (the note would be skipped).

pYIN takes about 0.1 s per note on one core: all 1,100 notes of nsynth-mini in about 2-3 minutes.

Usage (from the repository root; needs ../shared/nsynth-mini or --data):
    python benchmarks/bench_labels.py [--data DIR] [--per-family N] [--out FILE]

Writes benchmarks/results/labels.md (the table) and labels.json (every note's estimate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keras_timbre import atomic  # noqa: E402
from keras_timbre.data import SkipReport  # noqa: E402
from keras_timbre.data.labels import label_notes  # noqa: E402
from keras_timbre.data.readers import AUDIO_EXTENSIONS  # noqa: E402
from keras_timbre.data.readers import parse_note_name  # noqa: E402

KINDS = ("exact", "octave up", "octave down", "other", "none")


def pick_notes(audio_dir: Path, per_family: int | None) -> list[Path]:
    """NSynth-named audio files, at most `per_family` per family (evenly spaced over the sorted names)."""
    by_family = defaultdict(list)
    for file in sorted(audio_dir.iterdir()):
        if file.suffix.lower() in AUDIO_EXTENSIONS and parse_note_name(file.stem):
            by_family[parse_note_name(file.stem)["family"]].append(file)
    picked = []
    for files in by_family.values():
        if per_family is not None and len(files) > per_family:
            files = [files[i] for i in np.linspace(0, len(files) - 1, per_family).round().astype(int)]
        picked.extend(files)
    return picked


def estimate_hidden(files: list[Path]) -> dict[str, int | None]:
    """`{real name: estimated pitch or None}`, labelled under hidden names."""
    with tempfile.TemporaryDirectory() as tmp:
        hidden = {}
        for i, file in enumerate(files):
            name = f"note-{i:04d}{file.suffix.lower()}"
            os.symlink(file.resolve(), Path(tmp) / name)
            hidden[name] = file.stem
        label_notes(tmp, skips=SkipReport(verbose=False), progress=False)
        labels = json.loads((Path(tmp) / "labels.json").read_text()) if (Path(tmp) / "labels.json").exists() else {}
    return {real: labels.get(name, {}).get("pitch") for name, real in hidden.items()}


def kind_of(estimate: int | None, truth: int) -> str:
    """The error kind of one estimate (see the module docstring)."""
    if estimate is None:
        return "none"
    offset = estimate - truth
    if offset == 0:
        return "exact"
    if offset % 12 == 0:
        return "octave up" if offset > 0 else "octave down"
    return "other"


def table(estimates: dict[str, int | None]) -> str:
    """Markdown: per family, notes and the % of each error kind; the commonest other offsets."""
    counts, offsets = defaultdict(Counter), Counter()
    for name, estimate in estimates.items():
        labels = parse_note_name(name)
        kind = kind_of(estimate, labels["pitch"])
        counts[labels["family"]][kind] += 1
        counts["all"][kind] += 1
        if kind == "other":
            offsets[estimate - labels["pitch"]] += 1
    lines = ["| family | notes | " + " | ".join(f"{k} %" for k in KINDS) + " |", "|---" * (len(KINDS) + 2) + "|"]
    for family in sorted(counts, key=lambda f: (f == "all", f)):
        total = sum(counts[family].values())
        cells = " | ".join(f"{100 * counts[family][k] / total:.1f}" for k in KINDS)
        lines.append(f"| {'**all**' if family == 'all' else family} | {total} | {cells} |")
    common = ", ".join(f"{o:+d}: {n}" for o, n in offsets.most_common(8))
    return "\n".join(lines) + f"\n\nCommonest other offsets (semitones: notes): {common or 'none'}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "nsynth-mini")
    parser.add_argument("--per-family", type=int, default=None, help="at most N notes per family (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "labels.md")
    args = parser.parse_args(argv)
    audio_dir = args.data / "audio" if (args.data / "audio").is_dir() else args.data
    files = pick_notes(audio_dir, args.per_family)
    if not files:
        print(f"no NSynth-named notes in {audio_dir}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    estimates = estimate_hidden(files)
    seconds = time.perf_counter() - start
    report = (
        f"# Estimated pitch against NSynth's labels, names hidden\n\n"
        f"`python benchmarks/bench_labels.py{'' if args.per_family is None else f' --per-family {args.per_family}'}`"
        f" on {len(files)} notes of {args.data.name}; {seconds:.0f} s ({seconds / len(files):.2f} s/note) on "
        f"{platform.processor() or platform.machine()}, one process.\n\n{table(estimates)}"
    )
    atomic.write_text(args.out, report)
    atomic.write_json(args.out.with_suffix(".json"), estimates)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
