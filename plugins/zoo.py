"""Deeper Keras models: a VGG-style CNN, a small ResNet and MobileNetV3-Small from scratch.

They train at 64 px by default (:data:`IMAGE_SIZE`): the size of every published run of theirs
(leaderboards/runs). Their earlier 128 px default had no finished run on a CPU, and the
resolution study (leaderboards/resolution) found no gain above 32 px for the seed's family.
"""

from __future__ import annotations

from typing import Any

from xraybench import KerasModel, hookimpl

IMAGE_SIZE = 64  # the size of their published rows (module docstring)


def build_deep(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """Conv blocks (two 3x3 convs + BN + ReLU, max-pool, spatial dropout) then global pooling."""
    import keras

    width = int(params.get("width", 16))
    blocks = int(params.get("blocks", 5))
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for b in range(blocks):
        filters = min(width * 2**b, 256)
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
        if b >= 2:
            x = keras.layers.SpatialDropout2D(float(params.get("conv_dropout", 0.1)))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.4)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="deep_cnn")


def build_resnet(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """A narrow ResNet (basic blocks, stages of ``blocks_per_stage``; ResNet-10 by default)."""
    import keras

    from xraybench_plugins.resnet18 import basic_block

    width = int(params.get("width", 16))
    per_stage = int(params.get("blocks_per_stage", 1))
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(width, 7, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage in range(4):
        filters = width * 2**stage
        for block in range(per_stage):
            x = basic_block(keras, x, filters, 2 if stage > 0 and block == 0 else 1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.3)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


def build_mobilenet(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """keras.applications.MobileNetV3Small, from scratch by default.

    ``weights="imagenet"`` starts from ImageNet weights (needs a download, so it
    is off by default); grayscale input is repeated to 3 channels first.
    """
    import keras

    weights = params.get("weights") or None
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if input_shape[-1] == 1:
        x = keras.layers.Concatenate()([x, x, x])
    x = keras.layers.Rescaling(255.0)(x)  # the application's own preprocessing expects [0, 255]
    base = keras.applications.MobileNetV3Small(
        input_shape=(input_shape[0], input_shape[1], 3),
        include_top=False,
        weights=weights,
        alpha=float(params.get("alpha", 1.0)),
        minimalistic=bool(params.get("minimalistic", False)),
        include_preprocessing=True,
        dropout_rate=0.0,
    )
    # keras.applications builds its batch norms with momentum 0.999, tuned for ImageNet's
    # hundreds of thousands of steps. From scratch on ~140 steps per epoch the moving
    # statistics stay near their initial values for the whole run, so the network that
    # trains well predicts one class in inference mode (measured: validation AUC 0.60 after
    # 9 epochs, every test image PNEUMONIA). A shorter memory fixes that.
    momentum = float(params.get("bn_momentum", 0.9))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.3)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v3_small")


def _deep_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "width": trial.suggest_categorical("width", [8, 16, 24]),
        "blocks": trial.suggest_int("blocks", 4, 5),
        "dropout": trial.suggest_float("dropout", 0.1, 0.5),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _resnet_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "width": trial.suggest_categorical("width", [8, 16, 24]),
        "blocks_per_stage": trial.suggest_int("blocks_per_stage", 1, 2),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _mobilenet_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        "alpha": trial.suggest_categorical("alpha", [0.75, 1.0]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


@hookimpl
def register_models(register) -> None:
    register(
        KerasModel(
            name="deep_cnn",
            description="5 VGG-style blocks (2 convs + BN each), spatial dropout, global pooling; deeper than baseline_cnn",
            defaults={"width": 16, "blocks": 5, "dropout": 0.4, "conv_dropout": 0.1, "epochs": 25, "class_weight": True},
            search_space=_deep_space,
            build=build_deep,
            image_size=IMAGE_SIZE,
        )
    )
    register(
        KerasModel(
            name="resnet_small",
            description="a narrow ResNet-10 (residual blocks, BN, global pooling) instead of baseline_cnn's plain stack",
            defaults={"width": 16, "blocks_per_stage": 1, "dropout": 0.3, "epochs": 25, "class_weight": True},
            search_space=_resnet_space,
            build=build_resnet,
            image_size=IMAGE_SIZE,
        )
    )
    register(
        KerasModel(
            name="mobilenet_v3_small",
            description="keras.applications MobileNetV3Small trained from scratch (weights=imagenet optional)",
            defaults={"alpha": 1.0, "minimalistic": False, "dropout": 0.3, "weights": "", "bn_momentum": 0.9,
                      "epochs": 25, "class_weight": True},
            search_space=_mobilenet_space,
            build=build_mobilenet,
            image_size=IMAGE_SIZE,
        )
    )
