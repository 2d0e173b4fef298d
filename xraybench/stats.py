"""Honest uncertainty: bootstrap intervals and paired tests on the 624 test images.

Resampling is done with a multinomial count matrix W (B resamples x n images), so
every metric of every resample is a matrix product: no Python loop over
resamples, and AUC is exact with ties (Mann-Whitney on the weighted pairs).
numpy only (imported inside the functions that need it): the leaderboard's exact McNemar
test is pure Python, so `xraybench leaderboard` never pays for numpy, scipy or scikit-learn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

def interval_metrics() -> tuple[str, ...]:
    """The metrics every run stores an interval for: the bootstrapped registry entries."""
    from xraybench.metric_registry import bootstrapped

    return tuple(m.key for m in bootstrapped())


def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def _pair_kernel(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    sp, sn = scores[pos][:, None], scores[neg][None, :]
    kernel = (sp > sn).astype(np.float64) + 0.5 * (sp == sn)
    return pos, neg, kernel


def weighted_auc(w: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of the count matrix ``w``: Mann-Whitney on the weighted pairs (exact with ties)."""
    import numpy as np

    pos, neg, kernel = _pair_kernel(labels, scores)
    wp, wn = w[:, pos], w[:, neg]
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((wp @ kernel) * wn).sum(axis=1) / (wp.sum(axis=1) * wn.sum(axis=1))


def _metrics_from_counts(w: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
                         keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each bootstrapped registry metric (or those in ``keys``) for each row of the count matrix ``w``."""
    from xraybench.metric_registry import bootstrapped

    y = labels.astype(bool)
    pred = scores >= threshold
    tp = w @ (pred & y)
    tn = w @ (~pred & ~y)
    fp = w @ (pred & ~y)
    fn = w @ (~pred & y)
    out = {}
    for metric in bootstrapped():
        if keys is not None and metric.key not in keys:
            continue
        out[metric.key] = metric.counts(tp, tn, fp, fn) if metric.counts is not None else metric.weighted(w, labels, scores)
    return out


def bootstrap_intervals(
    labels: Any, scores: Any, threshold: float = 0.5, resamples: int = 1000, seed: int = 0, level: float = 0.95,
    keys: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals: {metric: {"estimate", "low", "high"}} for every bootstrapped
    registry metric (or those in ``keys``). The resamples depend on (n, resamples, seed) only, so a
    metric added later and bootstrapped with a record's stored ``_meta`` joins the same resamples."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    point = _metrics_from_counts(np.ones((1, len(y))), y, s, threshold, keys)
    boot = _metrics_from_counts(_counts(len(y), resamples, seed), y, s, threshold, keys)
    alpha = (1 - level) / 2
    out = {}
    for name in boot:
        values = boot[name][np.isfinite(boot[name])]
        low, high = (np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan))
        out[name] = {"estimate": float(point[name][0]), "low": float(low), "high": float(high)}
    out["_meta"] = {"resamples": resamples, "seed": seed, "level": level, "threshold": threshold}  # type: ignore[assignment]
    return out


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """Exact (binomial) McNemar test on paired correctness; two-sided p-value. Pure Python."""
    only_a = sum(1 for x, y in zip(correct_a, correct_b) if x and not y)
    only_b = sum(1 for x, y in zip(correct_a, correct_b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return {"only_a": 0, "only_b": 0, "p_value": 1.0}
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return {"only_a": only_a, "only_b": only_b, "p_value": float(min(1.0, 2 * tail))}


def paired_auc_bootstrap(labels: Any, scores_a: Any, scores_b: Any, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """AUC(b) - AUC(a) on the same resamples: estimate, 95% interval and two-sided bootstrap p-value."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    w = _counts(len(y), resamples, seed)
    one = np.ones((1, len(y)))
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    diff = weighted_auc(w, y, b) - weighted_auc(w, y, a)
    point = float(weighted_auc(one, y, b)[0] - weighted_auc(one, y, a)[0])
    diff = diff[np.isfinite(diff)]
    p = 2 * min((diff <= 0).mean(), (diff >= 0).mean())
    low, high = np.quantile(diff, [0.025, 0.975])
    return {"difference": point, "low": float(low), "high": float(high), "p_value": float(min(1.0, p))}


def compare_runs(scores_a: dict[str, Any], scores_b: dict[str, Any], threshold_a: float = 0.5,
                 threshold_b: float = 0.5, seed: int = 0, auc: bool = True) -> dict[str, Any]:
    """Paired comparison of two runs on the same test images (matched by image id)."""
    if scores_a["test_ids"] != scores_b["test_ids"]:
        common = sorted(set(scores_a["test_ids"]) & set(scores_b["test_ids"]))
        if len(common) != len(scores_a["test_ids"]):
            raise ValueError("the runs were scored on different test images")
        order_b = {image_id: i for i, image_id in enumerate(scores_b["test_ids"])}
        idx = [order_b[i] for i in scores_a["test_ids"]]
        scores_b = {**scores_b, "test_scores": [scores_b["test_scores"][i] for i in idx],
                    "test_labels": [scores_b["test_labels"][i] for i in idx]}
    y = scores_a["test_labels"]
    a, b = scores_a["test_scores"], scores_b["test_scores"]
    correct_a = [(s >= threshold_a) == bool(t) for s, t in zip(a, y)]
    correct_b = [(s >= threshold_b) == bool(t) for s, t in zip(b, y)]
    return {
        "mcnemar": mcnemar_exact(correct_a, correct_b),
        "auc": paired_auc_bootstrap(y, a, b, seed=seed) if auc else None,
    }


def format_interval(iv: dict[str, float] | None, digits: int = 3) -> str:
    if not iv:
        return "-"
    return f"{iv['estimate']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"
