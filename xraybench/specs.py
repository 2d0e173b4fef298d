"""The value types that cross the plugin boundary.

Plugins build these; the core consumes them. They hold callables and numpy
arrays only, and import nothing heavy, so listing models stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from xraybench.records import DEFAULT_IMAGE_SIZE, LABELS, RunRecord  # noqa: F401  (LABELS: part of this module's API)

@dataclass
class ImageSet:
    """One split: uint8 images (N, H, W, C), int labels (N,), ids and patient groups.

    ``ids`` are stable per-image names (relative paths) so per-image scores stored
    with a run can be paired across runs; ``groups`` are patient ids, used to carve
    validation splits that no patient straddles.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: list[str]

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.ids) == len(self.groups) == n):
            raise ValueError(
                f"ImageSet lengths differ: images {n}, labels {len(self.labels)}, "
                f"ids {len(self.ids)}, groups {len(self.groups)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at ``index``, with their labels, ids and groups."""
        import numpy as np

        index = np.asarray(index, dtype=np.int64)
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            ids=[self.ids[i] for i in index],
            groups=[self.groups[i] for i in index],
        )

    def class_counts(self) -> dict[str, int]:
        """Images per class name, e.g. ``{"NORMAL": 24, "PNEUMONIA": 36}``."""
        return {name: int((self.labels == i).sum()) for i, name in enumerate(LABELS)}


def spec_type(kind: str | None) -> type[ModelSpec]:
    """The loaded spec type that declares ``kind``, the first defined where several do (what the
    leaderboard asks of a stored run), or ``ModelSpec`` where none does (its attributes claim nothing)."""
    todo: list[type[ModelSpec]] = [ModelSpec]
    while todo:
        cls = todo.pop(0)
        if cls.__dict__.get("kind") == kind:
            return cls
        todo.extend(cls.__subclasses__())
    return ModelSpec


@dataclass
class ModelSpec:
    """What every model plugin declares.

    ``defaults`` are the hyperparameters a plain run uses; ``search_space``, when
    given, maps an Optuna trial to a dict of parameters (used by ``xraybench
    tune``). ``image_size`` and ``channels`` are the model's preferred input.
    ``reference``: this model is the reference the leaderboard compares every other
    model with (the ΔAcc column and the paired test), at its own ``image_size``;
    ``xraybench leaderboard --baseline MODEL`` chooses another. ``version`` and
    ``distribution`` are filled in by the loader from the package metadata; plugins
    need not set them.

    A subclass is a model family: it is accepted from plugins once a trainer is registered for it
    (``xraybench.training.register_trainer``). Its class attributes tell the readers of its stored
    runs what they need without importing the trainer: ``kind``, recorded with each run and unique
    to the type; ``library``, the package that trains it (a key of the run's environment, for the
    leaderboard's footer); ``on_keras_backend``, whether it trains on the Keras backend the run
    records, which with the precision then decides its results.
    """

    name: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Callable[[Any], dict[str, Any]] | None = None
    image_size: int = DEFAULT_IMAGE_SIZE
    channels: int = 1
    distribution: str = "unknown"
    version: str = "unknown"
    reference: bool = False

    kind: ClassVar[str] = "abstract"
    library: ClassVar[str] = ""
    on_keras_backend: ClassVar[bool] = False

    def all_defaults(self, recipe: str | None = None) -> dict[str, Any]:
        """The parameters a plain run uses: ``defaults`` (a Keras model adds its training recipe's).

        ``recipe`` is a ``--recipe`` the user asked for; a family without recipes ignores it here
        (the ``recipe`` key then fails as an unknown parameter, in one line)."""
        return dict(self.defaults)


@dataclass
class KerasModel(ModelSpec):
    """A Keras model: the plugin builds it, the harness trains it.

    ``build(input_shape, params)`` returns an uncompiled or compiled
    ``keras.Model`` whose output is P(PNEUMONIA) of shape (N, 1). Import keras
    inside ``build``. Give the last layer ``dtype="float32"`` so probabilities
    keep full precision under mixed precision. The harness adds scaling to
    [0, 1], augmentation, class weights, the epoch choice and the seed, as the
    training ``recipe`` says (``xraybench/training/recipes.py``: ``seed``, ``modern``,
    ``medmnist``); ``recipe`` names the one a plain run of this model uses.
    """

    build: Callable[[tuple[int, int, int], dict[str, Any]], Any] | None = None
    recipe: str = "seed"

    kind: ClassVar[str] = "keras"
    library: ClassVar[str] = "keras"
    on_keras_backend: ClassVar[bool] = True

    def all_defaults(self, recipe: str | None = None) -> dict[str, Any]:
        """Harness defaults < the recipe's values < the plugin's ``defaults``; a recipe the user asked
        for (``--recipe``) that is not the plugin's own ranks above the plugin's defaults for the
        training fields it sets, so ``--recipe seed`` is the seed's training on any model."""
        from xraybench.training import recipes

        return recipes.all_defaults(self.defaults, self.recipe, recipe)


def trained_on(record: RunRecord) -> str | None:
    """The Keras backend a run trained with (None for families without one): the same command
    trains on TensorFlow or JAX depending on the install, with other random streams and other
    speeds, so runs of different backends are rows of their own, never one mean."""
    if record.members is not None:  # an ensemble trained nothing: its members' backends
        return "+".join(sorted({str(m["backend"]) for m in record.members if m.get("backend")})) or None
    if not spec_type(record.kind).on_keras_backend:
        return None
    return (record.environment or {}).get("backend")


def trained_with(record: RunRecord) -> tuple[str, str | None]:
    """("keras 3.5.0", "jax 0.4.35"): a run's library and Keras backend with the versions its environment
    recorded (the backend changes a run's random streams and speed), for the summary line and the
    leaderboard's footer; the backend is None for a family without one, and for a kind no loaded family
    declares ("<kind> ?"), which claims none, as the leaderboard's rows and the repeat check take it."""
    from xraybench.training.backend import KNOWN  # finds backends, imports none

    env = record.environment or {}
    family = spec_type(record.kind)
    library = f"{family.library or record.kind} {env.get(family.library) or '?'}"
    if not family.on_keras_backend:
        return library, None
    backend = env.get("backend") or "?"
    version = env.get(backend) if backend in KNOWN else None
    return library, f"{backend}{' ' + str(version) if version else ''}"


class Estimator(Protocol):
    """What ``GenericModel.create(params, seed)`` returns: fitted on train/val, asked for P(PNEUMONIA).

    ``predict_proba`` gets uint8 images (N, H, W, C) and returns shape (N,) in [0, 1]; the
    harness rejects NaN, values outside [0, 1] and wrong shapes with a one-line reason.
    """

    def fit(self, train: ImageSet, val: ImageSet) -> Any: ...

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...


class ParamCounted(Protocol):
    """Optional: an estimator that says how many parameters it has, for the leaderboard's column.

    ``param_count`` may be a method returning an int or a plain int attribute. The
    harness records it with the run; anything else (absent, raising, not an int) is
    recorded as unknown, never an error. Keras models need nothing: the harness counts
    their weights itself.
    """

    def param_count(self) -> int: ...


@dataclass
class GenericModel(ModelSpec):
    """Any other model: ``create(params, seed)`` returns an object with
    ``fit(train, val)`` and ``predict_proba(images) -> P(PNEUMONIA) of shape (N,)``.

    ``images`` are the cached uint8 arrays (N, H, W, C); the harness still owns
    data, splits, seeds and metrics, so the object never scores itself.
    """

    create: Callable[[dict[str, Any], int], Estimator] | None = None

    kind: ClassVar[str] = "generic"
    library: ClassVar[str] = "scikit-learn"


class ClassStats(TypedDict):
    """What a reader saw of one class in one source split (one row of ``xraybench data``).

    ``patients`` and ``duplicates`` (exact byte-identical images) are None when the
    source cannot tell (e.g. an .npz of bare arrays).
    """

    images: int
    patients: int | None
    duplicates: int | None


class ReaderStats(TypedDict, total=False):
    """``RawDataset.stats``: what a reader saw, shown by ``xraybench data`` and stored with the cache.

    Every key is optional; the report shows those present. ``splits`` maps a source
    split (``train``, ``test``, ``val``) to ``{"NORMAL": ClassStats, "PNEUMONIA":
    ClassStats}``; ``sizes`` and ``modes`` count the original image sizes
    (``"WxH"``) and PIL modes; ``skipped_bad`` lists the files skipped as
    unreadable (relative paths) and ``skipped_bad_count`` their number;
    ``kaggle_val_images`` is the size of a source val/ folder that is reported but
    not used; ``dataset`` is a display name (default: the reader's name).
    """

    reader: str
    dataset: str
    splits: dict[str, dict[str, ClassStats]]
    sizes: dict[str, int]
    modes: dict[str, int]
    skipped_bad: list[str]
    skipped_bad_count: int
    kaggle_val_images: int


@dataclass
class RawDataset:
    """What a dataset reader returns: the splits it found plus what it saw.

    ``val`` is None when the source has no validation split of its own; the
    core then carves one from ``train`` by patient.
    """

    train: ImageSet
    test: ImageSet
    val: ImageSet | None = None
    stats: ReaderStats = field(default_factory=dict)  # type: ignore[assignment]


@dataclass
class DatasetSpec:
    """A data set reader.

    ``detect(path)`` says whether the reader understands ``path``; ``files(path)``
    lists the source files whose size and mtime decide whether the cache is
    fresh (and whose content hashes make the fingerprint); a warm load lists
    them only when a folder under ``path`` (or holding one of them) changed,
    or with ``--rescan``; ``read(path, image_size, channels, skip_bad)``
    decodes them.
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    files: Callable[[Path], list[str | Path]]
    read: Callable[[Path, int, int, bool], RawDataset]
    version: str = "1"
    distribution: str = "unknown"
