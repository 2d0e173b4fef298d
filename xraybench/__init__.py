"""xraybench: plugin-based, reproducible benchmarking of pneumonia classifiers on chest X-rays.

Importing this package is cheap on purpose (no keras, no backend): the CLI's
non-training commands and every plugin module import it at start-up.
"""

from xraybench.hookspecs import hookimpl
from xraybench.specs import DatasetSpec, GenericModel, ImageSet, KerasModel, ModelSpec

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
