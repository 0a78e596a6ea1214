"""TimbreProjector: projector config, metadata and embeddings, audio and image summaries TensorBoard can read."""

from pathlib import Path

import numpy as np
import pytest

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.data.readers import NoteRecord
from keras_timbre.training import tensorboard

FRONTEND = FrontendConfig(n_mels=16, duration=0.5)  # features (16, 32)
NOTES = 6


def _records():
    names = ["bass_electronic_000-040-100", "flute_acoustic_001-060-50", "organ_synthetic_002-052-127"]
    return [NoteRecord.from_path(f"audio/{names[i % 3]}.wav") for i in range(NOTES)]


def _tags(log_dir: Path) -> dict[str, set]:
    """Tag -> set of plugin names, over every event file under `log_dir` (read with TensorFlow's iterator)."""
    import tensorflow as tf

    tags: dict[str, set] = {}
    for events in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(value.metadata.plugin_data.plugin_name)
    return tags


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Fits a tiny VAE for 3 epochs with the callback logging every 2 (so after epochs 2 and 3)."""
    import keras

    from keras_timbre.models.timbre_vae import TimbreVAE

    rng = np.random.default_rng(0)
    log_mel_db = rng.uniform(-60, 0, (NOTES, *FRONTEND.feature_shape)).astype("float32")
    stats = FeatureStats.from_features(log_mel_db)
    model = TimbreVAE(input_shape=(*FRONTEND.feature_shape, 1), latent_dim=4, filters=(4, 8))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    log_dir = tmp_path_factory.mktemp("logs")
    callback = tensorboard.TimbreProjector(
        log_dir, log_mel_db, _records(), stats, FRONTEND, every=2, audio_notes=2, griffin_lim_iters=2
    )
    model.fit(stats.to_model_input(log_mel_db), epochs=3, batch_size=3, verbose=0, callbacks=[callback])
    return log_dir / tensorboard.RUN_NAME


@pytest.mark.backend
def test_projector_config_names_metadata_with_a_row_per_note(logged):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = text_format.Parse((logged / tensorboard.CONFIG_FILE).read_text(), projector_config_pb2.ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["timbre codes, epoch 2", "timbre codes, epoch 3"]
    for embedding in config.embeddings:
        assert list(embedding.tensor_shape) == [NOTES, 4]
        codes = np.loadtxt(logged / embedding.tensor_path, delimiter="\t")
        assert codes.shape == (NOTES, 4) and np.all(np.isfinite(codes))
        metadata = (logged / embedding.metadata_path).read_text().splitlines()
        assert metadata[0].split("\t") == list(tensorboard.METADATA_COLUMNS)
        assert len(metadata) == NOTES + 1
        assert metadata[2].split("\t") == ["flute_acoustic_001-060-50", "flute", "acoustic", "60", "50"]
    # The codes change as the model trains: epoch 3 is not a copy of epoch 2.
    first, second = (np.loadtxt(logged / e.tensor_path, delimiter="\t") for e in config.embeddings)
    assert not np.allclose(first, second)


@pytest.mark.backend
def test_audio_and_image_summaries_are_readable(logged):
    tags = _tags(logged)
    assert tags[tensorboard.IMAGE_TAG] == {"images"}
    assert tags[tensorboard.AUDIO_TAG] == {"audio"}
    assert tags[tensorboard.INPUT_AUDIO_TAG] == {"audio"}


def test_tensorboard_event_accumulator_loads_the_audio(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logged), size_guidance={"tensors": 0})
    accumulator.Reload()
    steps = [event.step for event in accumulator.Tensors(tensorboard.AUDIO_TAG)]
    assert steps == [2, 3]
    # Encoded WAV clips, one per logged note.
    clips = accumulator.Tensors(tensorboard.AUDIO_TAG)[0].tensor_proto.string_val
    assert len(clips[::2]) == 2 and clips[0][:4] == b"RIFF"


def test_spectrogram_images_put_low_mels_at_the_bottom():
    top = np.full((1, 4, 3), -60.0)
    top[0, 0] = 0.0  # lowest mel loud
    images = tensorboard.spectrogram_images(top, np.full((1, 4, 3), -60.0), floor_db=-60.0)
    assert images.shape == (1, 9, 3, 1)
    assert np.all(images[0, 3, :, 0] == 1.0) and np.all(images[0, :3, :, 0] == 0.0)
    assert np.all(images[0, 4, :, 0] == 1.0)  # the white rule between the two


def test_mismatched_records_are_a_clear_error():
    with pytest.raises(ValueError, match="2 records for 3 spectrograms"):
        tensorboard.TimbreProjector("logs", np.zeros((3, 16, 32)), _records()[:2], None, FRONTEND)
