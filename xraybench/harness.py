"""Train one model spec on one data set and evaluate it: the only place a model meets test data.

The harness owns everything that must be equal across models for a comparison to
be fair: the splits, the seed, each family's training loop (``xraybench.training``), the threshold
(0.5, one chosen on validation only, and the declared-transductive one moved to the test prior
estimated from unlabeled test scores, ``prior_shift``) and the metrics. A plugin only builds or
fits; it never scores itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from xraybench import prior_shift
from xraybench.data.loading import Dataset
from xraybench.errors import PluginFailure  # noqa: F401 (harness.PluginFailure: where runner, tuning and checks catch it)
from xraybench.metrics import check_scores, evaluate, youden_threshold
from xraybench.records import FIXED_THRESHOLD
from xraybench.specs import ImageSet, ModelSpec
from xraybench.training import Fitted, one_line, trainer_for


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)


def fit(
    spec: ModelSpec,
    train: ImageSet,
    val: ImageSet,
    params: dict[str, Any],
    seed: int,
    precision: str = "auto",
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    callbacks: list | None = None,
) -> Fitted:
    """Fit on train (early-stopping on val where the family does), with the trainer of the
    spec's type (``xraybench.training``). Never sees test data."""
    _seed_everything(seed)
    trainer = trainer_for(spec)
    if trainer is None:
        raise PluginFailure(f"{spec.name} is a {type(spec).__name__}, which the harness cannot train")
    return trainer.fit(spec, train, val, params, seed, precision, on_epoch, callbacks)


def predict(fitted: Fitted, images: np.ndarray, what: str, name: str) -> np.ndarray:
    try:
        raw = fitted.predict(images)
    except Exception as exc:
        raise PluginFailure(f"predicting {what} with {name} failed: {one_line(exc)}") from exc
    try:
        return check_scores(raw, len(images))
    except ValueError as exc:
        raise PluginFailure(f"{name} returned bad {what} predictions: {exc}") from None


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float | None) -> dict[str, Any]:
    """The operating point, from validation scores only: Youden's J, or a target sensitivity."""
    from xraybench.records import YOUDEN, target_sensitivity_method

    if target_sensitivity is None:
        return {"value": youden_threshold(labels, scores), "method": YOUDEN}
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    positives = np.sort(np.asarray(scores)[np.asarray(labels) == 1])
    if len(positives) == 0:
        return {"value": FIXED_THRESHOLD, "method": f"no positives in validation; {FIXED_THRESHOLD:g}"}
    # the highest threshold that keeps at least the target share of validation positives above it
    k = int(np.floor((1.0 - target_sensitivity) * len(positives)))
    return {"value": float(positives[min(k, len(positives) - 1)]),
            "method": target_sensitivity_method(target_sensitivity)}


def run(
    spec: ModelSpec,
    dataset: Dataset,
    params: dict[str, Any],
    seed: int,
    precision: str = "auto",
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    target_sensitivity: float | None = None,
    save_model: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, predict val and test, evaluate. Returns (results, per-image scores): the results are
    the ``records.RunRecord`` fields this stage owns, by name, for ``RunRecord.finish`` (metrics
    hold every registry entry, intervals every bootstrapped one); the results store validates the
    whole record.

    ``save_model``: where to stage the trained model (``saved_model.staged_stem``), here where it
    lives; the fields then hold ``model_file`` or, when it cannot be kept, ``model_note``."""
    splits = dataset.splits
    fitted = fit(spec, splits.train, splits.val, params, seed, precision, on_epoch)
    start = time.perf_counter()
    val_scores = predict(fitted, splits.val.images, "validation", spec.name)
    test_scores = predict(fitted, splits.test.images, "test", spec.name)
    predict_seconds = time.perf_counter() - start
    results = {
        "precision": fitted.precision,
        "epochs_run": fitted.info.get("epochs_run"),
        "param_count": fitted.info.get("param_count"),
        "train_seconds": fitted.info.get("train_seconds"),
        "predict_seconds": predict_seconds,
        "train_images_per_second": fitted.info.get("train_images_per_second"),
        "history": fitted.info.get("history", {}),
        **score_fields(splits.val.labels, val_scores, splits.test.labels, test_scores, seed, target_sensitivity),
    }
    if save_model is not None:
        from pathlib import Path

        from xraybench import saved_model

        batch = int(params.get("batch_size", 0) or 0)  # whole batches, as predicted: same sums on every device
        n = min(len(test_scores), -(-saved_model.CHECK_IMAGES // batch) * batch if batch > 0 else saved_model.CHECK_IMAGES)
        results.update(saved_model.save(fitted, spec, params, Path(save_model), splits.test.images[:n], test_scores[:n]))
    scores = {
        "test_ids": list(splits.test.ids),
        "test_labels": [int(v) for v in splits.test.labels],
        "test_scores": [float(v) for v in test_scores],
        "val_ids": list(splits.val.ids),
        "val_labels": [int(v) for v in splits.val.labels],
        "val_scores": [float(v) for v in val_scores],
    }
    return results, scores


def score_fields(
    val_labels: Any, val_scores: Any, test_labels: Any, test_scores: Any, seed: int,
    target_sensitivity: float | None = None,
) -> dict[str, Any]:
    """The record fields that follow from per-image scores alone: the threshold chosen on validation,
    metrics at 0.5 and at that threshold, their bootstrap intervals (resampled with ``seed``) and the
    validation metrics. One function for every producer (``run``, ``xraybench.ensemble``), so a
    record's numbers mean the same whether a model or an average of models produced the scores."""
    from xraybench.stats import bootstrap_intervals

    operating = choose_threshold(val_labels, val_scores, target_sensitivity)
    threshold = operating["value"]
    return {
        "threshold": FIXED_THRESHOLD,
        "val_threshold": operating,
        "metrics": evaluate(test_labels, test_scores, FIXED_THRESHOLD),
        "metrics_at_val_threshold": evaluate(test_labels, test_scores, threshold),
        "intervals": bootstrap_intervals(test_labels, test_scores, FIXED_THRESHOLD, seed=seed),
        "intervals_at_val_threshold": bootstrap_intervals(test_labels, test_scores, threshold, seed=seed),
        "val_metrics": evaluate(val_labels, val_scores, FIXED_THRESHOLD),
        # the third, transductive operating point: threshold moved to the test prior that EM
        # estimates from the unlabeled test scores (prior_shift.py); never mixed with the two above
        **prior_shift.record_fields(val_labels, val_scores, test_labels, test_scores, seed=seed),
    }
