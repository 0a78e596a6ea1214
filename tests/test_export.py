"""SavedModel export: signatures, parity with the Keras model, bad input, serving requests."""

import importlib.util
import json
import shutil
import os
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_timbre.export import saved_model as export
from keras_timbre.export import signatures
from keras_timbre.export.version_folder import weights_fingerprint
from keras_timbre.training import run as runs
from keras_timbre.audio.stats import FeatureStats
from keras_timbre.audio.griffin_lim import tf_mel_to_audio
from keras_timbre.audio.frontend import tf_log_mel
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.models.hierarchical_vae import HierarchicalTimbreVAE
from keras_timbre.models.timbre_vae import TimbreVAE
from keras_timbre.vocoder import FrontendMismatchError
from keras_timbre.vocoder.load import load_vocoder
from tests.testing import TINY_FRONTEND, save_tiny_vocoder

REPO = Path(__file__).resolve().parents[1]
CONFIG = TINY_FRONTEND  # features (32, 64)
LATENT_DIM = 4


def harmonic_notes(lengths=(16000, 12000, 20000), seed=0):
    """Decaying harmonic tones of the given lengths (shorter and longer than a note)."""
    rng = np.random.default_rng(seed)
    notes = []
    for i, length in enumerate(lengths):
        t = np.arange(length) / CONFIG.sample_rate
        f0 = 110.0 * 2 ** (i / 3)
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * np.exp(-3 * t)
        notes.append(0.3 * tone + 0.01 * rng.normal(size=length))
    return [n.astype(np.float32) for n in notes]


def features_of(waveforms, stats):
    """The Python path: frontend + stats, per note, cropped or padded as the graph does."""
    return np.stack([stats.normalize(tf_log_mel(w, CONFIG).numpy())[..., None] for w in waveforms])


def make_run(path, seed=0):
    """A tiny TimbreVAE trained for one step under the current backend, saved as a run."""
    keras.utils.set_random_seed(seed)
    notes = harmonic_notes((16000,) * 4, seed=seed)
    log_mel_db = tf_log_mel(np.stack(notes), CONFIG).numpy()
    stats = FeatureStats.from_features(log_mel_db)
    model = TimbreVAE.from_variant("skip", input_shape=(32, 64, 1), latent_dim=LATENT_DIM, filters=(4, 8))
    model.compile()
    model.fit(stats.normalize(log_mel_db)[..., None], batch_size=4, epochs=1, verbose=0)
    runs.create_run(path, CONFIG, stats, runs.run_config("skip", {}, "test", {}, seed))
    runs.save_model(path, model)
    return model, stats


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, model, stats, export folder): exported once per backend."""
    root = tmp_path_factory.mktemp("export")
    model, stats = make_run(root / "run")
    saved = export.export_run(root / "run", root / "timbre" / "1", griffin_lim_iters=4)
    return root / "run", model, stats, saved


@pytest.fixture(scope="module")
def served(trained):
    return tf.saved_model.load(str(trained[3]))


def call(served, signature, **inputs):
    outputs = served.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- the graph


def test_saved_model_cli_lists_named_typed_signatures(trained):
    shown = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(trained[3]), "--all"], capture_output=True, text=True, check=True
    ).stdout
    blocks = {b.split("']", 1)[0]: b for b in shown.split("signature_def['")[1:]}
    assert set(export.SIGNATURES) <= set(blocks)

    def io(block):
        """(inputs, outputs) of a signature: {name: (dtype, shape)} each (`reconstruct` has both a `waveform`)."""
        found = []
        for side in block.split("The given SavedModel SignatureDef contains the following output(s):"):
            found.append({})
            for part in side.split("puts['")[1:]:
                name = part.split("']", 1)[0]
                dtype = part.split("dtype: ", 1)[1].split()[0]
                shape = part.split("shape: ", 1)[1].split("\n")[0]
                found[-1][name] = (dtype, shape)
        return tuple(found)

    waveform_in = {"waveform": ("DT_FLOAT", "(-1, -1)")}
    waveform_out = {"waveform": ("DT_FLOAT", "(-1, 16000)")}
    latents = {"z_mean": ("DT_FLOAT", "(-1, 4)"), "z_log_var": ("DT_FLOAT", "(-1, 4)")}
    log_mel = {"log_mel": ("DT_FLOAT", "(-1, 32, 64)")}
    for name in ("serving_default", "reconstruct"):
        assert io(blocks[name]) == (waveform_in, {**log_mel, **latents, **waveform_out})
    assert io(blocks["encode"]) == (waveform_in, latents)
    assert io(blocks["decode"]) == ({"z": ("DT_FLOAT", "(-1, 4)")}, log_mel)
    assert io(blocks["synthesize"]) == ({"z": ("DT_FLOAT", "(-1, 4)")}, waveform_out)
    assert "tensorflow/serving/predict" in blocks["encode"]


@pytest.mark.backend
def test_export_matches_keras_model_trained_on_this_backend(trained, served):
    # Exported from a run trained one step under the current backend (jax and torch go
    # through the TensorFlow subprocess); reloaded; compared with the model in this backend.
    _, model, stats, _ = trained
    notes = harmonic_notes()  # 1 s, 0.75 s (padded in the graph) and 1.25 s (cropped)
    x = features_of(notes, stats)
    expected = {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=False).items()}
    expected_db = stats.denormalize(expected["reconstruction"][..., 0])
    for i, note in enumerate(notes):  # one request per length: rows of a batch share a length
        for signature in ("serving_default", "reconstruct"):
            got = call(served, signature, waveform=note[None])
            np.testing.assert_allclose(got["z_mean"][0], expected["z_mean"][i], atol=1e-4)
            np.testing.assert_allclose(got["z_log_var"][0], expected["z_log_var"][i], atol=1e-4)
            # dB = normalised * std (up to ~20 dB): 1e-4 relative to the feature scale.
            np.testing.assert_allclose(got["log_mel"][0], expected_db[i], atol=1e-4 * float(stats.std.max()))
        got = call(served, "encode", waveform=note[None])
        np.testing.assert_allclose(got["z_mean"][0], expected["z_mean"][i], atol=1e-4)
    z = expected["z_mean"]
    decoded = stats.denormalize(keras.ops.convert_to_numpy(model.decode(z))[..., 0])
    np.testing.assert_allclose(call(served, "decode", z=z)["log_mel"], decoded, atol=1e-4 * float(stats.std.max()))
    metadata = export.read_export_metadata(trained[3])
    assert metadata["fingerprint"] == export.model_fingerprint(model, CONFIG, stats)
    assert metadata["frontend"] == CONFIG.to_dict()


@pytest.mark.parametrize("batch", [export.CHUNK_SIZE, 2 * export.CHUNK_SIZE + 3])
def test_batched_request_matches_single_requests(served, batch):
    # The graph runs big batches in slices of CHUNK_SIZE notes plus a remainder.
    notes = np.stack(harmonic_notes((16000,) * batch, seed=batch)) * np.linspace(0.2, 1.0, batch)[:, None]
    batched = call(served, "reconstruct", waveform=notes.astype(np.float32))
    singles = [call(served, "reconstruct", waveform=n[None].astype(np.float32)) for n in notes]
    for name in ("z_mean", "z_log_var", "log_mel"):
        np.testing.assert_allclose(batched[name], np.concatenate([s[name] for s in singles]), atol=1e-4)


def test_synthesize_is_griffin_lim_of_decode(served):
    # The tiny frontend is not the shipped vocoder's: the default renderer is Griffin-Lim, as before the vocoder.
    z = np.random.default_rng(1).normal(size=(2, LATENT_DIM)).astype(np.float32)
    audio = call(served, "synthesize", z=z)["waveform"]
    assert audio.shape == (2, CONFIG.num_samples)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0 + 1e-6
    expected = tf_mel_to_audio(call(served, "decode", z=z)["log_mel"], CONFIG, n_iter=4).numpy()
    np.testing.assert_allclose(audio, expected, atol=1e-4)
    np.testing.assert_array_equal(audio, call(served, "synthesize", z=z)["waveform"])  # deterministic
    reconstructed = call(served, "reconstruct", waveform=np.stack(harmonic_notes((16000,) * 2)))
    expected = tf_mel_to_audio(reconstructed["log_mel"], CONFIG, n_iter=4).numpy()
    np.testing.assert_allclose(reconstructed["waveform"], expected, atol=1e-4)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "signature, inputs, message",
    [
        ("encode", {"waveform": np.zeros((0, 16000), np.float32)}, "waveform: empty batch"),
        ("serving_default", {"waveform": np.zeros((2, 0), np.float32)}, "waveform: no samples"),
        ("encode", {"waveform": np.full((1, 16000), np.nan, np.float32)}, "waveform: contains NaN or Inf"),
        ("reconstruct", {"waveform": np.array([[0.0, np.inf]], np.float32)}, "waveform: contains NaN or Inf"),
        (
            "encode",
            {"waveform": np.zeros(16000, np.float32)},
            "waveform [16000] is not compatible with expected shape [?,?]",
        ),
        ("encode", {"waveform": np.zeros((1, 1, 16000), np.float32)}, "is not compatible with expected shape [?,?]"),
        ("decode", {"z": np.zeros((1, LATENT_DIM + 1), np.float32)}, "is not compatible with expected shape [?,4]"),
        ("synthesize", {"z": np.zeros((0, LATENT_DIM), np.float32)}, "z: empty batch"),
        ("decode", {"z": np.full((1, LATENT_DIM), np.nan, np.float32)}, "z: contains NaN or Inf"),
    ],
)
def test_bad_input_is_a_clear_request_error(served, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("[", r"\[").replace("?", r"\?")):
        call(served, signature, **inputs)


def test_absurd_amplitude_gives_finite_embeddings(served):
    # Finite in, finite out: 1e19 overflows float32 power in the STFT unless the graph bounds the level.
    notes = np.stack(harmonic_notes((16000,) * 2))
    unit = notes / np.abs(notes).max(axis=1, keepdims=True)
    absurd = call(served, "reconstruct", waveform=(unit * 1e19).astype(np.float32))
    for name, value in absurd.items():
        assert np.isfinite(value).all(), name
    # Above the limit the level is brought down to it, so the answer is that of the limit itself.
    at_limit = call(served, "encode", waveform=(unit * signatures.MAX_AMPLITUDE).astype(np.float32))
    np.testing.assert_allclose(absurd["z_mean"], at_limit["z_mean"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("renderer", ["served", "voiced"])
@pytest.mark.parametrize("scale", [1e5, 3e38])
def test_huge_latents_give_finite_peak_limited_audio(request, renderer, scale):
    served = request.getfixturevalue(renderer)  # Griffin-Lim's export, then the vocoder's
    served = served[1] if isinstance(served, tuple) else served
    z = (np.sign(np.random.default_rng(3).normal(size=(2, LATENT_DIM))) * scale).astype(np.float32)
    log_mel = call(served, "decode", z=z)["log_mel"]
    assert np.isfinite(log_mel).all()
    audio = call(served, "synthesize", z=z)["waveform"]
    assert np.isfinite(audio).all()
    peaks = np.abs(audio).max(axis=1)
    assert np.all(peaks <= 1.0 + 1e-6) and np.all(peaks > 0.5), peaks  # limited, not silenced


def test_wrong_dtype_is_refused_by_the_signature(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is a int32"):
        call(served, "encode", waveform=np.zeros((1, 16000), np.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float tensor but is a double"):
        call(served, "decode", z=np.zeros((1, LATENT_DIM), np.float64))


# ---------------------------------------------------------------------------- export folders


def test_missing_or_incomplete_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        export.export_run(tmp_path / "nope", tmp_path / "out" / "1")
    (tmp_path / "half").mkdir()
    CONFIG.save(tmp_path / "half" / "frontend.json")
    with pytest.raises(FileNotFoundError, match="stats.npz"):
        export.export_run(tmp_path / "half", tmp_path / "out" / "1")
    assert not (tmp_path / "out").exists()


def test_version_folder_must_be_numeric(trained, tmp_path):
    with pytest.raises(ValueError, match=r"numeric version folder.*timbre/1"):
        export.export_run(trained[0], tmp_path / "timbre")


@pytest.mark.backend
def test_existing_export_is_kept_unless_overwrite(trained, tmp_path):
    run_dir, model, stats, saved = trained
    pb = saved / "saved_model.pb"
    before = pb.stat().st_mtime_ns
    assert export.export_run(run_dir, saved, griffin_lim_iters=4) == saved  # the same export again: a no-op
    assert pb.stat().st_mtime_ns == before
    with pytest.raises(export.ExportExistsError, match="griffin_lim_iters=4"):
        export.export_run(run_dir, saved, griffin_lim_iters=8)

    keras.utils.set_random_seed(1)
    other_model = TimbreVAE(input_shape=(32, 64, 1), latent_dim=LATENT_DIM, filters=(4, 8))
    other_stats = FeatureStats(mean=stats.mean + 1.0, std=stats.std)
    with pytest.raises(export.ExportExistsError, match=rf"{saved}.*different model.*--overwrite"):
        export.export_saved_model(other_model, saved, CONFIG, other_stats)
    assert pb.stat().st_mtime_ns == before

    target = tmp_path / "exports" / "7"
    (target / "notes").mkdir(parents=True)
    with pytest.raises(export.ExportExistsError, match="holds other files"):
        export.export_saved_model(other_model, target, CONFIG, other_stats)
    with pytest.raises(export.ExportExistsError, match="replaces only an earlier keras-timbre export"):
        export.export_saved_model(other_model, target, CONFIG, other_stats, overwrite=True)
    assert (target / "notes").is_dir()  # what keras-timbre did not write is never replaced
    earlier = tmp_path / "exports" / "8"
    shutil.copytree(saved, earlier)
    # From Python, under this backend (jax/torch: through the TensorFlow subprocess).
    written = export.export_saved_model(other_model, earlier, CONFIG, other_stats, overwrite=True)
    assert written == earlier
    assert export.read_export_metadata(earlier)["fingerprint"] == export.model_fingerprint(
        other_model, CONFIG, other_stats
    )
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["7", "8"]  # no temporary folders left


def test_cli_exports_and_refuses_to_overwrite(trained, tmp_path, capsys):
    from keras_timbre.cli import main

    out = tmp_path / "timbre" / "3"
    assert (
        main(["export", str(trained[0]), "--out", str(out), "--griffin-lim-iters", "2", "--vocoder", "griffin-lim"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "serving_default, reconstruct, encode, decode, synthesize" in printed
    assert "rendered in the graph by Griffin-Lim (2 it.)" in printed
    assert export.read_export_metadata(out)["griffin_lim_iters"] == 2
    umask = os.umask(0)
    os.umask(umask)
    for item in (out, out / "saved_model.pb", out / "assets.extra" / "keras_timbre.json"):
        # Readable by a server running as another user, whatever the temp-folder defaults.
        assert item.stat().st_mode & 0o777 == (0o777 if item.is_dir() else 0o666) & ~umask, item
    (out / "assets.extra" / "keras_timbre.json").write_text(json.dumps({"fingerprint": "another model"}))
    assert main(["export", str(trained[0]), "--out", str(out)]) == 2
    assert "already holds a different model" in capsys.readouterr().err
    assert export.read_export_metadata(out)["fingerprint"] == "another model"  # untouched


# ---------------------------------------------------------------------------- the renderer (vocoder=)


@pytest.fixture(scope="module")
def vocoder_path(tmp_path_factory):
    """A tiny untrained vocoder of the run's features: what renders is tested, not how well."""
    return save_tiny_vocoder(tmp_path_factory.mktemp("vocoder") / "tiny.keras", CONFIG)


@pytest.fixture(scope="module")
def voiced(trained, vocoder_path):
    """(folder, loaded SavedModel): the run exported with `vocoder_path` rendering its waveforms."""
    saved = export.export_run(trained[0], trained[3].parents[1] / "voiced" / "1", vocoder=vocoder_path)
    return saved, tf.saved_model.load(str(saved))


def test_waveforms_are_the_vocoders_rendering(voiced, vocoder_path, served):
    saved, loaded = voiced
    vocoder = load_vocoder(vocoder_path)
    notes = np.stack(harmonic_notes((16000,) * 3))
    got = call(loaded, "reconstruct", waveform=notes)
    assert got["waveform"].shape == (3, CONFIG.num_samples)
    expected = vocoder.to_audio(got["log_mel"])
    assert np.abs(expected).max() > 1e-3  # an untrained vocoder still makes sound to compare
    np.testing.assert_allclose(got["waveform"], expected, atol=1e-4)
    # The renderer changes the waveform only: the same log-mel as Griffin-Lim's export.
    np.testing.assert_allclose(got["log_mel"], call(served, "reconstruct", waveform=notes)["log_mel"], atol=1e-4)
    z = np.random.default_rng(4).normal(size=(2, LATENT_DIM)).astype(np.float32)
    audio = call(loaded, "synthesize", z=z)["waveform"]
    np.testing.assert_allclose(audio, vocoder.to_audio(call(loaded, "decode", z=z)["log_mel"]), atol=1e-4)
    record = export.read_export_metadata(saved)
    assert (record["waveform_renderer"], record["renderer"]) == ("vocoder", f"vocoder ({vocoder_path})")
    assert record["vocoder_fingerprint"] == weights_fingerprint(vocoder) and record["griffin_lim_iters"] is None


def test_griffin_lim_choice_is_the_export_of_before(trained, voiced):
    run_dir, _, _, saved = trained
    # The shipped vocoder does not voice the tiny frontend: the default fell back to Griffin-Lim ...
    record = export.read_export_metadata(saved)
    assert (record["waveform_renderer"], record["renderer"], record["vocoder_fingerprint"]) == (
        "griffin-lim",
        "Griffin-Lim (4 it.)",
        None,
    )
    # ... so choosing Griffin-Lim is the same export (a no-op), and not the vocoder's.
    before = (saved / "saved_model.pb").stat().st_mtime_ns
    assert export.export_run(run_dir, saved, griffin_lim_iters=4, vocoder="griffin-lim") == saved
    assert (saved / "saved_model.pb").stat().st_mtime_ns == before
    with pytest.raises(export.ExportExistsError, match="waveform_renderer=vocoder"):
        export.export_run(run_dir, voiced[0], griffin_lim_iters=4, vocoder="griffin-lim")


def test_a_vocoder_of_other_features_is_refused_naming_the_field(trained, tmp_path, capsys):
    from keras_timbre.cli import main

    other = save_tiny_vocoder(tmp_path / "other.keras", FrontendConfig(n_mels=16, duration=1.0, n_fft=512))
    out = tmp_path / "timbre" / "1"
    with pytest.raises(FrontendMismatchError, match="n_mels: vocoder has 16, run has 32"):
        export.export_run(trained[0], out, vocoder=other)
    with pytest.raises(FrontendMismatchError, match="n_mels: vocoder has 16, run has 32"):
        export.export_saved_model(trained[1], out, CONFIG, trained[2], vocoder=other)
    assert main(["export", str(trained[0]), "--out", str(out), "--vocoder", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("keras-timbre export: error: "), err
    assert "n_mels: vocoder has 16, run has 32" in err and "hop_length" not in err
    assert not out.parent.exists()


def test_conditioned_waveforms_are_the_vocoders_rendering(vocoder_path, tmp_path):
    keras.utils.set_random_seed(0)
    velocities = (75, 100)
    model = HierarchicalTimbreVAE(
        input_shape=(32, 64, 1), latent_dim=LATENT_DIM, filters=(4, 8), pitch_range=(40, 50), velocities=velocities
    )
    stats = FeatureStats(mean=np.full(32, -40.0, np.float32), std=np.full(32, 20.0, np.float32))
    saved = export.export_saved_model(model, tmp_path / "hier" / "1", CONFIG, stats, vocoder=vocoder_path)
    loaded, vocoder = tf.saved_model.load(str(saved)), load_vocoder(vocoder_path)
    notes = np.stack(harmonic_notes((16000,) * 3))
    pitch, velocity = np.array([40.0, 43.0, 46.0], np.float32), np.array([75.0, 100.0, 100.0], np.float32)
    code = np.random.default_rng(5).normal(size=(3, LATENT_DIM)).astype(np.float32)
    requests = {
        "reconstruct": dict(waveform=notes, pitch=pitch, velocity=velocity),
        "synthesize": dict(code=code, pitch=pitch, velocity=velocity),
        "transfer": dict(waveform=notes, source_pitch=pitch, pitch=pitch[::-1].copy()),
    }
    for name, inputs in requests.items():
        got = call(loaded, name, **inputs)
        assert got["waveform"].shape == (3, CONFIG.num_samples), name
        np.testing.assert_allclose(got["waveform"], vocoder.to_audio(got["log_mel"]), atol=1e-4, err_msg=name)
    assert export.read_export_metadata(saved)["waveform_renderer"] == "vocoder"


# ---------------------------------------------------------------------------- serving requests


def tf_serving_json_to_tensors(body, signature):
    """What TF Serving's REST handler does with a predict body: named float32 tensors."""
    (input_name,) = signature.structured_input_signature[1]
    if "instances" in body:
        rows = [row[input_name] if isinstance(row, dict) else row for row in body["instances"]]
        value = rows
    else:
        value = body["inputs"][input_name] if isinstance(body["inputs"], dict) else body["inputs"]
    return {input_name: tf.constant(np.asarray(value, np.float32))}


def tf_serving_outputs_to_json(outputs, form):
    """TF Serving's answer: row form for `instances`, columnar for `inputs`."""
    outputs = {k: v.numpy().tolist() for k, v in outputs.items()}
    if form == "inputs":
        return {"outputs": outputs}
    batch = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(batch)]}


@pytest.mark.parametrize("form", ["instances", "inputs"])
@pytest.mark.parametrize("signature_name", ["encode", "serving_default", "synthesize"])
def test_rest_bodies_run_on_the_loaded_signatures(served, form, signature_name):
    rest = load_example("serving_rest")
    if signature_name == "synthesize":
        batch = np.random.default_rng(0).normal(size=(2, LATENT_DIM))
    else:
        batch = np.stack(harmonic_notes((16000,) * 2))
    body = json.loads(json.dumps(rest.request_body(batch, signature_name, form)))  # over the wire
    assert body["signature_name"] == signature_name
    signature = served.signatures[signature_name]
    outputs = signature(**tf_serving_json_to_tensors(body, signature))
    parsed = rest.parse_response(json.loads(json.dumps(tf_serving_outputs_to_json(outputs, form))))
    direct = call(
        served, signature_name, **{next(iter(signature.structured_input_signature[1])): batch.astype(np.float32)}
    )
    assert set(parsed) == set(direct)
    for name in direct:
        np.testing.assert_allclose(parsed[name], direct[name], atol=1e-5)


def test_rest_body_rejects_bad_arguments():
    rest = load_example("serving_rest")
    with pytest.raises(ValueError, match="2-D"):
        rest.request_body(np.zeros(5), "encode")
    with pytest.raises(ValueError, match="signature_name"):
        rest.request_body(np.zeros((1, 5)), "embed")
    with pytest.raises(RuntimeError, match="empty batch"):
        rest.parse_response({"error": "waveform: empty batch; send at least one example"})


def test_grpc_predict_request_feeds_the_loaded_signature(served):
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2", reason="pip install keras-timbre[serving]")

    grpc_example = load_example("serving_grpc")
    notes = np.stack(harmonic_notes((16000,) * 2))
    request = grpc_example.predict_request(notes, model_name="timbre", signature_name="encode", version=1)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    assert (request.model_spec.name, request.model_spec.signature_name, request.model_spec.version.value) == (
        "timbre",
        "encode",
        1,
    )
    signature = served.signatures[request.model_spec.signature_name]
    outputs = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    parsed = grpc_example.parse_response(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    np.testing.assert_allclose(parsed["z_mean"], call(served, "encode", waveform=notes)["z_mean"], atol=1e-6)
    assert parsed["z_log_var"].shape == (2, LATENT_DIM)


# ---------------------------------------------------------------------------- stand-in servers
# TF Serving cannot run here: these stand-ins answer predict calls from the loaded
# SavedModel the way it does (named tensors in, named tensors out, INVALID_ARGUMENT /
# HTTP 400 with the graph's message), so the examples' real network code is exercised.


@pytest.fixture()
def rest_server(served):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            signature = served.signatures[body.get("signature_name", "serving_default")]
            form = "instances" if "instances" in body else "inputs"
            try:
                reply, status = (
                    tf_serving_outputs_to_json(signature(**tf_serving_json_to_tensors(body, signature)), form),
                    200,
                )
            except tf.errors.InvalidArgumentError as error:
                reply, status = {"error": error.message}, 400
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/models/timbre:predict"
    server.shutdown()
    thread.join()


@pytest.mark.parametrize("form", ["instances", "inputs"])
def test_rest_example_round_trip_over_http(served, rest_server, form):
    rest = load_example("serving_rest")
    notes = np.stack(harmonic_notes((16000,) * 2))
    outputs = rest.predict(rest_server, rest.request_body(notes, "encode", form))
    np.testing.assert_allclose(outputs["z_mean"], call(served, "encode", waveform=notes)["z_mean"], atol=1e-5)
    notes[1, 100] = np.nan
    with pytest.raises(RuntimeError, match="HTTP 400.*waveform: contains NaN or Inf"):
        rest.predict(rest_server, rest.request_body(notes, "encode", form))


def test_grpc_example_round_trip_over_grpc(served):
    from concurrent import futures

    pytest.importorskip("tensorflow_serving", reason="pip install keras-timbre[serving]")
    import grpc
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            signature = served.signatures[request.model_spec.signature_name or "serving_default"]
            try:
                outputs = signature(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
            except tf.errors.InvalidArgumentError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
            response = predict_pb2.PredictResponse()
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        grpc_example = load_example("serving_grpc")
        z = np.random.default_rng(2).normal(size=(2, LATENT_DIM)).astype(np.float32)
        outputs = grpc_example.predict(f"127.0.0.1:{port}", grpc_example.predict_request(z, signature_name="decode"))
        np.testing.assert_allclose(outputs["log_mel"], call(served, "decode", z=z)["log_mel"], atol=1e-5)
        with pytest.raises(grpc.RpcError) as raised:
            grpc_example.predict(
                f"127.0.0.1:{port}", grpc_example.predict_request(np.zeros((0, 100)), signature_name="encode")
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "waveform: empty batch" in raised.value.details()
    finally:
        server.stop(None)
