"""Quick random search: a first look at how β and the mel-gradient weight matter.

Eight short trials on a subset of the notes (10 per instrument). Copy this
file, edit RANGES / FIXED / SETTINGS, and run it:

    python tuning/quick_random.py --data ../shared/nsynth-mini --out searches/quick

Rerun the same command after an interruption: the search continues where it
stopped. Results: OUT/trials.md, OUT/trials.csv,
OUT/figures/objective_vs_beta_and_grad_weight.png and OUT/best (a run
directory for `keras-timbre evaluate` and `export`).
"""

import argparse

# Narrow (or open up) hyperparameters: (low, high) for floats, a list for choices.
# Names: beta, grad_weight, reconstruction, latent_dim, learning_rate,
# use_skips, skip_dropout, time_grad_weight, free_bits (see docs/tuning.md).
RANGES = {
    "beta": (1e-4, 1e-1),
    "grad_weight": (0.0, 2.0),
    "latent_dim": [32, 64],
}
# Pin hyperparameters to one value.
FIXED = {
    "reconstruction": "mse",
    "learning_rate": 1e-3,
}
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
    result = run_search(args.out, data=args.data, ranges=RANGES, fixed=FIXED, **settings)
    if result.best:
        print("best hyperparameters:", {k: result.best[k] for k in (*RANGES, *FIXED)})


if __name__ == "__main__":
    main()
