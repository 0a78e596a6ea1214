"""What every benchmark states beside its numbers: the CPU (model, AVX-512 or not), its cores and threads."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

THREAD_SETTINGS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")


def environment() -> dict:
    """CPU model and flags (AVX-512 or not), the cores this process may use, the thread settings, the time."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    wanted = ("avx", "avx2", "fma")
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_list": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "cpu_flags": ",".join(f for f in wanted if f in flags)
        + ("; AVX-512" if "avx512f" in flags else "; no AVX-512")
        + ("; AVX512-BF16" if "avx512_bf16" in flags else ""),
        "threads": {k: os.environ.get(k, "") for k in THREAD_SETTINGS},
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
