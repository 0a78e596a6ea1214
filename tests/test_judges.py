"""The judges trained on real notes (keras_timbre.analysis.judges) and the pieces of the judged code metrics."""

import numpy as np
import pytest

from keras_timbre.analysis import judges
from keras_timbre.analysis.probes import PitchClassifier
from keras_timbre.data.readers import NoteRecord
from keras_timbre.evaluation import code_metrics

N_MELS, N_FRAMES = 64, 24
# Families that differ by their harmonics' envelope: dB per octave of harmonic number, and which harmonics sound.
FAMILIES = {"brass": (-3.0, 1), "flute": (-18.0, 1), "reed": (-6.0, 2)}


def note(family: str, pitch: int, level_db: float, rng) -> np.ndarray:
    """A log-mel-like note on a log-frequency axis (8 bins an octave of harmonic number; one bin higher a
    semitone of `pitch`): harmonics k = 1, 2, ... at `level_db`, falling by the family's slope per octave of
    k (a "reed" has odd harmonics only), decaying 20 dB over time, with a little noise, floored at -80 dB."""
    slope, step = FAMILIES[family]
    spectrum = np.full(N_MELS, -80.0)
    for k in range(1, 40, step):
        index = int(round(pitch - 40 + 8 * np.log2(k)))
        if 0 <= index < N_MELS:
            spectrum[index] = max(spectrum[index], level_db + slope * np.log2(k))
    decay = -np.linspace(0.0, 20.0, N_FRAMES)
    return np.maximum(spectrum[:, None] + decay + rng.normal(0, 1.0, (N_MELS, N_FRAMES)), -80.0)


def notes(pitches, rng):
    families = [f for f in FAMILIES for _ in pitches]
    log_mel = np.stack([note(f, p, rng.uniform(-30, 0), rng) for f in FAMILIES for p in pitches])
    return log_mel, families


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    train = notes(range(40, 64, 2), rng)  # even pitches
    held = notes(range(41, 63, 4), rng)  # odd pitches: none of them trained
    return judges.FamilyJudge(hidden=32).fit(*train), train, held


# ---------------------------------------------------------------------------- the family judge


def test_the_family_judge_names_families_at_pitches_it_never_heard(fitted):
    judge, train, held = fitted
    assert judge.accuracy(*train) == 1.0
    assert judge.accuracy(*held) >= 0.9  # chance is 1/3
    assert set(judge.predict(held[0])) == set(FAMILIES)


def test_the_family_judge_ignores_the_level_and_is_deterministic(fitted):
    judge, train, held = fitted
    log_mel, _ = held
    np.testing.assert_allclose(judge.embed(log_mel + 25.0), judge.embed(log_mel), atol=1e-9)
    assert judge.predict(log_mel - 20.0).tolist() == judge.predict(log_mel).tolist()
    again = judges.FamilyJudge(hidden=32).fit(*train)
    np.testing.assert_array_equal(again.embed(log_mel), judge.embed(log_mel))


def test_the_embedding_is_the_penultimate_layer(fitted):
    judge, _, (log_mel, _) = fitted
    hidden = judge.embed(log_mel)
    assert hidden.shape == (len(log_mel), 32) and hidden.min() >= 0.0 and hidden.max() > 0.0
    logits = hidden @ judge.model.coefs_[1] + judge.model.intercepts_[1]
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        probabilities, judge.model.predict_proba(judge.scaler.transform(judge.features(log_mel)))
    )


def test_the_features_are_the_documented_ones(fitted):
    judge, _, (log_mel, _) = fitted
    features = judge.features(log_mel)
    assert features.shape == (len(log_mel), N_MELS + 40 + 8)
    np.testing.assert_allclose(features[:, :N_MELS], PitchClassifier(judge.range_db).features(log_mel))
    envelope = features[:, -8:]
    assert np.all(np.diff(envelope, axis=1) < 0)  # the notes decay
    assert np.all(envelope <= 0.0) and np.all(envelope >= -judge.range_db)


def test_the_family_judge_refuses_what_it_cannot_judge():
    log_mel = np.full((4, N_MELS, N_FRAMES), -30.0)
    with pytest.raises(ValueError, match="not fit"):
        judges.FamilyJudge().predict(log_mel)
    with pytest.raises(ValueError, match="2 families or more"):
        judges.FamilyJudge().fit(log_mel, ["brass"] * 4)
    with pytest.raises(ValueError, match="4 notes but 3 families"):
        judges.FamilyJudge().fit(log_mel, ["brass", "flute", "reed"])
    assert judges.PitchClassifier is PitchClassifier  # the pitch judge is the probes' own


# ---------------------------------------------------------------------------- the Fréchet distance


def whitened(rows: int, dims: int, seed: int = 0) -> np.ndarray:
    """`rows` points whose sample mean is exactly 0 and sample covariance (ddof=1) exactly the identity."""
    x = np.random.default_rng(seed).normal(size=(rows, dims))
    x -= x.mean(axis=0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T


def test_frechet_distance_is_the_closed_form_for_two_gaussians():
    a = whitened(50, 3)
    np.testing.assert_allclose(np.cov(a, rowvar=False), np.eye(3), atol=1e-12)
    assert judges.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    for d in (0.5, 2.0, 7.0):  # means d apart, identity covariances: d^2
        assert judges.frechet_distance(a, a + [d, 0.0, 0.0]) == pytest.approx(d * d, rel=1e-6)
    # Covariances I and diag(4, 9, 1): Tr(I + D^2 - 2 D) = (1 - 2)^2 + (1 - 3)^2 + 0 = 5, plus the mean shift 1 + 4.
    b = a * [2.0, 3.0, 1.0] + [1.0, 2.0, 0.0]
    assert judges.frechet_distance(a, b) == pytest.approx(10.0, rel=1e-6)
    assert judges.frechet_distance(b, a) == pytest.approx(10.0, rel=1e-6)
    # Independent draws of one Gaussian (other sizes too) are close; a shifted one is far.
    rng = np.random.default_rng(1)
    same = judges.frechet_distance(rng.normal(size=(4000, 3)), rng.normal(size=(3000, 3)))
    assert same < 0.02
    assert judges.frechet_distance(rng.normal(size=(4000, 3)), rng.normal(1.0, 1.0, (3000, 3))) > 2.5


def test_frechet_distance_grows_with_the_shift_and_handles_singular_covariances():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 32))  # fewer rows than dims: singular covariances, the ridge keeps it real
    distances = [judges.frechet_distance(a, a + shift) for shift in (0.0, 0.1, 0.5, 1.0)]
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert all(np.isfinite(distances)) and distances == sorted(distances) and distances[-1] > distances[1] > 0
    assert distances[-1] == pytest.approx(32.0, rel=1e-3)  # 32 dims, each shifted by 1
    assert judges.frechet_distance(np.arange(5.0), np.arange(5.0) + 2.0) == pytest.approx(4.0)  # 1-d features


def test_frechet_distance_refuses_what_has_no_covariance():
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match="features_b needs 2 rows or more"):
        judges.frechet_distance(a, a[:1])
    with pytest.raises(ValueError, match="features_a needs 2 rows or more"):
        judges.frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="3 dims but features_b 2"):
        judges.frechet_distance(a, a[:, :2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        judges.frechet_distance(a, np.full((5, 3), np.nan))


def test_family_fd_is_small_within_a_family_and_large_across(fitted):
    judge, (log_mel, families), (held, held_families) = fitted
    families, held_families = np.array(families), np.array(held_families)
    assert judges.family_fd(judge, held, held) == pytest.approx(0.0, abs=1e-6)
    real = judges.family_fd(judge, log_mel, held)  # the same families at other pitches
    wrong = judges.family_fd(judge, log_mel[families == "brass"], held)  # one family for all
    noise = judges.family_fd(judge, np.random.default_rng(0).normal(-40, 10, held.shape), held)
    assert real < wrong < noise


def test_the_same_size_floor_draws_as_many_training_notes_as_held_out_ones(fitted):
    judge, (log_mel, _), (held, _) = fitted
    both = code_metrics.Judges(pitch=None, family=judge)
    every = code_metrics._fd(both, log_mel, held)
    same_size = code_metrics._same_size_fd(both, log_mel, held)
    assert len(log_mel) == 2 * len(held)
    assert same_size > every  # fewer notes, a larger estimate: the floor a sample of len(held) notes can reach
    assert same_size == code_metrics._same_size_fd(both, log_mel, held)  # seeded
    assert code_metrics._same_size_fd(both, held, log_mel) == code_metrics._fd(both, held, log_mel)  # no fewer to draw


# ---------------------------------------------------------------------------- the judged code metrics' pieces


def records(*names: str) -> list[NoteRecord]:
    return [NoteRecord.from_path(f"{name}.wav") for name in names]


def test_swapped_pitches_are_other_trained_pitches_in_range():
    train = records(*(f"flute_acoustic_000-{p:03d}-100" for p in (30, 50, 52, 54, 56, 58, 90)))
    held = records("flute_acoustic_000-052-100", "brass_acoustic_000-055-25", "flute_acoustic_000-057-100")
    index, pitches = code_metrics.transfer_pitches(train, held, (40, 80), count=3, seed=0)
    assert index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i, pitch in zip(index, pitches):
        assert pitch in (50, 52, 54, 56, 58) and pitch != held[i].pitch
    assert len(set(pitches[index == 0].tolist())) == 3  # drawn without replacement
    again = code_metrics.transfer_pitches(train, held, (40, 80), count=3, seed=0)
    assert again[1].tolist() == pitches.tolist()
    few = code_metrics.transfer_pitches(train, held, (51, 53), count=3)  # only 52 trained in range
    assert few[0].tolist() == [1, 2] and few[1].tolist() == [52, 52]


def test_the_level_check_counts_samples_beyond_the_real_range():
    real = np.full((2, 4, 5), -60.0)
    real[:, 0, 0] = -5.0  # the real notes' loudest bin
    samples = np.full((4, 4, 5), -30.0)
    samples[1, 2, 3] = -4.5  # within 1 dB above the loudest: in range
    samples[2, 0, 0] = 5600.0
    samples[3, 1, 1] = -75.0  # below the floor: silence, as the metrics and the vocoder read it
    checked = code_metrics._level_check(samples, real)
    assert checked == {"sample_max_db": 5600.0, "sample_beyond_range_notes": 1, "sample_above_real_peak_notes": 2}
    samples[1, 2, 3] = -3.5  # 1.5 dB above the loudest
    assert code_metrics._level_check(samples, real)["sample_beyond_range_notes"] == 2
    samples[3, 1, 1] = np.nan
    assert code_metrics._level_check(samples, real)["sample_beyond_range_notes"] == 3


class _FirstBinJudge:
    """A stand-in judge: a rendering is "right" where its first bin is 1."""

    def accuracy(self, log_mel_db, labels):
        assert len(log_mel_db) == len(labels)
        return float(np.mean(log_mel_db[:, 0, 0] == 1.0))


def test_the_in_range_swaps_are_those_within_the_notes_familys_training_pitches(monkeypatch):
    from types import SimpleNamespace

    train = records(*(f"bass_synthetic_000-{p:03d}-100" for p in (30, 40)), "flute_synthetic_000-070-100")
    held = records("bass_synthetic_000-035-100", "flute_synthetic_000-072-100")
    ranges = code_metrics.family_pitch_ranges(train)
    assert ranges == {"bass": (30, 40), "flute": (70, 70)}

    def mark(index, pitches):  # 1 where the asked pitch lies in the note's family's range, else 0
        inside = [ranges[held[i].family][0] <= p <= ranges[held[i].family][1] for i, p in zip(index, pitches)]
        return np.array(inside, np.float64)[:, None, None] * np.ones((1, 2, 3))

    asked = {}
    monkeypatch.setattr(code_metrics, "decode_db", lambda m, z, s, p, v, t, b: asked.setdefault("db", mark(z, p)))
    monkeypatch.setattr(code_metrics, "pitch_shifted_log_mel", lambda r, index, semis, f: asked["db"])
    run = SimpleNamespace(model=SimpleNamespace(pitch_range=(20, 90)), stats=None, frontend=None)
    both = code_metrics.Judges(pitch=_FirstBinJudge(), family=_FirstBinJudge())
    result = code_metrics._transfer(run, both, np.arange(len(held)), train, held, batch_size=4)
    inside = asked["db"][:, 0, 0]
    assert result["transfer_renders"] == 6 and result["transfer_in_range_renders"] == inside.sum() == 3
    assert result["transfer_family_accuracy"] == 0.5  # all swaps: 3 of 6 in range (bass at 30, 40; flute at 70)
    for key in code_metrics.IN_RANGE_KEYS:
        assert result[key] == 1.0, key  # the in-range keys score exactly the marked swaps
