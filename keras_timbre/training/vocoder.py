"""`train_vocoder(data, out)`: one resumable vocoder run on waveform crops of real notes.

The run directory follows `keras-timbre train`'s conventions
(`keras_timbre.training`): one trainer at a time (`lock_run`), atomic writes,
`config.json` + `frontend.json`, `history.csv`, a per-epoch checkpoint
(`checkpoints/epoch-NNNN.keras` + `.json`, then `model.keras`), TensorBoard
scalars in `logs/` and, every `audio_every` epochs, TensorBoard audio of
held-out notes with their re-analysed mel LSD (also in `audio_checks.csv`).
Rerunning the same call continues after the last finished epoch exactly as
the unbroken run would: the crops of global step `g` are drawn from
`numpy.random.default_rng([seed, g])`, and the checkpoint holds the weights
and the optimizer. Any other change of settings is refused, naming it.

The notes: those of `data`, less the pitches `split_notes` holds out per
instrument and less one whole instrument per family (`vocoder_split`), so
the benchmark can score both unseen pitches and unseen instruments.

Example:
>>> run = train_vocoder("/work/shared/nsynth-mini", "/tmp/voc", epochs=1)  # doctest: +SKIP
>>> sorted(p.name for p in run.iterdir())  # doctest: +SKIP
['.train.lock', 'audio_checks.csv', 'checkpoints', 'config.json', 'frontend.json', 'history.csv', 'logs', ...]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from keras_timbre import atomic
from keras_timbre.analysis.metrics import lsd_db
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel
from keras_timbre.data.locate import resolve_data
from keras_timbre.data.pipeline import waveform_dataset
from keras_timbre.data.readers import NoteRecord, read_notes
from keras_timbre.data.skips import SkipReport
from keras_timbre.data.split import DEFAULT_VAL_FRACTION, split_notes
from keras_timbre.training import run as runs
from keras_timbre.training.lock import lock_run
from keras_timbre.training.resume import EpochCheckpoint, RunState, clear_run, read_state
from keras_timbre.vocoder.load import load_vocoder
from keras_timbre.vocoder.model import DEFAULT_BLOCKS, DEFAULT_CHANNELS, DEFAULT_LEARNING_RATE, Vocoder

VARIANT = "vocoder"
DEFAULT_EPOCHS = 60
DEFAULT_STEPS_PER_EPOCH = 200
DEFAULT_BATCH_SIZE = 16
DEFAULT_CROP_FRAMES = 64  # 1 s at the default hop
AUDIO_CHECKS_FILE = "audio_checks.csv"
_VALIDATION_CROPS = 32
_SHOWN_NOTES = 4


@dataclasses.dataclass
class Notes:
    """Whole notes in memory: `waveforms (N, samples)`, `log_mel_db (N, n_mels, n_frames)`, their records."""

    waveforms: np.ndarray
    log_mel_db: np.ndarray
    records: list[NoteRecord]

    def __len__(self) -> int:
        return len(self.records)


def vocoder_split(
    records: Sequence[NoteRecord], val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[NoteRecord], list[NoteRecord], list[NoteRecord]]:
    """`(train, held-out pitches, held-out instruments)`.

    One instrument of each family with at least three is held out whole
    (chosen by a stable hash of `seed` and its name); the rest are split by
    `keras_timbre.data.split.split_notes` (pitches held out per instrument).

    Example:
    >>> notes = [NoteRecord(f"/x/{f}_acoustic_00{i}-0{p}-100.wav", f"{f}_acoustic_00{i}-0{p}-100", family=f,
    ...          instrument=f"{f}_acoustic_00{i}", pitch=p) for f in ("bass", "flute") for i in range(3)
    ...          for p in range(40, 50)]
    >>> train, pitches, instruments = vocoder_split(notes)
    >>> len(train), len(pitches), len(instruments), sorted({r.family for r in instruments})
    (32, 8, 20, ['bass', 'flute'])
    """
    by_family = defaultdict(set)
    for record in records:
        by_family[record.family].add(record.instrument)
    held = set()
    for family, instruments in sorted(by_family.items()):
        if len(instruments) >= 3:
            held.add(min(sorted(instruments), key=lambda name: zlib.crc32(f"{seed}:{name}".encode())))
    unseen = [r for r in records if r.instrument in held]
    train, pitches = split_notes([r for r in records if r.instrument not in held], val_fraction, seed)
    return train, pitches, unseen


def load_notes(records: Sequence[NoteRecord], frontend: FrontendConfig, skips: SkipReport | None = None) -> Notes:
    """Reads whole notes (the package's `waveform_dataset`) and computes their log-mel (`numpy_log_mel`)."""
    records = list(records)
    waves, kept = [], []
    if records:
        dataset = waveform_dataset(records, frontend, skips if skips is not None else SkipReport())
        for waveform, index in dataset.batch(64).as_numpy_iterator():
            waves.append(waveform)
            kept += [records[int(i)] for i in index]
    waveforms = np.concatenate(waves) if waves else np.zeros((0, frontend.num_samples), np.float32)
    log_mel = numpy_log_mel(waveforms, frontend) if len(waveforms) else np.zeros((0, *frontend.feature_shape))
    return Notes(waveforms.astype(np.float32), np.asarray(log_mel, np.float32), kept)


def crop_batch(notes: Notes, rng: np.random.Generator, batch_size: int, crop_frames: int, hop: int):
    """`(log_mel_db (B, n_mels, crop_frames), waveform (B, crop_frames * hop))`, aligned crops of random notes.

    Feature frame `t` is centred on sample `t * hop`, so frames `[f, f + F)`
    go with samples `[f * hop, (f + F) * hop)`.
    """
    frames = notes.log_mel_db.shape[2]
    crop_frames = min(crop_frames, frames)
    which = rng.integers(0, len(notes), batch_size)
    starts = rng.integers(0, frames - crop_frames + 1, batch_size)
    features = np.stack([notes.log_mel_db[n, :, s : s + crop_frames] for n, s in zip(which, starts)])
    audio = np.stack([notes.waveforms[n, s * hop : (s + crop_frames) * hop] for n, s in zip(which, starts)])
    return features, audio


def crop_dataset(notes: Notes, seed: int, first_step: int, last_step: int, batch_size: int, crop_frames: int, hop: int):
    """A tf.data.Dataset of the crops of global steps `[first_step, last_step)`: step `g` from `rng([seed, g])`."""
    import tensorflow as tf

    def batches():
        for step in range(first_step, last_step):
            yield crop_batch(notes, np.random.default_rng([seed, step]), batch_size, crop_frames, hop)

    crop_frames = min(crop_frames, notes.log_mel_db.shape[2])
    signature = (
        tf.TensorSpec((batch_size, notes.log_mel_db.shape[1], crop_frames), tf.float32),
        tf.TensorSpec((batch_size, crop_frames * hop), tf.float32),
    )
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)


class AudioChecks(keras.callbacks.Callback):
    """Every `every` epochs (and the last): held-out notes voiced, scored and written to TensorBoard.

    The score is the re-analysed mel LSD (dB): the vocoder's audio through
    the frontend again, against the real note's log-mel.
    """

    def __init__(self, run_path: Path, notes: Notes, frontend: FrontendConfig, every: int, epochs: int):
        super().__init__()
        self.run_path, self.notes, self.frontend = Path(run_path), notes, frontend
        self.every, self.epochs = max(int(every), 1), int(epochs)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if len(self.notes) == 0 or (done % self.every and done != self.epochs):
            return
        audio = self.model.to_audio(self.notes.log_mel_db)
        score = lsd_db(self.notes.log_mel_db, numpy_log_mel(audio, self.frontend), floor_db=self.frontend.floor_db)
        self._write_tensorboard(done, audio, score)
        path = self.run_path / AUDIO_CHECKS_FILE
        old = path.read_text() if path.is_file() else "epoch,reanalysed_mel_lsd_db\n"
        kept = [line for line in old.splitlines()[1:] if line and int(line.split(",")[0]) < done]
        atomic.write_text(path, "\n".join([old.splitlines()[0], *kept, f"{done},{score:.4f}"]) + "\n")
        print(f"\nepoch {done}: re-analysed mel LSD of {len(self.notes)} held-out notes {score:.2f} dB", flush=True)

    def _write_tensorboard(self, step: int, audio: np.ndarray, score: float) -> None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(self.run_path / "logs" / "vocoder"))
        with writer.as_default():
            tf.summary.scalar("reanalysed_mel_lsd_db", score, step=step)
            names = [r.note_str for r in self.notes.records]
            for name, clip in zip(names, audio):
                tf.summary.audio(name, clip[None, :, None], self.frontend.sample_rate, step=step, max_outputs=1)
        writer.close()


def set_threads(threads: int | None) -> None:
    """Pins TensorFlow's intra- and inter-op thread pools to `threads` (before TensorFlow runs anything)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError as error:  # TensorFlow already ran an op: its pools are fixed
        print(f"keras-timbre: could not set TensorFlow threads ({error})", file=sys.stderr)


def train_vocoder(
    data: str | os.PathLike | None,
    out: str | os.PathLike,
    epochs: int = DEFAULT_EPOCHS,
    steps_per_epoch: int = DEFAULT_STEPS_PER_EPOCH,
    batch_size: int = DEFAULT_BATCH_SIZE,
    crop_frames: int = DEFAULT_CROP_FRAMES,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    lr_halving_epochs: float | None = None,
    channels: int = DEFAULT_CHANNELS,
    num_blocks: int = DEFAULT_BLOCKS,
    model_kwargs: dict[str, Any] | None = None,
    frontend: FrontendConfig | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    max_notes: int | None = None,
    audio_every: int = 5,
    restart: bool = False,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Trains a `Vocoder` on crops of the notes of `data` into the run directory `out`.

    Args:
        data: NSynth-format data directory; None for the built-in synthetic set.
        out: Run directory; created, or resumed if it holds an unfinished run.
        epochs: Total epochs (a resumed run trains only the missing ones).
        steps_per_epoch: Batches per epoch.
        batch_size: Crops per batch.
        crop_frames: Feature frames per crop (`crop_frames * hop` samples).
        learning_rate: Adam learning rate (gradients clipped at norm 1).
        lr_halving_epochs: Halve the learning rate every this many epochs
            (smoothly, per step); None keeps it constant.
        channels: Backbone width.
        num_blocks: ConvNeXt blocks.
        model_kwargs: More `Vocoder` arguments (e.g. `mel_weight`, `use_prior`).
        frontend: The features' config; the default `FrontendConfig()` if None.
        val_fraction: Share of each instrument's pitches held out.
        seed: Seed of the weights, the crops and the split.
        max_notes: Train on at most this many notes (the first after the split), and
            validate on at most as many of each held-out kind.
        audio_every: TensorBoard audio and the re-analysed LSD every this many epochs.
        restart: Train from scratch, clearing the run in `out` once the new one is checked.
        callbacks: Extra Keras callbacks.
        verbose: `fit` verbosity (a progress bar by default).
        init_from: Start from this vocoder's weights (a `.keras` file or a run directory) instead of
            `seed`'s: a fine-tuning run, e.g. at a lower learning rate. Its weights' fingerprint is a
            setting of the run; the optimizer starts afresh.

    Returns:
        The run directory.

    Raises:
        ValueError: a bad argument, or `out` holds a run with other settings.
        keras_timbre.training.lock.RunLockedError: another process trains into `out`.
    """
    if min(epochs, steps_per_epoch, batch_size, crop_frames) < 1:
        raise ValueError("epochs, steps_per_epoch, batch_size and crop_frames must all be >= 1")
    if lr_halving_epochs is not None and not lr_halving_epochs > 0:
        raise ValueError(f"lr_halving_epochs must be > 0, got {lr_halving_epochs}")
    out, frontend, started = Path(out), frontend or FrontendConfig(), time.perf_counter()
    data_path = resolve_data(data).resolve()
    runs.check_run_directory(out, data_path)
    hyperparameters = {
        **dict(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop_frames=crop_frames),
        **dict(learning_rate=learning_rate, max_notes=max_notes, audio_every=audio_every),
        **({} if lr_halving_epochs is None else {"lr_halving_epochs": float(lr_halving_epochs)}),
        "model": {"channels": channels, "num_blocks": num_blocks, **(model_kwargs or {})},
        **({} if init_from is None else {"init_from": _init_weights(init_from)}),
    }
    with lock_run(out):
        train_records, held_pitch, held_instrument, fingerprint = _split(data_path, val_fraction, seed, max_notes)
        split = {
            "method": "pitch held out per instrument, and one instrument per family held out",
            **dict(val_fraction=val_fraction, split_seed=seed, train_notes=len(train_records)),
            **dict(val_notes=len(held_pitch) + len(held_instrument)),
        }
        config = runs.run_config(VARIANT, hyperparameters, str(data_path), split, seed, fingerprint)
        state = RunState(out, restart=runs.is_run_directory(out)) if restart else read_state(out, config, frontend)
        if state.done >= epochs:
            print(f"{out} already has {state.done} finished epochs (asked for {epochs}); nothing to train.")
            return out
        _fit(out, config, state, frontend, (train_records, held_pitch, held_instrument), callbacks, verbose)
    print(f"Trained the vocoder in {time.perf_counter() - started:.0f} s; model at {out / runs.MODEL_FILE}")
    return out


def _split(data_path: Path, val_fraction: float, seed: int, max_notes: int | None):
    records = read_notes(data_path)
    fingerprint = runs.notes_fingerprint(records)
    train, held_pitch, held_instrument = vocoder_split(records, val_fraction, seed)
    if max_notes is not None:
        train, held_pitch, held_instrument = train[:max_notes], held_pitch[:max_notes], held_instrument[:max_notes]
    if not train:
        raise ValueError(f"No training notes in {data_path}")
    return train, held_pitch, held_instrument, fingerprint


def _fit(out: Path, config: dict, state: RunState, frontend: FrontendConfig, splits, callbacks, verbose) -> None:
    """Reads the notes, builds or restores the model, writes the run's metadata and fits."""
    settings, seed = config["hyperparameters"], config["seed"]
    train_records, held_pitch, held_instrument = splits
    skips = SkipReport()
    train_notes = load_notes(train_records, frontend, skips)
    shown = load_notes(held_pitch[: _SHOWN_NOTES // 2] + held_instrument[: _SHOWN_NOTES // 2], frontend, skips)
    val_notes = load_notes(held_pitch + held_instrument, frontend, skips)
    if len(train_notes) == 0:
        raise ValueError("None of the training notes could be read")
    print(
        f"Training the vocoder on {len(train_notes)} notes ({len(val_notes)} held out, {len(skips)} skipped); "
        f"features {frontend.feature_shape}; run directory {out}"
        + (f"; resuming after epoch {state.done}" if state.done else ""),
        flush=True,
    )
    keras.utils.set_random_seed(seed)
    model = state.restore() if state.checkpoint else _new_model(frontend, settings)
    model.check_frontend(frontend, "requested frontend")
    if state.restart:
        clear_run(out)
    for sub in runs.SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    frontend.save(out / runs.FRONTEND_FILE)
    atomic.write_json(out / runs.CONFIG_FILE, config)
    steps, epochs = settings["steps_per_epoch"], settings["epochs"]
    hop, batch, crop = frontend.hop_length, settings["batch_size"], settings["crop_frames"]
    train = crop_dataset(train_notes, seed, state.done * steps, epochs * steps, batch, crop, hop)
    validation = None
    if len(val_notes):
        validation = crop_batch(val_notes, np.random.default_rng([seed, 2**31]), _VALIDATION_CROPS, crop, hop)
    model.fit(
        train,
        validation_data=validation,
        batch_size=batch,
        epochs=epochs,
        initial_epoch=state.done,
        steps_per_epoch=steps,
        shuffle=False,  # each step's crops come from its own seed
        callbacks=_callbacks(out, shown, frontend, settings) + list(callbacks or []),
        verbose=verbose,
    )


def _init_weights(source: str | os.PathLike) -> dict:
    """What a fine-tuning run starts from: the vocoder's path and a fingerprint of its weights."""
    weights = load_vocoder(source).get_weights()
    crc = 0
    for array in weights:
        crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return {"path": str(Path(source).resolve()), "weights_crc32": f"{crc:08x}"}


def _new_model(frontend: FrontendConfig, settings: dict) -> Vocoder:
    model_settings = dict(settings["model"])
    model = Vocoder(frontend, **model_settings)
    if settings.get("init_from"):
        source = load_vocoder(settings["init_from"]["path"])
        if (source.channels, source.num_blocks) != (model.channels, model.num_blocks):
            raise ValueError(
                f"--init-from {settings['init_from']['path']} has {source.channels} channels and "
                f"{source.num_blocks} blocks; this run asks for {model.channels} and {model.num_blocks}"
            )
        model.set_weights(source.get_weights())
    learning_rate = settings["learning_rate"]
    if settings.get("lr_halving_epochs"):
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=settings["lr_halving_epochs"] * settings["steps_per_epoch"], decay_rate=0.5
        )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0))
    return model


def _callbacks(out: Path, shown: Notes, frontend: FrontendConfig, settings: dict) -> list:
    """CSVLogger before EpochCheckpoint, so a checkpoint's epoch is always in history.csv."""
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(out / runs.HISTORY_FILE), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0),
        EpochCheckpoint(out),
        AudioChecks(out, shown, frontend, settings["audio_every"], settings["epochs"]),
    ]
