"""The seed's augmentation (small rotations, shifts and zooms, edges repeated) as one affine warp.

Why this exists: under JAX and PyTorch, Keras' ``RandomRotation``/``RandomTranslation``/
``RandomZoom`` each resample the whole batch through ``map_coordinates`` (eight gathers per
pixel, one call per layer). On an H200 that made augmentation the whole cost of training
the seed's CNN at 150 px: without it an epoch took 0.25 s under JAX (17,600 images/s), with it
the first epoch took 43 s and the next did not finish in 10 s (docs/performance.md). Here one
matrix per image combines the three draws, and the batch is resampled once, bilinearly, with
four gathers over the flattened image: memory-bound work a GPU does in well under a millisecond.

Under TensorFlow the harness keeps Keras' three layers (a fused C++ kernel on the CPU, and the
draws behind every published CPU row), so this module is used by the other backends only.
Keras is passed in, never imported here, so that importing xraybench never loads a backend.
"""

from __future__ import annotations

import math
from typing import Any

# The seed's ranges, shared by both implementations (training/keras.py: augmentation).
ROTATION = 0.04  # fraction of a full turn, either way: +-14.4 degrees
SHIFT = 0.08  # fraction of the height and of the width, either way
ZOOM = 0.1  # +-10 % scale, the same for both axes


def affine_warp(ops: Any, images: Any, angle: Any, scale: Any, shift_y: Any, shift_x: Any) -> Any:
    """Resample ``images`` (B, H, W, C) through one rotation-zoom-shift per image; edges repeat.

    ``angle`` (radians), ``scale`` (source pixels per output pixel: > 1 zooms out) and the shifts
    (pixels; positive moves the content down/right) are (B,) tensors. Output pixel p reads the
    source at ``scale * R(angle) (p - centre) + centre - shift``, bilinearly, with coordinates
    clamped to the image (Keras' ``fill_mode="nearest"``). A zero angle and shift with scale 1 is
    the identity, exactly.
    """
    shape = ops.shape(images)
    b, h, w, c = shape[0], images.shape[1], images.shape[2], images.shape[3]
    yy, xx = ops.meshgrid(ops.arange(h, dtype="float32") - (h - 1) / 2.0,
                          ops.arange(w, dtype="float32") - (w - 1) / 2.0, indexing="ij")
    cos = ops.reshape(ops.cos(angle), (-1, 1, 1))
    sin = ops.reshape(ops.sin(angle), (-1, 1, 1))
    scale = ops.reshape(scale, (-1, 1, 1))
    src_x = scale * (cos * xx - sin * yy) + (w - 1) / 2.0 - ops.reshape(shift_x, (-1, 1, 1))
    src_y = scale * (sin * xx + cos * yy) + (h - 1) / 2.0 - ops.reshape(shift_y, (-1, 1, 1))
    src_x = ops.clip(src_x, 0.0, w - 1.0)
    src_y = ops.clip(src_y, 0.0, h - 1.0)
    x0, y0 = ops.floor(src_x), ops.floor(src_y)
    wx, wy = ops.expand_dims(src_x - x0, -1), ops.expand_dims(src_y - y0, -1)
    x0 = ops.cast(x0, "int32")
    y0 = ops.cast(y0, "int32")
    x1 = ops.minimum(x0 + 1, w - 1)
    y1 = ops.minimum(y0 + 1, h - 1)
    flat = ops.reshape(images, (b, h * w, c))

    def at(yi: Any, xi: Any) -> Any:
        index = ops.reshape(yi * w + xi, (b, h * w, 1))
        rows = ops.take_along_axis(flat, ops.repeat(index, c, axis=2), axis=1)
        return ops.reshape(rows, (b, h, w, c))

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def random_affine_layer(keras: Any, seed: int | None = None, name: str = "aug_affine") -> Any:
    """A Keras layer drawing the seed's rotation, shift and zoom per image, active in training only.

    Its seed state is a Keras variable (``SeedGenerator``), so a checkpoint restores the draws
    and a resumed run augments as the uninterrupted one would.
    """
    ops = keras.ops

    class RandomAffine(keras.layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(dtype="float32", **kwargs)  # coordinates in float32 under any policy
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images: Any, training: bool | None = None) -> Any:
            if not training:
                return images
            b = ops.shape(images)[0]
            h, w = images.shape[1], images.shape[2]

            def draw(limit: float) -> Any:
                return keras.random.uniform((b,), -limit, limit, seed=self.generator)

            return affine_warp(ops, images, draw(ROTATION * 2.0 * math.pi), 1.0 + draw(ZOOM),
                               draw(SHIFT) * h, draw(SHIFT) * w)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return RandomAffine(name=name)


# The "strong" policy's intensity ranges (recipes.py): exposure and contrast differ between the
# Kaggle split's sources (docs/examples/intensity_by_split.py), so the network is shown them varied.
CONTRAST = 0.3  # each image's contrast scaled by 1 +- this, about its own mean
BRIGHTNESS = 0.1  # then shifted by +- this (images are in [0, 1])


def random_intensity_layer(keras: Any, seed: int | None = None, name: str = "aug_intensity") -> Any:
    """A Keras layer drawing a contrast and a brightness change per image, active in training only;
    backend-neutral (``keras.ops``), its seed state a Keras variable like the warp's."""
    ops = keras.ops

    class RandomIntensity(keras.layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(dtype="float32", **kwargs)
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images: Any, training: bool | None = None) -> Any:
            if not training:
                return images
            b = ops.shape(images)[0]
            contrast = ops.reshape(1.0 + keras.random.uniform((b,), -CONTRAST, CONTRAST, seed=self.generator), (-1, 1, 1, 1))
            shift = ops.reshape(keras.random.uniform((b,), -BRIGHTNESS, BRIGHTNESS, seed=self.generator), (-1, 1, 1, 1))
            mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
            return ops.clip((images - mean) * contrast + mean + shift, 0.0, 1.0)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return RandomIntensity(name=name)
