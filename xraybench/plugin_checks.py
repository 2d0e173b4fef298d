"""The plugin contract, checked on tiny generated data (``xraybench check`` and ``xraybench.testing``).

Each check is one row: it builds with its defaults and with a point from its
search space, gives probabilities of the right shape, fits one short epoch,
predicts, gives the same predictions for the same seed, and opens no test file
while it trains. ``xraybench check`` runs each check in a child process with a
per-check timeout, so a plugin that hangs is reported, not waited on forever.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from xraybench.errors import PluginError
from xraybench.records import RunStatus
from xraybench.specs import ModelSpec
from xraybench.training import Trainer, trainer_for

Row = tuple[str, bool, str]

_watch: dict[str, Any] = {"prefix": None, "hits": []}
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    prefix = _watch["prefix"]
    if prefix and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.abspath(path).startswith(prefix):
            _watch["hits"].append(path)


def _install_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # cannot be removed; inert while no prefix is watched
        _hook_installed = True


def _sample_params(spec: ModelSpec, seed: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    assert spec.search_space is not None  # asked only of a model that declares one (run_checks)
    return dict(spec.search_space(trial))


def _short(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if "epochs" in out:
        out["epochs"] = 1
    if "batch_size" in out:
        out["batch_size"] = 8
    return out


class _Context:
    """What the checks share (the data, the first fit), built lazily so that a check run in a
    fresh child process (after a hung one was killed) rebuilds what it needs."""

    def __init__(self, spec: ModelSpec, size: int, seed: int, root: Path, cache: Path) -> None:
        self.spec, self.size, self.seed, self.root, self.cache = spec, size, seed, root, cache
        self.shape = (size, size, spec.channels)
        self.trainer = _trainer(spec)
        self.trainer.prepare()  # the backend's start-up noise held back, as `run` does
        self.defaults = _short(spec.all_defaults())
        self._splits = None
        self._fitted: dict[str, Any] = {}

    def splits(self):
        from xraybench.data import load_dataset

        if self._splits is None:
            with mock.patch.dict(os.environ, {"XRAYBENCH_CACHE": str(self.cache)}):
                data = load_dataset(self.root, image_size=self.size, channels=self.spec.channels, seed=self.seed,
                                    val_fraction=0.25)
            self._splits = data.splits
        return self._splits

    def fitted(self):
        """The first fit, watched for any file opened under test/."""
        from xraybench import harness

        if "a" not in self._fitted:
            splits = self.splits()
            _install_hook()
            # The data folder is advertised as usual; a plugin that goes looking for test/ is caught.
            _watch["prefix"], _watch["hits"] = os.path.abspath(self.root / "test"), []
            try:
                with mock.patch.dict(os.environ, {"XRAYBENCH_DATA": str(self.root)}):
                    self._fitted["a"] = harness.fit(self.spec, splits.train, splits.val, self.defaults, self.seed,
                                                    "float32")
            finally:
                _watch["prefix"] = None
            self._fitted["opened_test"] = list(_watch["hits"])
        return self._fitted["a"]

    # --- the checks, in order; each returns its detail or raises -----------------------

    def build_with(self, params: dict[str, Any]) -> str:
        return self.trainer.check_build(self.spec, self.shape, params, self.seed)

    def builds_with_defaults(self) -> str:
        return self.build_with(self.defaults)

    def builds_with_a_sample(self) -> str:
        return self.build_with(_short({**self.defaults, **_sample_params(self.spec, self.seed)}))

    def output_range(self) -> str:
        return self.trainer.check_output(self.spec, self.shape, dict(self.defaults), self.seed)

    def fits(self) -> str:
        self.fitted()
        splits = self.splits()
        return f"{len(splits.train)} train / {len(splits.val)} val images"

    def _test_scores(self, fitted) -> np.ndarray:
        from xraybench import harness

        return harness.predict(fitted, self.splits().test.images, "test", self.spec.name)

    def predicts(self) -> str:
        return f"{len(self._test_scores(self.fitted()))} scores in [0, 1]"

    def same_seed(self) -> str:
        from xraybench import harness

        splits, a = self.splits(), self._test_scores(self.fitted())
        b = self._test_scores(harness.fit(self.spec, splits.train, splits.val, self.defaults, self.seed, "float32"))
        gap = float(np.max(np.abs(a - b)))
        if gap > 1e-5:
            raise AssertionError(f"predictions differ by up to {gap:.2e} for the same seed")
        return f"max difference {gap:.1e}"

    def no_test(self) -> str:
        self.fitted()
        opened = self._fitted["opened_test"]
        if opened:
            raise AssertionError(f"opened {len(opened)} test file(s) while training, e.g. {opened[0]}")
        return "training received train/val only and opened no test file"


# (row name, _Context method); the rows after the fit run only when it passed
CHECKS = [
    ("builds with defaults", "builds_with_defaults"),
    ("builds with a search-space sample", "builds_with_a_sample"),
    ("output shape and probability range", "output_range"),
    ("fits one short epoch on tiny generated data", "fits"),
    ("predicts probabilities of the right shape", "predicts"),
    ("same seed gives the same predictions", "same_seed"),
    ("no test data reachable while training", "no_test"),
]
_AFTER_FIT = {"predicts", "same_seed", "no_test"}

_contexts: dict[Any, _Context] = {}


def _trainer(spec: ModelSpec) -> Trainer:
    trainer = trainer_for(spec)
    if trainer is None:  # the plugins' loader refuses such a spec; one made by hand may still come here
        raise PluginError(f"{spec.name} is a {type(spec).__name__}, which has no trainer "
                          "(xraybench.training.register_trainer)")
    return trainer


def _check_in_child(model: str | ModelSpec, disabled: list[str], size: int, seed: int, folder: str,
                    method: str) -> tuple[bool, str, str]:
    """One check, run in a child process; the context survives between checks in the same child.
    ``model`` is the spec itself when it pickles (module-level functions), else its name, looked
    up in the child's own registry."""
    from xraybench.plugins import load_registry

    name = model if isinstance(model, str) else model.name
    key = (name, tuple(disabled), size, seed, folder)
    if key not in _contexts:
        spec = load_registry(disabled).model(model) if isinstance(model, str) else model
        _contexts[key] = _Context(spec, size, seed, Path(folder) / "data", Path(folder) / "cache")
    return _one_check(_contexts[key], method)


def _picklable(spec: ModelSpec) -> bool:
    """Whether ``spec`` can be sent to a child as it is (lambdas and local functions cannot)."""
    import pickle

    try:
        pickle.dumps(spec)
    except Exception:  # noqa: BLE001 (PicklingError, AttributeError, TypeError: whatever the spec holds)
        return False
    return True


def _one_check(ctx: _Context, method: str) -> tuple[bool, str, str]:
    """(passed, detail, traceback): the traceback of a failed check for ``check --traceback``."""
    import traceback

    from xraybench.training import one_line

    try:
        return True, getattr(ctx, method)(), ""
    except Exception as exc:
        return False, one_line(exc), traceback.format_exc()


def run_contract(spec: ModelSpec, size: int = 32, seed: int = 0, timeout: float | None = None,
                 disabled: list[str] | None = None, tracebacks: dict[str, str] | None = None,
                 timeout_name: str = "--timeout") -> list[Row]:
    """The contract's rows. With ``timeout``, each check runs in a child process (one, reused while
    checks end): a check that runs past ``timeout`` seconds is killed and reported as a failed
    row, and the others go on, as ``run --timeout`` does for a run. Without, all run here.
    ``tracebacks``, when given, receives each failed check's traceback by row name; ``timeout_name``
    is what a timed-out row calls the limit (the flag, or ``check_model``'s parameter)."""
    from xraybench.synthetic import make_kaggle_tree

    _trainer(spec)  # a one-line error before any data is made
    with tempfile.TemporaryDirectory(prefix="xraybench-check-") as tmp:
        root = make_kaggle_tree(Path(tmp) / "data", n_train=(24, 24), n_test=(8, 8), size=size, seed=seed,
                                mode="L" if spec.channels == 1 else "RGB")
        child = None
        if timeout is None:
            ctx = _Context(spec, size, seed, root, Path(tmp) / "cache")
            check = lambda method: _one_check(ctx, method)  # noqa: E731
        else:
            from xraybench import isolation

            child = isolation.Child()
            model = spec if _picklable(spec) else spec.name  # a spec registered in-process only goes as it is

            def check(method: str) -> tuple[bool, str, str]:
                outcome = child.call(_check_in_child, (model, list(disabled or []), size, seed, tmp, method), timeout)
                if outcome.ok:
                    return outcome.value
                if outcome.status is RunStatus.TIMEOUT:
                    return False, f"timeout: no result within {timeout_name} {timeout:g}s; the check was killed", ""
                return False, outcome.reason, outcome.traceback or ""
        try:
            rows = _run_checks(spec, check, tracebacks)
        finally:
            if child is not None:
                child.close()
    return rows


def _run_checks(spec: ModelSpec, check: Any, tracebacks: dict[str, str] | None) -> list[Row]:
    """Each applicable check in order; those that need a fitted model are skipped once fitting failed."""
    rows: list[Row] = []
    fit_ok = True
    for name, method in CHECKS:
        if method == "builds_with_a_sample" and spec.search_space is None:
            rows.append((name, True, "no search space declared (not tunable)"))
            continue
        if method == "output_range" and not hasattr(_trainer(spec), "check_output"):
            continue
        if method in _AFTER_FIT and not fit_ok:
            continue
        ok, detail, text = check(method)
        rows.append((name, ok, detail if isinstance(detail, str) else ""))
        if text and tracebacks is not None:
            tracebacks[name] = text
        if method == "fits":
            fit_ok = ok
    return rows
