"""MedMNIST v2's ResNet-18 (Yang et al. 2023), from scratch, as its authors train it.

At 28 px MedMNIST uses the CIFAR form of ResNet-18: a 3x3 stride-1 stem without max-pooling,
then four stages of two basic blocks (64, 128, 256, 512 filters), global average pooling and
one output. Larger inputs (their 64 px and 224 px rows) use torchvision's ImageNet stem (7x7
stride 2, then 3x3 max-pooling); ``stem=auto`` picks by size as they did. Its recipe is theirs
(``medmnist``: Adam 1e-3, batch 128, 100 epochs, rate x0.1 at 50 and 75, best validation AUC,
no augmentation), so its row is the like-for-like of their published 0.854 at 28 px.
``width`` scales every stage (64 is theirs); a narrower net is a documented variant, not a
different model.
"""

from __future__ import annotations

from typing import Any

from xraybench import KerasModel, hookimpl

IMAGE_SIZE = 28  # MedMNIST's PneumoniaMNIST resolution; --image-size 64 for their larger row


def basic_block(keras, x, filters: int, stride: int):
    """ResNet's basic block: two 3x3 convolutions with batch norm, a projected shortcut where the
    shape changes (also the block of zoo.py's narrow ``resnet_small``)."""
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = keras.layers.BatchNormalization()(shortcut)
    return keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))


def build_resnet18(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """ResNet-18: stem, 4 stages x 2 basic blocks, global average pooling, one sigmoid output."""
    import keras

    width = int(params.get("width", 64))
    stem = str(params.get("stem", "auto"))
    if stem == "auto":
        stem = "cifar" if input_shape[0] <= 32 else "imagenet"
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem={stem!r}: expected auto, cifar or imagenet")
    inputs = keras.Input(shape=input_shape)
    if stem == "cifar":
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    else:
        x = keras.layers.Conv2D(width, 7, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    if stem == "imagenet":
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage in range(4):
        for block in range(2):
            x = basic_block(keras, x, width * 2**stage, 2 if stage > 0 and block == 0 else 1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.0)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet18")


def _space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "width": trial.suggest_categorical("width", [16, 32, 64]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
    }


@hookimpl
def register_models(register) -> None:
    register(
        KerasModel(
            name="resnet18",
            description="MedMNIST v2's ResNet-18 from scratch (CIFAR stem at <= 32 px), trained with their recipe",
            defaults={"width": 64, "stem": "auto", "dropout": 0.0},
            search_space=_space,
            build=build_resnet18,
            image_size=IMAGE_SIZE,
            recipe="medmnist",
        )
    )
