"""Which Keras backend xraybench trains with, chosen once, before anything imports Keras.

The rule: JAX, whatever else is installed, unless ``KERAS_BACKEND`` names another. Why one fixed
default: when TensorFlow went first wherever it was installed, ``pip install ".[test]"`` (which
brings TensorFlow) silently moved the same command from JAX to TensorFlow, with other random
streams, other epochs and another accuracy (0.785 -> 0.798 on the main job), and nothing on the
screen said so. Now installing an extra never changes what trains; ``KERAS_BACKEND=tensorflow``
(or ``torch``) is the one way to choose, and every run's summary line and record name the
backend (``environment.backend``). xraybench has no configuration file: the environment
variable is the setting. TensorFlow is taken only where JAX is missing (an install that removed
it). PyTorch is never picked by itself: ``KERAS_BACKEND=torch`` chooses it.

``~/.keras/keras.json`` is not consulted: Keras writes that file itself on its first import,
with whatever backend was in use, so it records an accident more often than a choice.
Nothing here imports a backend (``find_spec`` only looks for it), so a command can tell which
backend a run would use without paying for its import (``run`` does, to find a recorded run).
"""

from __future__ import annotations

import importlib.util
import os

# JAX always (the base install brings it, and ``".[gpu]"`` its CUDA plugin), so a TensorFlow wheel
# installed beside it (``".[tensorflow]"``, ``".[test]"``) never takes the training; TensorFlow
# only where JAX is missing.
PREFERENCE = ("jax", "tensorflow")
KNOWN = ("tensorflow", "jax", "torch")
NONE_INSTALLED = ("no Keras backend is installed: python -m pip install jax "
                  '(or "xraybench[tensorflow]"), or set KERAS_BACKEND to an installed one')
# The rule above in one sentence, for docs/cli.md (docs/clidoc.py) and ``--help``.
RULE = ("`KERAS_BACKEND` (`jax`, `tensorflow` or `torch`; when unset, JAX, whatever extras are installed, "
        "its CUDA plugin included: installing `.[tensorflow]` or `.[test]` does not switch it, only this variable "
        "does; xraybench has no config file for it; every run's summary line and record name the backend used)")


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def keras_backend() -> str | None:
    """``$KERAS_BACKEND`` when set, else the first installed backend of :data:`PREFERENCE` (JAX,
    with or without its CUDA plugin), else None (no backend: Keras models then fail with
    :data:`NONE_INSTALLED`). The same answer before and after installing any extra."""
    chosen = os.environ.get("KERAS_BACKEND", "").strip()
    if chosen:
        return chosen
    return next((name for name in PREFERENCE if installed(name)), None)


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


def import_quietly() -> None:
    """Import Keras (and so the chosen backend) with the backend's start-up messages held back
    (``progress.quiet_backend_startup``), as a training run does.

    Why: ``check`` and ``tune``'s trials first import Keras in places that know nothing of the
    noise (a plugin's ``build``, an epoch callback), so TensorFlow's absl and oneDNN lines came
    before their output. Called once per process before those; a backend that cannot be imported
    is left to the trainer, which reports it in one line (what was held back is then shown).
    """
    from xraybench.progress import quiet_backend_startup

    if unusable(ensure_keras_backend()):
        return
    try:
        with quiet_backend_startup():
            import keras

            if keras.backend.backend() == "tensorflow":  # device probing (CUDA) logs here, not at import
                import tensorflow as tf

                tf.config.list_physical_devices()
    except Exception:  # noqa: BLE001 - reported by the trainer where it matters
        return
