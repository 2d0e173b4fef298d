"""xraybench: plugin-based, reproducible benchmarking of pneumonia classifiers on chest X-rays.

The plugin API is exactly ``__all__`` below, plus the hooks declared in
``xraybench.hookspecs`` and the test helpers in ``xraybench.testing``; docs/api.md is
generated from their docstrings (``python docs/apidoc.py``). Every other module
and name is internal and may change without notice.

Importing this package is cheap on purpose (no keras, no backend, not even pluggy): the
CLI's non-training commands and every plugin module import it at start-up. The public
names are resolved on first use (PEP 562), so ``xraybench leaderboard`` does not pay
for the plugin machinery it never touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (the one place each lives).
_EXPORTS: dict[str, str] = {
    "hookimpl": "xraybench.hookspecs",
    "KerasModel": "xraybench.specs",
    "GenericModel": "xraybench.specs",
    "ModelSpec": "xraybench.specs",
    "Estimator": "xraybench.specs",
    "ParamCounted": "xraybench.specs",
    "DatasetSpec": "xraybench.specs",
    "RawDataset": "xraybench.specs",
    "ReaderStats": "xraybench.specs",
    "ClassStats": "xraybench.specs",
    "ImageSet": "xraybench.specs",
    "LABELS": "xraybench.specs",
    "load_registry": "xraybench.plugins",
    "register_trainer": "xraybench.training",
    "Registry": "xraybench.plugins",
    "PluginInfo": "xraybench.plugins",
    "PluginStatus": "xraybench.plugins",
    "XRayBenchError": "xraybench.errors",
    "DataError": "xraybench.errors",
    "PluginError": "xraybench.errors",
}

# Spelled out (not built from _EXPORTS) so that linters and type checkers see the re-exports;
# tests/unit/test_api.py keeps the two equal.
__all__ = [
    "hookimpl",
    "KerasModel",
    "GenericModel",
    "ModelSpec",
    "Estimator",
    "ParamCounted",
    "DatasetSpec",
    "RawDataset",
    "ReaderStats",
    "ClassStats",
    "ImageSet",
    "LABELS",
    "load_registry",
    "register_trainer",
    "Registry",
    "PluginInfo",
    "PluginStatus",
    "XRayBenchError",
    "DataError",
    "PluginError",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from xraybench.errors import DataError, PluginError, XRayBenchError
    from xraybench.hookspecs import hookimpl
    from xraybench.plugins import PluginInfo, PluginStatus, Registry, load_registry
    from xraybench.training import register_trainer
    from xraybench.specs import (
        LABELS,
        ClassStats,
        DatasetSpec,
        Estimator,
        GenericModel,
        ImageSet,
        KerasModel,
        ModelSpec,
        ParamCounted,
        RawDataset,
        ReaderStats,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xraybench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
