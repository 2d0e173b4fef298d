"""xraybench: plugin-based, reproducible benchmarking of pneumonia classifiers on chest X-rays.

Importing this package is cheap on purpose (no keras, no backend, not even pluggy): the
CLI's non-training commands and every plugin module import it at start-up. The public
names below are resolved on first use (PEP 562), so ``xraybench leaderboard`` does not pay
for the plugin machinery it never touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DatasetSpec",
    "GenericModel",
    "ImageSet",
    "KerasModel",
    "ModelSpec",
    "hookimpl",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from xraybench.hookspecs import hookimpl
    from xraybench.specs import DatasetSpec, GenericModel, ImageSet, KerasModel, ModelSpec


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from xraybench.hookspecs import hookimpl

        return hookimpl
    if name in __all__:
        from xraybench import specs

        return getattr(specs, name)
    raise AttributeError(f"module 'xraybench' has no attribute {name!r}")
