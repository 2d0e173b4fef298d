"""The shortcut check: how much of a saliency map lies on the image border and corners rather than the lungs.

Why: the pediatric chest X-rays of Kermany et al. (2018) carry text markers (L/R, hospital and
technician labels), rulers and hospital-specific borders and collimation edges, and they sit in
the outer band of the film, most often in its corners. A model that reads them can score well for
the wrong reason (Zech et al. 2018, "Variable generalization performance of a deep learning model
to detect pneumonia in chest radiographs", PLOS Medicine, found exactly this: CNNs recognised the
hospital from such marks). Where a model's evidence lies is a check its accuracy cannot give.

Geometry (fractions of each side, so it holds at every image size; :func:`regions`):

- **border**: the outer band, ``BAND`` = 12.5% of the side wide on each edge (rounded half up, at
  least one pixel), corners included: 43.75% of the area of a square image whose side is a multiple
  of 8 (49% at 28 px, where the band rounds up to 4 px). Markers and borders sit there.
- **corners**: the four ``BAND`` x ``BAND`` squares at the band's corners (a part of the border,
  6.25% of the area): where text labels sit most often.
- **lung field**: the ellipse centred on the image and inscribed in the inner box the band leaves
  (semi-axes 37.5% of each side, about 44% of the area; a pixel counts when its centre is inside).
  Centred, cropped chest films put both lungs there; it is a fixed proxy, not a segmentation (the
  heart and mediastinum are inside it, and a badly centred film puts some lung outside), which is
  enough to tell "looks at the chest" from "looks at the frame".

Border and lung field never overlap; the rest (the inner box's four corners outside the ellipse,
about 12%) belongs to neither. A share is the positive part of the map inside the region over the
positive part of the whole map (negative saliency, evidence against the explained class, is left
out: that is where the model does *not* find its answer). A uniform map gives each region its area
share, the ``uniform_*`` figures: a border share well above ``uniform_border_share`` means the model
draws more of its evidence from the frame than chance would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xraybench.errors import XRayBenchError

BAND = 0.125  # the border band's width, as a share of the side


@dataclass(frozen=True)
class Regions:
    """Boolean masks (H, W) of the three regions of an image of one size."""

    border: np.ndarray
    corners: np.ndarray
    lung: np.ndarray


def band_width(side: int) -> int:
    """The border band's width in pixels: 12.5% of the side rounded half up, at least 1."""
    return max(1, int(side * BAND + 0.5))


def regions(height: int, width: int) -> Regions:
    """The border band, its corners and the central lung-field ellipse (module docstring)."""
    if height < 2 or width < 2:
        raise XRayBenchError(f"a {height}x{width} map is too small for the shortcut check; it needs at least 2x2 pixels")
    bh, bw = band_width(height), band_width(width)
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    edge_rows = (rows < bh) | (rows >= height - bh)
    edge_cols = (cols < bw) | (cols >= width - bw)
    border = edge_rows | edge_cols
    corners = edge_rows & edge_cols
    # Semi-axes reach the band's inner edge, so the ellipse and the band are disjoint by construction.
    ay, ax = height / 2 - bh, width / 2 - bw
    if ay <= 0 or ax <= 0:  # the band covers the whole image (2 px sides): no lung field
        lung = np.zeros((height, width), dtype=bool)
    else:
        lung = ((rows + 0.5 - height / 2) / ay) ** 2 + ((cols + 0.5 - width / 2) / ax) ** 2 <= 1.0
    return Regions(border=border, corners=corners, lung=lung & ~border)


@dataclass(frozen=True)
class ImageShares:
    """One map's share of positive saliency in each region."""

    border: float
    corners: float
    lung: float


def image_shares(saliency: np.ndarray, where: Regions | None = None) -> ImageShares | None:
    """The shares of one map (H, W); None when it has no positive saliency (nothing to share)."""
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise XRayBenchError(f"a saliency map must be 2-D (H, W), got shape {saliency.shape}")
    if not np.isfinite(saliency).all():
        raise XRayBenchError("the saliency map holds NaN or infinite values")
    where = where or regions(*saliency.shape)
    mass = np.maximum(saliency, 0.0)
    total = mass.sum()
    if total <= 0:
        return None
    return ImageShares(border=float(mass[where.border].sum() / total), corners=float(mass[where.corners].sum() / total),
                       lung=float(mass[where.lung].sum() / total))


@dataclass(frozen=True)
class ShortcutShares:
    """A run's shortcut check: the shares of saliency mass on the border, its corners and the lung
    field, averaged over images (each image counts once, whatever its map's scale), beside each
    region's area share (what a uniform map gives). ``method`` names the saliency method
    (``occlusion`` or ``gradcam``); ``n_images`` the maps averaged; ``n_without_saliency`` the maps
    left out because nothing in them was positive (the explained score never dropped)."""

    border_share: float
    corner_share: float
    lung_share: float
    uniform_border_share: float
    uniform_corner_share: float
    uniform_lung_share: float
    method: str
    n_images: int
    n_without_saliency: int = 0

    @property
    def border_ratio(self) -> float:
        """border_share / uniform_border_share: above 1, the border draws more evidence than its area."""
        return self.border_share / self.uniform_border_share

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a record or a report."""
        return asdict(self)


def shortcut_check(maps: np.ndarray, method: str) -> ShortcutShares:
    """Average the shares over a run's maps (N, H, W); a one-line error when no map has any
    positive saliency (the score never dropped under the method: nothing to locate)."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) == 0:
        raise XRayBenchError(f"saliency maps must be an array of shape (N, H, W) with N >= 1, got shape {maps.shape}")
    where = regions(maps.shape[1], maps.shape[2])
    shares = [image_shares(m, where) for m in maps]
    kept = [s for s in shares if s is not None]
    if not kept:
        raise XRayBenchError(f"none of the {len(maps)} {method} maps has positive saliency: the explained score never "
                             "dropped, so there is nothing to locate")
    return ShortcutShares(
        border_share=float(np.mean([s.border for s in kept])),
        corner_share=float(np.mean([s.corners for s in kept])),
        lung_share=float(np.mean([s.lung for s in kept])),
        uniform_border_share=float(where.border.mean()),
        uniform_corner_share=float(where.corners.mean()),
        uniform_lung_share=float(where.lung.mean()),
        method=method,
        n_images=len(kept),
        n_without_saliency=len(maps) - len(kept),
    )
