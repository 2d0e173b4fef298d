"""The plugin contract, checked on tiny generated data (``xraybench check`` and ``xraybench.testing``).

Each check is one row: it builds with its defaults and with a point from its
search space, gives probabilities of the right shape, fits one short epoch,
predicts, gives the same predictions for the same seed, and opens no test file
while it trains.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.specs import GenericModel, KerasModel, ModelSpec

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
    return dict(spec.search_space(trial))


def _short(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if "epochs" in out:
        out["epochs"] = 1
    if "batch_size" in out:
        out["batch_size"] = 8
    return out


def run_contract(spec: ModelSpec, size: int = 32, seed: int = 0) -> list[Row]:
    from xraybench import harness
    from xraybench.data import load_dataset
    from xraybench.synthetic import make_kaggle_tree

    rows: list[Row] = []

    def row(name: str, fn) -> Any:
        try:
            detail = fn()
            rows.append((name, True, detail if isinstance(detail, str) else ""))
            return True
        except Exception as exc:
            from xraybench.plugins import one_line

            rows.append((name, False, one_line(exc)))
            return False

    shape = (size, size, spec.channels)
    defaults = _short(spec.all_defaults())

    def build_with(params: dict[str, Any]) -> str:
        if isinstance(spec, KerasModel):
            import keras

            model = spec.build(shape, dict(params))
            if not isinstance(model, keras.Model):
                raise TypeError(f"build returned {type(model).__name__}, expected keras.Model")
            return f"{model.count_params():,} parameters"
        if isinstance(spec, GenericModel):
            est = spec.create(dict(params), seed)
            for attr in ("fit", "predict_proba"):
                if not callable(getattr(est, attr, None)):
                    raise TypeError(f"create returned an object without {attr}()")
            return type(est).__name__
        raise TypeError(f"{type(spec).__name__} is neither KerasModel nor GenericModel")

    row("builds with defaults", lambda: build_with(defaults))
    if spec.search_space is None:
        rows.append(("builds with a search-space sample", True, "no search space declared (not tunable)"))
    else:
        row("builds with a search-space sample", lambda: build_with(_short({**defaults, **_sample_params(spec, seed)})))

    if isinstance(spec, KerasModel):
        def output_range() -> str:
            model = spec.build(shape, dict(defaults))
            x = np.random.default_rng(seed).random((4, *shape), dtype=np.float32)
            out = np.asarray(model.predict(x, verbose=0))
            if out.shape != (4, 1):
                raise ValueError(f"output shape {out.shape}, expected (4, 1)")
            if not (np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1):
                raise ValueError(f"outputs are not probabilities: range [{out.min():.3g}, {out.max():.3g}]")
            return "(N, 1) in [0, 1]"

        row("output shape and probability range", output_range)

    with tempfile.TemporaryDirectory(prefix="xraybench-check-") as tmp:
        old_cache = os.environ.get("XRAYBENCH_CACHE")
        os.environ["XRAYBENCH_CACHE"] = str(Path(tmp) / "cache")
        try:
            root = make_kaggle_tree(Path(tmp) / "data", n_train=(24, 24), n_test=(8, 8), size=size, seed=seed,
                                    mode="L" if spec.channels == 1 else "RGB")
            data = load_dataset(root, image_size=size, channels=spec.channels, seed=seed, val_fraction=0.25)
        finally:
            if old_cache is None:
                os.environ.pop("XRAYBENCH_CACHE", None)
            else:
                os.environ["XRAYBENCH_CACHE"] = old_cache
        splits = data.splits
        fitted: dict[str, Any] = {}
        _install_hook()

        def fit_once() -> str:
            # The data folder is advertised as usual; a plugin that goes looking for test/ is caught.
            old_data = os.environ.get("XRAYBENCH_DATA")
            os.environ["XRAYBENCH_DATA"] = str(root)
            _watch["prefix"], _watch["hits"] = os.path.abspath(root / "test"), []
            try:
                fitted["a"] = harness.fit(spec, splits.train, splits.val, defaults, seed, "float32")
            finally:
                _watch["prefix"] = None
                if old_data is None:
                    os.environ.pop("XRAYBENCH_DATA", None)
                else:
                    os.environ["XRAYBENCH_DATA"] = old_data
            fitted["opened_test"] = list(_watch["hits"])
            return f"{len(splits.train)} train / {len(splits.val)} val images"

        if row("fits one short epoch on tiny generated data", fit_once):
            row("predicts probabilities of the right shape",
                lambda: f"{len(harness.predict(fitted['a'], splits.test.images, 'test', spec.name))} scores in [0, 1]")

            def same_seed() -> str:
                again = harness.fit(spec, splits.train, splits.val, defaults, seed, "float32")
                a = harness.predict(fitted["a"], splits.test.images, "test", spec.name)
                b = harness.predict(again, splits.test.images, "test", spec.name)
                gap = float(np.max(np.abs(a - b)))
                if gap > 1e-5:
                    raise AssertionError(f"predictions differ by up to {gap:.2e} for the same seed")
                return f"max difference {gap:.1e}"

            row("same seed gives the same predictions", same_seed)

            def no_test() -> str:
                if fitted["opened_test"]:
                    raise AssertionError(f"opened {len(fitted['opened_test'])} test file(s) while training, e.g. {fitted['opened_test'][0]}")
                return "training received train/val only and opened no test file"

            row("no test data reachable while training", no_test)
    return rows
