"""Which Keras backend xraybench trains with, chosen once, before anything imports Keras.

Keras reads ``KERAS_BACKEND`` at import and otherwise falls back to TensorFlow, which the
default install does not bring (it brings JAX; the README's "Install" says why and what each
extra adds). So, unless the user chose with ``KERAS_BACKEND``, xraybench takes the first
installed backend of :data:`PREFERENCE`, JAX first where one of :data:`JAX_GPU_PLUGINS` is
installed, and every record names the backend used (``environment.backend``). PyTorch is never
picked by itself (JAX always is installed): ``KERAS_BACKEND=torch`` chooses it.

``~/.keras/keras.json`` is not consulted: Keras writes that file itself on its first import,
with whatever backend was in use, so it records an accident more often than a choice.
Nothing here imports a backend (``find_spec`` only looks for it).
"""

from __future__ import annotations

import importlib.util
import os

PREFERENCE = ("tensorflow", "jax")  # TensorFlow where installed: the faster of the two on the CPUs measured
# JAX's CUDA plugins (``pip install "xraybench[gpu]"``): where one is installed, JAX goes first,
# so a TensorFlow CPU wheel installed beside it does not take a GPU machine's training.
JAX_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")
KNOWN = ("tensorflow", "jax", "torch")
NONE_INSTALLED = ("no Keras backend is installed: python -m pip install jax "
                  '(or "xraybench[tensorflow]"), or set KERAS_BACKEND to an installed one')
# The rule above in one sentence, for docs/cli.md (xraybench/clidoc.py) and ``--help``.
RULE = ("`KERAS_BACKEND` (`jax`, `tensorflow` or `torch`; when unset, TensorFlow if installed, else "
        "JAX, and JAX first where its CUDA plugin is installed; every record names the backend it used)")


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def keras_backend() -> str | None:
    """``$KERAS_BACKEND`` when set, else the first installed backend of :data:`PREFERENCE` (JAX
    first where a CUDA plugin of JAX is installed), else None (no backend: Keras models then
    fail with :data:`NONE_INSTALLED`)."""
    chosen = os.environ.get("KERAS_BACKEND", "").strip()
    if chosen:
        return chosen
    order = PREFERENCE
    if any(installed(plugin) for plugin in JAX_GPU_PLUGINS):
        order = ("jax",) + tuple(name for name in PREFERENCE if name != "jax")
    return next((name for name in order if installed(name)), None)


def ensure_keras_backend() -> str | None:
    """Pin the choice in ``KERAS_BACKEND`` so that Keras, plugins importing it and child
    processes all see the same backend; returns it (None when none is installed)."""
    backend = keras_backend()
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    return backend


def unusable(backend: str | None) -> str | None:
    """Why Keras cannot train with ``backend`` (one line), or None when it can."""
    if backend is None:
        return NONE_INSTALLED
    if backend in KNOWN and not installed(backend):
        extra = '"xraybench[tensorflow]"' if backend == "tensorflow" else backend
        return f"KERAS_BACKEND={backend} but {backend} is not installed: python -m pip install {extra}, or unset KERAS_BACKEND"
    return None
