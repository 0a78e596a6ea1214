"""`train_vocoder` and `keras-timbre train-vocoder`: crops, split, run directory, exact resume, refusals."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel
from keras_timbre.cli import main
from keras_timbre.data.readers import read_notes
from keras_timbre.data.synthetic import make_synthetic_dataset
from keras_timbre.training.lock import lock_run
from keras_timbre.vocoder import load_vocoder
from keras_timbre.training.vocoder import AUDIO_CHECKS_FILE, crop_batch, load_notes, train_vocoder, vocoder_split

FRONTEND = FrontendConfig(n_mels=32, duration=1.0)  # 64 frames at hop 250; the CLI's --n-mels 32 --duration 1.0
TINY = dict(
    epochs=2,
    steps_per_epoch=2,
    batch_size=2,
    crop_frames=16,
    channels=8,
    num_blocks=1,
    frontend=FRONTEND,
    max_notes=6,
    model_kwargs={"stft_resolutions": [256, 512]},
    audio_every=1,
    verbose=0,
)


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("notes") / "data", notes=100, seed=0, progress=False)


def test_the_split_holds_out_pitches_and_whole_instruments(notes_dir):
    records = read_notes(notes_dir)
    train, pitches, instruments = vocoder_split(records)
    assert len(train) + len(pitches) + len(instruments) == len(records)
    unseen = {r.instrument for r in instruments}
    assert unseen and not unseen & {r.instrument for r in train}
    assert not {(r.instrument, r.pitch) for r in pitches} & {(r.instrument, r.pitch) for r in train}
    assert vocoder_split(records) == (train, pitches, instruments)  # deterministic


def test_crops_pair_features_with_their_samples(notes_dir):
    notes = load_notes(read_notes(notes_dir)[:3], FRONTEND)
    assert notes.waveforms.shape == (3, FRONTEND.num_samples)
    np.testing.assert_allclose(notes.log_mel_db, numpy_log_mel(notes.waveforms, FRONTEND))
    features, audio = crop_batch(notes, np.random.default_rng(0), 5, 16, FRONTEND.hop_length)
    assert features.shape == (5, 32, 16) and audio.shape == (5, 16 * 250)
    # Each crop is a slice of one note: frames [f, f + 16) with samples [f * hop, (f + 16) * hop).
    for feature, clip in zip(features, audio):
        n = next(i for i, wave in enumerate(notes.waveforms) if _find(wave, clip) >= 0)
        start = _find(notes.waveforms[n], clip) // FRONTEND.hop_length
        np.testing.assert_array_equal(feature, notes.log_mel_db[n, :, start : start + 16])


def _find(wave: np.ndarray, clip: np.ndarray) -> int:
    """The hop-aligned sample where `clip` starts in `wave`, or -1."""
    for start in range(0, len(wave) - len(clip) + 1, FRONTEND.hop_length):
        if np.array_equal(wave[start : start + len(clip)], clip):
            return start
    return -1


def test_a_resumed_run_equals_an_unbroken_one(notes_dir, tmp_path):
    whole = train_vocoder(notes_dir, tmp_path / "whole", **TINY)
    first = train_vocoder(notes_dir, tmp_path / "split", **{**TINY, "epochs": 1})
    assert sorted(p.name for p in (first / "checkpoints").iterdir()) == ["epoch-0001.json", "epoch-0001.keras"]
    train_vocoder(notes_dir, tmp_path / "split", **TINY)  # resumes after epoch 1
    a, b = load_vocoder(whole), load_vocoder(tmp_path / "split")
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    history = (tmp_path / "split" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history == (whole / "history.csv").read_text().splitlines()
    checks = (whole / AUDIO_CHECKS_FILE).read_text().splitlines()
    assert checks[0] == "epoch,reanalysed_mel_lsd_db" and [line.split(",")[0] for line in checks[1:]] == ["1", "2"]
    assert list((whole / "logs" / "vocoder").iterdir())  # TensorBoard audio and the LSD scalar
    config = json.loads((whole / "config.json").read_text())
    assert config["variant"] == "vocoder" and config["split"]["train_notes"] == 6
    assert FrontendConfig.load(whole / "frontend.json") == FRONTEND == a.frontend
    # A finished run is left alone; a changed setting or frontend is refused, naming it.
    assert train_vocoder(notes_dir, whole, **TINY) == whole
    with pytest.raises(ValueError, match="learning_rate"):
        train_vocoder(notes_dir, whole, **{**TINY, "epochs": 3, "learning_rate": 0.01})
    with pytest.raises(ValueError, match="n_mels"):
        train_vocoder(notes_dir, whole, **{**TINY, "epochs": 3, "frontend": FrontendConfig(n_mels=16, duration=1.0)})
    keras.backend.clear_session()


def test_the_command_trains_and_refuses_a_locked_or_foreign_folder(notes_dir, tmp_path, capsys):
    out = tmp_path / "voc"
    args = ["train-vocoder", "--data", str(notes_dir), "--out", str(out), "--n-mels", "32", "--duration", "1.0"]
    args += ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-frames", "16"]
    args += ["--channels", "8", "--blocks", "1", "--max-notes", "4", "--threads", "1", "--lr-halving-epochs", "0.5"]
    assert main(args) == 0
    trained = keras.saving.load_model(out / "model.keras")  # with its optimizer: 2 steps, two halvings
    assert float(keras.ops.convert_to_numpy(trained.optimizer.learning_rate)) == pytest.approx(1e-3 / 4)
    vocoder = load_vocoder(out)
    assert vocoder.frontend == FRONTEND and vocoder.channels == 8
    assert vocoder.to_audio(np.full((1, 32, 64), -30.0, np.float32)).shape == (1, 16000)
    with lock_run(out):
        assert main(args + ["--epochs", "2"]) == 2
    assert "in use by another train process" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(args[:4] + [str(foreign)] + args[5:]) == 2
    assert "not a keras-timbre run directory" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1


def test_a_fine_tuning_run_starts_from_the_given_weights(notes_dir, tmp_path):
    source = train_vocoder(notes_dir, tmp_path / "source", **{**TINY, "epochs": 1})
    calls = []

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append([w.copy() for w in self.model.get_weights()])

    tuned = train_vocoder(
        notes_dir,
        tmp_path / "tuned",
        **{**TINY, "epochs": 1, "learning_rate": 1e-4},
        init_from=source,
        callbacks=[FirstWeights()],
    )
    for start, expected in zip(calls[0], load_vocoder(source).get_weights()):
        np.testing.assert_array_equal(start, expected)  # not the seed's initialisation
    recorded = json.loads((tuned / "config.json").read_text())["hyperparameters"]["init_from"]
    assert recorded["path"] == str(source.resolve()) and len(recorded["weights_crc32"]) == 8
    # Other starting weights are another run: refused on resume, naming the setting.
    train_vocoder(notes_dir, source, **TINY)  # the source trains on: its weights change
    with pytest.raises(ValueError, match="init_from"):
        train_vocoder(notes_dir, tuned, **{**TINY, "learning_rate": 1e-4}, init_from=source)
    with pytest.raises(ValueError, match="8 channels and 1 blocks; this run asks for 16"):
        train_vocoder(notes_dir, tmp_path / "wider", **{**TINY, "channels": 16}, init_from=source)
    keras.backend.clear_session()
