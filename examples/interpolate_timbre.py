"""Morph the timbre of one note into another by walking the latent line between them.

python examples/interpolate_timbre.py runs/main A.wav B.wav --steps 5 --out morph/
"""

import argparse
from pathlib import Path

import keras
import numpy as np
import soundfile as sf

from keras_timbre import log_mel, mel_to_audio
from keras_timbre.data import load_audio
from keras_timbre.analysis.plots import plot_interpolation
from keras_timbre.training.run import load_run

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run")
parser.add_argument("a")
parser.add_argument("b")
parser.add_argument("--steps", type=int, default=5, help="points from A to B, both included")
parser.add_argument("--out", default="morph")
args = parser.parse_args()
if args.steps < 2:
    parser.error(f"argument --steps: must be >= 2 (both ends, A and B), got {args.steps}")

run = load_run(args.run)
rate = run.frontend.sample_rate
notes = [log_mel(load_audio(p, rate, run.frontend.num_samples), rate, run.frontend) for p in (args.a, args.b)]
x = run.stats.normalize(np.stack(notes))[..., None].astype("float32")
z_mean, _ = run.model.encode(x)
z_a, z_b = keras.ops.convert_to_numpy(z_mean)
alphas = np.linspace(0, 1, args.steps)
z = np.stack([(1 - a) * z_a + a * z_b for a in alphas]).astype("float32")
decoded = run.stats.denormalize(keras.ops.convert_to_numpy(run.model.decode(z))[..., 0])

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
plot_interpolation(out / "strip.png", decoded, run.frontend, alphas)
for i, spectrogram in enumerate(decoded):
    sf.write(out / f"step_{i:02d}.wav", mel_to_audio(spectrogram, run.frontend), rate)
print(f"Wrote {out}/strip.png and {len(decoded)} WAVs")
