"""Quick random search: a first look at how β and the mel-gradient weight matter.

Eight short trials on a subset of the notes (10 per instrument). Copy this
file, edit HYPERPARAMETERS / SETTINGS, and run it:

    python tuning/quick_random.py --data ../shared/nsynth-mini --out searches/quick

Rerun the same command after an interruption: the search continues where it
stopped. Results: OUT/trials.md, OUT/trials.csv,
OUT/figures/objective_vs_beta_and_grad_weight.png and OUT/best (a run
directory for `keras-timbre evaluate` and `export`).
"""

import argparse

import keras_tuner as kt

# KerasTuner's own HyperParameters: declare an entry to narrow (hp.Float, hp.Choice) or
# pin (hp.Fixed) it; every entry left out is searched over its default range.
# Names: beta, grad_weight, reconstruction, latent_dim, learning_rate,
# use_skips, skip_dropout, time_grad_weight, free_bits (see docs/tuning.md).
HYPERPARAMETERS = kt.HyperParameters()
# In the space's own order (docs/tuning.md): the oracle draws entries in the order they are declared.
HYPERPARAMETERS.Float("beta", 1e-4, 1e-1, sampling="log")
HYPERPARAMETERS.Float("grad_weight", 0.0, 2.0)
HYPERPARAMETERS.Fixed("reconstruction", "mse")
HYPERPARAMETERS.Choice("latent_dim", [32, 64])
HYPERPARAMETERS.Fixed("learning_rate", 1e-3)
SETTINGS = dict(
    tuner="random",
    max_trials=8,
    epochs=3,
    batch_size=16,
    max_per_instrument=10,
    objective_name="val_lsd",  # held-out log-spectral distance (dB); independent of beta
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="NSynth-format data (default: the built-in synthetic notes)")
    parser.add_argument("--out", default="searches/quick_random", help="search directory (default: %(default)s)")
    parser.add_argument("--max-trials", type=int, default=SETTINGS["max_trials"])
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    args = parser.parse_args()

    from keras_timbre.tuning.search import run_search

    settings = dict(SETTINGS, max_trials=args.max_trials, epochs=args.epochs)
    result = run_search(args.out, data=args.data, hyperparameters=HYPERPARAMETERS, **settings)
    if result.best:
        print("best hyperparameters:", {entry.name: result.best[entry.name] for entry in HYPERPARAMETERS.space})


if __name__ == "__main__":
    main()
