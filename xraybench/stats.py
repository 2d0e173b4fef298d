"""Honest uncertainty: bootstrap intervals and paired tests on the 624 test images.

Resampling is done with a multinomial count matrix W (B resamples x n images), so
every metric of every resample is a matrix product: no Python loop over
resamples, and AUC is exact with ties (Mann-Whitney on the weighted pairs). A row of
several seeds gets ``hierarchical_intervals``: the same machinery, with the seeds resampled
too. numpy only (imported inside the functions that need it): the leaderboard's exact
McNemar test is pure Python, and `xraybench leaderboard` never pays for scipy or scikit-learn
(numpy only where a row has several seeds to resample).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xraybench.metric_registry import bootstrapped, weighted_auc

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@functools.lru_cache(maxsize=4)  # every leaderboard row of 624 test images draws the same resamples: once
def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """The resample count matrix (resamples x n), read-only: it is shared between callers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    w.setflags(write=False)
    return w


def _metrics_from_counts(w: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
                         keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each bootstrapped registry metric (or those in ``keys``) for each row of the count matrix ``w``."""
    import numpy as np

    y = labels.astype(bool)
    pred = scores >= threshold
    # one product for the four counts: w is read once (a float matrix product; the counts stay exact)
    tp, tn, fp, fn = (w @ np.stack([pred & y, ~pred & ~y, pred & ~y, ~pred & y], axis=1).astype(np.float64)).T
    out = {}
    for metric in bootstrapped():
        if keys is not None and metric.key not in keys:
            continue
        if metric.counts is not None:
            out[metric.key] = metric.counts(tp, tn, fp, fn)
        else:
            assert metric.weighted is not None  # bootstrapped(): counts or weighted
            out[metric.key] = metric.weighted(w, labels, scores)
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
    out: dict[str, Any] = _percentiles({name: float(v[0]) for name, v in point.items()}, boot, level)
    out["_meta"] = {"resamples": resamples, "seed": seed, "level": level, "threshold": threshold}
    return out


def with_missing_intervals(stored: dict[str, Any], labels: Any, scores: Any, threshold: float, seed: int,
                           keys: Sequence[str]) -> dict[str, Any]:
    """A record's ``stored`` intervals plus those of ``keys`` it predates, bootstrapped with the stored
    ``_meta`` (resamples, seed, level; ``seed`` where none is stored), so the new ones join the same
    resamples. ``compare`` shows them; ``runs --backfill`` writes them. The stored ``_meta`` is kept."""
    if not keys:
        return stored
    meta = stored.get("_meta") or {}
    how = {"resamples": meta.get("resamples", 1000), "seed": meta.get("seed", seed), "level": meta.get("level", 0.95)}
    new = bootstrap_intervals(labels, scores, threshold, keys=keys, **how)
    return {"_meta": new.pop("_meta"), **stored, **new}


def _percentiles(point: dict[str, float], boot: dict[str, np.ndarray], level: float) -> dict[str, Any]:
    """{metric: {"estimate", "low", "high"}}: the percentile interval of each metric's finite
    resampled values (a resample where the metric is undefined says nothing about it)."""
    import numpy as np

    alpha = (1 - level) / 2
    out = {}
    for name in boot:
        values = boot[name][np.isfinite(boot[name])]
        low, high = (np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan))
        out[name] = {"estimate": float(point[name]), "low": float(low), "high": float(high)}
    return out


def hierarchical_intervals(
    labels: Any, seeds: Sequence[Sequence[tuple[Any, float]]], resamples: int = 1000, seed: int = 0,
    level: float = 0.95, keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Percentile intervals of the mean over seeds, the value a leaderboard row shows: a
    hierarchical bootstrap that resamples the seeds with replacement, then the test images with
    replacement, one image resample shared by every run (they were scored on the same images,
    in the order of ``labels``), and averages each metric over the resampled seeds.

    ``seeds``: one entry per distinct seed, each a list of (test scores, threshold) of its runs
    (repeats of a seed are averaged into that seed's value first, as the row's mean does); every
    run is measured at its own threshold. The image resamples are ``bootstrap_intervals``' for
    (n, resamples, seed); the seed resamples are drawn with ``seed + 1``. The estimate is the
    mean over seeds on the whole test set, the row's own value."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    mean_point, mean_boot = _mean_over_seeds(y, seeds, _counts(len(y), resamples, seed), seed + 1, keys)
    out = _percentiles(mean_point, mean_boot, level)
    out["_meta"] = {"resamples": resamples, "seed": seed, "level": level, "method": "hierarchical", "seeds": len(seeds),
                    "thresholds": [[float(t) for _, t in runs] for runs in seeds]}
    return out


def _mean_over_seeds(y: np.ndarray, seeds: Sequence[Sequence[tuple[Any, float]]], w: np.ndarray, seed_draws: int,
                     keys: Sequence[str] | None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """A row's mean over seeds of each metric: on the whole test set, and on each image resample of
    ``w`` with the seeds resampled too (drawn with ``seed_draws``). Repeats of a seed are averaged
    into that seed's value first."""
    import numpy as np

    one = np.ones((1, len(y)))
    boots, points = [], []  # per seed: {metric: values}, averaged over that seed's runs
    for runs in seeds:
        scored = [(np.asarray(s, dtype=np.float64), float(t)) for s, t in runs]
        boot = [_metrics_from_counts(w, y, s, t, keys) for s, t in scored]
        point = [_metrics_from_counts(one, y, s, t, keys) for s, t in scored]
        boots.append({name: np.mean([b[name] for b in boot], axis=0) for name in boot[0]})
        points.append({name: float(np.mean([p[name][0] for p in point])) for name in point[0]})
    k = len(boots)
    v = _counts(k, len(w), seed_draws)  # how often each seed is drawn in each resample (B x k)
    mean_boot, mean_point = {}, {}
    for name in boots[0]:
        per_seed = np.stack([b[name] for b in boots], axis=1)  # B x k, on the same image resamples
        with np.errstate(invalid="ignore"):
            mean_boot[name] = np.where(v > 0, per_seed * v, 0.0).sum(axis=1) / k
        mean_point[name] = float(np.mean([p[name] for p in points]))
    return mean_point, mean_boot


def paired_mean_difference(labels: Any, seeds_a: Sequence[Sequence[tuple[Any, float]]],
                           seeds_b: Sequence[Sequence[tuple[Any, float]]], key: str = "accuracy",
                           resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Row B's mean over seeds minus row A's, of one metric, on the same test images: the
    difference a leaderboard shows (ΔAcc), its percentile interval and a two-sided bootstrap p.

    Why not McNemar: it pairs two runs, so for rows of several seeds it tested one seed of each
    while the table showed the difference of their means. Here the test images are resampled
    once per resample and shared by both rows (the pairing); each row's seeds are resampled on
    their own (two models' seeds are not paired), as ``hierarchical_intervals`` does for one row.
    The interval and p are ``_paired_summary``'s."""
    import numpy as np

    if key not in {m.key for m in bootstrapped()} or resamples < 1:
        raise ValueError(f"a paired bootstrap needs a bootstrapped registry metric and resamples >= 1, got {key!r}, "
                         f"{resamples}")
    y = np.asarray(labels).astype(int)
    w = _counts(len(y), resamples, seed)
    point_a, boot_a = _mean_over_seeds(y, seeds_a, w, seed + 1, [key])
    point_b, boot_b = _mean_over_seeds(y, seeds_b, w, seed + 2, [key])
    return _paired_summary(point_b[key] - point_a[key], boot_b[key] - boot_a[key], level)


def _paired_summary(point: float, diff: np.ndarray, level: float) -> dict[str, float]:
    """A paired difference on the whole test set and its resampled values: the percentile interval
    and the two-sided Monte Carlo p, 2 (1 + resamples on the far side of 0, ties counted there) /
    (resamples + 1), at most 1: never 0 from a finite number of resamples. Every paired bootstrap
    here (``compare``'s AUC, the leaderboard's ΔAcc) reads its p this one way."""
    import numpy as np

    diff = diff[np.isfinite(diff)]
    alpha = (1 - level) / 2
    low, high = np.quantile(diff, [alpha, 1 - alpha])
    far = min(int((diff <= 0).sum()), int((diff >= 0).sum()))
    return {"difference": float(point), "low": float(low), "high": float(high),
            "p_value": min(1.0, 2 * (1 + far) / (len(diff) + 1))}


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
    """AUC(b) - AUC(a) on the same resamples: estimate, 95% interval and two-sided bootstrap p-value
    (``_paired_summary``)."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    w = _counts(len(y), resamples, seed)
    one = np.ones((1, len(y)))
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    diff = weighted_auc(w, y, b) - weighted_auc(w, y, a)
    return _paired_summary(float(weighted_auc(one, y, b)[0] - weighted_auc(one, y, a)[0]), diff, 0.95)


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
