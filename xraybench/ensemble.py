"""Ensembles as first-class results: the mean of recorded runs' per-image scores, recorded as a run.

An ensemble trains nothing. It reads its members' stored scores (``RUN_ID.scores.json``), averages
them image by image, and goes through the same "scores -> record fields" step as a trained run
(``harness.score_fields``: threshold chosen on its own validation scores, metrics, bootstrap
intervals), so its numbers mean exactly what a model's mean and it can be ranked, compared and
reported like one. Members must be finished runs on the same images: the same data fingerprint and
the same validation and test ids (aligned by id), else the ensemble is refused in one line naming
the run and what differs, and nothing is written.

numpy and the standard library only: no backend is imported, nothing is trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.records import RunRecord, RunStatus

ENSEMBLE = "ensemble"  # an ensemble record's model name and kind
SPLITS = ("val", "test")


@dataclass
class Member:
    """One member run: its record and its per-image scores as stored."""

    record: RunRecord
    scores: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.record.run_id


def load_members(store: Any, run_ids: Sequence[str]) -> list[Member]:
    """The runs ``run_ids`` name (ids or unique prefixes, each once), each a finished run with
    validation and test scores; a one-line XRayBenchError for the first that is not."""
    records: dict[str, RunRecord] = {}
    for run_id in run_ids:
        record = store.find(run_id)  # unknown, ambiguous or damaged: store.find says so in one line
        records.setdefault(record.run_id, record)
    if len(records) < 2:
        named = ", ".join(records) or "none"
        raise XRayBenchError(f"an ensemble needs at least 2 distinct runs; got {len(records)} ({named})")
    return [Member(record, _scores_of(store, record)) for record in records.values()]


def _scores_of(store: Any, record: RunRecord) -> dict[str, Any]:
    """A done run's stored scores, checked to hold both splits' ids, labels and finite scores in step."""
    run_id = record.run_id
    if record.status is not RunStatus.DONE:
        raise XRayBenchError(f"run {run_id} is {record.status.label}, not done: only finished runs can be ensembled")
    if record.members is not None:  # nesting would weigh its members unevenly and hide them from the row's name
        raise XRayBenchError(f"run {run_id} is itself an ensemble; name its member runs instead")
    try:
        scores = store.scores(run_id)
    except ValueError as exc:  # InvalidRecord: "PATH is damaged (...)"
        raise XRayBenchError(f"run {run_id}: {exc}") from None
    if scores is None:
        raise XRayBenchError(f"run {run_id} has no per-image scores file ({run_id}.scores.json)")
    if not scores.get("val_ids"):  # lengths, labels, ids and values: already checked by store.scores
        raise XRayBenchError(f"run {run_id}'s scores file has no validation scores "
                             "(recorded before validation scores were stored?)")
    return scores


def check_compatible(members: list[Member]) -> None:
    """A one-line XRayBenchError naming the first member that was not scored on the first one's
    images: another data fingerprint, other validation or test ids, or other labels for an id."""
    first = members[0]
    if not first.record.fingerprint:
        raise XRayBenchError(f"run {first.run_id} records no data fingerprint: its images cannot be matched")
    for m in members[1:]:
        if m.record.fingerprint != first.record.fingerprint:
            raise XRayBenchError(f"run {m.run_id} is on other data than run {first.run_id}: data fingerprint "
                                 f"{m.record.fingerprint[:12] or 'none'} vs {first.record.fingerprint[:12]}")
        for split in SPLITS:
            _check_split(first, m, split)


def _check_split(first: Member, other: Member, split: str) -> None:
    name = "validation" if split == "val" else split
    ids = [str(i) for i in first.scores[f"{split}_ids"]]
    theirs = [str(i) for i in other.scores[f"{split}_ids"]]
    if set(ids) != set(theirs):
        missing, extra = len(set(ids) - set(theirs)), len(set(theirs) - set(ids))
        raise XRayBenchError(f"run {other.run_id} has other {name} ids than run {first.run_id} "
                             f"({missing} missing, {extra} extra): not scored on the same images")
    labels = dict(zip(ids, first.scores[f"{split}_labels"]))
    differ = [i for i, label in zip(theirs, other.scores[f"{split}_labels"]) if int(label) != int(labels[i])]
    if differ:
        raise XRayBenchError(f"run {other.run_id} labels {len(differ)} {name} image(s) otherwise than run "
                             f"{first.run_id} (e.g. {differ[0]!r})")


def mean_scores(members: list[Member]) -> dict[str, Any]:
    """The members' scores averaged image by image, aligned by id in the first member's order; the
    mean is taken in run-id order, so the same members given in any order give identical scores."""
    out: dict[str, Any] = {}
    ordered = sorted(members, key=lambda m: m.run_id)
    for split in SPLITS:
        ids = [str(i) for i in members[0].scores[f"{split}_ids"]]
        stacked = np.stack([_aligned(m, split, ids) for m in ordered])
        out[f"{split}_ids"] = list(members[0].scores[f"{split}_ids"])
        out[f"{split}_labels"] = [int(v) for v in members[0].scores[f"{split}_labels"]]
        out[f"{split}_scores"] = [float(v) for v in stacked.mean(axis=0)]
    return {k: out[k] for k in ("test_ids", "test_labels", "test_scores", "val_ids", "val_labels", "val_scores")}


def _aligned(member: Member, split: str, ids: list[str]) -> np.ndarray:
    position = {str(i): n for n, i in enumerate(member.scores[f"{split}_ids"])}
    values = np.asarray(member.scores[f"{split}_scores"], dtype=np.float64)
    return values[[position[i] for i in ids]]


def _common(values: list[Any]) -> Any:
    """The value every member shares, else None (an ensemble of mixed seeds has no seed)."""
    return values[0] if len(set(map(repr, values))) == 1 else None


def _total(values: list[Any]) -> Any:
    """What the members cost together, when every member recorded it."""
    return sum(values) if values and all(isinstance(v, (int, float)) for v in values) else None


def _shared_data(members: list[Member]) -> dict[str, Any]:
    """The data description every member shares (the fingerprint at least; not the image size of
    members run at different sizes)."""
    first = members[0].record.data or {}
    return {k: v for k, v in first.items() if all((m.record.data or {}).get(k) == v for m in members[1:])}


def member_entry(record: RunRecord) -> dict[str, Any]:
    """How a member is listed in the ensemble's record: enough to name its configuration without
    reading its file (the leaderboard builds the ensemble's variant from these)."""
    from xraybench.leaderboard import variant
    from xraybench.specs import trained_on

    return {"run_id": record.run_id, "model": record.model, "variant": variant(record), "seed": record.seed,
            "image_size": record.image_size, "backend": trained_on(record)}


def build(store: Any, run_ids: Sequence[str], command: str = "",
          target_sensitivity: float | None = None) -> tuple[RunRecord, dict[str, Any]]:
    """The ensemble of ``run_ids`` as (validated record, scores), ready for ``store.save``;
    nothing is written here. The bootstrap resamples with the members' common seed (0 without one),
    as a run's do with its seed."""
    import xraybench
    from xraybench import environment
    from xraybench.harness import score_fields
    from xraybench.leaderboard import ensemble_variant
    from xraybench.results import new_run_id, now_iso

    members = load_members(store, run_ids)
    check_compatible(members)
    scores = mean_scores(members)
    records = [m.record for m in members]
    seed = _common([r.seed for r in records])
    fields = score_fields(scores["val_labels"], scores["val_scores"], scores["test_labels"], scores["test_scores"],
                          seed if seed is not None else 0, target_sensitivity)
    entries = [member_entry(r) for r in records]
    record = RunRecord(
        run_id=new_run_id(ENSEMBLE), model=ENSEMBLE, status=RunStatus.DONE, created_at=now_iso(),
        description=f"mean per-image score of {len(records)} runs: {ensemble_variant(entries)}",
        distribution="xraybench", version=xraybench.__version__, kind=ENSEMBLE, seed=seed,
        image_size=_common([r.image_size for r in records]), channels=_common([r.channels for r in records]),
        data=_shared_data(members), command=command, environment=environment.capture(),
        param_count=_total([r.param_count for r in records]), train_seconds=_total([r.train_seconds for r in records]),
        predict_seconds=_total([r.predict_seconds for r in records]), members=entries, **fields,
    )
    return record, scores  # store.save validates it (records.parse) before anything is written
