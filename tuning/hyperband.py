"""Hyperband: many short trials, the best promoted to longer training.

With `epochs=27` and KerasTuner's reduction factor 3, brackets start many
models at 1, 3 or 9 epochs and keep training only the best third of each
round, up to 27 epochs; a promoted trial continues from its parent's
checkpoint. Good when a few epochs already rank configurations well.

    python tuning/hyperband.py --data ../shared/nsynth-mini --out searches/hyperband

`max_trials` caps the number of trials (Hyperband would otherwise run about
`epochs * log3(epochs)**2` epochs in all).
"""

import argparse

import keras_tuner as kt

# Architecture and loss choices matter most early; let Hyperband sort them out.
HYPERPARAMETERS = kt.HyperParameters()
HYPERPARAMETERS.Float("beta", 1e-4, 0.1, sampling="log")
HYPERPARAMETERS.Choice("latent_dim", [32, 64, 128])
HYPERPARAMETERS.Fixed("learning_rate", 1e-3)
SETTINGS = dict(
    tuner="hyperband",
    max_trials=60,
    epochs=27,
    batch_size=16,
    objective_name="val_lsd",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="NSynth-format data (default: the built-in synthetic notes)")
    parser.add_argument("--out", default="searches/hyperband", help="search directory (default: %(default)s)")
    parser.add_argument("--max-trials", type=int, default=SETTINGS["max_trials"])
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"], help="the most epochs any trial gets")
    args = parser.parse_args()

    from keras_timbre.tuning.search import run_search

    settings = dict(SETTINGS, max_trials=args.max_trials, epochs=args.epochs)
    run_search(args.out, data=args.data, hyperparameters=HYPERPARAMETERS, **settings)


if __name__ == "__main__":
    main()
