"""The trainer of ``GenericModel`` (scikit-learn pipelines and any other estimator): the plugin's
``create(params, seed)`` object fits on train/val in one call and predicts probabilities.
No epochs, no backend; the parameter count comes from the estimator's optional ``param_count``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from xraybench.errors import PluginFailure
from xraybench.specs import GenericModel, ImageSet
from xraybench.training import Fitted, OnEpoch, one_line


class GenericTrainer:
    epochs = False

    def fit(self, spec: GenericModel, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int,
            precision: str = "auto", on_epoch: OnEpoch | None = None, callbacks: list | None = None) -> Fitted:
        if spec.create is None:
            raise PluginFailure(f"{spec.name} declares no create function")
        start = time.perf_counter()
        try:
            estimator = spec.create(dict(params), seed)
            estimator.fit(train, val)
        except Exception as exc:
            raise PluginFailure(f"fitting {spec.name} failed: {one_line(exc)}") from exc
        info: dict[str, Any] = {
            "history": {},
            "epochs_run": None,
            "train_seconds": time.perf_counter() - start,
            "param_count": param_count(estimator),
        }
        return Fitted(estimator.predict_proba, info, "float64")

    def epoch_callback(self, on_epoch_end: Callable[[int, dict[str, float]], None]) -> Any:
        raise TypeError("a generic model trains in one call; it has no epochs to call back after")

    def backend(self) -> str | None:
        return None

    def check_build(self, spec: GenericModel, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        if spec.create is None:
            raise TypeError(f"{spec.name} declares no create function")
        est = spec.create(dict(params), seed)
        for attr in ("fit", "predict_proba"):
            if not callable(getattr(est, attr, None)):
                raise TypeError(f"create returned an object without {attr}()")
        return type(est).__name__


def param_count(estimator: Any) -> int | None:
    """``specs.ParamCounted``: a method or an int attribute; anything else is unknown, never an error."""
    count = getattr(estimator, "param_count", None)
    if callable(count):
        try:
            return int(count())
        except Exception:
            return None
    return int(count) if isinstance(count, (int, np.integer)) else None


TRAINER = GenericTrainer()
