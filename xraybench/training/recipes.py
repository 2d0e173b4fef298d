"""Training recipes: named, typed sets of the training choices the harness makes for a Keras model.

Why a recipe and not loose flags: a result is only comparable when everything that produced it
is written down, and "the modern recipe" is a claim a reader can check field by field. A recipe
sets the *training* parameters of a run (``recipe.params()``); every value is then an ordinary
run parameter, so it lands in the run record, ``--param`` overrides any one of them (an ablation
is ``--recipe modern --param label_smoothing=0``), and the leaderboard's variant names the recipe,
so rows of different recipes are never pooled.

Layering, weakest first: the harness's :data:`HARNESS_DEFAULTS`, the
recipe's values, the plugin's own ``defaults`` (architecture knobs, a model's epochs) and then
``--param``. A recipe asked for with ``--recipe`` (``--param recipe=NAME``) ranks above the
plugin's defaults for the fields it sets, so that ``--recipe seed`` means the seed's training
whatever the plugin prefers. A plugin names its default recipe in ``KerasModel.recipe``.

Nothing here imports Keras: this is data, read by ``training/keras.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUGMENT_POLICIES = ("none", "seed", "strong")
SCHEDULES = ("constant", "cosine", "step")
OPTIMIZERS = ("adam", "adamw")
SELECT_METRICS = ("val_loss", "val_auc")


@dataclass(frozen=True)
class Recipe:
    """How a Keras model is trained. Each field is a run parameter of the same name.

    ``select`` is the validation metric that picks the epoch whose weights are kept (and that
    early stopping watches); ``patience`` 0 trains every epoch and keeps the best one.
    ``weight_average`` is the momentum of an exponential moving average of the weights taken at
    each epoch's end (0 = off): validation, the epoch choice and the final model all use the
    average. ``tta`` averages the scores of the image and four one-pixel-per-16 shifts of it.
    ``mixup`` is the Beta(a, a) parameter of mixup (0 = off); ``label_smoothing`` that of the
    binary cross-entropy; ``warmup_epochs`` ramps the learning rate linearly from 0.
    """

    name: str
    description: str
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    augment: str = "seed"
    select: str = "val_loss"
    patience: int = 3
    weight_average: float = 0.0
    tta: bool = False
    epochs: int = 20
    batch_size: int = 32

    def params(self) -> dict[str, Any]:
        """The run parameters this recipe sets, ``recipe`` (its name) first."""
        out: dict[str, Any] = {"recipe": self.name}
        for f in dataclasses.fields(self):
            if f.name not in ("name", "description"):
                out[f.name] = getattr(self, f.name)
        return out


TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "description"))

SEED = Recipe(
    "seed",
    "the seed's training: Adam 1e-3, constant rate, rotation/shift/zoom augmentation, "
    "early stopping on validation loss (patience 3)",
)
MODERN = Recipe(
    "modern",
    "AdamW (weight decay 1e-4), 2 warm-up epochs then cosine decay, label smoothing 0.1, seed "
    "augmentation plus contrast/brightness, 30 epochs keeping the best validation AUC, "
    "epoch-end weight averaging, shift test-time augmentation",
    optimizer="adamw", weight_decay=1e-4, schedule="cosine", warmup_epochs=2, label_smoothing=0.1,
    augment="strong", select="val_auc", patience=0, weight_average=0.7, tta=True, epochs=30,
)
MEDMNIST = Recipe(
    "medmnist",
    "MedMNIST v2's training: Adam 1e-3, batch 128, 100 epochs, rate x0.1 at epochs 50 and 75, "
    "no augmentation, the epoch with the best validation AUC",
    schedule="step", augment="none", select="val_auc", patience=0, epochs=100, batch_size=128,
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (SEED, MODERN, MEDMNIST)}
DEFAULT_RECIPE = SEED.name

# Training settings the harness owns for every Keras model besides its recipe's. A plugin may
# change their defaults in its `defaults`; users override them with --param.
HARNESS_DEFAULTS: dict[str, Any] = {
    "class_weight": False,
    "standardize": False,
    "equalize": False,  # per-image histogram equalisation in place of /255 (training/batches.py: equalized)
}
# The per-epoch key Keras logs for each tuning objective, which its trials are pruned on (the Keras
# trainer's ``epoch_keys``); balanced accuracy is not logged per epoch, so it is pruned on validation AUC.
EPOCH_KEYS = {"val_auc": "val_auc", "val_loss": "val_loss", "val_balanced_accuracy": "val_auc"}


def all_defaults(plugin: Mapping[str, Any], own: str, asked: str | None = None) -> dict[str, Any]:
    """``KerasModel.all_defaults``: a model's ``plugin`` defaults over its ``own`` recipe, or the one ``asked``."""
    chosen = get(asked or own)
    merged = {**HARNESS_DEFAULTS, **chosen.params()}
    merged.update({k: v for k, v in plugin.items() if chosen.name == own or k not in TRAINING_FIELDS})
    return merged


def get(name: str) -> Recipe:
    """The recipe called ``name``; a one-line error listing the known ones otherwise."""
    from xraybench.errors import ParamError

    try:
        return RECIPES[str(name)]
    except KeyError:
        raise ParamError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def augment_policy(value: Any) -> str:
    """A stored ``augment`` value as a policy name: records written before recipes hold booleans."""
    if value is True or str(value).lower() in ("true", "yes", "on", "1"):
        return "seed"
    if value is False or value is None or str(value).lower() in ("false", "no", "off", "0"):
        return "none"
    if value in AUGMENT_POLICIES:
        return str(value)
    from xraybench.errors import ParamError

    raise ParamError(f"augment={value!r}: expected one of {', '.join(AUGMENT_POLICIES)}")


def check(params: dict[str, Any]) -> None:
    """The recipe fields of resolved parameters, checked before anything trains (one-line ParamError)."""
    from xraybench.errors import ParamError

    choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "select": SELECT_METRICS}
    for key, allowed in choices.items():
        if key in params and params[key] not in allowed:
            raise ParamError(f"{key}={params[key]!r}: expected one of {', '.join(allowed)}")
    if "augment" in params:
        augment_policy(params["augment"])
    ranges = {"label_smoothing": (0.0, 0.5), "weight_average": (0.0, 0.999), "mixup": (0.0, 10.0),
              "weight_decay": (0.0, 1.0)}
    for key, (low, high) in ranges.items():
        value = params.get(key)
        if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
            raise ParamError(f"{key}={value!r}: expected a number from {low:g} to {high:g}")
    for key in ("warmup_epochs", "patience"):
        value = params.get(key)
        if value is not None and not (isinstance(value, int) and value >= 0):
            raise ParamError(f"{key}={value!r}: expected a whole number >= 0")
