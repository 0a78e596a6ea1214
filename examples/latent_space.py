"""Plot the latent means of a dataset's notes, coloured by instrument family.

python examples/latent_space.py runs/main --data ../shared/nsynth-mini --out latent.png
"""

import argparse

from keras_timbre.training.run import load_run
from keras_timbre.data import load_features, read_notes
from keras_timbre.analysis.plots import plot_latent_pca

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run", help="run directory from `keras-timbre train`")
parser.add_argument("--data", required=True, help="NSynth-format notes to embed")
parser.add_argument("--out", default="latent.png")
args = parser.parse_args()

run = load_run(args.run)
notes = read_notes(args.data, max_per_instrument=10)
features, notes = load_features(notes, run.frontend, run.stats)  # normalised, (N, mels, frames, 1)
z_mean, _ = run.model.encode(features)
plot_latent_pca(
    args.out, z_mean, [note.family for note in notes], title=f"{run.variant}: latent means of notes of {args.data}"
)
print(f"Wrote {args.out} ({len(notes)} notes)")
