"""What the timbre code is worth on its own: as a synthesiser and as a description of new sounds.

Every metric here scores notes a fit never saw, by construction:

- `novel_pitch_lsd_db`: an instrument's mean training code, rendered at a
  pitch that instrument was never trained on, against the real note; beside it
  the model-free rows (the nearest-pitch training note copied, and moved by
  `librosa.effects.pitch_shift`). A paper variant has no pitch input: it is
  scored with the decoded code of that nearest-pitch note.
- judged renderings (`keras_timbre.analysis.judges`, both judges fit on the
  real training notes): prior samples at the held-out notes' pitches at
  temperatures 1, 0.5 and 0 (`sample_pitch_accuracy`, `sample_family_fd`,
  their dB range), each held-out note's code re-rendered at temperature 1,
  and rendered at other trained pitches (`transfer_*`); beside them the
  judges on real notes (`*_judge_real_accuracy`, `real_family_fd`, and
  `real_family_fd_same_size` at the samples' size), on the
  model-free copy and pitch-shift rows (`copy_*`, `pitch_shift_*`), and on
  each swap's model-free reference, the held-out note itself pitch-shifted to
  the asked pitch (`transfer_pitch_shift_*`); the same four again on the
  swaps whose asked pitch lies within the note's family's training pitches
  (`transfer_in_range_*`: elsewhere no real note tells a judge what that
  family sounds like).
- probes: pitch fit on the training split's codes and scored on the held-out
  split's; family by group k-fold over instruments (unseen instruments); the
  same on 20-MFCC statistics, which need no learning.

`docs/evaluation.md` defines each.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from keras_timbre.analysis import judges as judges_lib
from keras_timbre.analysis import metrics
from keras_timbre.analysis import probes
from keras_timbre.evaluation.novel_pitch import novel_pitch_pairs, pitch_shifted_log_mel
from keras_timbre.models.inference import decode_db, inputs_for, latent_means, reconstruct_db

# Mean KL (nats) above which a group's dimension counts as active: it tells the decoder something
# its prior did not (a group's prior mean varies with the state, so Burda's variance test does not apply).
ACTIVE_KL = 0.01
# Prior samples are drawn at these temperatures (0: the groups' prior means), each with its key suffix.
SAMPLE_TEMPERATURES = ((1.0, ""), (0.5, "_t05"), (0.0, "_t0"))
# A sample is beyond the real notes' range with a bin this far above their loudest, or below the floor.
RANGE_SLACK_DB = 1.0
# Swap and judge: each held-out note's code is rendered at this many other trained pitches.
TRANSFER_PITCHES = 3
TRANSFER_KEYS = (
    "transfer_family_accuracy",
    "transfer_pitch_accuracy",
    "transfer_pitch_shift_family_accuracy",
    "transfer_pitch_shift_pitch_accuracy",
)
# The same, on the swaps to a pitch within the note's family's training pitches.
IN_RANGE_KEYS = tuple(key.replace("transfer_", "transfer_in_range_", 1) for key in TRANSFER_KEYS)
# Subsets of the training notes whose family FD against the held-out notes `real_family_fd_same_size` averages.
SAME_SIZE_DRAWS = 5
NAN = float("nan")


def code_metrics(run, train_records, train_db, held_records, held_db, batch_size: int = 32) -> dict[str, Any]:
    """Probes, novel-pitch rows, judged renderings and per-group KL of `run` (metrics.json keys).

    The judges (`fit_judges`) are fit once on the training notes. Every variant gets the probes, the
    novel-pitch rows with their model-free references judged, and the judges' own scores on real notes; a
    conditioned model also its prior samples, temperature-1 re-renders, swapped pitches and group KLs.
    """
    model, stats = run.model, run.stats
    z_train, _ = latent_means(model, train_db, stats, batch_size, train_records)
    z_held, _ = latent_means(model, held_db, stats, batch_size, held_records)
    result = _probe_metrics(z_train, z_held, train_records, held_records, prefix="")
    result.update(
        _probe_metrics(
            probes.mfcc_statistics(train_db), probes.mfcc_statistics(held_db), train_records, held_records, "mfcc_"
        )
    )
    judges = fit_judges(train_db, train_records)
    result.update(_real_notes(judges, train_db, held_records, held_db))
    result.update(_novel_pitch(run, z_train, train_records, train_db, held_records, held_db, batch_size, judges))
    if model.is_conditioned:
        result.update(_samples(run, judges, held_records, held_db, batch_size))
        result.update(_rerender(run, z_held, held_records, held_db, batch_size))
        result.update(_transfer(run, judges, z_held, train_records, held_records, batch_size))
        result.update(group_metrics(model, stats, held_db, held_records, batch_size))
    return result


def _probe_metrics(train_features, held_features, train_records, held_records, prefix: str) -> dict[str, float]:
    features = np.concatenate([train_features, held_features])
    records = list(train_records) + list(held_records)
    return {
        f"{prefix}pitch_probe_transfer_accuracy": probes.transfer_probe_accuracy(
            train_features, [r.pitch for r in train_records], held_features, [r.pitch for r in held_records]
        ),
        f"{prefix}family_probe_unseen_accuracy": probes.group_probe_accuracy(
            features, [r.family for r in records], [r.instrument for r in records]
        ),
    }


# ---------------------------------------------------------------------------- the judges


@dataclasses.dataclass(frozen=True)
class Judges:
    """The pitch and family judges fit on the training notes; None where the notes cannot fit one."""

    pitch: judges_lib.PitchClassifier | None
    family: judges_lib.FamilyJudge | None


def fit_judges(train_db, train_records) -> Judges:
    """`Judges` fit on the training notes' log-mels (dB), pitches and families (2 classes needed for each)."""
    pitches = [r.pitch for r in train_records]
    families = [r.family for r in train_records]
    pitch = judges_lib.PitchClassifier().fit(train_db, pitches) if len(set(pitches)) > 1 else None
    family = judges_lib.FamilyJudge().fit(train_db, families) if len(set(families)) > 1 else None
    return Judges(pitch, family)


def _judgeable(log_mel_db) -> np.ndarray:
    """Rendered log-mel the judges can read: NaN as silence, infinities as +-1e6 dB (still beyond any note)."""
    return np.nan_to_num(np.asarray(log_mel_db, np.float64), nan=-1e6, posinf=1e6, neginf=-1e6)


def _accuracy(judge, log_mel_db, labels) -> float:
    if judge is None or len(labels) == 0:
        return NAN
    return judge.accuracy(_judgeable(log_mel_db), labels)


def _fd(judges: Judges, rendered_db, real_db) -> float:
    if judges.family is None or min(len(rendered_db), len(real_db)) < 2:
        return NAN
    return judges_lib.family_fd(judges.family, _judgeable(rendered_db), real_db)


def _judged(judges: Judges, prefix: str, rendered_db, records, real_db) -> dict[str, float]:
    """`PREFIX_pitch_accuracy`, `PREFIX_family_accuracy` (asked: the records' pitch and family) and
    `PREFIX_family_fd` (against `real_db`)."""
    return {
        f"{prefix}_pitch_accuracy": _accuracy(judges.pitch, rendered_db, [r.pitch for r in records]),
        f"{prefix}_family_accuracy": _accuracy(judges.family, rendered_db, [r.family for r in records]),
        f"{prefix}_family_fd": _fd(judges, rendered_db, real_db),
    }


def _real_notes(judges: Judges, train_db, held_records, held_db) -> dict[str, float]:
    """The judges on real held-out notes (the ceilings), and the FD of real training vs held-out notes (the floor)."""
    pitch_accuracy = _accuracy(judges.pitch, held_db, [r.pitch for r in held_records])
    return {
        "pitch_judge_real_accuracy": pitch_accuracy,
        "pitch_classifier_real_accuracy": pitch_accuracy,  # its name before the family judge
        "family_judge_real_accuracy": _accuracy(judges.family, held_db, [r.family for r in held_records]),
        "real_family_fd": _fd(judges, train_db, held_db),
        "real_family_fd_same_size": _same_size_fd(judges, train_db, held_db),
    }


def _same_size_fd(judges: Judges, train_db, held_db) -> float:
    """The FD of as many real training notes as there are held-out notes, the mean over `SAME_SIZE_DRAWS`
    seeded subsets: the floor for a sample of that size (FD's estimate grows as the sample shrinks)."""
    if len(train_db) <= len(held_db) or judges.family is None:
        return _fd(judges, train_db, held_db)
    train, held = (judges.family.embed(db) for db in (train_db, held_db))  # once: each note's features are its own
    subsets = (
        np.random.default_rng(seed).choice(len(train_db), len(held_db), replace=False)
        for seed in range(SAME_SIZE_DRAWS)
    )
    return float(np.mean([judges_lib.frechet_distance(train[np.sort(subset)], held) for subset in subsets]))


# ---------------------------------------------------------------------------- the novel-pitch rows


def _novel_pitch(run, z_train, train_records, train_db, held_records, held_db, batch_size, judges) -> dict[str, Any]:
    """The model's novel-pitch LSD beside the nearest-pitch copy and its pitch shift, on the same notes;
    the copy and the shift also judged (pitch and family asked: the held-out note's)."""
    pairs = novel_pitch_pairs(train_records, held_records)
    floor = run.frontend.floor_db
    if len(pairs) == 0:
        return {"novel_pitch_notes": 0, "novel_pitch_unscored": len(pairs.unscored)}
    target = held_db[pairs.held_index]
    held = [held_records[i] for i in pairs.held_index]
    if run.model.is_conditioned:
        instruments = np.array([r.instrument for r in train_records])
        codes = np.stack([z_train[instruments == r.instrument].mean(axis=0) for r in held])
        pitches, velocities = [r.pitch for r in held], [r.velocity for r in held]
        rendered = decode_db(run.model, codes, run.stats, pitches, velocities, batch_size=batch_size)
    else:  # no pitch input: the decoded code of the nearest-pitch training note
        partners = [train_records[j] for j in pairs.train_index]
        rendered = reconstruct_db(run.model, train_db[pairs.train_index], run.stats, batch_size, True, partners)
    copy = train_db[pairs.train_index]
    shifted = pitch_shifted_log_mel(train_records, pairs.train_index, pairs.semitones, run.frontend)
    return {
        "novel_pitch_lsd_db": metrics.lsd_db(target, rendered, floor),
        "novel_pitch_harmonic_contrast_ratio": metrics.harmonic_contrast_ratio(target, rendered, floor),
        "nearest_pitch_copy_lsd_db": metrics.lsd_db(target, copy, floor),
        "pitch_shift_lsd_db": metrics.lsd_db(target, shifted, floor),
        **_judged(judges, "copy", copy, held, target),
        **_judged(judges, "pitch_shift", shifted, held, target),
        "novel_pitch_notes": len(pairs),
        "novel_pitch_unscored": len(pairs.unscored),
    }


# ---------------------------------------------------------------------------- a conditioned model's renderings


def _renderable(model, temperature: float) -> bool:
    """Whether `model.decode` renders `temperature` (a model trained at lower temperatures refuses it)."""
    return temperature <= model.max_temperature


def _samples(run, judges: Judges, held_records, held_db, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Prior samples (codes from the run's `code_prior`, seeded) at each held-out note's pitch and velocity, at each of
    `SAMPLE_TEMPERATURES`, judged; the temperature-1 samples' dB range checked against the real notes'."""
    codes = run.code_prior.sample(len(held_records), seed)
    pitches, velocities = [r.pitch for r in held_records], [r.velocity for r in held_records]
    result: dict[str, float] = {}
    for temperature, suffix in SAMPLE_TEMPERATURES:
        samples = None
        if _renderable(run.model, temperature):
            samples = decode_db(run.model, codes, run.stats, pitches, velocities, temperature, batch_size)
        result[f"sample_pitch_accuracy{suffix}"] = NAN if samples is None else _accuracy(judges.pitch, samples, pitches)
        result[f"sample_family_fd{suffix}"] = NAN if samples is None else _fd(judges, samples, held_db)
        if temperature == 1.0:
            result.update(_level_check(samples, held_db))
    return result


def _level_check(samples, held_db) -> dict[str, float]:
    """`sample_max_db`, `sample_beyond_range_notes` (samples with a bin above the real notes' loudest +
    `RANGE_SLACK_DB`, or not finite; NaN: no samples) and `sample_above_real_peak_notes` (above it at
    all: a decoder bounded at the training peak + 1 dB has none beyond, and this counts those near its
    ceiling). A bin below the frontend's floor is silence, as the
    metrics and the vocoder read it, so it is not counted."""
    if samples is None or len(samples) == 0:
        return {"sample_max_db": NAN, "sample_beyond_range_notes": NAN, "sample_above_real_peak_notes": NAN}
    flat = np.asarray(samples, np.float64).reshape(len(samples), -1)
    peak = float(np.max(held_db))
    with np.errstate(invalid="ignore"):
        beyond = ~np.all(np.isfinite(flat) & (flat <= peak + RANGE_SLACK_DB), axis=1)
        above = ~np.all(np.isfinite(flat) & (flat <= peak), axis=1)
    return {
        "sample_max_db": float(np.max(flat)),
        "sample_beyond_range_notes": int(beyond.sum()),
        "sample_above_real_peak_notes": int(above.sum()),
    }


def _rerender(run, z_held, held_records, held_db, batch_size: int) -> dict[str, float]:
    """Each held-out note's own code rendered at its own pitch and velocity at temperature 1, against it."""
    if not _renderable(run.model, 1.0):
        return {"rerender_t1_lsd_db": NAN, "rerender_t1_harmonic_contrast_ratio": NAN}
    pitches, velocities = [r.pitch for r in held_records], [r.velocity for r in held_records]
    rendered = decode_db(run.model, z_held, run.stats, pitches, velocities, 1.0, batch_size)
    floor = run.frontend.floor_db
    return {
        "rerender_t1_lsd_db": metrics.lsd_db(held_db, rendered, floor),
        "rerender_t1_harmonic_contrast_ratio": metrics.harmonic_contrast_ratio(held_db, rendered, floor),
    }


def transfer_pitches(train_records, held_records, pitch_range, count: int = TRANSFER_PITCHES, seed: int = 0):
    """For each held-out note, up to `count` other pitches to render it at: drawn without replacement (a
    seeded numpy generator) from the training notes' pitches within `pitch_range`, never the note's own.

    Returns:
        `(note_index, pitches)` int64 arrays, one entry per rendering.

    Example:
    >>> from keras_timbre.data.readers import NoteRecord
    >>> train = [NoteRecord.from_path(f"flute_acoustic_000-{p:03d}-100.wav") for p in (40, 60, 62)]
    >>> held = [NoteRecord.from_path("flute_acoustic_000-060-100.wav")]
    >>> index, pitches = transfer_pitches(train, held, (50, 70), count=3)
    >>> index.tolist(), pitches.tolist()
    ([0], [62])
    """
    low, high = pitch_range
    trained = sorted({r.pitch for r in train_records if low <= r.pitch <= high})
    rng = np.random.default_rng(seed)
    index, pitches = [], []
    for i, record in enumerate(held_records):
        others = [p for p in trained if p != record.pitch]
        chosen = rng.choice(others, size=min(count, len(others)), replace=False) if others else []
        index += [i] * len(chosen)
        pitches += [int(p) for p in chosen]
    return np.array(index, np.int64), np.array(pitches, np.int64)


def _transfer(run, judges: Judges, z_held, train_records, held_records, batch_size: int) -> dict[str, float]:
    """Swap and judge: each held-out note's code at other trained pitches (its own velocity, temperature 0);
    the family judge should name the note's family, the pitch judge the asked pitch. Beside it the same
    judges on its model-free reference: the held-out note itself moved to the asked pitch by `pitch_shift`."""
    index, pitches = transfer_pitches(train_records, held_records, run.model.pitch_range)
    if len(index) == 0:
        return {key: NAN for key in TRANSFER_KEYS + IN_RANGE_KEYS} | {
            "transfer_renders": 0,
            "transfer_in_range_renders": 0,
        }
    velocities = [held_records[i].velocity for i in index]
    families = np.array([held_records[i].family for i in index])
    rendered = decode_db(run.model, z_held[index], run.stats, pitches, velocities, 0.0, batch_size)
    semitones = pitches - np.array([held_records[i].pitch for i in index])
    shifted = pitch_shifted_log_mel(held_records, index, semitones, run.frontend)
    ranges = family_pitch_ranges(train_records)
    inside = np.array([ranges[f][0] <= p <= ranges[f][1] if f in ranges else False for f, p in zip(families, pitches)])
    result = {}
    for keys, kept in ((TRANSFER_KEYS, slice(None)), (IN_RANGE_KEYS, inside)):
        result.update(_judge_swaps(judges, keys, rendered[kept], shifted[kept], families[kept], pitches[kept]))
    return result | {"transfer_renders": int(len(index)), "transfer_in_range_renders": int(inside.sum())}


def _judge_swaps(judges: Judges, keys, rendered, shifted, families, pitches) -> dict[str, float]:
    """`keys` (family, pitch, and the pitch shift's family, pitch) of one set of swaps."""
    pairs = ((judges.family, rendered, families), (judges.pitch, rendered, pitches))
    pairs += ((judges.family, shifted, families), (judges.pitch, shifted, pitches))
    return {key: _accuracy(judge, db, labels) for key, (judge, db, labels) in zip(keys, pairs)}


def family_pitch_ranges(records) -> dict[str, tuple[int, int]]:
    """Each family's lowest and highest labelled pitch among `records`.

    Example:
    >>> from keras_timbre.data.readers import NoteRecord
    >>> notes = [NoteRecord.from_path(f"bass_synthetic_000-{p:03d}-100.wav") for p in (30, 45, 38)]
    >>> family_pitch_ranges(notes)
    {'bass': (30, 45)}
    """
    ranges: dict[str, tuple[int, int]] = {}
    for record in records:
        if record.pitch < 0:
            continue
        low, high = ranges.get(record.family, (record.pitch, record.pitch))
        ranges[record.family] = (min(low, record.pitch), max(high, record.pitch))
    return ranges


def group_metrics(model, stats, log_mel_db, records, batch_size: int = 32) -> dict[str, Any]:
    """KL (nats per note) and active units (dimensions whose mean KL exceeds `ACTIVE_KL`) of each group."""
    from keras import ops

    x = stats.to_model_input(log_mel_db)
    sums = None
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        maps = model.group_kl_maps(inputs_for(model, x[part], records[part]))
        batch = [ops.convert_to_numpy(m).reshape(len(x[part]), -1).sum(axis=0) for m in maps]
        sums = batch if sums is None else [a + b for a, b in zip(sums, batch)]
    per_dim = [total / len(x) for total in sums]
    return {
        "group_kl_nats": [float(kl.sum()) for kl in per_dim],
        "group_active_units": [int(np.sum(kl > ACTIVE_KL)) for kl in per_dim],
        "group_dims": [int(kl.size) for kl in per_dim],
    }
