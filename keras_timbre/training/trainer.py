"""`train(...)`: one resumable training run of a TimbreVAE, written to a run directory.

The CLI (`keras-timbre train`), the examples and the ablation all call it.
It reads notes, holds out pitches per instrument for validation, computes the
normalisation statistics on the training split, fits the model with Keras' own
`fit`, and leaves a complete run directory (see `keras_timbre.runs`):
the model, frontend config, statistics, `history.csv`, TensorBoard logs,
reconstruction figures every few epochs and training curves.

Rerunning the same call after an interruption continues from the last finished
epoch (`keras.callbacks.BackupAndRestore`); a finished run is left as it is.

Example:
>>> run = train("runs/demo", epochs=2)  # doctest: +SKIP
>>> sorted(p.name for p in run.path.iterdir())  # doctest: +SKIP
['audio', 'checkpoints', 'config.json', 'figures', 'frontend.json', 'history.csv', ...]
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_timbre import atomic
from keras_timbre.training import run as runs
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.models.variants import DEFAULT_VARIANT, VARIANTS, check_variant
from keras_timbre.data.locate import check_data_dir, resolve_data
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, diverse_notes, load_log_mel, load_split
from keras_timbre.models.inference import reconstruct_db

DEFAULT_EPOCHS = 12
DEFAULT_BATCH_SIZE = 16
FIGURE_NOTES = 3
MODEL_KEYS = (
    "latent_dim",
    "filters",
    "beta",
    "grad_weight",
    "time_grad_weight",
    "skip_dropout",
    "free_bits",
    "reconstruction",
    "normalization",
    "use_skips",
)


def completed_epochs(history_csv: Path) -> int:
    """Epochs recorded in a CSVLogger file (0 if none)."""
    if not history_csv.is_file():
        return 0
    with open(history_csv, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def _callbacks(run_path: Path, model, stats, figure_db, figure_titles, frontend, figure_every, epochs, warmup_epochs):
    import keras

    from keras_timbre.training import callbacks as timbre_callbacks
    from keras_timbre.analysis import plots

    class SaveAndPlot(keras.callbacks.Callback):
        """Saves model.keras after every epoch and draws reconstructions every few."""

        def on_epoch_end(self, epoch, logs=None):
            runs.save_model(run_path, self.model)
            if figure_db is not None and ((epoch + 1) % figure_every == 0 or epoch + 1 == epochs):
                recon = reconstruct_db(self.model, figure_db, stats)
                plots.plot_reconstructions(
                    run_path / "figures" / f"reconstruction_epoch_{epoch + 1:03d}.png",
                    figure_db,
                    {f"epoch {epoch + 1}": recon},
                    frontend,
                    titles=figure_titles,
                )

    return [
        keras.callbacks.BackupAndRestore(str(run_path / "checkpoints"), delete_checkpoint=True),
        timbre_callbacks.BetaWarmup(warmup_epochs=warmup_epochs),
        timbre_callbacks.NaNGuard(),
        keras.callbacks.CSVLogger(str(run_path / runs.HISTORY_FILE), append=True),
        keras.callbacks.TensorBoard(str(run_path / "logs"), write_graph=False, profile_batch=0),
        SaveAndPlot(),
    ]


def train(
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    variant: str = DEFAULT_VARIANT,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = 1e-3,
    beta: float | None = None,
    grad_weight: float | None = None,
    latent_dim: int | None = None,
    warmup_epochs: int = 5,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    split_seed: int = 0,
    frontend: FrontendConfig | None = None,
    max_per_instrument: int | None = None,
    figure_every: int = 5,
    distribute: str = "none",
    cache: str | os.PathLike | None = None,
    model_kwargs: dict[str, Any] | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
) -> runs.Run:
    """Trains one TimbreVAE variant and writes the run directory `out`.

    Args:
        out: Run directory; created, or resumed if it holds an unfinished run.
        data: NSynth-format data directory; None for the built-in synthetic set.
        variant: "baseline", "skip", "grad" or "skip+grad".
        epochs: Total epochs (a resumed run trains only the missing ones).
        batch_size: Global batch size.
        learning_rate: Adam learning rate (gradients clipped at norm 1).
        beta: KL weight after warm-up; None keeps the model's default.
        grad_weight: Mel-gradient loss weight for grad variants; None keeps the default.
        latent_dim: Latent size; None keeps the model's default.
        warmup_epochs: Epochs of linear beta warm-up from 0.
        val_fraction: Fraction of each instrument's pitches held out for validation.
        seed: Seed of the weights, the shuffling and the sampling noise.
        split_seed: Seed of the choice of held-out pitches (kept apart from
            `seed` so runs with different seeds share their validation notes).
        frontend: Feature config; the default `FrontendConfig()` if None.
        max_per_instrument: Keep at most this many notes per instrument.
        figure_every: Draw reconstructions every this many epochs.
        distribute: "none", "auto" or "data-parallel" (see `keras_timbre.distribute`).
        cache: Stream log-mel from feature caches in this folder (`train/` and
            `val/`, built on first use, rebuilt when stale; see
            `keras_timbre.data.feature_cache`) instead of holding every note in
            memory: for data sets larger than RAM, such as full NSynth.
        model_kwargs: More `TimbreVAE.from_variant` arguments.
        callbacks: Extra Keras callbacks, run after the built-in ones.
        verbose: Keras `fit` verbosity (progress bar by default).

    Returns:
        The finished run (`keras_timbre.runs.Run`).
    """
    import keras

    from keras_timbre.analysis import plots
    from keras_timbre.models.timbre_vae import TimbreVAE

    check_variant(variant)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    out = Path(out)
    data_path = resolve_data(data)
    frontend = frontend or FrontendConfig()
    if (out / runs.FRONTEND_FILE).is_file():
        FrontendConfig.load(out / runs.FRONTEND_FILE).check_matches(frontend, "requested frontend")
    if (out / runs.CONFIG_FILE).is_file():
        existing = json.loads((out / runs.CONFIG_FILE).read_text()).get("variant")
        if existing != variant:
            raise ValueError(
                f"{out} already holds a {existing!r} run; cannot resume it as {variant!r}. Use another --out."
            )
    done = completed_epochs(out / runs.HISTORY_FILE)
    if done >= epochs and (out / runs.MODEL_FILE).is_file() and not any((out / "checkpoints").glob("*")):
        print(f"{out} already has {done} finished epochs (asked for {epochs}); nothing to train.")
        return runs.load_run(out)
    # A finished run asked for more epochs continues from its saved model
    # (an interrupted one resumes from checkpoints/ through BackupAndRestore).
    extend_from = done if done and (out / runs.MODEL_FILE).is_file() and not any((out / "checkpoints").glob("*")) else 0

    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    if cache is None:
        train_records, train_db, val_records, val_db = load_split(
            data_path, frontend, val_fraction, split_seed, max_per_instrument
        )
        stats = FeatureStats.from_features(train_db)
        x_val = stats.to_model_input(val_db) if len(val_db) else None
        fit_inputs = dict(
            x=stats.to_model_input(train_db),
            validation_data=(x_val,) if x_val is not None else None,
            batch_size=batch_size,
            shuffle=True,
        )
        shown_db, shown_records = (val_db, val_records) if len(val_db) else (train_db, train_records)
        picks = diverse_notes(shown_records, FIGURE_NOTES)
        figure_db, figure_titles = shown_db[picks], [shown_records[i].note_str for i in picks]
    else:
        train_records, val_records, stats, fit_inputs, figure_db, figure_titles = _streamed_split(
            data_path, Path(cache), frontend, val_fraction, split_seed, max_per_instrument, batch_size, seed
        )
    hyperparameters = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "beta": beta,
        "grad_weight": grad_weight,
        "latent_dim": latent_dim,
        "warmup_epochs": warmup_epochs,
        "max_per_instrument": max_per_instrument,
        **(model_kwargs or {}),
    }
    split = {
        "method": "pitch held out per instrument",
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "train_notes": len(train_records),
        "val_notes": len(val_records),
    }
    config = runs.run_config(variant, hyperparameters, str(data_path), split, seed)
    if cache is not None:
        config["feature_cache"] = str(cache)
    runs.create_run(out, frontend, stats, config)
    print(
        f"Training {variant} on {len(train_records)} notes ({len(val_records)} held out) from {data_path}; "
        f"features {frontend.feature_shape}; run directory {out}"
        + (f"; streaming features from {cache}" if cache is not None else "")
    )

    kwargs = dict(model_kwargs or {})
    for name, value in (("beta", beta), ("grad_weight", grad_weight), ("latent_dim", latent_dim)):
        if value is not None:
            kwargs[name] = value

    with _distribution(distribute) as info:
        if info is not None:
            info.check_global_batch_size(batch_size)
        model = TimbreVAE.from_variant(variant, input_shape=(*frontend.feature_shape, 1), seed=seed, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0))
        if extend_from:
            print(f"{out} has {extend_from} finished epochs: continuing to {epochs}.")
            model = keras.saving.load_model(out / runs.MODEL_FILE)
        # Record what the model really uses, defaults included.
        model_config = model.get_config()
        config["hyperparameters"]["model"] = {k: model_config[k] for k in MODEL_KEYS if k in model_config}
        atomic.write_json(out / runs.CONFIG_FILE, config)
        all_callbacks = _callbacks(
            out,
            model,
            stats,
            figure_db,
            figure_titles,
            frontend,
            figure_every,
            epochs,
            warmup_epochs,
        ) + list(callbacks or [])
        model.fit(**fit_inputs, epochs=epochs, initial_epoch=extend_from, callbacks=all_callbacks, verbose=verbose)
    runs.save_model(out, model)
    with contextlib.suppress(ValueError, FileNotFoundError):
        plots.plot_history(out / "figures" / "training_curves.png", out / runs.HISTORY_FILE)
    print(f"Trained {variant} in {time.perf_counter() - started:.0f} s; model at {out / runs.MODEL_FILE}")
    return runs.Run(path=out, model=model, frontend=frontend, stats=stats, config=config)


def _streamed_split(data_path, cache_dir, frontend, val_fraction, split_seed, max_per_instrument, batch_size, seed):
    """The split as streamed tf.data from feature caches, for data larger than memory."""
    from keras_timbre.data import FAMILIES, read_notes, split_notes
    from keras_timbre.data.feature_cache import ensure_feature_cache

    records = read_notes(data_path, max_per_instrument=max_per_instrument)
    train_records, val_records = split_notes(records, val_fraction=val_fraction, seed=split_seed)
    train_cache = ensure_feature_cache(train_records, cache_dir / "train", frontend)
    stats = train_cache.stats
    # The dataset shuffles itself; fit's own shuffle only applies to arrays.
    fit_inputs = dict(x=train_cache.dataset(stats, batch_size=batch_size, shuffle=True, seed=seed), shuffle=False)
    figure_db, figure_titles = None, []
    if val_records:
        val_cache = ensure_feature_cache(val_records, cache_dir / "val", frontend)
        fit_inputs["validation_data"] = val_cache.dataset(stats, batch_size=batch_size)
        shown, labels = next(iter(val_cache.dataset(None, batch_size=FIGURE_NOTES, with_labels=True)))
        figure_db = np.asarray(shown)[..., 0]
        figure_titles = [
            f"{FAMILIES[int(family)] if 0 <= int(family) < len(FAMILIES) else 'note'} pitch {int(pitch)}"
            for family, pitch in zip(labels["family"], labels["pitch"])
        ]
    return train_records, val_records, stats, fit_inputs, figure_db, figure_titles


@contextlib.contextmanager
def _distribution(mode: str):
    """`keras_timbre.distribute.distribution_scope` where it exists; nothing for "none"."""
    if mode == "none":
        yield None
        return
    try:
        from keras_timbre.training.distribute import distribution_scope
    except ImportError:
        if mode == "data-parallel":
            raise ValueError("data-parallel training needs keras_timbre.distribute, which is not installed")
        yield None
        return
    with distribution_scope(mode) as info:
        yield info
