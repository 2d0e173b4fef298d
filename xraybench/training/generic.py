"""The trainer of ``GenericModel`` (scikit-learn pipelines and any other estimator): the plugin's
``create(params, seed)`` object fits on train/val in one call and predicts probabilities.
No epochs, no backend; the parameter count comes from the estimator's optional ``param_count``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.errors import PluginFailure
from xraybench.specs import GenericModel, ImageSet
from xraybench.training import Fitted, NotSavable, OnEpoch, Restored, StoredModel, one_line


class GenericTrainer:
    epochs = False
    epoch_keys: dict[str, str] = {}

    def prepare(self) -> None:
        """No backend to start."""

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
        return Fitted(estimator.predict_proba, info, "float64", model=estimator)

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

    def save_model(self, fitted: Fitted, stem: Path) -> StoredModel:
        """The estimator as a skops file (never pickle: loading one runs no code of the file's
        choosing). skops holds scikit-learn, NumPy and SciPy objects and plain classes whose state is
        their attributes; anything else (a lambda, an open file, a foreign runtime) is ``NotSavable``."""
        import skops.io as sio

        path = Path(f"{stem}.skops")
        try:
            sio.dump(fitted.model, path)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise NotSavable(f"skops cannot hold a {type(fitted.model).__name__} ({one_line(exc)})") from None
        return StoredModel(path, "skops", sorted(sio.get_untrusted_types(file=path)))

    def load_model(self, path: Path, spec: GenericModel | None, params: dict[str, Any], types: Sequence[str],
                   shape: tuple[int, ...]) -> Restored:
        """The estimator from its skops file, trusting only the types its record lists (``types``), and of
        those only classes of scikit-learn or of the package of the plugin that registered the model
        (``spec``): a file and record swapped for others cannot bring in ``os.system`` or NumPy's
        code-running helpers (see ``TRUSTED_PACKAGES``)."""
        import skops.io as sio

        from xraybench.errors import XRayBenchError

        allowed = set(TRUSTED_PACKAGES)
        if spec is not None and spec.create is not None:
            allowed.add(str(getattr(spec.create, "__module__", "") or "").split(".")[0])
        needed = sio.get_untrusted_types(file=path)
        refused = [t for t in needed if t not in types or t.split(".")[0] not in allowed or not _is_class(t)]
        if refused:
            raise XRayBenchError(
                f"{path} needs types xraybench does not trust: {', '.join(sorted(refused)[:5])} (trusted: classes its record "
                f"lists, from {', '.join(sorted(allowed))}){'' if spec else '; is the plugin of this model installed?'}")
        estimator = sio.load(path, trusted=list(needed))
        return Restored(estimator.predict_proba)


# Beyond skops' own trusted set, a file may need classes (never functions) of scikit-learn or of the
# model's own plugin package (load_model). Not NumPy or SciPy: skops calls a trusted name with
# arguments the file chooses, and those hold callables that run code or write files
# (numpy.testing's runstring, numpy.memmap); scikit-learn's own trees and predictors need only this.
TRUSTED_PACKAGES = ("sklearn",)


def _is_class(name: str) -> bool:
    """Whether ``name`` (``package.module.Class``, of a package already allowed) names a class."""
    import inspect
    import pydoc

    return inspect.isclass(pydoc.locate(name))


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
