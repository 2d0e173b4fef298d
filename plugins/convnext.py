"""A small ConvNeXt (Liu et al. 2022) from Keras layers, sized for 32-64 px chest X-rays.

Why this family: it is the modern all-convolutional design (depthwise 7x7 convolutions, layer
normalisation, inverted-bottleneck MLPs with GELU, layer scale, few activations), trained from
scratch with the ``modern`` recipe it was designed with (AdamW, warm-up + cosine, label
smoothing, strong augmentation, weight averaging). ``keras.applications.ConvNeXtTiny`` is 28 M
parameters for 224 px ImageNet; this one keeps its block and shrinks the stem (2x2 stride 2
patches instead of 4x4, so a 32 px image still has four stages) and the widths (16 to 128 by
default: at width 32 a run took over 10 minutes on the 2-core CPU, the budget a default keeps).
"""

from __future__ import annotations

from typing import Any

from xraybench import KerasModel, hookimpl

IMAGE_SIZE = 32  # like baseline_cnn (leaderboards/resolution); --image-size 64 doubles each side


def _block(keras, x, dim: int, layer_scale: float):
    y = keras.layers.DepthwiseConv2D(7, padding="same")(x)
    y = keras.layers.LayerNormalization(epsilon=1e-6)(y)
    y = keras.layers.Dense(4 * dim, activation="gelu")(y)
    y = keras.layers.Dense(dim, kernel_initializer=keras.initializers.Constant(0.0) if layer_scale == 0 else "glorot_uniform")(y)
    if layer_scale > 0:
        y = LayerScale(keras)(dim, layer_scale)(y)
    return keras.layers.Add()([x, y])


def LayerScale(keras):  # a layer class, made where keras is imported
    class Scale(keras.layers.Layer):  # type: ignore[name-defined]  # a base made at run time
        def __init__(self, dim: int, init: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dim, self.init = dim, init

        def build(self, input_shape):
            self.gamma = self.add_weight(shape=(self.dim,), initializer=keras.initializers.Constant(self.init), name="gamma")

        def call(self, x):
            return x * self.gamma

        def get_config(self):  # what a saved model (.keras) rebuilds the layer from
            return {**super().get_config(), "dim": self.dim, "init": self.init}

    return Scale


def build_convnext(input_shape: tuple[int, int, int], params: dict[str, Any]):
    """Stem (2x2 patches, stride 2), four stages of ConvNeXt blocks with 2x2 stride-2 downsampling
    between them, global average pooling, layer norm, one sigmoid output."""
    import keras

    width = int(params.get("width", 32))
    depths = [int(d) for d in params.get("depths", [2, 2, 4, 2])]
    scale = float(params.get("layer_scale", 1e-6))
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(width, 2, strides=2)(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    for stage, depth in enumerate(depths):
        dim = width * 2**stage
        if stage > 0:
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
            x = keras.layers.Conv2D(dim, 2, strides=2, padding="same")(x)
        for _ in range(depth):
            x = _block(keras, x, dim, scale)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = keras.layers.Dropout(float(params.get("dropout", 0.2)))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="convnext_nano")


def _space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 5e-3, log=True),
        "width": trial.suggest_categorical("width", [16, 32, 48]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 5e-2, log=True),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
    }


@hookimpl
def register_models(register) -> None:
    register(
        KerasModel(
            name="convnext_nano",
            description="A ConvNeXt from scratch (widths 16-128, depths 2-2-4-2, 2x2 stem), trained with the modern recipe",
            defaults={"width": 16, "depths": [2, 2, 4, 2], "layer_scale": 1e-6, "dropout": 0.2, "learning_rate": 2e-3},
            search_space=_space,
            build=build_convnext,
            image_size=IMAGE_SIZE,
            recipe="modern",
        )
    )
