"""One evaluation from (labels, scores, threshold): every entry of the metric registry.

Scores are P(PNEUMONIA); PNEUMONIA = 1 is the positive class, so sensitivity is
PNEUMONIA recall and specificity is NORMAL recall. Threshold choice lives here
too, because it must only ever see validation scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xraybench.metric_registry import FIXED_THRESHOLD, LABELS, REGISTRY


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float = FIXED_THRESHOLD) -> dict[str, Any]:
    """Every metric of ``metric_registry.REGISTRY`` at ``threshold``, as plain floats (JSON-ready),
    with the confusion matrix [[TN, FP], [FN, TP]] and per-class support."""
    y = np.asarray(labels).astype(int).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    pred = p >= threshold
    pos = y == 1
    tp, tn = float(np.sum(pred & pos)), float(np.sum(~pred & ~pos))
    fp, fn = float(np.sum(pred & ~pos)), float(np.sum(~pred & pos))
    both = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "per_class": {LABELS[0]: {"support": int(tn + fp)}, LABELS[1]: {"support": int(tp + fn)}},
    }
    for metric in REGISTRY:
        if metric.needs_both_classes and not both:
            value = float("nan")
        elif metric.counts is not None:
            value = float(metric.counts(tp, tn, fp, fn))
        else:
            assert metric.scores is not None, metric.key  # every registry metric has counts or scores
            value = float(metric.scores(y, p))
        metric.put(out, value)
    return out


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J) on these scores.

    Call it with validation scores only: choosing a threshold on test is tuning on test.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(labels).astype(int)
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, scores)
    best = int(np.argmax(tpr - fpr))
    threshold = float(thresholds[best])
    return min(max(threshold, 0.0), 1.0)


def check_scores(scores: Any, n: int) -> np.ndarray:
    """A plugin's predictions as a clean (n,) float array, or a ValueError saying what is wrong."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"predictions are not numeric (got {type(scores).__name__})") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"predictions have shape {arr.shape}, expected ({n},) or ({n}, 1)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"predictions hold {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"predictions must be probabilities in [0, 1], got range [{arr.min():.3g}, {arr.max():.3g}]")
    return arr
