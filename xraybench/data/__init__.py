"""Data layer: readers, the decode-once cache, fingerprints and patient-grouped splits.

Names are resolved lazily so that registering the built-in readers (done for every
command, `xraybench models` included) imports neither numpy nor Pillow.
"""

from typing import Any

__all__ = ["Dataset", "Splits", "load_dataset", "locate_data"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from xraybench.data import loading

        return getattr(loading, name)
    raise AttributeError(name)
