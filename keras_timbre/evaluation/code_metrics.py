"""What the timbre code is worth on its own: as a synthesiser and as a description of new sounds.

Every metric here scores notes a fit never saw, by construction:

- `novel_pitch_lsd_db`: an instrument's mean training code, rendered at a
  pitch that instrument was never trained on, against the real note; beside it
  the model-free rows (the nearest-pitch training note copied, and moved by
  `librosa.effects.pitch_shift`). A paper variant has no pitch input: it is
  scored with the decoded code of that nearest-pitch note.
- `sample_pitch_accuracy`: prior samples at the held-out notes' pitches,
  recognised by a `PitchClassifier` fit on the real training notes.
- probes: pitch fit on the training split's codes and scored on the held-out
  split's; family by group k-fold over instruments (unseen instruments); the
  same on 20-MFCC statistics, which need no learning.

`docs/evaluation.md` defines each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_timbre.analysis import metrics
from keras_timbre.analysis import probes
from keras_timbre.evaluation.novel_pitch import novel_pitch_pairs, pitch_shifted_log_mel
from keras_timbre.models.inference import decode_db, inputs_for, latent_means, reconstruct_db

# Mean KL (nats) above which a group's dimension counts as active: it tells the decoder something
# its prior did not (a group's prior mean varies with the state, so Burda's variance test does not apply).
ACTIVE_KL = 0.01


def code_metrics(run, train_records, train_db, held_records, held_db, batch_size: int = 32) -> dict[str, Any]:
    """Probes, novel-pitch rows, prior-sample pitch and per-group KL of `run` (metrics.json keys)."""
    model, stats = run.model, run.stats
    z_train, _ = latent_means(model, train_db, stats, batch_size, train_records)
    z_held, _ = latent_means(model, held_db, stats, batch_size, held_records)
    result = _probe_metrics(z_train, z_held, train_records, held_records, prefix="")
    result.update(
        _probe_metrics(
            probes.mfcc_statistics(train_db), probes.mfcc_statistics(held_db), train_records, held_records, "mfcc_"
        )
    )
    result.update(_novel_pitch(run, z_train, train_records, train_db, held_records, held_db, batch_size))
    if model.is_conditioned:
        result.update(_sample_pitch(run, train_records, train_db, held_records, held_db))
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


def _novel_pitch(run, z_train, train_records, train_db, held_records, held_db, batch_size) -> dict[str, Any]:
    """The model's novel-pitch LSD beside the nearest-pitch copy and its pitch shift, on the same notes."""
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
    shifted = pitch_shifted_log_mel(train_records, pairs, run.frontend)
    return {
        "novel_pitch_lsd_db": metrics.lsd_db(target, rendered, floor),
        "novel_pitch_harmonic_contrast_ratio": metrics.harmonic_contrast_ratio(target, rendered, floor),
        "nearest_pitch_copy_lsd_db": metrics.lsd_db(target, train_db[pairs.train_index], floor),
        "pitch_shift_lsd_db": metrics.lsd_db(target, shifted, floor),
        "novel_pitch_notes": len(pairs),
        "novel_pitch_unscored": len(pairs.unscored),
    }


def _sample_pitch(run, train_records, train_db, held_records, held_db, seed: int = 0) -> dict[str, float]:
    """Prior samples (codes from N(0, I), groups at the prior mean) at each held-out note's pitch and velocity."""
    classifier = probes.PitchClassifier().fit(train_db, [r.pitch for r in train_records])
    codes = np.random.default_rng(seed).standard_normal((len(held_records), run.model.latent_dim))
    pitches, velocities = [r.pitch for r in held_records], [r.velocity for r in held_records]
    samples = decode_db(run.model, codes, run.stats, pitches, velocities)
    return {
        "sample_pitch_accuracy": probes.sample_pitch_accuracy(classifier, samples, pitches),
        # The instrument's own accuracy on real held-out notes: the ceiling the samples are read against.
        "pitch_classifier_real_accuracy": classifier.accuracy(held_db, pitches),
    }


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
