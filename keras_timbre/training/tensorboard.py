"""TensorBoard views of the timbre codes: the embedding projector, plus reconstruction audio and images.

`TimbreProjector` is a Keras callback. Every `every` epochs (and after the
last) it writes, under `LOG_DIR/timbre/` (a TensorBoard run of its own):

- `embeddings_epoch_NNN.tsv`: the held-out notes' posterior means, one row a
  note, and `metadata.tsv` (name, family, source, pitch, velocity, with a
  header row), both listed in `projector_config.pbtxt`, so the Projector tab
  shows the codes of each logged epoch coloured by any label;
- `reconstruction_spectrogram` images (log-mel above, the model's
  reconstruction below) with `tf.summary.image`, and Griffin-Lim audio of
  the same notes (`reconstruction_audio`, and `input_audio` once) with
  `tf.summary.audio` (the Images and Audio tabs).

The codes are written as TSV tensors rather than a checkpointed `tf.Variable`,
so the callback works the same under every Keras backend.

Example:
>>> projector = TimbreProjector("runs/demo/logs", val_db, val_records, stats, frontend)  # doctest: +SKIP
>>> model.fit(x, epochs=10, callbacks=[projector])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from keras_timbre import atomic
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.models.inference import latent_means, reconstruct_db
from keras_timbre.vocoder.render import renderer_for

RUN_NAME = "timbre"
CONFIG_FILE = "projector_config.pbtxt"
METADATA_FILE = "metadata.tsv"
METADATA_COLUMNS = ("name", "family", "source", "pitch", "velocity")
IMAGE_TAG = "reconstruction_spectrogram"
AUDIO_TAG = "reconstruction_audio"
INPUT_AUDIO_TAG = "input_audio"


def metadata_tsv(records) -> str:
    """The projector's metadata: a header row, then one row a note (tabs and newlines in names replaced).

    Example:
    >>> from keras_timbre.data.readers import NoteRecord
    >>> metadata_tsv([NoteRecord.from_path("bass_electronic_000-029-100.wav")]).splitlines()[1].split(chr(9))
    ['bass_electronic_000-029-100', 'bass', 'electronic', '29', '100']
    """
    rows = ["\t".join(METADATA_COLUMNS)]
    for record in records:
        values = (
            record.note_str,
            record.family or "unknown",
            record.source or "unknown",
            record.pitch,
            record.velocity,
        )
        rows.append("\t".join(" ".join(str(value).split()) for value in values))
    return "\n".join(rows) + "\n"


def write_projector(log_dir: str | os.PathLike, codes: np.ndarray, records, epoch: int) -> Path:
    """Writes one epoch's codes, the metadata and the projector config (adding to the embeddings listed there).

    Returns:
        The config file's path.
    """
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    log_dir = Path(log_dir)
    tensor_file = f"embeddings_epoch_{epoch:03d}.tsv"
    atomic.write_text(log_dir / tensor_file, "\n".join("\t".join(f"{v:.6g}" for v in row) for row in codes) + "\n")
    atomic.write_text(log_dir / METADATA_FILE, metadata_tsv(records))
    config = projector_config_pb2.ProjectorConfig()
    if (log_dir / CONFIG_FILE).is_file():
        text_format.Parse((log_dir / CONFIG_FILE).read_text(), config)
    name = f"timbre codes, epoch {epoch}"
    if all(embedding.tensor_name != name for embedding in config.embeddings):
        embedding = config.embeddings.add()
        embedding.tensor_name = name
        embedding.tensor_path = tensor_file
        embedding.metadata_path = METADATA_FILE
        embedding.tensor_shape.extend(codes.shape)
    atomic.write_text(log_dir / CONFIG_FILE, text_format.MessageToString(config))
    return log_dir / CONFIG_FILE


def spectrogram_images(top_db: np.ndarray, bottom_db: np.ndarray, floor_db: float) -> np.ndarray:
    """`(N, 2 * mels + 1, frames, 1)` float images in [0, 1]: `top` above `bottom`, low mels down, a white rule.

    Example:
    >>> spectrogram_images(np.zeros((2, 4, 5)), np.full((2, 4, 5), -80.0), -60.0).shape
    (2, 9, 5, 1)
    """
    top, bottom = np.asarray(top_db, np.float32), np.asarray(bottom_db, np.float32)
    peak = max(float(top.max(initial=floor_db)), float(bottom.max(initial=floor_db)), floor_db + 1.0)

    def scale(spectrogram):
        return np.clip((spectrogram[:, ::-1, :] - floor_db) / (peak - floor_db), 0.0, 1.0)

    rule = np.ones((top.shape[0], 1, top.shape[2]), np.float32)
    return np.concatenate([scale(top), rule, scale(bottom)], axis=1)[..., None]


class TimbreProjector(keras.callbacks.Callback):
    """Logs timbre codes to TensorBoard's projector, and reconstruction audio and images, every few epochs.

    Args:
        log_dir: The run's TensorBoard folder (`RUN/logs`); this callback writes into `log_dir/timbre`.
        log_mel_db: Held-out notes, `(N, mels, frames)` in dB.
        records: The N notes' `NoteRecord`s (labels for the projector's metadata).
        stats: The run's feature statistics (model input normalisation).
        frontend: The run's frontend (silence floor; what the renderer must fit).
        every: Log every this many epochs (and after the last epoch).
        audio_notes: Notes whose reconstruction is logged as image and audio.
        griffin_lim_iters: Griffin-Lim iterations, where Griffin-Lim renders the audio.
        vocoder: What renders the audio (`keras_timbre.vocoder.render.renderer_for`; default: the shipped
            vocoder where it fits the run's features, else Griffin-Lim).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        log_mel_db: np.ndarray,
        records,
        stats: FeatureStats,
        frontend: FrontendConfig,
        every: int = 5,
        audio_notes: int = 3,
        griffin_lim_iters: int = 16,
        vocoder: str | os.PathLike | None = None,
    ):
        super().__init__()
        if len(records) != len(log_mel_db):
            raise ValueError(f"TimbreProjector: {len(records)} records for {len(log_mel_db)} spectrograms")
        if every < 1:
            raise ValueError(f"TimbreProjector: every must be >= 1, got {every}")
        self.log_dir = Path(log_dir) / RUN_NAME
        self.log_mel_db = np.asarray(log_mel_db, np.float32)
        self.records = list(records)
        self.stats, self.frontend = stats, frontend
        self.every, self.audio_notes = every, audio_notes
        self.renderer = renderer_for(frontend, vocoder, griffin_lim_iters, fast=True)
        self._writer = None

    def _summary_writer(self):
        import tensorflow as tf

        if self._writer is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.params or {}).get("epochs")
        if len(self.records) and ((epoch + 1) % self.every == 0 or last):
            self.log(epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def log(self, epoch: int) -> None:
        """Writes the projector files and the audio and image summaries for `epoch`."""
        import tensorflow as tf

        codes, _ = latent_means(self.model, self.log_mel_db, self.stats, records=self.records)
        write_projector(self.log_dir, codes, self.records, epoch)
        shown = self.log_mel_db[: self.audio_notes]
        reconstruction = reconstruct_db(self.model, shown, self.stats, records=self.records[: self.audio_notes])
        rate = self.frontend.sample_rate
        audio = self.renderer.to_audio(reconstruction)
        images = spectrogram_images(shown, reconstruction, self.frontend.floor_db)
        writer = self._summary_writer()
        with writer.as_default(step=epoch):
            tf.summary.image(IMAGE_TAG, images, max_outputs=len(shown))
            tf.summary.audio(AUDIO_TAG, audio[..., None], rate, max_outputs=len(shown))
            if epoch <= self.every:  # the inputs do not change: once is enough
                inputs = self.renderer.to_audio(shown)
                tf.summary.audio(INPUT_AUDIO_TAG, inputs[..., None], rate, max_outputs=len(shown))
        writer.flush()
