"""evaluate / reconstruct / interpolate: which notes are scored and how they are labelled, output paths, --steps,
the audio metrics and what renders them (--vocoder)."""

import json
import math
import os

import numpy as np
import pytest

from keras_timbre.cli import main
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.data import make_synthetic_dataset
from keras_timbre.evaluation import evaluator
from keras_timbre.synthesis import audio_files
from keras_timbre.training import run as runs
from keras_timbre.training import trainer
from keras_timbre.outputs import OutputPathError
from keras_timbre.vocoder.render import GriffinLimRenderer
from tests.testing import TINY_FRONTEND

# One epoch of a tiny model on 32 x 64 features; half of each instrument's pitches held out.
TINY_TRAINING = {
    "frontend": TINY_FRONTEND,
    "model_kwargs": {"filters": (4, 8), "latent_dim": 4},
    "epochs": 1,
    "batch_size": 4,
    "val_fraction": 0.5,
    "verbose": 0,
}


def tiny_train(out, data):
    return trainer.train(out, data=data, **TINY_TRAINING)


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    # 20 notes over 10 families, 2 pitches each: one pitch per instrument is held out.
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), notes=20, seed=0, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, notes_dir):
    return tiny_train(tmp_path_factory.mktemp("runs") / "tiny", notes_dir).path


def wav_files(notes_dir):
    return sorted((notes_dir / "audio").glob("*.wav"))


def refuse_to_load_runs(monkeypatch):
    """Any run loaded from now on is a test failure: a bad --out must be refused before any work."""

    def fail(*args, **kwargs):
        raise AssertionError("the run was loaded before --out was checked")

    monkeypatch.setattr(runs, "load_run", fail)


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"keras-timbre {command}: error:"), err
    return err


# ---------------------------------------------------------------------------- which notes, labelled how


def test_evaluate_from_another_directory(tmp_path, notes_dir, monkeypatch):
    (tmp_path / "project").mkdir()
    os.symlink(notes_dir, tmp_path / "project" / "notes")
    monkeypatch.chdir(tmp_path / "project")
    tiny_train("run", "notes")  # the data path typed relative to the training directory
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    metrics = evaluator.evaluate(tmp_path / "project" / "run", write_media=False)
    assert metrics["notes"] == 10 and metrics["held_out"] is True


def test_evaluate_labels_the_validation_split_as_held_out(run_dir, notes_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--out", str(tmp_path / "m.json")]) == 0
    assert f"on 10 held-out notes of {notes_dir}" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert (metrics["held_out"], metrics["scored"], metrics["notes"]) == (True, f"held-out notes of {notes_dir}", 10)


def test_evaluate_data_labels_the_notes_as_notes_of_that_directory(run_dir, notes_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run_dir), "--data", str(notes_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"on 20 notes of {notes_dir}" in printed and "held-out" not in printed
    metrics = json.loads(out.read_text())
    assert (metrics["held_out"], metrics["scored"], metrics["notes"]) == (False, f"notes of {notes_dir}", 20)
    assert metrics["data"] == str(notes_dir)


def test_figures_are_titled_with_the_notes_they_show(run_dir, notes_dir, monkeypatch):
    from keras_timbre.analysis import plots

    titles = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: titles.setdefault(path.name, figure_text(figure)))
    evaluator.evaluate(run_dir, data=notes_dir, out=run_dir / "other.json")
    assert f"notes of {notes_dir}" in titles["evaluation_reconstructions.png"]
    assert f"notes of {notes_dir}" in titles["latent_pca.png"]
    assert "held-out" not in titles["evaluation_reconstructions.png"] + titles["latent_pca.png"]


def figure_text(figure):
    import matplotlib.pyplot as plt

    text = " ".join([figure.get_suptitle()] + [ax.get_title() for ax in figure.axes])
    plt.close(figure)
    return text


# ---------------------------------------------------------------------------- output paths


def test_evaluate_out_that_is_a_directory_is_refused_before_any_work(run_dir, tmp_path, monkeypatch, capsys):
    refuse_to_load_runs(monkeypatch)
    assert main(["evaluate", str(run_dir), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a directory" in one_error_line(capsys, "evaluate")


def test_reconstruct_out_that_is_a_directory_is_refused_before_any_work(
    run_dir, notes_dir, tmp_path, monkeypatch, capsys
):
    refuse_to_load_runs(monkeypatch)
    wav = str(wav_files(notes_dir)[0])
    assert main(["reconstruct", str(run_dir), wav, "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a directory" in one_error_line(capsys, "reconstruct")
    (tmp_path / "recon.png").mkdir()  # the figure beside the WAV cannot be written either
    assert main(["reconstruct", str(run_dir), wav, "--out", str(tmp_path / "recon.wav")]) == 2
    assert "recon.png is a directory" in one_error_line(capsys, "reconstruct")
    (tmp_path / "file").write_text("x")
    assert main(["reconstruct", str(run_dir), wav, "--out", str(tmp_path / "file" / "recon.wav")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a directory" in one_error_line(capsys, "reconstruct")


def test_interpolate_out_that_is_a_file_or_holds_other_files_is_refused(
    run_dir, notes_dir, tmp_path, monkeypatch, capsys
):
    refuse_to_load_runs(monkeypatch)
    a, b = (str(p) for p in wav_files(notes_dir)[:2])
    (tmp_path / "morph").write_text("not a directory")
    assert main(["interpolate", str(run_dir), a, b, "--out", str(tmp_path / "morph")]) == 2
    assert "morph is a file, not a directory" in one_error_line(capsys, "interpolate")
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "song.wav").write_text("keep me")
    assert main(["interpolate", str(run_dir), a, b, "--out", str(tmp_path / "music")]) == 2
    assert "song.wav" in one_error_line(capsys, "interpolate")
    assert (tmp_path / "music" / "song.wav").read_text() == "keep me"


def test_interpolate_replaces_an_earlier_morph_whole(run_dir, notes_dir, tmp_path):
    a, b = wav_files(notes_dir)[:2]
    out = tmp_path / "morph"
    audio_files.interpolate(run_dir, a, b, out, steps=4, n_iter=2)
    with pytest.raises(OutputPathError, match="holds an earlier output; pass --overwrite"):
        audio_files.interpolate(run_dir, a, b, out, steps=2, n_iter=2)
    audio_files.interpolate(run_dir, a, b, out, steps=2, n_iter=2, overwrite=True)  # no stale step_02/03 left
    assert sorted(p.name for p in out.iterdir()) == ["step_00.wav", "step_01.wav", "strip.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["morph"]  # no temporary folders


# ---------------------------------------------------------------------------- --steps


@pytest.mark.parametrize("steps", ["0", "1", "-3"])
def test_steps_below_two_give_one_message(run_dir, notes_dir, tmp_path, steps, capsys):
    a, b = (str(p) for p in wav_files(notes_dir)[:2])
    with pytest.raises(SystemExit) as exit_info:
        main(["interpolate", str(run_dir), a, b, "--steps", steps, "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    assert f"argument --steps: must be >= 2 (both ends, A and B), got {steps}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=rf"steps must be >= 2 \(both ends, A and B\), got {steps}"):
        audio_files.interpolate(run_dir, a, b, tmp_path / "m", steps=int(steps))


# ---------------------------------------------------------------------------- the ablation's reuse


def test_ablation_reuses_only_held_out_metrics(tmp_path):
    from keras_timbre.evaluation import ablation

    path = tmp_path / "metrics.json"
    assert ablation._finished_metrics(path) is None
    code = {key: 0.5 for key, _ in ablation.CODE_METRICS if key not in ablation.CONDITIONED_CODE_METRICS}
    conditioned = {key: 0.5 for key in ablation.CONDITIONED_CODE_METRICS}
    assert {"sample_pitch_accuracy", "transfer_pitch_accuracy", "rerender_t1_lsd_db"} <= set(conditioned)
    assert {"copy_family_fd", "real_family_fd", "family_judge_real_accuracy"} <= set(code)
    hierarchical = {"notes": 10, "lsd_db": 5.0, "group_kl_nats": [1.0], **code}
    old_code = {key: 0.5 for key in ("novel_pitch_lsd_db", "pitch_probe_transfer_accuracy")}
    for record, reused in (
        ({"notes": 10, "lsd_db": 5.0, "held_out": True, **code}, True),
        ({**hierarchical, **conditioned}, True),
        (hierarchical, False),  # a conditioned run written before the judged renderings existed
        ({"notes": 10, "lsd_db": 5.0, **old_code, "sample_pitch_accuracy": 0.9}, False),  # before the judges
        ({"notes": 10, "lsd_db": 5.0, **code}, True),  # written before `held_out` was recorded: always the split
        ({"notes": 10, "lsd_db": 5.0, "held_out": True}, False),  # written before the code metrics existed
        ({"notes": 20, "lsd_db": 4.0, "held_out": False, **code}, False),  # `evaluate --data`: other notes
        ({"notes": 0}, False),
    ):
        path.write_text(json.dumps(record))
        assert (ablation._finished_metrics(path) == record) is reused, record


# ---------------------------------------------------------------------------- the code on its own


@pytest.fixture(scope="module")
def hierarchical_run(tmp_path_factory, notes_dir):
    settings = {**TINY_TRAINING, "model_kwargs": {"filters": (4, 8, 8), "latent_dim": 4}}
    return trainer.train(tmp_path_factory.mktemp("runs") / "hier", data=notes_dir, variant="hierarchical", **settings)


def test_a_hierarchical_run_keeps_its_training_pitches_and_scores_its_code(hierarchical_run, notes_dir):
    from keras_timbre.data import read_notes

    pitches = [r.pitch for r in read_notes(notes_dir)]
    model = runs.load_run(hierarchical_run.path).model
    assert model.variant == "hierarchical"
    assert min(pitches) <= model.pitch_range[0] <= model.pitch_range[1] <= max(pitches)
    metrics = evaluator.evaluate(hierarchical_run.path, write_media=False)
    for key in ("decode_code_lsd_db", "novel_pitch_lsd_db", "pitch_shift_lsd_db", "sample_pitch_accuracy"):
        assert metrics[key] == metrics[key], key  # computed, not NaN
    assert 0.0 <= metrics["sample_pitch_accuracy"] <= 1.0
    check_judged_metrics(metrics, conditioned=True)
    # The swaps' reference moves real notes to trained pitches the pitch judge was fit on: it names many
    # (0.53 here; moved the wrong way, 0.0).
    assert metrics["transfer_pitch_shift_pitch_accuracy"] >= 0.3
    assert 0 < metrics["transfer_in_range_renders"] < metrics["transfer_renders"]  # some swaps leave the family
    # The run's decoder is bounded at its training notes' peak + 1 dB (FeatureStats.ceiling): no sample passes it.
    stats = runs.load_run(hierarchical_run.path).stats
    np.testing.assert_allclose(model.output_ceiling, stats.ceiling()[0], rtol=1e-6)
    assert metrics["sample_max_db"] <= stats.peak_db + 1.0 + 1e-3
    assert len(metrics["group_kl_nats"]) == len(metrics["group_active_units"]) == 2
    assert all(0 <= au <= dims for au, dims in zip(metrics["group_active_units"], metrics["group_dims"]))
    assert metrics["novel_pitch_notes"] + metrics["novel_pitch_unscored"] == metrics["notes"]


ACCURACIES = (
    "pitch_judge_real_accuracy",
    "family_judge_real_accuracy",
    "copy_pitch_accuracy",
    "copy_family_accuracy",
    "pitch_shift_pitch_accuracy",
    "pitch_shift_family_accuracy",
)
CONDITIONED_ACCURACIES = (
    "sample_pitch_accuracy",
    "sample_pitch_accuracy_t05",
    "sample_pitch_accuracy_t0",
    "transfer_family_accuracy",
    "transfer_pitch_accuracy",
    "transfer_pitch_shift_family_accuracy",
    "transfer_pitch_shift_pitch_accuracy",
    "transfer_in_range_family_accuracy",
    "transfer_in_range_pitch_accuracy",
    "transfer_in_range_pitch_shift_family_accuracy",
    "transfer_in_range_pitch_shift_pitch_accuracy",
)
DISTANCES = ("real_family_fd", "real_family_fd_same_size", "copy_family_fd", "pitch_shift_family_fd")
CONDITIONED_DISTANCES = ("sample_family_fd", "sample_family_fd_t05", "sample_family_fd_t0", "rerender_t1_lsd_db")


def check_judged_metrics(metrics, conditioned: bool):
    """The judges' keys: accuracies in [0, 1], distances finite and >= 0; a paper variant has no renderings."""
    from keras_timbre.evaluation.ablation import CONDITIONED_CODE_METRICS

    accuracies = ACCURACIES + (CONDITIONED_ACCURACIES if conditioned else ())
    distances = DISTANCES + (CONDITIONED_DISTANCES if conditioned else ())
    for key in accuracies:
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in distances:
        assert math.isfinite(metrics[key]) and metrics[key] >= 0.0, key
    assert metrics["pitch_classifier_real_accuracy"] == metrics["pitch_judge_real_accuracy"]
    # The copy is a training note itself, of the held-out note's instrument: the family judge was fit on it.
    assert metrics["copy_family_accuracy"] == 1.0
    # Fewer notes, a larger FD estimate (tests/test_judges.py); here as many training notes as held-out ones.
    assert metrics["real_family_fd_same_size"] >= metrics["real_family_fd"]
    if not conditioned:
        assert not CONDITIONED_CODE_METRICS & set(metrics)
        return
    assert CONDITIONED_CODE_METRICS <= set(metrics)
    assert metrics["sample_family_fd"] > 0.0
    assert 0 <= metrics["sample_beyond_range_notes"] <= metrics["notes"]
    assert math.isfinite(metrics["sample_max_db"]) and metrics["rerender_t1_harmonic_contrast_ratio"] > 0.0
    # 10 instruments of 2 pitches, one held out each: every held-out note has 3 other training pitches to go to.
    assert metrics["transfer_renders"] == 3 * metrics["notes"]


def test_paper_variants_get_the_code_metrics_without_sampling(run_dir):
    metrics = evaluator.evaluate(run_dir, out=run_dir / "code.json", write_media=False)
    assert "sample_pitch_accuracy" not in metrics and "group_kl_nats" not in metrics
    check_judged_metrics(metrics, conditioned=False)
    assert metrics["novel_pitch_lsd_db"] == metrics["novel_pitch_lsd_db"]  # scored with the decoded partner code
    assert 0.0 <= metrics["family_probe_unseen_accuracy"] <= 1.0
    assert metrics["mfcc_pitch_probe_transfer_accuracy"] == metrics["mfcc_pitch_probe_transfer_accuracy"]


# ---------------------------------------------------------------------------- the audio metrics, --vocoder

AUDIO_KEYS = ("audio_mel_lsd_db", "audio_mr_stft_db", "audio_f0_error_cents")


def tiny_vocoder(path, frontend=TINY_FRONTEND):
    from keras_timbre.vocoder.model import Vocoder

    Vocoder(frontend, channels=8, num_blocks=1).save(path)
    return path


def rendered_by(monkeypatch):
    """The names of the renderers that write evaluation WAVs, as they are called."""
    names = []
    write = evaluator.write_wavs

    def record(renderer, paths, log_mel_db):
        names.append(renderer.name)
        return write(renderer, paths, log_mel_db)

    monkeypatch.setattr(evaluator, "write_wavs", record)
    return names


def test_evaluate_scores_the_reconstructions_as_audio(run_dir, tmp_path, capsys, monkeypatch):
    wav_renderers = rendered_by(monkeypatch)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run_dir), "--vocoder", "griffin-lim", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["audio_renderer"] == "Griffin-Lim (64 it.)" and wav_renderers == [metrics["audio_renderer"]]
    assert (metrics["audio_notes"], metrics["audio_f0_notes"]) == (10, evaluator.F0_NOTES)
    assert all(math.isfinite(metrics[key]) for key in AUDIO_KEYS), metrics
    # A one-epoch model's notes, heard: several dB from the real ones, on the order of its log-mel LSD.
    assert 1.0 < metrics["audio_mel_lsd_db"] < 60.0 and metrics["audio_mel_lsd_db"] > 0.5 * metrics["lsd_db"]
    assert 1.0 < metrics["audio_mr_stft_db"] < 100.0
    assert 0.0 <= metrics["audio_f0_error_cents"] <= 2400.0  # pYIN searches an octave either side of the label
    printed = capsys.readouterr().out
    assert '"audio_mr_stft_db"' in printed and "(audio: Griffin-Lim (64 it.))" in printed


def test_a_perfect_model_heard_through_the_same_renderer_scores_better(run_dir, notes_dir):
    run = runs.load_run(run_dir)
    records, log_mel_db = evaluator.held_out_notes(run)
    renderer = GriffinLimRenderer(run.frontend, n_iter=32)
    model = evaluator.compute_metrics(run, records, log_mel_db, renderer=renderer)
    truth = evaluator.audio_scores(run.frontend, records, log_mel_db, renderer)
    assert truth["audio_notes"] == model["audio_notes"] == len(records)
    for key in ("audio_mel_lsd_db", "audio_mr_stft_db"):
        assert 0.0 < truth[key] < model[key], key
    # The real notes' own audio scores zero: the waveforms are the ones the features were computed from.
    real, kept = evaluator.note_waveforms(records, run.frontend)
    assert kept == list(range(len(records)))
    assert np.allclose(audio_metrics_of(real, real, run.frontend), 0.0)


def audio_metrics_of(audio, real, frontend):
    from keras_timbre.analysis import audio_metrics

    return (
        audio_metrics.reanalysed_lsd_db(audio, real, frontend),
        audio_metrics.mr_stft_distance_db(audio, real),
    )


def test_the_audio_metrics_bound_their_notes(run_dir):
    run = runs.load_run(run_dir)
    records, log_mel_db = evaluator.held_out_notes(run)
    scores = evaluator.audio_scores(run.frontend, records, log_mel_db, GriffinLimRenderer(run.frontend, 2), 3, 2)
    assert (scores["audio_notes"], scores["audio_f0_notes"]) == (3, 2)
    assert evaluator._spread(10, 3) == [0, 4, 9] and evaluator._spread(2, 3) == [0, 1]


def test_the_default_renderer_falls_back_to_griffin_lim_for_features_the_shipped_vocoder_cannot_voice(run_dir):
    metrics = evaluator.evaluate(run_dir, out=run_dir / "default.json", write_media=False)
    assert metrics["audio_renderer"].startswith("Griffin-Lim")
    assert all(math.isfinite(metrics[key]) for key in AUDIO_KEYS)


def test_evaluate_renders_with_a_vocoder_path(run_dir, tmp_path, monkeypatch):
    wav_renderers = rendered_by(monkeypatch)
    vocoder = tiny_vocoder(tmp_path / "voc.keras")
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run_dir), "--vocoder", str(vocoder), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["audio_renderer"] == f"vocoder ({vocoder})" and wav_renderers == [metrics["audio_renderer"]]
    assert math.isfinite(metrics["audio_mel_lsd_db"]) and math.isfinite(metrics["audio_mr_stft_db"])
    assert metrics["audio_mel_lsd_db"] > 0.0 and "audio_f0_error_cents" in metrics  # untrained: maybe unvoiced


def test_a_vocoder_for_other_features_is_one_line_and_exit_2(run_dir, tmp_path, capsys):
    other = FrontendConfig(n_mels=16, duration=1.0, n_fft=512, hop_length=250)
    vocoder = tiny_vocoder(tmp_path / "voc16.keras", other)
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run_dir), "--vocoder", str(vocoder), "--out", str(out)]) == 2
    assert "n_mels: vocoder has 16, run has 32" in one_error_line(capsys, "evaluate")
    assert main(["evaluate", str(run_dir), "--vocoder", str(tmp_path / "none.keras"), "--out", str(out)]) == 2
    assert f"no vocoder at {tmp_path / 'none.keras'}" in one_error_line(capsys, "evaluate")
    assert not out.exists()
