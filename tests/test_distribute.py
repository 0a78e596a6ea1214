"""Data-parallel training: engines per backend, loss parity with one device, TF_CONFIG errors.

Device counts are fixed at backend start-up, so the 2-device runs happen in
subprocesses: TensorFlow with two logical CPU devices, JAX with
XLA_FLAGS=--xla_force_host_platform_device_count=2, and two TensorFlow
workers on 127.0.0.1 for MultiWorkerMirroredStrategy.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_timbre.training.distribute import DistributionInfo
from keras_timbre.training.distribute import distribution_scope
from keras_timbre.training.distribute import parse_tf_config

REPO_ROOT = Path(__file__).resolve().parents[1]
GOOD_TF_CONFIG = '{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}'


def run_python(code: str, backend: str, timeout: float = 240, **env) -> dict:
    """Runs `code` in a fresh interpreter; returns the JSON it prints on its last line."""
    environment = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="-1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    )
    environment.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# A tiny model trained on x alone with its loss in compute_loss, like TimbreVAE.
TINY_MODELS = """
import keras
import numpy as np
from keras_timbre.models.losses import scale_loss_for_replicas
from keras_timbre.training.distribute import distribution_scope


class TinyAutoencoder(keras.Model):
    def __init__(self, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.encoder = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
        self.decoder = keras.layers.Conv2D(1, 3, padding="same")

    def call(self, x):
        return self.decoder(self.encoder(x))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = keras.ops.mean(keras.ops.square(y_pred - x))
        return scale_loss_for_replicas(loss) if self.scale else loss


def first_losses(mode, build, dataset, epochs=2):
    keras.utils.set_random_seed(0)
    with distribution_scope(mode) as info:
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        history = model.fit(dataset, epochs=epochs, verbose=0)
    return info, model, history.history["loss"]
"""


def test_tensorflow_mirrored_strategy_on_two_cpus_matches_one_device(tmp_path):
    result = run_python(
        TINY_MODELS + f"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from keras_timbre.data.feature_cache import write_feature_cache
from keras_timbre.audio.frontend import FrontendConfig
from keras_timbre.models.timbre_vae import TimbreVAE

x = np.random.RandomState(0).randn(64, 16, 16, 1).astype("float32")
arrays = tf.data.Dataset.from_tensor_slices(x).batch(16)
out = {{}}
for name, build in [("scaled", TinyAutoencoder), ("unscaled", lambda: TinyAutoencoder(scale=False))]:
    single = first_losses("none", build, arrays)[2]
    info, model, parallel = first_losses("data-parallel", build, arrays)
    out[name] = [single, parallel]
out["replicas"] = info.num_replicas
out["engine"] = info.engine
out["mirrored"] = len(model.weights[0].value.values)

# Streaming from the feature cache (interleave, parallel map, py_function skip reports) under the strategy.
frontend = FrontendConfig(n_mels=16, duration=0.25, n_fft=256, hop_length=250)
cache = write_feature_cache(r"{tmp_path}", frontend, ((f[..., 0], {{}}) for f in x), notes_per_shard=20)
streamed = cache.dataset(batch_size=16)
out["cache"] = [first_losses("none", TinyAutoencoder, streamed)[2],
                first_losses("data-parallel", TinyAutoencoder, streamed)[2]]

vae = lambda: TimbreVAE(input_shape=(16, 16, 1), latent_dim=4, filters=(4, 8))
out["vae"] = [first_losses("none", vae, arrays, epochs=1)[2], first_losses("data-parallel", vae, arrays, epochs=1)[2]]
print(json.dumps(out))
""",
        "tensorflow",
    )
    assert result["replicas"] == 2 and result["mirrored"] == 2
    assert result["engine"] == "tf.distribute.MirroredStrategy"
    single, parallel = result["scaled"]
    np.testing.assert_allclose(parallel, single, rtol=1e-4)
    np.testing.assert_allclose(*result["cache"][::-1], rtol=1e-4)
    # Why scale_loss_for_replicas exists: unscaled, the summed gradients and the
    # reported loss grow with the number of replicas (2x at the first step).
    single, parallel = result["unscaled"]
    assert parallel[0] > 1.5 * single[0]
    # TimbreVAE: batch norm, dropout and sampling noise differ per replica; the loss still agrees.
    single, parallel = result["vae"]
    np.testing.assert_allclose(parallel, single, rtol=0.02)


def test_jax_data_parallel_on_two_cpus_matches_one_device():
    result = run_python(
        TINY_MODELS + """
import json
import tensorflow as tf
from keras_timbre.models.timbre_vae import TimbreVAE

x = np.random.RandomState(0).randn(64, 16, 16, 1).astype("float32")
arrays = tf.data.Dataset.from_tensor_slices(x).batch(16)
vae = lambda: TimbreVAE(input_shape=(16, 16, 1), latent_dim=4, filters=(4, 8))
single = first_losses("none", vae, arrays, epochs=1)[2]
info, model, parallel = first_losses("data-parallel", vae, arrays, epochs=1)
sharding = model.weights[0].value.sharding
print(json.dumps({"single": single, "parallel": parallel, "replicas": info.num_replicas,
                  "engine": info.engine, "devices": len(sharding.device_set)}))
""",
        "jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert result["replicas"] == 2 and result["devices"] == 2
    assert result["engine"] == "keras.distribution.DataParallel"
    np.testing.assert_allclose(result["parallel"], result["single"], rtol=1e-4)


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_device():
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "multiworker_localhost.py"), "--timeout", "200"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=260,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "2 replicas, 2 workers" in result.stdout
    assert "OK: two workers on 127.0.0.1" in result.stdout


@pytest.mark.backend
def test_none_and_auto_on_one_device_train_plainly():
    for mode in ("none", "auto"):
        with distribution_scope(mode) as info:
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse")
            model.fit(np.ones((8, 4), "float32"), np.ones((8, 1), "float32"), batch_size=4, verbose=0)
        assert info.mode == "none" and info.num_replicas == 1
        assert info.backend == keras.backend.backend()


@pytest.mark.backend
def test_data_parallel_is_the_engine_of_each_backend():
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="not available on the torch backend.*KERAS_BACKEND=jax"):
            with distribution_scope("data-parallel"):
                pass
        return
    with distribution_scope("data-parallel") as info:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((8, 4), "float32"), np.ones((8, 1), "float32"), batch_size=4, verbose=0)
    engines = {"tensorflow": "tf.distribute.MirroredStrategy", "jax": "keras.distribution.DataParallel"}
    assert info.mode == "data-parallel" and info.engine == engines[keras.backend.backend()]
    assert info.num_replicas >= 1 and "data-parallel" in info.describe()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster"'),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', 'not "host:port"'),
        ('{"cluster": {"worker": ["a:1"]}}', 'needs a "task"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "is not a job"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', r"not in \[0, 1\)"),
    ],
)
def test_bad_tf_config_is_a_clear_error(text, problem):
    with pytest.raises(ValueError, match=f"TF_CONFIG.*{problem}.*expected JSON like"):
        parse_tf_config(text)


def test_good_or_absent_tf_config():
    assert parse_tf_config(GOOD_TF_CONFIG)["task"] == {"type": "worker", "index": 1}
    assert parse_tf_config("") is None


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF_CONFIG is TensorFlow's")
def test_scope_refuses_a_broken_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}')
    with pytest.raises(ValueError, match="TF_CONFIG task index None"):
        with distribution_scope("auto"):
            pass


def test_unknown_mode_and_global_batch_checks():
    with pytest.raises(ValueError, match="Unknown distribute mode 'model-parallel'"):
        with distribution_scope("model-parallel"):
            pass
    info = DistributionInfo(
        mode="data-parallel", backend="jax", num_replicas=4, engine="keras.distribution.DataParallel"
    )
    assert info.check_global_batch_size(32) == 8
    with pytest.raises(ValueError, match="batch size 30 is the global batch.*multiple of 4"):
        info.check_global_batch_size(30)
    assert info.describe() == "distribution: data-parallel with keras.distribution.DataParallel on jax: 4 replicas ()"
    assert DistributionInfo("none", "torch").describe() == "distribution: none (torch, one device)"
