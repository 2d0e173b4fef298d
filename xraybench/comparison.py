"""Two recorded runs compared on the same test images (``xraybench compare``): whether they can
be compared (both done, both with per-image scores, the same data), each run's bootstrap
intervals (stored with the run; metrics a record predates are bootstrapped here with the same
resamples and seed), and the paired tests (exact McNemar, paired-bootstrap AUC)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import RunRecord, RunStatus, Threshold

_ENDED = {RunStatus.INTERRUPTED: "interrupted", RunStatus.ERROR: "stopped by an error",
          RunStatus.TIMEOUT: "stopped by its timeout"}  # how a run that is not done ended, in words


@dataclass
class Comparison:
    a: RunRecord  # the two runs
    b: RunRecord
    intervals_a: dict[str, Any]  # metric key -> {estimate, low, high}, every bootstrapped registry metric
    intervals_b: dict[str, Any]
    paired: dict[str, Any]  # stats.compare_runs: "mcnemar" and "auc"


def compare(store, run_a: str, run_b: str, threshold: str) -> Comparison:
    """Runs ``run_a`` and ``run_b`` (ids or unique prefixes) at ``threshold`` (a ``records.Threshold``
    value); one-line XRayBenchErrors for runs that cannot be compared."""
    from xraybench.stats import compare_runs

    a, b = store.find(run_a), store.find(run_b)  # one-line errors naming a damaged file
    try:
        sa, sb = store.scores(a.run_id), store.scores(b.run_id)
    except ValueError as exc:
        raise XRayBenchError(str(exc)) from None
    for record in (a, b):  # before the scores: an interrupted run has none, and that is not what is wrong
        if record.status is not RunStatus.DONE:
            reason = f" ({record.reason})" if record.reason else ""
            raise XRayBenchError(f"run {record.run_id} was {_ENDED.get(record.status, record.status.label)}"
                                 f"{reason}; only done runs can be compared (`xraybench leaderboard` lists them)")
    for record, scores in ((a, sa), (b, sb)):
        if not scores:
            raise XRayBenchError(f"{store.runs / (record.run_id + '.scores.json')} is missing: both runs need "
                                 "per-image scores to be compared")
    fa, fb = a.fingerprint or None, b.fingerprint or None
    if fa != fb:
        raise XRayBenchError(f"not compared: the runs used different data (fingerprints {str(fa)[:12]} and {str(fb)[:12]})")
    t = Threshold.parse(threshold)
    thresholds = []
    for record in (a, b):  # an optional operating point (prior) that a record predates
        metrics = record.metrics_at(t)
        if not metrics:
            raise XRayBenchError(f"run {record.run_id} has no metrics at threshold {threshold} (recorded before it; "
                                 "`xraybench runs --backfill` adds them)")
        thresholds.append(metrics["threshold"])
    ta, tb = thresholds
    try:
        paired = compare_runs(sa, sb, ta, tb)
    except ValueError as exc:  # same fingerprint, other images: a scores file edited by hand
        raise XRayBenchError(f"not compared: {exc} ({store.runs})") from None
    return Comparison(a, b, _intervals(a, sa, ta, t), _intervals(b, sb, tb, t), paired)


def _intervals(record: RunRecord, scores: dict[str, Any], threshold: float, at: Threshold) -> dict[str, Any]:
    """The record's stored intervals, plus those of metrics it predates, bootstrapped with its own resamples and seed."""
    from xraybench.metric_registry import bootstrapped
    from xraybench.stats import with_missing_intervals

    stored = dict(record.intervals_at(at) or {})
    missing = [m.key for m in bootstrapped() if m.key not in stored]
    return with_missing_intervals(stored, scores["test_labels"], scores["test_scores"], threshold, record.seed or 0, missing)
