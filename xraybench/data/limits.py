"""Limits on what a user may ask of the data layer, in one place, importing nothing heavy.

The CLI's ``--image-size`` (every command) and ``load_dataset`` both check through
``check_image_size``, so ``0`` or ``-5`` is a one-line error everywhere instead of
falling back to a model's default size or failing deep inside a model.
"""

from __future__ import annotations

from xraybench.errors import DataError

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024


def check_image_size(value: object, flag: str = "--image-size") -> int:
    """``value`` as a whole number of pixels in range, else a DataError naming it and the range."""
    if isinstance(value, bool):
        value = repr(value)
    try:
        # Any value: int() raises TypeError or ValueError on what it cannot take, caught below.
        size = int(value) if not isinstance(value, float) or value.is_integer() else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        size = None
    if size is None or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DataError(f"{flag} {value} is not a size xraybench can use; give a whole number of pixels from "
                        f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
    return size
