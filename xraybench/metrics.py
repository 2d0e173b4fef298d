"""One evaluation from (labels, scores, threshold), computed with scikit-learn.

Scores are P(PNEUMONIA); PNEUMONIA = 1 is the positive class, so sensitivity is
PNEUMONIA recall and specificity is NORMAL recall. Threshold choice lives here
too, because it must only ever see validation scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xraybench.specs import LABELS


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric the leaderboard shows, as plain floats (JSON-ready)."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(labels).astype(int).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    pred = (p >= threshold).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=[0, 1], zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if both else float("nan"),
        "sensitivity": float(recall[1]),
        "specificity": float(recall[0]),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "per_class": {
            LABELS[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in (0, 1)
        },
    }
    out["ece"] = expected_calibration_error(y, p)
    return out


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width bins of P(PNEUMONIA)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


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
