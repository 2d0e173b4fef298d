"""What a model family needs to be trained, behind one small interface chosen by the spec type.

The harness, the runner, tuning and the plugin checks never import a backend: they ask
``trainer_for(kind)`` for the :class:`Trainer` of a spec's ``kind`` and call it. Each spec type
names its trainer module (``KerasModel.trainer = "xraybench.training.keras"``); that module
defines ``TRAINER``. A new family (PyTorch modules, say) is one module here and one spec type
in ``specs.py``; nothing else changes. Importing this package imports no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
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
