"""Every metric xraybench reports, in one place: one ``Metric`` entry per metric.

An entry says where the value lives in a run record, its column label, whether higher is
better, how to compute it (from the confusion counts, or from the scores) and how to
bootstrap it, and how to show it. ``metrics.evaluate`` (point values), ``stats`` (bootstrap
intervals), the leaderboard (terminal table, Markdown, CSV, JSON), the HTML report,
``compare`` and the run-record schema all iterate over ``REGISTRY``; adding a metric is
adding an entry here, and nothing else.

Pure Python at import (no numpy): the leaderboard reads labels and formats from here and
must start fast. Count functions take ``tp, tn, fp, fn`` as floats (one evaluation) or as
numpy arrays (one value per bootstrap resample) and work on both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LABELS = ("NORMAL", "PNEUMONIA")  # index = label: NORMAL = 0, PNEUMONIA = 1, always (re-exported by records.py)
NORMAL, PNEUMONIA = LABELS
FIXED_THRESHOLD = 0.5  # the fixed operating point (records.Threshold.FIXED)


def _div(a: Any, b: Any) -> Any:
    """a / b; where b is 0: 0.0 for a single value (scikit-learn's zero_division=0), NaN in a
    bootstrap array (that resample says nothing about the metric and is left out)."""
    if isinstance(b, (int, float)):
        return float(a) / b if b else 0.0
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a, dtype=np.float64) / b


def _sqrt(x: Any) -> Any:
    if isinstance(x, (int, float)):
        return float(x) ** 0.5
    import numpy as np

    return np.sqrt(x)


def _f1(hit: Any, miss_a: Any, miss_b: Any) -> Any:
    return _div(2 * hit, 2 * hit + miss_a + miss_b)


def _mcc(tp: Any, tn: Any, fp: Any, fn: Any) -> Any:
    """Matthews correlation: 0 where a margin is empty (as scikit-learn does)."""
    den = _sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    if isinstance(den, float):
        return (tp * tn - fp * fn) / den if den else 0.0
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), 0.0)


def _roc_auc(labels: Any, scores: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _average_precision(labels: Any, scores: Any) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def _log_loss(labels: Any, scores: Any) -> float:
    import numpy as np
    from sklearn.metrics import log_loss

    return float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))


def _brier(labels: Any, scores: Any) -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(labels, scores))


def expected_calibration_error(labels: Any, scores: Any, bins: int = 10) -> float:
    """ECE over equal-width bins of P(PNEUMONIA)."""
    import numpy as np

    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def _pair_kernel(labels: Any, scores: Any) -> tuple[Any, Any, Any]:
    import numpy as np

    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    sp, sn = scores[pos][:, None], scores[neg][None, :]
    kernel = (sp > sn).astype(np.float64) + 0.5 * (sp == sn)
    return pos, neg, kernel


def weighted_auc(w: Any, labels: Any, scores: Any) -> Any:
    """ROC AUC for each row of the count matrix ``w``: Mann-Whitney on the weighted pairs (exact with ties)."""
    import numpy as np

    pos, neg, kernel = _pair_kernel(labels, scores)
    wp, wn = w[:, pos], w[:, neg]
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((wp @ kernel) * wn).sum(axis=1) / (wp.sum(axis=1) * wn.sum(axis=1))


@dataclass(frozen=True)
class Metric:
    """One metric. ``column``: None = not in the leaderboard table (still in CSV and JSON);
    0 = always shown; n > 0 = an optional column, and the higher n, the sooner a narrow
    terminal drops it (the leaderboard's own columns rank 2-10 on the same scale).
    ``interval_column``: likewise for a "95% CI" column beside it (None: no such column)."""

    key: str
    label: str
    name: str
    higher_is_better: bool = True
    per_class: str | None = None  # the class label, for metrics stored under record["metrics"]["per_class"]
    counts: Callable[..., Any] | None = None  # (tp, tn, fp, fn) -> value(s)
    scores: Callable[[Any, Any], float] | None = None  # (labels, scores) -> value, threshold-free
    weighted: Callable[[Any, Any, Any], Any] | None = None  # (resample weights W, labels, scores) -> values
    needs_both_classes: bool = False  # NaN when the test labels hold one class only
    column: int | None = None
    interval_column: int | None = None
    digits: int = 3

    @functools.cached_property
    def stat(self) -> str:  # derived once: records are validated by the thousand
        """Its key inside ``per_class[per_class]`` for a per-class metric, else ``key``."""
        return self.key.split("_", 1)[1] if self.per_class else self.key

    @property
    def bootstrapped(self) -> bool:
        """Whether run records store a bootstrap interval for it."""
        return self.counts is not None or self.weighted is not None

    def value(self, metrics: dict[str, Any]) -> Any:
        """Its value in one ``metrics`` dict of a run record (None when absent)."""
        if self.per_class:
            return ((metrics.get("per_class") or {}).get(self.per_class) or {}).get(self.stat)
        return metrics.get(self.key)

    def has(self, metrics: dict[str, Any]) -> bool:
        if self.per_class:
            return self.stat in ((metrics.get("per_class") or {}).get(self.per_class) or {})
        return self.key in metrics

    def put(self, metrics: dict[str, Any], value: Any) -> None:
        if self.per_class:
            metrics.setdefault("per_class", {}).setdefault(self.per_class, {})[self.stat] = value
        else:
            metrics[self.key] = value

    def format(self, value: float | None) -> str:
        return "-" if value is None else f"{value:.{self.digits}f}"


REGISTRY: tuple[Metric, ...] = (
    Metric("accuracy", "Acc", "accuracy", counts=lambda tp, tn, fp, fn: _div(tp + tn, tp + tn + fp + fn),
           column=0, interval_column=4),
    Metric("normal_precision", "N prec", "NORMAL precision", per_class=NORMAL,
           counts=lambda tp, tn, fp, fn: _div(tn, tn + fn), column=0),
    Metric("normal_recall", "N rec", "NORMAL recall (specificity)", per_class=NORMAL,
           counts=lambda tp, tn, fp, fn: _div(tn, tn + fp), column=0),
    Metric("normal_f1", "N F1", "NORMAL F1", per_class=NORMAL, counts=lambda tp, tn, fp, fn: _f1(tn, fn, fp), column=0),
    Metric("pneumonia_precision", "P prec", "PNEUMONIA precision", per_class=PNEUMONIA,
           counts=lambda tp, tn, fp, fn: _div(tp, tp + fp), column=0),
    Metric("pneumonia_recall", "P rec", "PNEUMONIA recall (sensitivity)", per_class=PNEUMONIA,
           counts=lambda tp, tn, fp, fn: _div(tp, tp + fn), column=0),
    Metric("pneumonia_f1", "P F1", "PNEUMONIA F1", per_class=PNEUMONIA, counts=lambda tp, tn, fp, fn: _f1(tp, fp, fn),
           column=0),
    Metric("macro_f1", "Macro F1", "macro-averaged F1",
           counts=lambda tp, tn, fp, fn: (_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2, column=6),
    Metric("roc_auc", "AUC", "ROC AUC", scores=_roc_auc, weighted=weighted_auc, needs_both_classes=True,
           column=0, interval_column=5),
    Metric("sensitivity", "Sens", "sensitivity (PNEUMONIA recall)", counts=lambda tp, tn, fp, fn: _div(tp, tp + fn)),
    Metric("specificity", "Spec", "specificity (NORMAL recall)", counts=lambda tp, tn, fp, fn: _div(tn, tn + fp)),
    Metric("balanced_accuracy", "Bal acc", "balanced accuracy", needs_both_classes=True,
           counts=lambda tp, tn, fp, fn: (_div(tp, tp + fn) + _div(tn, tn + fp)) / 2),
    Metric("average_precision", "AP", "average precision (PNEUMONIA)", scores=_average_precision, needs_both_classes=True),
    Metric("log_loss", "Log loss", "log loss", higher_is_better=False, scores=_log_loss, digits=4),
    Metric("brier", "Brier", "Brier score", higher_is_better=False, scores=_brier, digits=4),
    Metric("ece", "ECE", "expected calibration error (10 bins)", higher_is_better=False, scores=expected_calibration_error),
    Metric("mcc", "MCC", "Matthews correlation coefficient", counts=_mcc, column=11, interval_column=12),
    Metric("npv", "NPV", "negative predictive value (= NORMAL precision)",
           counts=lambda tp, tn, fp, fn: _div(tn, tn + fn), column=13, interval_column=15),
    Metric("ppv", "PPV", "positive predictive value (= PNEUMONIA precision)",
           counts=lambda tp, tn, fp, fn: _div(tp, tp + fp), column=14, interval_column=16),
)

BY_KEY: dict[str, Metric] = {m.key: m for m in REGISTRY}


def get(key: str) -> Metric:
    """The entry for ``key``; an XRayBenchError listing the known keys otherwise."""
    try:
        return BY_KEY[key]
    except KeyError:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"unknown metric {key!r}; known: {', '.join(BY_KEY)}") from None


def bootstrapped() -> tuple[Metric, ...]:
    return tuple(m for m in REGISTRY if m.bootstrapped)


def confusion_counts(metrics: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """(tp, tn, fp, fn) from a record's ``confusion_matrix`` [[TN, FP], [FN, TP]], if stored."""
    cm: Any = metrics.get("confusion_matrix")  # anything: what does not unpack is not counts
    try:
        (tn, fp), (fn, tp) = cm
        return float(tp), float(tn), float(fp), float(fn)
    except (TypeError, ValueError):
        return None


def fill_from_counts(metrics: dict[str, Any]) -> list[str]:
    """Add every count-based metric a record lacks, from its confusion matrix (exact, no
    scores needed): how records written before an entry existed gain it. Returns the keys added."""
    counts = confusion_counts(metrics)
    if counts is None:
        return []
    added = []
    for m in REGISTRY:
        if m.counts is not None and not m.has(metrics):
            m.put(metrics, float(m.counts(*counts)))
            added.append(m.key)
    return added
