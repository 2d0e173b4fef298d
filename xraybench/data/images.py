"""Decoding one image file into a uint8 array of a fixed square size.

X-rays arrive as 8-bit grayscale JPEGs, 3-channel JPEG copies, 16-bit PNGs,
palette or CMYK images; all of them end up as uint8 at the requested size with
one (grayscale) or three channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from xraybench.errors import first_line


class BadImage(Exception):
    """The file is not a decodable image; the message says why in a few words."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and float images to 8 bits by their own range (min-max)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    return img


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """``img`` at 8 bits as L (one channel) or RGB (three); palette, alpha and CMYK images reach L through RGB."""
    img = _to_8bit(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target and img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1") and target == "L":
        img = img.convert("RGB")
    return img if img.mode == target else img.convert(target)


def resize_array(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3) array as (size, size, channels), resized bilinearly."""
    img = Image.fromarray(np.ascontiguousarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def decode_image(path: Path, size: int, channels: int) -> tuple[np.ndarray, str, tuple[int, int]]:
    """Return (uint8 array (size, size, channels), original mode, original (w, h))."""
    try:
        with Image.open(path) as opened:
            mode, original_size = opened.mode, opened.size
            if opened.format == "JPEG":
                # Let libjpeg decode at a reduced scale when the original is much larger.
                opened.draft("L" if channels == 1 else "RGB", (size, size))
            opened.load()
            img = to_mode(opened, channels)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:
        raise BadImage("not an image file") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too large to decode safely: {first_line(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(first_line(exc)) from None
    except Exception as exc:  # a malformed file can trip any error inside a Pillow plugin: still one bad file
        raise BadImage(f"cannot decode it ({type(exc).__name__}: {first_line(exc)})") from None
    return (arr[:, :, None] if arr.ndim == 2 else arr), mode, original_size
