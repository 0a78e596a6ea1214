"""`train(...)`: one resumable training run of a TimbreVAE, written to a run directory.

The CLI (`keras-timbre train`), the examples and the ablation all call it.
It reads notes, holds out pitches per instrument for validation, computes the
normalisation statistics on the training split, fits the model with Keras' own
`fit`, and leaves a complete run directory (see `keras_timbre.training.run`):
the model, frontend config, statistics, `history.csv`, TensorBoard logs,
reconstruction figures every few epochs and training curves.

`train` holds the run directory's lock (`keras_timbre.training.lock`) while it
runs. Rerunning the same call after an interruption continues from the last
finished epoch exactly as the unbroken run would have
(`keras_timbre.training.resume`); a finished run is left as it is, or trained
on if asked for more epochs. Any other change of settings is refused, naming
the setting; `restart=True` trains the run again from scratch.

Example:
>>> run = train("runs/demo", epochs=2)  # doctest: +SKIP
>>> sorted(p.name for p in run.path.iterdir())  # doctest: +SKIP
['audio', 'checkpoints', 'config.json', 'figures', 'frontend.json', 'history.csv', ...]
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import keras

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data.locate import resolve_data
from keras_timbre.data.split import DEFAULT_VAL_FRACTION
from keras_timbre.models.training_defaults import resolve_precision
from keras_timbre.models.variants import DEFAULT_VARIANT, check_variant, model_class
from keras_timbre.training import run as runs
from keras_timbre.data.split import load_log_mel, split_data
from keras_timbre.models.code_prior import CodePrior
from keras_timbre.models.inference import latent_means
from keras_timbre.training.data import TrainingData, training_data
from keras_timbre.training.distribute import distribution_scope
from keras_timbre.training.lock import lock_run
from keras_timbre.training.resume import EpochCheckpoint, RunState, clear_run, read_state
from keras_timbre.analysis import plots
from keras_timbre.models.training_defaults import default_optimizer
from keras_timbre.models.variants import build_model
from keras_timbre.training import callbacks
from keras_timbre.training.tensorboard import TimbreProjector
from keras_timbre.vocoder.render import renderer_for

DEFAULT_EPOCHS = 12
DEFAULT_BATCH_SIZE = 16


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
    split_seed: int | None = None,
    frontend: FrontendConfig | None = None,
    max_per_instrument: int | None = None,
    precision: str = "auto",
    figure_every: int = 5,
    distribute: str = "none",
    cache: str | os.PathLike | None = None,
    model_kwargs: dict[str, Any] | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    restart: bool = False,
    vocoder: str | os.PathLike | None = None,
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
        seed: Seed of the weights, the data order, the sampling noise and, unless
            `split_seed` is given, of the split.
        split_seed: Seed of the choice of held-out pitches; None follows `seed`.
            Give one value to runs of several seeds that must share their
            validation notes (as the ablation does).
        frontend: Feature config; the default `FrontendConfig()` if None.
        max_per_instrument: Keep at most this many notes per instrument.
        precision: "float32", "mixed_bfloat16" (bf16 compute, float32
            weights) or "auto": bf16 on TensorFlow and torch where the CPU has
            native bf16, float32 elsewhere
            (`keras_timbre.models.training_defaults.resolve_precision`). A resumed run
            keeps the precision it started with.
        figure_every: Draw reconstructions every this many epochs.
        distribute: "none", "auto" or "data-parallel" (see `keras_timbre.training.distribute`).
        cache: Stream log-mel from feature caches in this folder (`train/` and
            `val/`, built on first use, rebuilt when stale; see
            `keras_timbre.data.feature_cache`) instead of holding every note in
            memory: for data sets larger than RAM, such as full NSynth.
        model_kwargs: More `TimbreVAE.from_variant` arguments.
        callbacks: Extra Keras callbacks, run after the built-in ones.
        verbose: Keras `fit` verbosity (progress bar by default).
        restart: Train from scratch: once the data and settings of the new
            run are checked and its model is built, remove what the earlier
            run wrote in `out` (`keras_timbre.training.resume.clear_run`:
            only in a run directory, only the run's own files).
        vocoder: What renders TensorBoard's audio (`keras_timbre.vocoder.render.renderer_for`; default:
            the shipped vocoder where it fits the run's features, else Griffin-Lim). Not a setting of the run.

    Returns:
        The finished run (`keras_timbre.training.run.Run`).

    Raises:
        ValueError: a bad argument, or `out` holds a run with other settings.
        keras_timbre.training.lock.RunLockedError: another process trains into `out`.
    """
    if check_variant(variant) and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    out, frontend, started = Path(out), frontend or FrontendConfig(), time.perf_counter()
    split_seed = seed if split_seed is None else split_seed
    data_path = resolve_data(data).resolve()
    renderer_for(frontend, vocoder)  # a vocoder that cannot voice the run is refused before any work
    runs.check_run_directory(out, data_path)  # before the lock: a folder that is not a run gets nothing
    hyperparameters = {
        **dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, beta=beta),
        **dict(grad_weight=grad_weight, latent_dim=latent_dim, warmup_epochs=warmup_epochs),
        **dict(max_per_instrument=max_per_instrument, precision=resolve_precision(precision), **(model_kwargs or {})),
    }
    with lock_run(out):
        split = split_data(data_path, val_fraction, split_seed, max_per_instrument)  # data/, asked once
        config = runs.run_config(variant, hyperparameters, str(data_path), split.summary(), seed, split.fingerprint)
        config.update({} if cache is None else {"feature_cache": str(cache)})
        # --restart clears the old run only once the new one's data, model and settings are known good (_fit).
        state = RunState(out, restart=runs.is_run_directory(out)) if restart else read_state(out, config, frontend)
        if state.done >= epochs:
            return _already_trained(out, state.done, epochs, split.train)
        keras.utils.set_random_seed(seed)
        model_type = model_class(variant)
        model_settings = {**hyperparameters, **model_type.settings_from_notes(split.train, frontend)}
        notes = training_data(split.train, split.val, frontend, batch_size, seed, state.stats, cache, model_type)
        model_settings.update(model_type.settings_from_stats(notes.stats))
        config["split"].update(notes.counts)  # notes read, skipped files left out
        _announce(variant, out, data_path, frontend, config, state.done, cache)
        extra = _callbacks(out, notes, frontend, (figure_every, epochs, warmup_epochs), vocoder) + list(callbacks or [])
        model = _fit(out, variant, config, state, notes, frontend, seed, model_settings, distribute, extra, verbose)
        fit_code_prior(runs.Run(out, model, frontend, notes.stats, config), split.train)
    _plot_history(out)
    print(f"Trained {variant} in {time.perf_counter() - started:.0f} s; model at {out / runs.MODEL_FILE}")
    return runs.Run(path=out, model=model, frontend=frontend, stats=notes.stats, config=config)


def _fit(out, variant, config, state, notes, frontend, seed, hyperparameters, distribute, all_callbacks, verbose):
    """Builds or restores the model, writes the run directory's files, and fits to `hyperparameters["epochs"]`."""
    epochs, batch_size = hyperparameters["epochs"], hyperparameters["batch_size"]
    with distribution_scope(distribute) as info:
        info.check_global_batch_size(batch_size)
        model = state.restore() if state.checkpoint else _new_model(variant, frontend, seed, hyperparameters)
        if state.restart:
            clear_run(out)
        config["hyperparameters"]["model"] = model.run_settings()  # what the model really uses, defaults included
        runs.create_run(out, frontend, notes.stats, config)
        model.fit(
            notes.train,
            validation_data=notes.validation,
            epochs=epochs,
            initial_epoch=state.done,
            shuffle=False,  # EpochOrder shuffles the dataset
            callbacks=all_callbacks,
            verbose=verbose,
        )
    return model


# The most training notes whose codes the code prior is fit to (about 0.5 GB of 4 s log-mels).
CODE_PRIOR_NOTES = 4096


def _already_trained(out: Path, done: int, epochs: int, train_records) -> runs.Run:
    """The finished run; its code prior fit if it has none (interrupted after the last epoch, or older)."""
    print(f"{out} already has {done} finished epochs (asked for {epochs}); nothing to train.")
    run = runs.load_run(out)
    if not (out / runs.CODE_PRIOR_FILE).is_file():
        fit_code_prior(run, train_records)
    return run


def fit_code_prior(run: runs.Run, records) -> CodePrior:
    """Fits the run's code prior to the posterior means of its training notes `records`; writes `code_prior.npz`.

    At most `CODE_PRIOR_NOTES` notes, evenly spaced, are read: a full NSynth would not fit in memory.
    """
    records = list(records)[:: -(-len(records) // CODE_PRIOR_NOTES) or 1]
    log_mel_db, kept = load_log_mel(records, run.frontend)
    codes, _ = latent_means(run.model, log_mel_db, run.stats, records=kept)
    prior = CodePrior.fit(codes)
    prior.save(run.path / runs.CODE_PRIOR_FILE)
    print(f"Code prior: {len(prior.weights)} Gaussians fit to {len(codes)} training codes ({runs.CODE_PRIOR_FILE})")
    return prior


def _announce(variant, out, data_path, frontend, config, done, cache) -> None:
    split = config["split"]
    print(
        f"Training {variant} on {split['train_notes']} notes ({split['val_notes']} held out) from {data_path}; "
        f"features {frontend.feature_shape}; run directory {out}"
        + (f"; resuming after epoch {done}" if done else "")
        + (f"; streaming features from {cache}" if cache is not None else "")
    )


def _new_model(variant: str, frontend: FrontendConfig, seed: int, hyperparameters: dict[str, Any]):
    """A compiled model: arguments from `hyperparameters`, those left None at the model's defaults."""

    training_only = {"epochs", "batch_size", "learning_rate", "warmup_epochs", "max_per_instrument", "precision"}
    kwargs = {k: v for k, v in hyperparameters.items() if k not in training_only and v is not None}
    kwargs["dtype"] = hyperparameters["precision"]
    model = build_model(variant, input_shape=(*frontend.feature_shape, 1), seed=seed, **kwargs)
    model.compile(optimizer=default_optimizer(hyperparameters["learning_rate"]))
    return model


def _callbacks(out: Path, notes: TrainingData, frontend: FrontendConfig, schedule: tuple, vocoder) -> list:
    """The built-in callbacks; CSVLogger before EpochCheckpoint, so a checkpoint's epoch is always in history.csv.

    `schedule` is `(figure_every, epochs, warmup_epochs)`.
    """
    import keras

    figure_every, epochs, warmup_epochs = schedule
    return [
        notes.order,
        callbacks.BetaWarmup(warmup_epochs=warmup_epochs),
        callbacks.NaNGuard(),
        keras.callbacks.CSVLogger(str(out / runs.HISTORY_FILE), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0),
        EpochCheckpoint(out),
        callbacks.ReconstructionFigures(
            out / "figures",
            notes.figure_db,
            notes.figure_titles,
            notes.stats,
            frontend,
            figure_every,
            epochs,
            records=notes.figure_records,
        ),
    ] + _projector(out, notes, frontend, figure_every, vocoder)


def _projector(out: Path, notes: TrainingData, frontend: FrontendConfig, every: int, vocoder) -> list:
    """TensorBoard's projector, images and audio of the shown notes (none if no note was read)."""

    if notes.shown_db is None:
        return []
    shown = (notes.shown_db, notes.shown_records, notes.stats)
    return [TimbreProjector(out / "logs", *shown, frontend, every=every, vocoder=vocoder)]


def _plot_history(out: Path) -> None:

    with contextlib.suppress(ValueError, FileNotFoundError):
        plots.plot_history(out / "figures" / "training_curves.png", out / runs.HISTORY_FILE)
