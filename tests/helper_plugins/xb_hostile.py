"""A plugin whose text is hostile to rich (markup in names, descriptions, errors) and one model that
sabotages the results folder while it trains; loaded through $XRAYBENCH_PLUGINS by the tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from xraybench import GenericModel, hookimpl

MARKUP = "[/x] [link=https://evil.example]click[/link] [bold red]x[/]"


class Mean:
    """Logistic regression on the mean pixel; ``mode`` chooses how it misbehaves."""

    def __init__(self, params, seed):
        self.params = params

    def fit(self, train, val):
        from sklearn.linear_model import LogisticRegression

        mode = self.params.get("mode", "good")
        if mode == "fail":  # the error text quotes the user's --param value
            raise RuntimeError(f"refusing label {self.params.get('label')!r} {MARKUP}")
        if mode == "sabotage":  # the results folder becomes a file while the run trains
            results = Path(os.environ["XRAYBENCH_RESULTS"])
            shutil.rmtree(results, ignore_errors=True)
            results.write_text("not a folder any more\n")
        self.model = LogisticRegression().fit(self._features(train.images), train.labels)
        return self

    @staticmethod
    def _features(images):
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1).mean(axis=1, keepdims=True) / 255.0

    def predict_proba(self, images):
        return self.model.predict_proba(self._features(images))[:, 1]


def _model(name, mode, description):
    return GenericModel(name=name, description=description, defaults={"mode": mode, "label": "plain"},
                        create=lambda params, seed: Mean(params, seed), image_size=16)


@hookimpl
def register_models(register):
    register(_model("xb_markup[/x]", "good", f"a description with markup: {MARKUP}"))
    register(_model("xb_markup_fails", "fail", "fails with markup in its error"))
    register(_model("xb_sabotage", "sabotage", "replaces the results folder with a file while it trains"))
