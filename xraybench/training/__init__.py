"""What a model family needs to be trained, behind one small interface chosen by the spec type.

The harness, the runner, tuning and the plugin checks never import a backend: they ask
``trainer_for(kind)`` for the :class:`Trainer` of a spec's ``kind`` and call it. Each spec type
names its trainer module (``KerasModel.trainer = "xraybench.training.keras"``); that module
defines ``TRAINER``. A new family (PyTorch modules, say) is one module here and one spec type
in ``specs.py``; nothing else changes. Importing this package imports no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from xraybench.specs import ImageSet, ModelSpec

if TYPE_CHECKING:  # importing this package (recipes.py for `--help`) imports no numpy
    import numpy as np

OnEpoch = Callable[[int, int, dict[str, float]], None]  # (epoch, epochs, logs), after each epoch


@dataclass
class Fitted:
    """A trained model as the harness sees it: P(PNEUMONIA) for images, what training did, the precision used."""

    predict: Callable[[np.ndarray], np.ndarray]
    info: dict[str, Any]  # history, epochs_run, train_seconds, param_count (None where unknown), ...
    precision: str
    model: Any = None  # what the trainer's ``save_model`` writes (the Keras trainer's FittedKeras, the estimator)


class NotSavable(Exception):
    """A trained model its family's format cannot hold; the message is the one-line reason the
    run's record keeps (``model_note``). The run is still done."""


@dataclass
class StoredModel:
    """A model file a trainer wrote: where, in which ``records.MODEL_FORMATS`` format, and (skops)
    the types it needs beyond the format's own trusted set."""

    path: Path
    format: str
    types: list[str]


@dataclass
class Restored:
    """A model loaded from its file: ``predict`` takes uint8 images (N, H, W, C) as ``Fitted.predict``
    does; ``keras_model`` is the ``keras.Model`` where there is one, and ``inputs`` turns those uint8
    images into what that network itself takes (the family's own scaling, for Grad-CAM)."""

    predict: Callable[[np.ndarray], np.ndarray]
    keras_model: Any = None
    inputs: Callable[[np.ndarray], np.ndarray] | None = None


class Trainer(Protocol):
    """How one model family is trained. ``fit`` raises ``errors.PluginFailure`` (one line naming
    the stage) for anything the plugin got wrong; an ``optuna.TrialPruned`` raised by a callback
    passes through."""

    epochs: bool  # trains epoch by epoch: per-epoch callbacks, checkpoints and ``run --resume``

    def fit(self, spec: ModelSpec, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int,
            precision: str = "auto", on_epoch: OnEpoch | None = None, callbacks: list | None = None) -> Fitted:
        """Train on train (early-stopping on val where the family does); never sees test data.
        ``callbacks`` are those made by :meth:`epoch_callback`."""

    def epoch_callback(self, on_epoch_end: Callable[[int, dict[str, float]], None]) -> Any:
        """A callback for ``fit(callbacks=...)`` calling ``on_epoch_end(epoch, logs)`` (0-based) after each
        epoch; what tuning counts epochs and prunes with. Only for families with ``epochs``."""

    def backend(self) -> str | None:
        """The compute backend to record with a run (``"tensorflow"``), None where there is none."""

    def check_build(self, spec: ModelSpec, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        """Build (not train) the plugin's model with ``params``; raise if it is not what the family
        needs; return a short detail for ``xraybench check`` (a parameter count, a type name)."""

    def save_model(self, fitted: Fitted, stem: Path) -> StoredModel:
        """Write ``fitted.model`` to ``stem`` + the format's suffix in a form that runs no code when
        loaded; raise ``NotSavable`` (one line) for a model the format cannot hold. Optional: a family
        without it keeps no models (``xraybench.saved_model``)."""

    def load_model(self, path: Path, spec: ModelSpec | None, params: dict[str, Any], types: Sequence[str],
                   shape: tuple[int, ...]) -> Restored:
        """Load a file ``save_model`` wrote, trusting no more than ``types`` (and the plugin of ``spec``,
        None where it is not installed); ``params`` are the run's, ``shape`` its images' (H, W, C)."""


def trainer_for(kind: str) -> Trainer | None:
    """The trainer of the spec type whose ``kind`` this is (a spec's, or a stored record's), or None
    when no loaded spec type has that kind."""
    for cls in _spec_types():
        if cls.kind == kind and cls.trainer:
            return importlib.import_module(cls.trainer).TRAINER
    return None


def trains_in_epochs(kind: str | None) -> bool:
    """Whether a spec kind trains epoch by epoch, and so keeps checkpoints and can be resumed."""
    trainer = trainer_for(kind or "")
    return bool(trainer is not None and trainer.epochs)


def _spec_types() -> list[type[ModelSpec]]:
    found, todo = [], [ModelSpec]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def one_line(exc: BaseException) -> str:
    from xraybench.plugins import one_line as line

    return line(exc)
