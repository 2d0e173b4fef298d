"""Occlusion sensitivity: where hiding part of an image changes a model's score (forward passes only).

Why this method: it needs nothing from a model but its score function, so it explains every
plugin the same way, whatever its library (Keras on any backend, scikit-learn, a plugin's own
code), and its maps from two models can be compared. It is Zeiler & Fergus's occlusion
(2014, "Visualizing and understanding convolutional networks", ECCV): a square patch filled
with a neutral value (the image's own mean, per channel, so that the patch adds no edge or
brightness the model has not seen) slides over the image with a stride; each position's
saliency is how much the score of the explained class drops when that patch is hidden, and a
pixel's saliency is the mean over the patch positions that cover it.

What is explained (``target``): by default the class the model *predicted* at ``threshold``
(saliency = drop in P(PNEUMONIA) for an image called PNEUMONIA, drop in P(NORMAL) = 1 - score
for one called NORMAL), so that a NORMAL call read from a text marker shows up as much as a
PNEUMONIA call does; ``"positive"`` explains P(PNEUMONIA) on every image. Maps are signed and
in score units (0.2: hiding the patch lowers the explained class's score by 0.2 on average);
negative values are evidence against the explained class. Overlays and the shortcut check use
the positive part only.

Cost: ``N * (1 + K)`` forward passes for N images, with ``K = len(rows) * len(cols)`` patch
positions (:func:`patch_grid`; patch and stride scale with the image, so K is 169 at 28 px and
225 at 32, 64, 224 and 1024 px, near 225 at any size: the cost per image is about K predictions). The
occluded copies are built vectorised and scored in batches of at most ``batch_size`` (by default
as many as fit in 64 MiB), so a model's batched prediction runs at full width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from xraybench.errors import XRayBenchError

Target = Literal["predicted", "positive"]
PATCH_FRACTION = 1 / 8  # patch side as a share of the image side: 4 px at 28 px, 28 px at 224 px
BATCH_BYTES = 64 * 2**20  # occluded copies held at once


@dataclass(frozen=True)
class PatchGrid:
    """Where the occluding patch goes: its size and stride per axis and the top-left corners."""

    patch: tuple[int, int]
    stride: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def positions(self) -> int:
        """K: occluded copies per image (the cost is N * (1 + K) forward passes)."""
        return len(self.rows) * len(self.cols)


def _starts(side: int, patch: int, stride: int) -> tuple[int, ...]:
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:  # the last row/column of pixels is always covered: the border matters here
        starts.append(side - patch)
    return tuple(starts)


def patch_grid(height: int, width: int, patch: int | None = None, stride: int | None = None) -> PatchGrid:
    """The patch positions for an image of ``height`` x ``width``: by default a patch of
    ceil(side / 8) pixels and a stride of half a patch, so a pixel is hidden by about four
    positions and the cost in forward passes does not grow with the image."""
    ph = patch if patch is not None else max(1, math.ceil(height * PATCH_FRACTION))
    pw = patch if patch is not None else max(1, math.ceil(width * PATCH_FRACTION))
    if not (1 <= ph <= height and 1 <= pw <= width):
        raise XRayBenchError(f"occlusion patch {patch} px does not fit a {height}x{width} image; "
                             f"choose 1 to {min(height, width)}")
    sh = stride if stride is not None else max(1, ph // 2)
    sw = stride if stride is not None else max(1, pw // 2)
    if sh < 1 or sw < 1:
        raise XRayBenchError(f"occlusion stride {stride} must be at least 1 px")
    return PatchGrid((ph, pw), (sh, sw), _starts(height, ph, sh), _starts(width, pw, sw))


def check_images(images: np.ndarray) -> np.ndarray:
    """Images as (N, H, W, C) with finite values, or a one-line error saying what arrived."""
    array = np.asarray(images)
    if array.ndim != 4 or min(array.shape) < 1:
        raise XRayBenchError(f"images must be an array of shape (N, H, W, C), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise XRayBenchError(f"images must hold numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise XRayBenchError("images hold NaN or infinite values; pass them preprocessed as in training")
    return array


def _scored(score: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    out = np.asarray(score(batch), dtype=np.float64)
    if out.shape == (len(batch), 1):
        out = out[:, 0]
    if out.shape != (len(batch),):
        raise XRayBenchError(f"the score function returned shape {out.shape} for {len(batch)} images; "
                             "it must return one positive-class score per image")
    if not np.isfinite(out).all():
        raise XRayBenchError("the score function returned NaN or infinite scores")
    return out


def class_sign(scores: np.ndarray, target: Target, threshold: float) -> np.ndarray:
    """+1 where the explained class is PNEUMONIA, -1 where it is NORMAL (``target`` "predicted":
    the class called at ``threshold``; "positive": PNEUMONIA always)."""
    if target == "positive":
        return np.ones(len(scores))
    if target == "predicted":
        return np.where(np.asarray(scores) >= threshold, 1.0, -1.0)
    raise XRayBenchError(f"unknown saliency target {target!r}; choose predicted or positive")


def occlusion_maps(score: Callable[[np.ndarray], np.ndarray], images: np.ndarray, *, patch: int | None = None,
                   stride: int | None = None, target: Target = "predicted", threshold: float = 0.5,
                   batch_size: int | None = None) -> np.ndarray:
    """Per-image occlusion saliency (N, H, W), float32, signed, in score units (module docstring).

    ``score(images) -> scores``: P(PNEUMONIA) per image for a batch (N, H, W, C) in the form the
    model takes (``LoadedModel.scores``). The fill keeps the images' dtype (an integer image gets
    its rounded mean)."""
    images = check_images(images)
    n, h, w, c = images.shape
    grid = patch_grid(h, w, patch, stride)
    if batch_size is None:
        batch_size = int(np.clip(BATCH_BYTES // max(1, h * w * c * images.itemsize), 1, 1024))
    if batch_size < 1:
        raise XRayBenchError(f"batch size {batch_size} must be at least 1")
    base = np.concatenate([_scored(score, images[i:i + batch_size]) for i in range(0, n, batch_size)])
    sign = class_sign(base, target, threshold)

    masks = np.zeros((grid.positions, h, w), dtype=bool)  # K masks, one per patch position
    corners = [(r, q) for r in grid.rows for q in grid.cols]
    for k, (r, q) in enumerate(corners):
        masks[k, r:r + grid.patch[0], q:q + grid.patch[1]] = True
    fill = images.reshape(n, h * w, c).mean(axis=1)  # (N, C): the neutral value, per image and channel
    if np.issubdtype(images.dtype, np.integer):
        fill = np.rint(fill)
    fill = fill.astype(images.dtype)

    total = n * grid.positions
    drops = np.empty(total, dtype=np.float64)
    for start in range(0, total, batch_size):
        flat = np.arange(start, min(start + batch_size, total))
        which, pos = flat // grid.positions, flat % grid.positions
        copies = np.where(masks[pos][..., None], fill[which][:, None, None, :], images[which])
        drops[flat] = base[which] - _scored(score, copies)
    drops = drops.reshape(n, grid.positions) * sign[:, None]

    # A pixel's saliency: the mean drop over the positions that hide it (every pixel is hidden by at least one).
    weights = masks.reshape(grid.positions, h * w).astype(np.float64)
    summed = drops @ weights
    covered = weights.sum(axis=0)
    return (summed / covered).reshape(n, h, w).astype(np.float32)


def forward_passes(n_images: int, height: int, width: int, patch: int | None = None, stride: int | None = None) -> int:
    """What :func:`occlusion_maps` costs: ``N * (1 + K)`` single-image predictions."""
    return n_images * (1 + patch_grid(height, width, patch, stride).positions)
