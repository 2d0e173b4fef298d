"""Which Keras backend xraybench trains with, chosen once, before anything imports Keras.

Keras reads ``KERAS_BACKEND`` at import and otherwise falls back to TensorFlow, which the
default install no longer brings: ``pip install xraybench`` installs JAX (the environment is
about 0.8 GB against 1.8 GB with TensorFlow's CPU wheel; JAX was also the fastest backend
measured on a GPU, docs/performance.md), and ``pip install "xraybench[tensorflow]"`` adds
TensorFlow, the fastest measured on this project's 2-core CPUs at 64 px and above. So, unless
the user chose with ``KERAS_BACKEND``, xraybench takes the first installed backend of
:data:`PREFERENCE`, and every record names the one used (``environment.backend``).

``~/.keras/keras.json`` is not consulted: Keras writes that file itself on its first import,
with whatever backend was in use, so it records an accident more often than a choice.
Nothing here imports a backend (``find_spec`` only looks for it).
"""

from __future__ import annotations

import importlib.util
import os

PREFERENCE = ("tensorflow", "jax", "torch")
# JAX's CUDA plugins (``pip install "xraybench[gpu]"``): where one is installed, JAX goes first,
# so a TensorFlow CPU wheel installed beside it does not take a GPU machine's training.
JAX_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")
NONE_INSTALLED = ("no Keras backend is installed: python -m pip install jax "
                  '(or "xraybench[tensorflow]", or torch), or set KERAS_BACKEND to an installed one')


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def keras_backend() -> str | None:
    """``$KERAS_BACKEND`` when set, else the first installed backend of :data:`PREFERENCE` (JAX
    first where a CUDA plugin of JAX is installed), else None (a scikit-learn-only environment: Keras models then fail with :data:`NONE_INSTALLED`)."""
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
