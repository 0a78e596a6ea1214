"""Two-worker data-parallel training on one machine with MultiWorkerMirroredStrategy.

Each worker is a separate process with its own `TF_CONFIG`, exactly as on a
real cluster, but both listen on 127.0.0.1. `keras_timbre.training.distribute.
distribution_scope("data-parallel")` sees `TF_CONFIG` and builds a
`tf.distribute.MultiWorkerMirroredStrategy`; Keras' `fit` shards the data
between the workers and all-reduces the gradients. The parent process trains
the same model on one device at the same global batch and checks that the
losses agree.

Run:
    python examples/multiworker_localhost.py            # about 20-40 s on 2 cores

On real hosts, start one process per host with TF_CONFIG naming every
worker's "host:port" and its own index (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# MultiWorkerMirroredStrategy is TensorFlow's engine: this example runs on it.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 16
EPOCHS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TinyAutoencoder(keras.Model):
    """A stand-in for TimbreVAE: trained on x alone, its loss in compute_loss.

    Under tf.distribute a hand-written loss is divided by the replicas
    (`scale_loss_for_replicas`), as Keras' own losses are.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
        self.decoder = keras.layers.Conv2D(1, 3, padding="same")

    def call(self, x):
        return self.decoder(self.encoder(x))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from keras_timbre.models.losses import scale_loss_for_replicas

        return scale_loss_for_replicas(keras.ops.mean(keras.ops.square(y_pred - x)))


def train(mode: str) -> dict:
    """Trains a tiny conv autoencoder; returns the replicas and per-epoch losses."""
    import numpy as np
    import tensorflow as tf

    from keras_timbre.training.distribute import distribution_scope

    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).randn(128, 16, 8, 1).astype("float32")
    with distribution_scope(mode) as info:
        model = TinyAutoencoder()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH)
        history = model.fit(dataset, epochs=EPOCHS, verbose=0)
    return {
        "describe": info.describe(),
        "replicas": info.num_replicas,
        "workers": info.num_workers,
        "loss": history.history["loss"],
    }


def run_worker(index: int) -> None:
    result = train("data-parallel")
    result["worker"] = index
    print("RESULT " + json.dumps(result), flush=True)


def launch(timeout: float) -> dict:
    """Starts two workers on localhost, trains the reference, compares."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    env_base = dict(
        os.environ,
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        CUDA_VISIBLE_DEVICES="-1",
    )
    start = time.monotonic()
    try:
        for index in range(2):
            env = dict(env_base, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(index)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        reference = train("none")
        results = []
        for proc in procs:
            remaining = max(1.0, timeout - (time.monotonic() - start))
            out, err = proc.communicate(timeout=remaining)
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{err[-3000:]}")
            results.append(json.loads(lines[-1][len("RESULT ") :]))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the two workers did not finish within {timeout:.0f} s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"workers": results, "reference": reference, "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before both workers are killed")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="relative loss tolerance")
    args = parser.parse_args(argv)
    if args.worker is not None:
        run_worker(args.worker)
        return 0
    summary = launch(args.timeout)
    reference = summary["reference"]["loss"]
    print(f"single device: loss per epoch {[round(v, 6) for v in reference]}")
    ok = True
    for result in summary["workers"]:
        print(f"worker {result['worker']}: {result['describe']}")
        print(f"worker {result['worker']}: loss per epoch {[round(v, 6) for v in result['loss']]}")
        ok &= result["replicas"] == 2 and all(
            abs(a - b) <= args.tolerance * abs(b) for a, b in zip(result["loss"], reference)
        )
    print(
        f"{'OK' if ok else 'MISMATCH'}: two workers on 127.0.0.1 vs one device at global batch "
        f"{GLOBAL_BATCH} ({summary['seconds']:.1f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
