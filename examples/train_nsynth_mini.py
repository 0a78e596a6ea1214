"""Train a TimbreVAE on nsynth-mini with plain `model.fit` and the public API.

    python examples/train_nsynth_mini.py --data ../shared/nsynth-mini --epochs 5 --out runs/nsynth_mini

Pitches are held out per instrument, so validation notes are pitches the model
never heard for that instrument. The result is a run directory that
`keras-timbre evaluate` and the other examples read.
"""

import argparse

import keras

from keras_timbre.training import run as runs
from keras_timbre.training.callbacks import BetaWarmup
from keras_timbre.data import compute_stats, feature_dataset, read_notes, split_notes
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.models.timbre_vae import TimbreVAE

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default="../shared/nsynth-mini")
parser.add_argument("--variant", default="skip+grad")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--out", default="runs/nsynth_mini")
args = parser.parse_args()

keras.utils.set_random_seed(0)
frontend = FrontendConfig()
train_notes, val_notes = split_notes(read_notes(args.data), val_fraction=0.15, seed=0)
stats = compute_stats(train_notes, frontend)  # from the training split only
train_ds = feature_dataset(train_notes, frontend, stats, batch_size=16, shuffle=True)
val_ds = feature_dataset(val_notes, frontend, stats, batch_size=16)

config = runs.run_config(
    args.variant,
    {"epochs": args.epochs},
    args.data,
    {"method": "pitch held out per instrument", "val_fraction": 0.15, "split_seed": 0},
    seed=0,
)
runs.create_run(args.out, frontend, stats, config)  # frontend.json, stats.npz, config.json

model = TimbreVAE.from_variant(args.variant, input_shape=(*frontend.feature_shape, 1))
model.compile()
model.fit(
    train_ds,  # the VAE reconstructs its input: no targets needed
    validation_data=val_ds,
    epochs=args.epochs,
    callbacks=[BetaWarmup(warmup_epochs=2), keras.callbacks.CSVLogger(f"{args.out}/history.csv")],
)
runs.save_model(args.out, model)
print(f"Saved {args.out}; next: keras-timbre evaluate {args.out}")
