"""synthesize / transfer / interpolate --pitch on a pitch-conditioned run, their errors, and its SavedModel."""

from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile as sf

from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.cli import main
from keras_timbre.synthesis import audio_files
from keras_timbre.models.hierarchical_vae import closest_velocity
from keras_timbre.models.inference import decode_db
from keras_timbre.models.timbre_vae import TimbreVAE
from keras_timbre.training import run as runs
from testing import save_tiny_vocoder, train_tiny_hierarchical

FRONTEND = FrontendConfig(n_mels=32, duration=0.5, n_fft=512, hop_length=250)  # features (32, 32), 8000 samples
GL = ["--griffin-lim-iters", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny hierarchical run (3 epochs), loaded."""
    return runs.load_run(train_tiny_hierarchical(tmp_path_factory, FRONTEND).path)


@pytest.fixture(scope="module")
def notes_dir(run):
    return Path(run.config["data"])


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """An untrained baseline TimbreVAE saved as a run: a model with no pitch input."""
    path = tmp_path_factory.mktemp("runs") / "baseline"
    stats = FeatureStats(np.zeros(32, np.float32), np.ones(32, np.float32))
    model = TimbreVAE.from_variant("baseline", input_shape=(32, 32, 1), latent_dim=4, filters=(4, 8))
    runs.create_run(path, FRONTEND, stats, runs.run_config("baseline", {}, "test", {}, 0))
    runs.save_model(path, model)
    return path


@pytest.fixture(scope="module")
def wavs(notes_dir, run):
    """Two notes at pitches the run was trained on (the code of a note outside them is refused)."""
    low, high = run.model.pitch_range
    notes = [p for p in sorted((notes_dir / "audio").glob("*.wav")) if low <= int(p.stem.split("-")[1]) <= high]
    return [str(p) for p in notes[:2]]


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"keras-timbre {command}: error:"), err
    return err


def assert_note_wav(path):
    info = sf.info(str(path))
    assert (info.frames, info.samplerate) == (FRONTEND.num_samples, FRONTEND.sample_rate)
    assert np.isfinite(sf.read(str(path))[0]).all()
    assert path.with_suffix(".png").stat().st_size > 0


# ---------------------------------------------------------------------------- outputs


@pytest.mark.backend
def test_synthesize_like_and_random_write_a_note_and_its_spectrogram(run, wavs, tmp_path, capsys):
    low, _ = run.model.pitch_range
    like = tmp_path / "like.wav"
    assert main(["synthesize", str(run.path), "--like", wavs[0], "--pitch", str(low), "--out", str(like)] + GL) == 0
    assert f"Wrote {like} and {like.with_suffix('.png')}" in capsys.readouterr().out
    assert_note_wav(like)
    random = tmp_path / "random.wav"
    argv = ["synthesize", str(run.path), "--random", "--seed", "3", "--pitch", str(low + 1), "--out", str(random)]
    assert main(argv + GL) == 0
    assert_note_wav(random)


def test_synthesize_file_renders_the_code_of_like_or_of_the_seed(run, wavs, tmp_path, monkeypatch):
    rendered = {}
    monkeypatch.setattr(audio_files, "write_wavs", lambda renderer, paths, db: rendered.setdefault("db", db[0]))
    pitch = run.model.pitch_range[1]
    audio_files.synthesize_file(run, tmp_path / "s.wav", pitch, like=wavs[1])
    code = audio_files.note_codes(run, [wavs[1]], audio_files.read_log_mel(run, wavs[1])[None])
    expected = decode_db(run.model, code, run.stats, pitch, run.model.default_velocity)[0]
    np.testing.assert_allclose(rendered["db"], expected, atol=1e-3)
    randoms = []
    for seed in (1, 1, 2):  # --seed fixes the code (the WAV's Griffin-Lim starts from librosa's random phase)
        rendered.clear()
        audio_files.synthesize_file(run, tmp_path / "r.wav", pitch, seed=seed, overwrite=True)
        randoms.append(rendered["db"])
    np.testing.assert_array_equal(randoms[0], randoms[1])
    assert not np.allclose(randoms[0], randoms[2])
    assert not run.code_prior.is_standard  # the seed draws from the run's code prior, not N(0, I)
    drawn = decode_db(run.model, run.code_prior.sample(1, seed=1), run.stats, pitch, run.model.default_velocity)
    np.testing.assert_allclose(randoms[0], drawn[0], atol=1e-3)


def test_a_note_beyond_the_training_notes_range_is_refused_and_not_written(run, tmp_path, monkeypatch):
    assert run.stats.peak_db is not None  # training kept the notes' peak
    pitch = run.model.pitch_range[0]
    code = run.code_prior.sample(1, seed=0)  # --seed 0's
    rendered = decode_db(run.model, code, run.stats, pitch, run.model.default_velocity)
    monkeypatch.setattr(run.stats, "peak_db", float(rendered.max()) - 7.0)  # 1 dB beyond the 6 dB margin
    with pytest.raises(audio_files.RenderingError, match="louder than any training note.*lower --temperature"):
        audio_files.synthesize_file(run, tmp_path / "loud.wav", pitch, seed=0, temperature=0.0)
    assert not (tmp_path / "loud.wav").exists()
    monkeypatch.setattr(run.stats, "peak_db", float(rendered.max()) - 5.0)  # within the margin: written
    audio_files.synthesize_file(run, tmp_path / "ok.wav", pitch, seed=0, griffin_lim_iters=2, vocoder="griffin-lim")
    assert (tmp_path / "ok.wav").is_file()


def test_transfer_writes_the_note_at_another_pitch(run, wavs, tmp_path, capsys):
    out = tmp_path / "moved.wav"
    velocity = str(run.model.velocities[0])
    argv = ["transfer", str(run.path), wavs[0], "--pitch", str(run.model.pitch_range[1]), "--velocity", velocity]
    assert main(argv + ["--out", str(out)] + GL) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    assert_note_wav(out)


def test_interpolate_at_a_pitch_writes_every_step(run, wavs, tmp_path):
    out = tmp_path / "morph"
    pitch = str(run.model.pitch_range[0])
    assert main(["interpolate", str(run.path), *wavs, "--steps", "3", "--pitch", pitch, "--out", str(out)] + GL) == 0
    assert sorted(p.name for p in out.iterdir()) == ["step_00.wav", "step_01.wav", "step_02.wav", "strip.png"]
    assert sf.info(str(out / "step_01.wav")).frames == FRONTEND.num_samples


def test_default_velocity_is_100_or_the_closest_trained_one():
    assert closest_velocity((25, 50, 75, 100, 127)) == 100
    assert closest_velocity((25, 75, 127)) == 75
    assert closest_velocity((90, 110)) == 110  # a tie: the louder


# ---------------------------------------------------------------------------- bad input: exit 2, one line


def test_bad_input_exits_2_naming_the_argument(run, paper_run, wavs, tmp_path, capsys):
    low, high = run.model.pitch_range
    allowed = ", ".join(str(v) for v in run.model.velocities)
    out = ["--out", str(tmp_path / "x.wav")]
    cases = [
        (["synthesize", str(run.path), "--random", "--pitch", str(high + 1)] + out, f"from {low} to {high}"),
        (["transfer", str(run.path), wavs[0], "--pitch", str(low - 1)] + out, f"pitch {low - 1} is not in"),
        (["interpolate", str(run.path), *wavs, "--pitch", "0", "--out", str(tmp_path / "m")], "pitch 0 is not in"),
        (["interpolate", str(run.path), *wavs, "--out", str(tmp_path / "m")], "pitch is required"),
        (["synthesize", str(run.path), "--random", "--pitch", str(low), "--velocity", "1"] + out, allowed),
        (["transfer", str(paper_run), wavs[0], "--pitch", "60"] + out, "baseline model, which has no pitch input"),
        (["interpolate", str(paper_run), *wavs, "--pitch", "60", "--out", str(tmp_path / "m")], "no pitch input"),
        (["synthesize", str(run.path), "--like", str(tmp_path / "gone.wav"), "--pitch", str(low)] + out, "gone.wav"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in one_error_line(capsys, argv[0]), argv
    (tmp_path / "text.wav").write_text("not audio")
    assert main(["transfer", str(run.path), str(tmp_path / "text.wav"), "--pitch", str(low)] + out) == 2
    assert "text.wav" in one_error_line(capsys, "transfer")
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "m").exists()


def note_at(path, pitch, rate=FRONTEND.sample_rate):
    """A 0.5 s harmonic tone at MIDI `pitch` written to `path`."""
    t = np.arange(FRONTEND.num_samples) / rate
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < rate / 2)
    sf.write(path, (0.5 * wave / np.abs(wave).max()).astype(np.float32), rate)
    return path


def test_a_source_note_outside_the_trained_range_is_refused_naming_it(run, wavs, tmp_path, capsys):
    # Its code is read relative to its own pitch: one the run never trained on is refused, as the export does.
    low, high = run.model.pitch_range
    named = tmp_path / "guitar_acoustic_000-127-100.wav"
    named.write_bytes(open(wavs[0], "rb").read())
    out = ["--out", str(tmp_path / "x.wav")]
    cases = [
        (["transfer", str(run.path), str(named), "--pitch", str(low)], named, "127 (from its name)"),
        (["synthesize", str(run.path), "--like", str(named), "--pitch", str(low)], named, "127 (from its name)"),
    ]
    unnamed = note_at(tmp_path / "high.wav", high + 3 if high + 3 <= 108 else low - 3)
    cases.append((["transfer", str(run.path), str(unnamed), "--pitch", str(low)], unnamed, "(by pYIN)"))
    for argv, path, origin in cases:
        assert main(argv + out) == 2, argv
        error = one_error_line(capsys, argv[0])
        assert f"{path}: the note's pitch" in error and origin in error and f"from {low} to {high}" in error, error
    with pytest.raises(audio_files.ConditioningError, match="127 .from its name"):
        audio_files.reconstruct_file(run, named, tmp_path / "r.wav")
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "r.wav").exists()


def test_a_named_velocity_the_run_never_had_is_refused_for_reconstruction(run, wavs, tmp_path):
    untrained = next(v for v in range(1, 128) if v not in run.model.velocities)
    named = tmp_path / f"guitar_acoustic_000-{run.model.pitch_range[0]:03d}-{untrained:03d}.wav"
    named.write_bytes(open(wavs[0], "rb").read())
    with pytest.raises(audio_files.ConditioningError, match=f"velocity {untrained} .from its name"):
        audio_files.reconstruct_file(run, named, tmp_path / "r.wav")
    audio_files.transfer_file(run, named, run.model.pitch_range[0], tmp_path / "t.wav", griffin_lim_iters=2)


def test_synthesize_needs_exactly_one_code_source(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", str(run.path), "--pitch", "60", "--out", str(tmp_path / "x.wav")])
    assert exit_info.value.code == 2 and "--like" in capsys.readouterr().err


# ---------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def served(run, tmp_path_factory):
    import tensorflow as tf

    from keras_timbre.export import export_run

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the SavedModel is checked under the TensorFlow backend")
    path = export_run(run.path, tmp_path_factory.mktemp("export") / "1", griffin_lim_iters=2)
    return path, tf.saved_model.load(str(path))


def test_export_has_the_conditioned_signatures(run, served):
    import tensorflow as tf

    from keras_timbre.audio.griffin_lim import mel_to_audio
    from keras_timbre.export import read_export_metadata, signatures
    from keras_timbre.export.saved_model import float32_copy

    path, loaded = served
    assert set(loaded.signatures) == set(signatures.CONDITIONED_SIGNATURES) and "decode" not in loaded.signatures
    record = read_export_metadata(path)
    assert record["signatures"] == list(signatures.CONDITIONED_SIGNATURES)
    assert record["conditioning"]["transfer_velocity"] == run.model.default_velocity
    low, _ = run.model.pitch_range
    code = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    pitch, velocity = np.full(3, low, "float32"), np.full(3, run.model.velocities[-1], "float32")
    got = loaded.signatures["synthesize"](code=tf.constant(code), pitch=tf.constant(pitch), velocity=velocity)
    # The graph computes in float32 whatever precision trained the run (bfloat16 on CPUs that have it).
    expected_db = decode_db(float32_copy(run.model), code, run.stats, pitch, velocity)
    assert got["waveform"].shape == (3, FRONTEND.num_samples) == (3, *mel_to_audio(expected_db[0], FRONTEND, 2).shape)
    assert np.isfinite(got["waveform"].numpy()).all()
    np.testing.assert_allclose(got["log_mel"].numpy(), expected_db, atol=1e-4 * float(run.stats.std.max()))
    waveform = tf.constant(np.random.default_rng(1).normal(0, 0.1, (2, 6000)).astype("float32"))  # padded
    source = tf.constant([low, low], tf.float32)
    moved = loaded.signatures["transfer"](waveform=waveform, source_pitch=source, pitch=tf.constant([low, low + 1.0]))
    assert moved["waveform"].shape == (2, FRONTEND.num_samples)
    recon = loaded.signatures["reconstruct"](waveform=waveform, pitch=pitch[:2], velocity=velocity[:2])
    assert recon["log_mel"].shape == (2, 32, 32) and recon["z_mean"].shape == (2, 4)
    codes = loaded.signatures["encode"](waveform=waveform, pitch=source)["z_mean"]
    assert codes.shape == (2, 4)
    # transfer is encode at the note's own pitch, then synthesize at the new one
    at = tf.fill([2], float(record["conditioning"]["transfer_velocity"]))
    again = loaded.signatures["synthesize"](code=codes, pitch=tf.constant([low, low + 1.0]), velocity=at)
    np.testing.assert_allclose(moved["log_mel"].numpy(), again["log_mel"].numpy(), atol=1e-3)


def test_export_refuses_an_untrained_pitch_or_velocity_naming_it(run, served):
    import tensorflow as tf

    loaded = served[1]
    code, low = tf.zeros([1, 4]), float(run.model.pitch_range[0])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="pitch: not one the model was trained on: give a whole MIDI pitch"
    ):
        loaded.signatures["synthesize"](code=code, pitch=tf.constant([low - 1]), velocity=tf.constant([100.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="pitch: not one .* give a whole MIDI pitch"):
        trained = tf.constant([float(run.model.velocities[-1])])
        loaded.signatures["synthesize"](code=code, pitch=tf.constant([low + 0.5]), velocity=trained)
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_pitch: not one .* give a whole MIDI pitch"):
        loaded.signatures["transfer"](
            waveform=tf.zeros([1, 100]), source_pitch=tf.constant([low + 0.5]), pitch=tf.constant([low])
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="velocity: not one the model was trained on"):
        loaded.signatures["synthesize"](code=code, pitch=tf.constant([low]), velocity=tf.constant([1.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="pitch: give one value per note"):
        loaded.signatures["transfer"](
            waveform=tf.zeros([2, 100]), source_pitch=tf.constant([low, low], tf.float32), pitch=tf.constant([low])
        )


def test_export_library_and_cli_share_the_pitch_and_velocity_rules(run, served):
    # One rule (audio_files.allowed_pitch / allowed_velocity): what the library accepts, the graph accepts.
    import tensorflow as tf

    loaded = served[1]
    (low, high), velocities = run.model.pitch_range, run.model.velocities
    top = float(velocities[-1])
    pitches = [low - 1, low - 0.5, low, low + 0.5, (low + high) // 2, high, high + 0.5, high + 1]
    conditions = [(float(p), top) for p in pitches] + [(float(low), v) for v in (top, top + 0.5, top - 1, 0.0)]
    for pitch, velocity in conditions:
        try:
            audio_files.check_condition(run, pitch, velocity)
            library = "accepted"
        except audio_files.ConditioningError as error:
            library = str(error).rsplit("give ", 1)[1]
        try:
            code = tf.zeros([1, 4])
            loaded.signatures["synthesize"](code=code, pitch=tf.constant([pitch]), velocity=tf.constant([velocity]))
            graph = "accepted"
        except tf.errors.InvalidArgumentError as error:
            graph = error.message.split("give ", 1)[1].split("]")[0].splitlines()[0]
        assert graph == library, (pitch, velocity)
        for name, source in (("transfer", "source_pitch"), ("encode", "pitch")):  # a source note's pitch too
            inputs = {"waveform": tf.zeros([1, 100]), source: tf.constant([pitch])}
            inputs.update({"pitch": tf.constant([float(low)])} if name == "transfer" else {})
            try:
                loaded.signatures[name](**inputs)
                assert audio_files.allowed_pitch(pitch, (low, high)), (name, pitch)
            except tf.errors.InvalidArgumentError as error:
                assert (
                    not audio_files.allowed_pitch(pitch, (low, high))
                    and f"{source}: not one the model" in error.message
                )


# ---------------------------------------------------------------------------- the renderer (--vocoder)
@pytest.fixture(scope="module")
def vocoder_path(tmp_path_factory):
    """A tiny untrained vocoder of the run's features (what renders is what is tested, not how well)."""
    return save_tiny_vocoder(tmp_path_factory.mktemp("vocoder") / "tiny.keras", FRONTEND)


def test_every_command_renders_with_the_chosen_vocoder(run, wavs, tmp_path, vocoder_path, monkeypatch):
    from keras_timbre.vocoder.render import renderer_for

    rendered = {}
    original = audio_files.write_wavs
    monkeypatch.setattr(audio_files, "write_wavs", lambda r, p, db: rendered.update(db=db) or original(r, p, db))
    low = run.model.pitch_range[0]
    out = tmp_path / "voiced.wav"
    assert (
        main(
            ["synthesize", str(run.path), "--like", wavs[0], "--pitch", str(low), "--out", str(out)]
            + ["--vocoder", str(vocoder_path)]
        )
        == 0
    )
    expected = renderer_for(FRONTEND, vocoder_path).to_audio(rendered["db"])[0]
    np.testing.assert_allclose(sf.read(str(out), dtype="float32")[0], expected, atol=1e-4)
    moved = tmp_path / "moved.wav"
    assert (
        main(
            ["transfer", str(run.path), wavs[0], "--pitch", str(low), "--out", str(moved)]
            + ["--vocoder", str(vocoder_path)]
        )
        == 0
    )
    expected = renderer_for(FRONTEND, vocoder_path).to_audio(rendered["db"])[0]
    np.testing.assert_allclose(sf.read(str(moved), dtype="float32")[0], expected, atol=1e-4)
    remade = tmp_path / "remade.wav"
    assert main(["reconstruct", str(run.path), wavs[0], "--out", str(remade), "--vocoder", str(vocoder_path)]) == 0
    expected = renderer_for(FRONTEND, vocoder_path).to_audio(rendered["db"])[0]
    np.testing.assert_allclose(sf.read(str(remade), dtype="float32")[0], expected, atol=1e-4)
    morph = tmp_path / "morph"
    argv = ["interpolate", str(run.path), wavs[0], wavs[1], "--steps", "2", "--pitch", str(low), "--out", str(morph)]
    assert main(argv + ["--vocoder", str(vocoder_path)]) == 0
    expected = renderer_for(FRONTEND, vocoder_path).to_audio(rendered["db"])[1]
    np.testing.assert_allclose(sf.read(str(morph / "step_01.wav"), dtype="float32")[0], expected, atol=1e-4)


def test_a_vocoder_of_other_features_is_one_error_line(run, wavs, tmp_path, capsys):
    other = save_tiny_vocoder(
        tmp_path / "other.keras", FrontendConfig(n_mels=16, duration=0.5, n_fft=512, hop_length=250)
    )
    out = tmp_path / "x.wav"
    argv = ["synthesize", str(run.path), "--like", wavs[0], "--pitch", str(run.model.pitch_range[0]), "--out", str(out)]
    assert main(argv + ["--vocoder", str(other)]) == 2
    assert "n_mels: vocoder has 16, run has 32" in one_error_line(capsys, "synthesize")
    assert not out.exists()
