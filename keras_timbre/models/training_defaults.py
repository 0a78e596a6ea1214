"""How the family trains by default on this machine and backend: optimiser, jit, precision, normalisation.

Example:
>>> resolve_precision("float32")
'float32'
"""

from __future__ import annotations

from pathlib import Path

import keras

DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_CLIPNORM = 1.0

# `compile()` passes jit_compile="auto", which Keras resolves per backend in
# `Trainer._resolve_auto_jit_compile` (keras/src/trainers/trainer.py, Keras 3.15):
# torch -> False (eager); TensorFlow -> False on a CPU-only machine or under a
# tf.distribute strategy, else XLA; JAX -> jit. That is what measured fastest on
# every backend on the CPU (benchmarks/results/training.md).
JIT_COMPILE = "auto"
# No normalisation by default: lower LSD than BatchNorm on held-out pitches but a worse onset
# error (docs/report.md), and faster where BatchNorm's element-wise work is a large share
# (benchmarks/results/training.md). Files saved with "batch" keep it (it is in their config).
DEFAULT_NORMALIZATION = None
# `train(precision=...)` / `keras-timbre train --precision`: the model's dtype policy, or "auto".
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Backends whose CPU training "auto" runs in mixed_bfloat16 where the CPU has bf16 dot products
# (AVX512-BF16 or AMX): TensorFlow (oneDNN) and torch gain from it; XLA:CPU (JAX) loses
# (benchmarks/results/training.md).
BF16_BACKENDS = ("tensorflow", "torch")


def resolve_precision(precision: str = "auto") -> str:
    """The dtype policy name `precision` stands for on this machine and backend.

    "auto" gives "mixed_bfloat16" for CPU training on the backends in
    `BF16_BACKENDS` when the CPU reports native bf16 (`avx512_bf16` or
    `amx_bf16` in /proc/cpuinfo), else "float32". Reconstruction quality in
    bfloat16 stayed within the seed spread of float32 (docs/report.md).

    Example:
    >>> resolve_precision("float32")
    'float32'
    >>> resolve_precision("auto") in ("float32", "mixed_bfloat16")
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if keras.backend.backend() not in BF16_BACKENDS or _has_accelerator():
        return "float32"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _has_accelerator() -> bool:
    # Only CPU training was measured; on a GPU keep float32.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    import torch

    return torch.cuda.is_available()


def default_optimizer(learning_rate: float = DEFAULT_LEARNING_RATE) -> keras.optimizers.Optimizer:
    """Adam with gradient-norm clipping, the optimiser `TimbreVAE.compile` uses by default."""
    return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=DEFAULT_CLIPNORM)
