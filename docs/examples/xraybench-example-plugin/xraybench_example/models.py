"""An example third-party plugin: everything it uses is xraybench's public API."""

from __future__ import annotations

import xraybench


def build_tiny_cnn(input_shape, params):
    import keras  # inside build: listing models must not import keras

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (8, 16, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs)


class NearestCentroid:
    """Scores by distance to the mean NORMAL and mean PNEUMONIA image."""

    def __init__(self, params, seed):
        self.temperature = params["temperature"]

    def fit(self, train, val):
        import numpy as np  # heavy imports inside methods keep `xraybench models` fast

        x = train.images.reshape(len(train), -1).astype(np.float32) / 255.0
        self.centroids = np.stack([x[train.labels == c].mean(axis=0) for c in (0, 1)])
        return self

    def predict_proba(self, images):
        import numpy as np

        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        d = ((x[:, None, :] - self.centroids[None]) ** 2).mean(axis=2)
        logits = (d[:, 0] - d[:, 1]) / self.temperature
        return 1.0 / (1.0 + np.exp(-logits))


@xraybench.hookimpl
def register_models(register):
    register(xraybench.KerasModel(
        name="example_tiny_cnn",
        description="example plugin: 3 conv layers, global pooling",
        defaults={"dropout": 0.2, "epochs": 10},
        search_space=lambda trial: {"dropout": trial.suggest_float("dropout", 0.0, 0.5)},
        build=build_tiny_cnn,
        image_size=64,
    ))
    register(xraybench.GenericModel(
        name="example_centroid",
        description="example plugin: nearest class centroid on pixels",
        defaults={"temperature": 0.01},
        create=NearestCentroid,
        image_size=32,
    ))
