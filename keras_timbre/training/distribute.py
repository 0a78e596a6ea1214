"""Data-parallel training through each backend's own distribution engine.

`distribution_scope(mode)` wraps model building and `fit`:

- TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs (or over
  logical CPU devices when there are several), or
  `tf.distribute.MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster.
- JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`;
  several hosts join through `keras.distribution.initialize()` and its
  `KERAS_DISTRIBUTION_JOB_ADDRESSES` / `_NUM_PROCESSES` / `_PROCESS_ID` variables.
- torch: Keras 3 has no data-parallel engine for torch; `data-parallel` is a
  clear error and `auto` trains on one device.

The batch given to `fit` is the *global* batch: every replica gets
`global_batch // num_replicas` examples and gradients are averaged across
replicas, so a data-parallel run follows the single-device run at the same
global batch (see tests/test_distribute.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import Any, Iterator

import keras

MODES = ("auto", "none", "data-parallel")

logger = logging.getLogger(__name__)

# A process joins one multi-worker cluster: TensorFlow refuses a second
# MultiWorkerMirroredStrategy, and keras.distribution.initialize runs once.
_multi_worker_strategy = None
_mirrored_strategies: dict[tuple[str, ...], Any] = {}
_jax_initialized = False

_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, ' '"task": {"type": "worker", "index": 0}}'
)
_JAX_CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


@dataclasses.dataclass(frozen=True)
class DistributionInfo:
    """What `distribution_scope` set up.

    Attributes:
        mode: The resolved mode, `"none"` or `"data-parallel"`.
        backend: The Keras backend.
        num_replicas: Model replicas across all workers; the global batch is
            split between them.
        num_workers: Processes (hosts) taking part.
        engine: The engine in use, e.g. `"tf.distribute.MirroredStrategy"`.
        devices: The devices of this worker that hold a replica.
        strategy: The `tf.distribute.Strategy` or
            `keras.distribution.Distribution`, or None.
    """

    mode: str
    backend: str
    num_replicas: int = 1
    num_workers: int = 1
    engine: str = "single device"
    devices: tuple[str, ...] = ()
    strategy: Any = None

    def check_global_batch_size(self, global_batch_size: int) -> int:
        """Returns the per-replica batch; raises unless the replicas split it evenly.

        Example:
        >>> DistributionInfo("none", "jax").check_global_batch_size(32)
        32
        """
        global_batch_size = int(global_batch_size)
        if global_batch_size < self.num_replicas or global_batch_size % self.num_replicas:
            raise ValueError(
                f"The batch size {global_batch_size} is the global batch and must split evenly "
                f"across {self.num_replicas} replicas ({self.engine}); use a multiple of "
                f"{self.num_replicas}."
            )
        return global_batch_size // self.num_replicas

    def describe(self) -> str:
        """One line for logs and run configs."""
        if self.mode == "none":
            return f"distribution: none ({self.backend}, one device)"
        workers = f", {self.num_workers} workers" if self.num_workers > 1 else ""
        return (
            f"distribution: data-parallel with {self.engine} on {self.backend}: "
            f"{self.num_replicas} replicas{workers} ({', '.join(self.devices)})"
        )


def parse_tf_config(text: str | None = None) -> dict[str, Any] | None:
    """Parses and checks `TF_CONFIG` (the environment variable when `text` is None).

    Returns:
        The parsed dict, or None when TF_CONFIG is unset or empty.

    Raises:
        ValueError: naming TF_CONFIG and what is wrong, with a valid example.

    Example:
    >>> parse_tf_config('{"cluster": {"worker": ["127.0.0.1:2222"]}, '
    ...                 '"task": {"type": "worker", "index": 0}}')["task"]
    {'type': 'worker', 'index': 0}
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None

    def bad(problem: str) -> ValueError:
        shown = text if len(text) <= 200 else text[:200] + "..."
        return ValueError(f"TF_CONFIG {problem}. Got {shown!r}; expected JSON like {_TF_CONFIG_EXAMPLE}")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad(f"is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise bad(f"must be a JSON object, not {type(config).__name__}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise bad('needs a "cluster" object mapping job names to lists of "host:port"')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise bad(f'cluster job "{job}" must be a non-empty list of "host:port" strings')
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not isinstance(address, str) or not host or not port.isdigit():
                raise bad(f'cluster job "{job}" has address {address!r}, not "host:port"')
    task = config.get("task")
    if not isinstance(task, dict):
        raise bad('needs a "task" object with "type" and "index"')
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise bad(f"task type {task_type!r} is not a job of the cluster {sorted(cluster)}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise bad(f"task index {index!r} is not in [0, {len(cluster[task_type])}) " f'for job "{task_type}"')
    return config


def _single_device(mode: str, backend: str, devices: list) -> DistributionInfo | None:
    """With one device, "auto" trains without a distribution; "data-parallel" goes on, warned."""
    if len(devices) >= 2:
        return None
    if mode == "auto":
        return DistributionInfo(mode="none", backend=backend, devices=tuple(str(d) for d in devices[:1]))
    logger.warning("data-parallel asked for, but %s sees one device (%s): one replica.", backend, devices[0])
    return None


def _tf_local_devices(tf) -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [device.name for device in gpus]
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _keras_multi_worker_strategy_class(tf):
    """MultiWorkerMirroredStrategy whose `reduce` takes what Keras' `fit` passes it.

    With two or more workers, Keras 3's TensorFlow trainer calls
    `strategy.reduce("MEAN", value, axis=0)` on scalar logs and on nested
    batches, which the collective implementation rejects
    (keras-team/keras#20585). Reducing each leaf, over replicas only for a
    scalar, is what Keras means; everything else is TensorFlow's own strategy.
    """

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            def reduce_leaf(leaf):
                leaf_axis = axis
                first = leaf.values[0] if isinstance(leaf, tf.distribute.DistributedValues) else leaf
                if leaf_axis is not None and getattr(first, "shape", None) is not None and first.shape.rank == 0:
                    leaf_axis = None
                return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, leaf, axis=leaf_axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return KerasMultiWorkerMirroredStrategy


def _tf_distribution(mode: str) -> DistributionInfo:
    import tensorflow as tf

    tf_config = parse_tf_config()
    if tf_config is not None:
        global _multi_worker_strategy
        if _multi_worker_strategy is None:
            _multi_worker_strategy = _keras_multi_worker_strategy_class(tf)()
        strategy = _multi_worker_strategy
        workers = sum(len(v) for k, v in tf_config["cluster"].items() if k in ("chief", "worker"))
        return DistributionInfo(
            mode="data-parallel",
            backend="tensorflow",
            num_replicas=int(strategy.num_replicas_in_sync),
            num_workers=workers,
            engine="tf.distribute.MultiWorkerMirroredStrategy",
            devices=tuple(strategy.extended.worker_devices),
            strategy=strategy,
        )
    devices = _tf_local_devices(tf)
    if single := _single_device(mode, "tensorflow", devices):
        return single
    # One strategy per device set and process: strategies created afresh for
    # every scope reuse collective instance keys, and their all-reduces clash.
    strategy = _mirrored_strategies.get(tuple(devices))
    if strategy is None:
        strategy = _mirrored_strategies[tuple(devices)] = tf.distribute.MirroredStrategy(devices=devices)
    return DistributionInfo(
        mode="data-parallel",
        backend="tensorflow",
        num_replicas=int(strategy.num_replicas_in_sync),
        engine="tf.distribute.MirroredStrategy",
        devices=tuple(devices),
        strategy=strategy,
    )


def _jax_distribution(mode: str) -> DistributionInfo:
    import jax

    global _jax_initialized
    if os.environ.get("TF_CONFIG"):
        logger.warning(
            "TF_CONFIG is ignored on the JAX backend; a multi-host JAX run reads %s.", ", ".join(_JAX_CLUSTER_VARIABLES)
        )
    multi_host = any(os.environ.get(name) for name in _JAX_CLUSTER_VARIABLES)
    if multi_host and not _jax_initialized:
        keras.distribution.initialize()
        _jax_initialized = True
    devices = keras.distribution.list_devices()
    if single := _single_device(mode, "jax", devices):
        return single
    distribution = keras.distribution.DataParallel(devices=devices)
    return DistributionInfo(
        mode="data-parallel",
        backend="jax",
        num_replicas=len(devices),
        num_workers=jax.process_count(),
        engine="keras.distribution.DataParallel",
        devices=tuple(str(device) for device in devices),
        strategy=distribution,
    )


def _torch_distribution(mode: str) -> DistributionInfo:
    if mode == "data-parallel":
        raise ValueError(
            "--distribute data-parallel is not available on the torch backend: Keras 3 has no "
            "data-parallel engine for torch (keras.distribution runs on JAX, tf.distribute on "
            "TensorFlow). Set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax for data-parallel "
            "training, or use --distribute none (or auto) to train on one device with torch."
        )
    import torch

    if torch.cuda.device_count() > 1:
        logger.warning(
            "torch sees %d GPUs, but Keras trains on one of them with the torch backend.", torch.cuda.device_count()
        )
    return DistributionInfo(mode="none", backend="torch", engine="single device")


def resolve_distribution(mode: str = "auto") -> DistributionInfo:
    """Picks the engine for `mode` on the current backend, without entering it.

    Args:
        mode: `"auto"` (data-parallel when more than one device or a cluster is
            configured, else none), `"none"`, or `"data-parallel"`.

    Returns:
        A `DistributionInfo`.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown distribute mode {mode!r}; choose one of {', '.join(MODES)}")
    backend = keras.backend.backend()
    if mode == "none":
        return DistributionInfo(mode="none", backend=backend)
    if backend == "tensorflow":
        return _tf_distribution(mode)
    if backend == "jax":
        return _jax_distribution(mode)
    if backend == "torch":
        return _torch_distribution(mode)
    if mode == "data-parallel":
        raise ValueError(f"data-parallel training is not available on the {backend} backend")
    return DistributionInfo(mode="none", backend=backend)


@contextlib.contextmanager
def distribution_scope(mode: str = "auto") -> Iterator[DistributionInfo]:
    """Context manager: build, compile and fit the model inside it.

    Args:
        mode: `"auto"`, `"none"` or `"data-parallel"` (see `resolve_distribution`).

    Yields:
        A `DistributionInfo`; `info.num_replicas` splits the global batch.

    Raises:
        ValueError: for an unknown mode, `data-parallel` on torch, or a
            `TF_CONFIG` that does not parse.

    Example:
    >>> with distribution_scope("auto") as info:  # doctest: +SKIP
    ...     info.check_global_batch_size(32)
    ...     model = build_model()
    ...     model.compile(optimizer="adam")
    ...     model.fit(dataset.batch(32), epochs=1)
    """
    info = resolve_distribution(mode)
    if info.strategy is None:
        yield info
        return
    # tf.distribute.Strategy.scope() and keras.distribution.Distribution.scope().
    with info.strategy.scope():
        yield info
