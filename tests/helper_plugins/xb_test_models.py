"""Deliberately good and bad model plugins, loaded through $XRAYBENCH_PLUGINS by the tests."""

from __future__ import annotations

import os
import time

import numpy as np

from xraybench import GenericModel, KerasModel, hookimpl


class MeanIntensity:
    """A tiny honest model: logistic regression on the mean pixel intensity."""

    def __init__(self, params, seed):
        self.mode = params.get("mode", "good")
        if self.mode == "hang_create":
            time.sleep(3600)

    def fit(self, train, val):
        from sklearn.linear_model import LogisticRegression

        from xraybench.isolation import checkpoint

        checkpoint("training")  # tests pause here to signal a process mid-training
        if self.mode == "fit_raises":
            raise RuntimeError("boom in fit")
        if self.mode == "hang":
            time.sleep(3600)
        if self.mode == "crash":
            os._exit(13)
        if self.mode == "killed":
            os.kill(os.getpid(), 9)
        if self.mode == "block":
            _block_until_released()
        self.model = LogisticRegression().fit(self._features(train.images), train.labels)
        return self

    @staticmethod
    def _features(images):
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1).mean(axis=1, keepdims=True) / 255.0

    def predict_proba(self, images):
        if os.environ.get("XB_PREDICT_HANGS"):  # a model that trained and saved well, then hangs when used
            time.sleep(3600)
        p = self.model.predict_proba(self._features(images))[:, 1]
        if self.mode == "nan":
            p[0] = np.nan
        if self.mode == "out_of_range":
            p = p * 3.0
        if self.mode == "wrong_shape":
            p = np.stack([p, p], axis=1)
        return p


def _block_until_released() -> None:
    """Say "started" with a marker file in $XB_BLOCK_DIR (this process and its parent), then wait
    for a ``release`` file there: lets a test act while a run is known to be in flight."""
    folder = os.environ["XB_BLOCK_DIR"]
    with open(os.path.join(folder, f"started-{os.getpid()}"), "w") as fh:
        fh.write(f"{os.getpid()} {os.getppid()}")
    deadline = time.monotonic() + 600
    while not os.path.exists(os.path.join(folder, "release")):
        if time.monotonic() > deadline:
            raise RuntimeError("xb_block was never released")
        time.sleep(0.05)


def _raising_build(input_shape, params):
    raise ValueError("boom in build")


def _generic(name, mode, **defaults):
    return GenericModel(
        name=name, description=f"test model ({mode})", defaults={"mode": mode, **defaults},
        create=lambda params, seed: MeanIntensity(params, seed), image_size=32,
    )


def _tunable_space(trial):
    return {"mode": trial.suggest_categorical("mode", ["good", "fit_raises"])}


def _wide_space(trial):
    return {"c": trial.suggest_float("c", 1e-6, 1.0, log=True), "k": trial.suggest_int("k", 0, 10**6)}


@hookimpl
def register_models(register):
    register(_generic("xb_good", "good"))
    for mode in ("fit_raises", "hang", "crash", "killed", "nan", "out_of_range", "wrong_shape", "block"):
        register(_generic(f"xb_{mode}", mode))
    register(KerasModel(name="xb_build_raises", description="build raises", build=_raising_build, image_size=32))
    tunable = _generic("xb_tunable", "good")
    tunable.search_space = _tunable_space
    register(tunable)
    wide = _generic("xb_tunable_wide", "good", c=1.0, k=0)
    wide.search_space = _wide_space  # large enough that a repeated set means a repeated seed
    register(wide)
    sampled_hangs = _generic("xb_hang_sampled", "good")
    sampled_hangs.search_space = lambda trial: {"mode": trial.suggest_categorical("mode", ["hang_create"])}
    register(sampled_hangs)  # only `check`'s search-space build hangs


