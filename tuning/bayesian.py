"""Bayesian optimisation (Gaussian process) over the whole default space.

After `max_trials // 3` random trials, each new trial is chosen where the
Gaussian-process model of `val_lsd` expects the most improvement. Worth it
when trials are expensive: here, 30 trials of 10 epochs on every note.

    python tuning/bayesian.py --data ../shared/nsynth-mini --out searches/bayesian

Rerun the same command to continue an interrupted search, or with a larger
--max-trials to extend a finished one.
"""

import argparse

import keras_tuner as kt

# The default space (docs/tuning.md) with beta kept to where the KL term
# neither vanishes nor swamps the reconstruction on NSynth.
HYPERPARAMETERS = kt.HyperParameters()
HYPERPARAMETERS.Float("beta", 1e-4, 0.3, sampling="log")
SETTINGS = dict(
    tuner="bayesian",
    max_trials=30,
    epochs=10,
    batch_size=16,
    objective_name="val_lsd",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="NSynth-format data (default: the built-in synthetic notes)")
    parser.add_argument("--out", default="searches/bayesian", help="search directory (default: %(default)s)")
    parser.add_argument("--max-trials", type=int, default=SETTINGS["max_trials"])
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    args = parser.parse_args()

    from keras_timbre.tuning.search import run_search

    settings = dict(SETTINGS, max_trials=args.max_trials, epochs=args.epochs)
    run_search(args.out, data=args.data, hyperparameters=HYPERPARAMETERS, **settings)


if __name__ == "__main__":
    main()
