"""``xraybench runs --backfill``: bring stored run records up to the current registry and schema, once.

Reading migrates records in memory (``records.migrate``: count-based metrics from the
confusion matrix are exact and cheap). What reading cannot do without numpy is a new
metric's bootstrap interval: that needs the per-image scores. This step computes, for each
``done`` record with scores, the intervals its stored ``_meta`` (resamples, seed, level,
threshold) says it was bootstrapped with, for the registry metrics it lacks: the same
resamples, so stored intervals are unchanged and new ones join them. It also records the
spec's ``reference`` and ``image_size`` for runs of models installed now that predate them.
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
        stored = record.intervals_at(t)
        missing = [m.key for m in bootstrapped() if m.key not in stored]
        if missing:
            out[t] = missing
    return out


def backfill(store, registry=None) -> list[tuple[str, str]]:
    """Backfill every record of ``store`` that xraybench made (``ResultStore.rewritable``), each in
    the file it was read from; returns (file name, what was added) per rewritten file."""
    from xraybench.results import _atomic_write
    from xraybench.stats import bootstrap_intervals

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
        scores = store.scores(record.run_id) if missing else None
        if missing and scores:
            for t, keys in missing.items():
                stored = dict(record.intervals_at(t))
                meta = stored.get("_meta") or {}
                threshold = meta.get("threshold", record.metrics_at(t).get("threshold", FIXED_THRESHOLD))
                new = bootstrap_intervals(scores["test_labels"], scores["test_scores"], threshold,
                                          resamples=meta.get("resamples", 1000), seed=meta.get("seed", record.seed or 0),
                                          level=meta.get("level", 0.95), keys=keys)
                new.pop("_meta")
                stored.update(new)
                stored.setdefault("_meta", {"resamples": meta.get("resamples", 1000), "seed": meta.get("seed", record.seed or 0),
                                            "level": meta.get("level", 0.95), "threshold": threshold})
                setattr(record, t.intervals_key, stored)
                added.append(f"{t.value}: {', '.join(keys)} intervals")
        if added:
            _atomic_write(path, record.to_dict())
            changed.append((path.name, "; ".join(added)))
    return changed

