"""Saliency overlays as PNG: the image in grey, the map's positive part as a semi-transparent colour map on top.

Each image gets one PNG, named from its id made safe for any file system (:func:`file_name`). The
colours are matplotlib's ``turbo`` (blue-to-red, an improved jet), and the map's opacity follows its
value (0 to ``ALPHA``), so where the model found no evidence the X-ray shows through untouched.
Each map is scaled by its own maximum: an overlay shows *where* in that image, not how much
compared with another image (the maps' values do that). Small images are enlarged by whole pixels
(nearest neighbour) to at least ``MIN_SIDE``, so a 28 px map stays readable and honest about its
resolution.

Files are only ever written where xraybench wrote before: into a new (or empty) folder, which gets
the marker file ``XRAYBENCH_EXPLAIN``, or into a folder holding that marker, and there a PNG of the
same name is replaced only if it carries xraybench's generator marker (a PNG ``Software`` text
chunk, ``xraybench explain``, the convention of :mod:`xraybench.generated`). Anything else is a
one-line error before a file is written.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.generated import marker

MARKER = "XRAYBENCH_EXPLAIN"
_MARKER_TEXT = "Made by xraybench explain: saliency overlays. xraybench only writes into folders holding this file.\n"
GENERATOR = marker("explain")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEAD = 4096  # text chunks are written before the image data: within the first bytes
ALPHA = 0.6  # the opacity of the strongest saliency
MIN_SIDE = 224
COLORMAP = "turbo"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def file_name(image_id: str) -> str:
    """A safe PNG name for ``image_id``: characters other than letters, digits, ``.``, ``_`` and
    ``-`` become ``_`` (so a path's ``/`` too), a leading dot is dropped, long names are cut; and
    when anything changed, 8 hex digits of the id's SHA-256 are appended, so that two ids never
    share a file (``a/b`` and ``a_b``)."""
    stem = _UNSAFE.sub("_", image_id).lstrip(".")[:_MAX_STEM] or "image"
    if stem != image_id:
        stem = f"{stem}-{hashlib.sha256(image_id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return f"{stem}.png"


def written_by_us(path: Path) -> bool:
    """Whether ``path`` is a PNG that carries the ``xraybench explain`` generator marker."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
    except OSError:
        return False
    return head.startswith(_PNG_SIGNATURE) and b"Software\x00" + GENERATOR.encode() in head


def prepare_folder(out_dir: Path, names: Sequence[str], create: bool = True) -> None:
    """Check, before anything is written, that every file can be written without touching a file
    xraybench did not write; create the folder and its marker (``create``: a command checks first,
    before its slow part, and creates nothing then). One-line errors name the path."""
    if out_dir.is_symlink():
        raise XRayBenchError(f"{out_dir} is a symbolic link; name a new folder for the overlays")
    if out_dir.exists() and not out_dir.is_dir():
        raise XRayBenchError(f"{out_dir} exists and is not a folder; name a new folder for the overlays")
    if out_dir.is_dir() and not (out_dir / MARKER).is_file() and any(out_dir.iterdir()):
        raise XRayBenchError(f"{out_dir} holds files xraybench did not write (it has no {MARKER}); name a new or empty folder")
    for name in names:
        path = out_dir / name
        if path.is_symlink() or (path.exists() and not written_by_us(path)):
            raise XRayBenchError(f"{path} exists and was not written by {GENERATOR}; name a new folder for the overlays")
    if not create:
        existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise XRayBenchError(f"cannot write to {out_dir}: {existing or out_dir} is not a folder this process can "
                                 "write; name another folder for the overlays")
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / MARKER).is_file():
            (out_dir / MARKER).write_text(_MARKER_TEXT)
    except OSError as exc:
        raise XRayBenchError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None


def overlay_rgb(image: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """The overlay (H', W', 3) uint8 of one image (H, W, C) and its map (H, W), enlarged to MIN_SIDE."""
    from matplotlib import colormaps

    grey = np.asarray(image, dtype=np.float64).mean(axis=-1)
    low, high = grey.min(), grey.max()
    grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    heat = np.maximum(np.asarray(saliency, dtype=np.float64), 0.0)
    peak = heat.max()
    heat = heat / peak if peak > 0 else heat
    colours = colormaps[COLORMAP](heat)[..., :3]
    alpha = (ALPHA * heat)[..., None]
    rgb = (1.0 - alpha) * grey[..., None] + alpha * colours
    scale = max(1, math.ceil(MIN_SIDE / max(grey.shape)))
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", GENERATOR)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        Image.fromarray(rgb).save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise XRayBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


def render_overlays(ids: Sequence[str], images: np.ndarray, maps: np.ndarray, out_dir: Path) -> list[Path]:
    """One PNG per image in ``out_dir`` (module docstring for what may be written where); the
    paths, in the order of ``ids``."""
    images, maps = np.asarray(images), np.asarray(maps)
    if images.ndim != 4 or maps.shape != images.shape[:3] or len(ids) != len(images):
        raise XRayBenchError(f"{len(ids)} ids, images of shape {images.shape} and maps of shape {maps.shape} do not match; "
                             "give one (H, W) map per (H, W, C) image")
    if len(set(ids)) != len(ids):
        raise XRayBenchError("the image ids repeat; each overlay is named from its image id")
    names = [file_name(str(i)) for i in ids]
    if len(set(names)) != len(names):
        raise XRayBenchError("two image ids give the same overlay file name; make the ids distinct")
    out_dir = Path(out_dir)
    prepare_folder(out_dir, names)
    paths = []
    for name, image, saliency in zip(names, images, maps):
        path = out_dir / name
        _write_png(path, overlay_rgb(image, saliency))
        paths.append(path)
    return paths
