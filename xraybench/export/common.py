"""What both exports share: the extras each needs (``require``), the mark of an xraybench export
(``OWNER_KEY``), converters' and MLflow's chatter held back, their errors cut to one line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.util import find_spec

from xraybench.errors import XRayBenchError


FORMATS = ("onnx", "mlflow")
OWNER_KEY = "xraybench.run_id"  # in the ONNX metadata: the run it came from, and the mark of an xraybench export

# What each export needs installed: (module, pip name) per format and model file format.
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "onnx": (("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
    "onnx:keras": (("tensorflow", "tensorflow"), ("tf2onnx", "tf2onnx")),
    "onnx:skops": (("skl2onnx", "skl2onnx"),),
    "mlflow": (("mlflow", "mlflow-skinny"),),
}


def require(what: str) -> None:
    """A one-line error naming the extra to install when ``what`` (a ``NEEDS`` key) is missing;
    looks modules up without importing them."""
    missing = [pip for module, pip in NEEDS.get(what, ()) if find_spec(module) is None]
    if missing:
        extra = what.split(":")[0]
        raise XRayBenchError(f"exporting to {extra} needs {', '.join(missing)}, which is not installed: "
                             f'pip install "xraybench[{extra}]"')


def short_line(exc: BaseException, limit: int = 300) -> str:
    """The exception's first line, cut at ``limit`` characters (converters put whole node
    attribute dumps in theirs)."""
    from xraybench.training import one_line

    text = one_line(exc)
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


@contextlib.contextmanager
def held_back(*names: str) -> Iterator[None]:
    """Warnings ignored and the named loggers at ERROR inside; their levels restored after."""
    import logging
    import warnings

    saved = [(lg, lg.level) for lg in map(logging.getLogger, names)]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)
