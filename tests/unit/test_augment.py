"""The fused augmentation warp (xraybench/training/augment.py): geometry checked against NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")

from xraybench.training import augment  # noqa: E402
from xraybench.training.keras import augmentation  # noqa: E402


def _warp(images: np.ndarray, angle: float = 0.0, scale: float = 1.0, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    b = len(images)
    full = lambda v: np.full((b,), v, dtype="float32")  # noqa: E731
    out = augment.affine_warp(keras.ops, keras.ops.convert_to_tensor(images), full(angle), full(scale), full(dy), full(dx))
    return keras.ops.convert_to_numpy(out)


def _images(b: int = 2, h: int = 9, w: int = 7, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, h, w, c)).astype("float32")


def test_no_rotation_zoom_or_shift_is_the_identity_exactly():
    x = _images(c=3)
    np.testing.assert_array_equal(_warp(x), x)


@settings(max_examples=30, deadline=None)
@given(dy=st.integers(-4, 4), dx=st.integers(-4, 4), c=st.sampled_from([1, 3]))
def test_a_whole_pixel_shift_moves_the_content_and_repeats_the_edge(dy, dx, c):
    x = _images(h=8, w=6, c=c)
    h, w = x.shape[1:3]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    expected = x[:, rows][:, :, cols]
    np.testing.assert_allclose(_warp(x, dy=float(dy), dx=float(dx)), expected, atol=1e-6)


def test_a_quarter_turn_of_a_square_image_is_numpys_rot90():
    x = _images(h=7, w=7)
    turned = _warp(x, angle=math.pi / 2)
    candidates = [np.rot90(x, k, axes=(1, 2)) for k in (1, 3)]
    assert any(np.allclose(turned, c, atol=1e-5) for c in candidates)


def test_half_pixel_shift_interpolates_bilinearly():
    x = np.zeros((1, 1, 4, 1), dtype="float32")
    x[0, 0, :, 0] = [0.0, 2.0, 4.0, 6.0]
    np.testing.assert_allclose(_warp(x, dx=0.5)[0, 0, :, 0], [0.0, 1.0, 3.0, 5.0], atol=1e-6)


def test_layer_draws_in_training_only_and_the_seed_fixes_the_draws():
    x = _images(b=4, h=16, w=16)
    a, b = augment.random_affine_layer(keras, seed=3), augment.random_affine_layer(keras, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a(x, training=False)), x)
    first = keras.ops.convert_to_numpy(a(x, training=True))
    assert not np.allclose(first, x)
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(b(x, training=True)))
    assert first.min() >= x.min() - 1e-6 and first.max() <= x.max() + 1e-6  # bilinear: no new extremes


def test_tensorflow_keeps_kerass_layers_and_other_backends_get_the_fused_warp(monkeypatch):
    names = [layer.name for layer in augmentation(keras)]
    if keras.backend.backend() == "tensorflow":
        assert names == ["aug_rotate", "aug_shift", "aug_zoom"]
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert [layer.name for layer in augmentation(keras)] == ["aug_affine"]
