"""What a model family needs to be trained, behind one small interface chosen by the spec type.

The harness, the runner, tuning, the plugin checks and the plugins' loader never import a backend:
they ask ``trainer_for(spec)`` (or a stored run's ``kind``) for the :class:`Trainer` of its spec
type and call it. The registry below maps each spec type to its trainer module, imported on first
use. A new family (PyTorch modules, say) is one ``ModelSpec`` subclass and one trainer, joined by
``register_trainer``; nothing else changes. Importing this package imports no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # importing this package (recipes.py for `--help`, specs.py) imports no numpy and not specs.py
    import numpy as np

    from xraybench.specs import ImageSet, ModelSpec

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
    epoch_keys: Mapping[str, str]  # (with ``epochs``) tuning objective -> the epoch log key its trials are pruned on

    def fit(self, spec: ModelSpec, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int,
            precision: str = "auto", on_epoch: OnEpoch | None = None, callbacks: list | None = None) -> Fitted:
        """Train on train (early-stopping on val where the family does); never sees test data.
        ``callbacks`` are those made by :meth:`epoch_callback`."""

    def epoch_callback(self, on_epoch_end: Callable[[int, dict[str, float]], None]) -> Any:
        """A callback for ``fit(callbacks=...)`` calling ``on_epoch_end(epoch, logs)`` (0-based) after each
        epoch; what tuning counts epochs and prunes with. Only for families with ``epochs``."""

    def backend(self) -> str | None:
        """The compute backend to record with a run (``"tensorflow"``), None where there is none."""

    def prepare(self) -> None:
        """Import the family's backend with its start-up noise held back, before ``check`` or a tuning
        trial first reaches it through a plugin's code; a no-op where there is none."""

    def check_build(self, spec: ModelSpec, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        """Build (not train) the plugin's model with ``params``; raise if it is not what the family
        needs; return a short detail for ``xraybench check`` (a parameter count, a type name)."""

    def check_output(self, spec: ModelSpec, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        """Optional: check the built model's raw output (shape, probability range) before any
        training, for ``xraybench check``; a family without it has no such row."""

    def save_model(self, fitted: Fitted, stem: Path) -> StoredModel:
        """Write ``fitted.model`` to ``stem`` + the format's suffix in a form that runs no code when
        loaded; raise ``NotSavable`` (one line) for a model the format cannot hold. Optional: a family
        without it keeps no models (``xraybench.saved_model``)."""

    def load_model(self, path: Path, spec: ModelSpec | None, params: dict[str, Any], types: Sequence[str],
                   shape: tuple[int, ...]) -> Restored:
        """Load a file ``save_model`` wrote, trusting no more than ``types`` (and the plugin of ``spec``,
        None where it is not installed); ``params`` are the run's, ``shape`` its images' (H, W, C)."""


# Each registered spec type's ``kind`` -> its trainer: the ``Trainer`` itself, or the module that defines it as
# ``TRAINER``, imported on first use (so listing models, reading records and ``--help`` import no trainer and no
# backend); and -> the spec type (module.qualname) that owns that kind. Kept by name, not by class, so that this
# package never imports specs.py, which imports its recipes.
_TRAINERS: dict[str, Trainer | str] = {"keras": "xraybench.training.keras", "generic": "xraybench.training.generic"}
_OWNERS: dict[str, str] = {"keras": "xraybench.specs.KerasModel", "generic": "xraybench.specs.GenericModel",
                           "abstract": "xraybench.specs.ModelSpec"}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_trainer(spec_type: type[ModelSpec], trainer: Trainer | str) -> None:
    """Make ``spec_type`` (and its subclasses) trainable: the plugins' loader accepts its specs and the
    harness trains them with ``trainer`` (a ``Trainer``, or the path of a module defining ``TRAINER``).
    Call it where the spec type is defined, so that any process that unpickles one of its specs has it.
    Its ``kind``, recorded with each run, must be its own: it names the trainer of a stored run."""
    kind, name = spec_type.kind, _name(spec_type)
    owner = _OWNERS.get(kind, name)
    if "kind" not in vars(spec_type) or owner != name or kind == "abstract":
        raise ValueError(f"{spec_type.__name__}.kind {kind!r} is {owner.rpartition('.')[2]}'s; "
                         "give the spec type a kind of its own")
    _OWNERS[kind], _TRAINERS[kind] = owner, trainer


def _kind(cls: type) -> str | None:
    """``cls.kind`` (what its runs record) where the type that declares it registered it, else None."""
    owner = next((base for base in cls.__mro__ if "kind" in vars(base)), None)
    kind = vars(owner)["kind"] if owner is not None else None
    return kind if kind in _TRAINERS and owner is not None and _OWNERS.get(kind) == _name(owner) else None


def has_trainer(spec: ModelSpec | type[ModelSpec]) -> bool:
    """Whether a spec's type (or a base of it) has a registered trainer; imports none."""
    return _kind(spec if isinstance(spec, type) else type(spec)) is not None


def trainer_for(spec: ModelSpec | str | None) -> Trainer | None:
    """The trainer of a spec (by its type, bases included) or of a recorded ``kind``; None when there is none."""
    kind = spec if spec is None or isinstance(spec, str) else _kind(type(spec))
    entry = _TRAINERS.get(kind) if kind is not None else None
    if isinstance(entry, str):
        entry = importlib.import_module(entry).TRAINER
    return entry


def trains_in_epochs(spec: ModelSpec | str | None) -> bool:
    """Whether a spec (or a recorded kind) trains epoch by epoch, and so keeps checkpoints and can be resumed."""
    trainer = trainer_for(spec)
    return bool(trainer is not None and trainer.epochs)


def one_line(exc: BaseException) -> str:
    """An exception as one line, ``Type: first line of its message``, for records and tables."""
    from xraybench.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__
