"""``xraybench runs --backfill``: bring stored run records up to the current registry and schema, once.

Reading migrates records in memory (``records.migrate``: count-based metrics from the
confusion matrix are exact and cheap). What reading cannot do without numpy is a new
metric's bootstrap interval: that needs the per-image scores. This step computes, for each
``done`` record with scores, the intervals its stored ``_meta`` (resamples, seed, level,
threshold) says it was bootstrapped with, for the registry metrics it lacks: the same
resamples, so stored intervals are unchanged and new ones join them. It also records the
spec's ``reference`` and ``image_size`` for runs of models installed now that predate them, and
the prior-shift operating point (``prior_shift.py``: metrics, intervals and the estimate, from
the stored validation and test scores; the true prior from the stored test labels) for done runs
that predate it and stored their validation scores.
Each record is rewritten atomically, in the current schema, in the file it was read from (a
record whose file name is not its run id is updated, never copied); files xraybench did not
make are not touched, nor is anything else, so the leaderboard stays fast (it never bootstraps).
"""

from __future__ import annotations

from typing import Any

from xraybench.records import FIXED_THRESHOLD, RunRecord, RunStatus, Threshold


def _missing_intervals(record: RunRecord) -> dict[Threshold, list[str]]:
    from xraybench.metric_registry import bootstrapped

    out = {}
    for t in Threshold:
        if record.metrics_at(t) is None:  # an optional operating point the record lacks (Threshold.PRIOR)
            continue
        stored = record.intervals_at(t)
        missing = [m.key for m in bootstrapped() if m.key not in stored]
        if missing:
            out[t] = missing
    return out


def _lacks_prior_shift(record: RunRecord) -> bool:
    return record.status is RunStatus.DONE and None in (
        record.prior_shift, record.metrics_at_prior_shift, record.intervals_at_prior_shift)


def _has_validation(scores: dict[str, Any]) -> bool:
    """Whether a scores file holds what the prior shift needs: runs before validation scores were
    stored (and files edited by hand) are left as they are."""
    return bool(scores.get("val_scores")) and bool(scores.get("test_scores"))  # shapes: store.scores checked them


def _prior_shift_fields(record: RunRecord, scores: dict[str, Any]) -> dict[str, Any]:
    """The prior-shift fields, bootstrapped with the resamples and seed of the record's own
    validation-threshold intervals (the harness's: 1,000 and the run's seed)."""
    from xraybench import prior_shift

    meta = record.intervals_at(Threshold.VAL).get("_meta") or {}
    return prior_shift.record_fields(scores["val_labels"], scores["val_scores"], scores["test_labels"],
                                     scores["test_scores"], seed=meta.get("seed", record.seed or 0),
                                     resamples=meta.get("resamples", 1000))


def backfill(store, registry=None) -> list[tuple[str, str]]:
    """Backfill every record of ``store`` that xraybench made (``ResultStore.rewritable``), each in
    the file it was read from; returns (file name, what was added) per rewritten file."""
    from xraybench.results import _atomic_write
    from xraybench.stats import with_missing_intervals

    specs: dict[str, Any] = dict(getattr(registry, "models", {}) or {})
    changed = []
    for path, record in store.rewritable():
        added = []
        spec = specs.get(record.model)
        if record.spec_image_size is None and spec is not None:
            record.spec_image_size = spec.image_size
            record.reference = bool(getattr(spec, "reference", False))
            added.append(f"spec image size {spec.image_size}" + (", reference" if record.reference else ""))
        missing = _missing_intervals(record) if record.status is RunStatus.DONE else {}
        lacks_prior = _lacks_prior_shift(record)
        try:
            scores = store.scores(record.run_id) if missing or lacks_prior else None
        except ValueError:  # a damaged scores file: `xraybench runs` names it; nothing to compute from
            scores = None
        if lacks_prior and scores and _has_validation(scores):
            for key, value in _prior_shift_fields(record, scores).items():
                setattr(record, key, value)
            shift = record.prior_shift or {}
            added.append(f"prior-shift operating point (estimated P(PNEUMONIA) {shift['estimated_prior']:.3f}, "
                         f"threshold {shift['threshold']:.3f})")
        if missing and scores:
            for t, keys in missing.items():
                stored = dict(record.intervals_at(t))
                threshold = (stored.get("_meta") or {}).get("threshold",
                                                            record.metrics_at(t).get("threshold", FIXED_THRESHOLD))
                setattr(record, t.intervals_key, with_missing_intervals(
                    stored, scores["test_labels"], scores["test_scores"], threshold, record.seed or 0, keys))
                added.append(f"{t.value}: {', '.join(keys)} intervals")
        if added:
            _atomic_write(path, record.to_dict())
            changed.append((path.name, "; ".join(added)))
    return changed

