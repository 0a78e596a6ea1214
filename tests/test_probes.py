"""Probes with honest protocols on inputs whose answer is known, and the pitch classifier on real notes."""

from pathlib import Path

import librosa
import numpy as np
import pytest

from keras_timbre.analysis import metrics
from keras_timbre.analysis import probes
from keras_timbre.audio.frontend import FrontendConfig, numpy_log_mel

SHORT = FrontendConfig(duration=0.5)


def grouped_notes(groups_per_class=20, notes_per_group=10, dims=64, family_signal=0.0, seed=0):
    """Notes of 2 families; each instrument (group) sits at its own random point, the family adds `family_signal`."""
    rng = np.random.default_rng(seed)
    n_groups = 2 * groups_per_class
    centres = rng.normal(0.0, 1.0, (n_groups, dims))
    group_family = np.arange(n_groups) % 2
    groups = np.repeat(np.arange(n_groups), notes_per_group)
    labels = group_family[groups]
    features = centres[groups] + rng.normal(0.0, 0.05, (len(groups), dims))
    features[:, 0] += family_signal * labels
    return features, labels, groups


def test_group_probe_sees_through_instrument_identity():
    # Family is only a property of which instrument it is: shuffled k-fold memorises the
    # instruments and looks perfect; k-fold over instruments is at chance.
    features, labels, groups = grouped_notes()
    assert metrics.probe_accuracy(features, labels) > 0.95
    assert probes.group_probe_accuracy(features, labels, groups) < 0.7
    # A family direction shared by all instruments (too few dims to memorise them) is found on unseen ones.
    features, labels, groups = grouped_notes(dims=8, family_signal=10.0)
    assert probes.group_probe_accuracy(features, labels, groups) > 0.95


def test_group_probe_folds_and_degenerate_cases():
    features = np.array([[0.0], [0.1], [1.0], [1.1], [0.2], [1.2]])
    labels = np.array([0, 0, 1, 1, 0, 1])
    # 3 groups: folds capped at 3; every group holds both classes, so each fold is learnable.
    assert probes.group_probe_accuracy(features, labels, ["a", "b", "a", "b", "c", "c"], folds=10) == 1.0
    # Two groups, one per class: the training fold has one class, predicted everywhere: all wrong.
    assert probes.group_probe_accuracy(features, labels, labels) == 0.0
    assert np.isnan(probes.group_probe_accuracy(features, labels, np.zeros(6)))
    assert np.isnan(probes.group_probe_accuracy(features, np.zeros(6), labels))
    with pytest.raises(ValueError, match="groups"):
        probes.group_probe_accuracy(features, labels, [0, 1])


def test_transfer_probe_scores_on_the_other_set():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 30)
    features = np.eye(4)[labels] * 5 + rng.normal(0, 0.3, (120, 4))
    assert probes.transfer_probe_accuracy(features[::2], labels[::2], features[1::2], labels[1::2]) == 1.0
    # The test set's labels disagree with what was learned: every note is a miss.
    assert probes.transfer_probe_accuracy(features[::2], labels[::2], features[1::2], (labels[1::2] + 1) % 4) == 0.0
    # A label the training set never had cannot be predicted: it is a miss, not an error.
    half = probes.transfer_probe_accuracy(features[labels < 2], labels[labels < 2], features, np.minimum(labels, 2))
    assert half == pytest.approx(0.5)
    assert np.isnan(probes.transfer_probe_accuracy(features, np.zeros(120), features, labels))
    assert np.isnan(probes.transfer_probe_accuracy(features, labels, features[:0], labels[:0]))


def test_metrics_probe_is_the_shared_linear_probe():
    assert probes.linear_probe is metrics.linear_probe  # one home: metrics, which probes imports
    model = metrics.linear_probe()
    assert [type(step).__name__ for _, step in model.steps] == ["StandardScaler", "LogisticRegression"]
    assert model.steps[-1][1].max_iter == 2000


def test_mfcc_statistics_are_librosa_mean_and_std():
    rng = np.random.default_rng(2)
    log_mel = rng.normal(-40, 10, (3, 64, 20))
    stats = probes.mfcc_statistics(log_mel)
    assert stats.shape == (3, 40)
    for note in range(3):
        mfcc = librosa.feature.mfcc(S=log_mel[note], n_mfcc=20)
        np.testing.assert_allclose(stats[note, :20], mfcc.mean(axis=1), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stats[note, 20:], mfcc.std(axis=1), rtol=1e-6, atol=1e-6)
    # A spectrum constant in time has no spread; a channel axis is accepted.
    still = probes.mfcc_statistics(np.repeat(log_mel[:, :, :1], 20, axis=2)[..., None], n_mfcc=13)
    assert still.shape == (3, 26)
    np.testing.assert_allclose(still[:, 13:], 0.0, atol=1e-6)


def harmonic_log_mel(pitches, decay=8.0, brightness=1.0, gain=0.3, config=SHORT):
    """dB log-mel of decaying harmonic tones at MIDI `pitches`: partial k at amplitude k ** -brightness."""
    t = np.arange(config.num_samples) / config.sample_rate
    notes = []
    for pitch in pitches:
        f0 = librosa.midi_to_hz(pitch)
        ks = np.arange(1, int(config.fmax // f0) + 1)
        tone = np.sum(ks[:, None] ** -brightness * np.sin(2 * np.pi * f0 * ks[:, None] * t), axis=0)
        notes.append(numpy_log_mel((gain * tone * np.exp(-decay * t)).astype(np.float32), config))
    return np.stack(notes)


def test_pitch_classifier_recognises_pitch_across_timbre_and_level():
    pitches = np.arange(48, 73)
    classifier = probes.PitchClassifier().fit(
        np.concatenate([harmonic_log_mel(pitches, brightness=b) for b in (0.5, 1.5)]), np.tile(pitches, 2)
    )
    # Another timbre (brightness 1) and decay, 20 dB quieter: every pitch is still exact.
    other = harmonic_log_mel(pitches, decay=3.0, brightness=1.0, gain=0.03)
    assert classifier.accuracy(other, pitches) == 1.0
    assert probes.sample_pitch_accuracy(classifier, other, pitches) == 1.0
    # Asked for a semitone above what was generated: all wrong.
    assert probes.sample_pitch_accuracy(classifier, other, pitches + 1) == 0.0
    assert classifier.predict(other[3]).tolist() == [51]
    with pytest.raises(ValueError, match="not fit"):
        probes.PitchClassifier().predict(other)
    with pytest.raises(ValueError, match="2 pitches"):
        probes.PitchClassifier().fit(other[:2], [60, 60])


# Measured 0.886 (148 of 167 held-out notes) with the split below; split seeds 1 and 2 give 0.859 and 0.856.
REAL_HELD_OUT_FLOOR = 0.80


@pytest.mark.real_data
@pytest.mark.slow
def test_pitch_classifier_on_real_held_out_pitches(nsynth_mini: Path):
    from keras_timbre.audio.io import conform_audio, read_audio
    from keras_timbre.data.readers import read_notes
    from keras_timbre.data.split import split_notes

    frontend = FrontendConfig()

    def log_mel(records):
        notes = []
        for record in records:
            data, info = read_audio(record.path)
            waveform = conform_audio(data, info.sample_rate, frontend.sample_rate, frontend.num_samples)
            notes.append(numpy_log_mel(waveform, frontend))
        return np.stack(notes), np.array([r.pitch for r in records])

    train, held = split_notes(read_notes(nsynth_mini / "audio"), val_fraction=0.15, seed=0)
    assert (len(train), len(held)) == (933, 167)
    classifier = probes.PitchClassifier().fit(*log_mel(train))
    accuracy = classifier.accuracy(*log_mel(held))
    assert accuracy >= REAL_HELD_OUT_FLOOR, accuracy
