"""What a result needs to be reproduced: software versions, CPU and git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def _version(*dists: str) -> str | None:
    """The first installed distribution's version: one package can ship under several names
    (TensorFlow as ``tensorflow``, ``tensorflow-cpu`` or ``tensorflow-macos``)."""
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def accelerator(backend: str | None) -> str | None:
    """The GPU a backend trains on, if any (only asked of a backend already imported)."""
    try:
        if backend == "torch" and "torch" in sys.modules:
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if backend == "tensorflow" and "tensorflow" in sys.modules:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return gpus[0].name if gpus else None
        if backend == "jax" and "jax" in sys.modules:
            import jax

            devices = [d for d in jax.devices() if d.platform != "cpu"]
            return str(devices[0].device_kind) if devices else None
    except Exception:
        return None
    return None


def capture(backend: str | None = None) -> dict[str, Any]:
    import xraybench
    from xraybench.training.backend import keras_backend

    return {
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_info(),
        "accelerator": accelerator(backend),
        "xraybench": xraybench.__version__,
        "git_commit": git_commit(),
        "keras": _version("keras"),
        "backend": backend or keras_backend(),
        "tensorflow": _version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel"),
        "torch": _version("torch"),
        "jax": _version("jax"),
        "scikit-learn": _version("scikit-learn"),
        "optuna": _version("optuna"),
        "numpy": _version("numpy"),
    }
