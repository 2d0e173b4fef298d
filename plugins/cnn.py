"""The seed's CNN (``baseline_cnn``) and its two closest variants.

All three train at 32 px by default (:data:`IMAGE_SIZE`), chosen by the resolution study in
``leaderboards/resolution/RESOLUTION.md``: on this test set the seed's 150 px bought no accuracy
(it lost some), and at 32 px a run takes one to two minutes on a 2-core CPU instead of tens of
minutes. The seed's own resolution is one flag away: ``--image-size 150``.
"""

from __future__ import annotations

from typing import Any

from xraybench import KerasModel, hookimpl

IMAGE_SIZE = 32  # leaderboards/resolution/RESOLUTION.md


def _seed_trunk(keras, x, filters: tuple[int, int, int]):
    """Conv2D(32) - MaxPool - Conv2D(64) - Conv2D(64) - MaxPool, as in the seed."""
    f1, f2, f3 = filters
    x = keras.layers.Conv2D(f1, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(f2, 3, activation="relu")(x)
    x = keras.layers.Conv2D(f3, 3, activation="relu")(x)
    return keras.layers.MaxPooling2D(2)(x)


def build_baseline(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """The seed's exact network: ... Flatten - Dense(128) - relu - Dropout(0.5) - Dense(1) - sigmoid."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = _seed_trunk(keras, inputs, (32, 64, 64))
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(int(params.get("dense_units", 128)))(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.5)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")


def build_bn(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """The seed's trunk with batch normalisation and global average pooling in place of Flatten + Dense."""
    import keras

    width = int(params.get("width", 32))
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, filters in enumerate((width, 2 * width, 2 * width)):
        x = keras.layers.Conv2D(filters, 3, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        if i != 1:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.3)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn_bn")


def _baseline_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.2, 0.6),
        "dense_units": trial.suggest_categorical("dense_units", [64, 128, 256]),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _bn_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "width": trial.suggest_categorical("width", [16, 32, 48]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


@hookimpl
def register_models(register) -> None:
    register(
        KerasModel(
            name="baseline_cnn",
            description="The seed's CNN: 3 conv layers, Flatten, Dense(128), dropout 0.5; augmentation, no class weights",
            defaults={"dense_units": 128, "dropout": 0.5, "epochs": 25},
            search_space=_baseline_space,
            build=build_baseline,
            image_size=IMAGE_SIZE,
            reference=True,  # the seed's network: the leaderboard's ΔAcc and paired test compare with it
        )
    )
    register(
        KerasModel(
            name="baseline_cnn_bn",
            description="baseline_cnn + batch norm, global average pooling instead of Flatten + Dense(128)",
            defaults={"width": 32, "dropout": 0.3, "epochs": 25},
            search_space=_bn_space,
            build=build_bn,
            image_size=IMAGE_SIZE,
        )
    )
    register(
        KerasModel(
            name="baseline_cnn_weighted",
            description="baseline_cnn trained with class weights inverse to class frequency",
            defaults={"dense_units": 128, "dropout": 0.5, "epochs": 25, "class_weight": True},
            search_space=_baseline_space,
            build=build_baseline,
            image_size=IMAGE_SIZE,
        )
    )
