"""From run records to leaderboard rows: which runs form a row, their mean ± SD over distinct
seeds, ensembles' rows, each row's 95% intervals, and the counts the footer gives.

Nothing here trains or imports keras: rows are built from stored metrics and intervals;
per-image scores are read by the paired test against the reference row (``reference``) and by
the hierarchical bootstrap of a row of several seeds (``row_intervals``, numpy), so that a row's
95% CI and p are those of the values it shows. Only ``done`` runs are ranked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.leaderboard.reference import choose_reference, compare_with_reference
from xraybench.leaderboard.scores import ScoresLoader, Unusable, by_seed, read_once
from xraybench.leaderboard.rows import METRICS, SORTABLE, Reference, Row, threshold_label, variant
from xraybench.metric_registry import REGISTRY
from xraybench.records import FIXED_THRESHOLD, InvalidRecord, RunRecord, RunStatus, Threshold, coerce
from xraybench.redaction import mask_command, mask_text
from xraybench.repeats import distinct_runs
from xraybench.specs import trained_on

ASCENDING = {m.key for m in REGISTRY if not m.higher_is_better} | {"train_seconds"}
ROW_RESAMPLES = 1000  # the hierarchical bootstrap of a row of several seeds: resamples and seed (deterministic)
ROW_BOOTSTRAP_SEED = 0
MIN_POOLED_ENSEMBLES = 3


def build_rows(records: Iterable[RunRecord | dict[str, Any]], threshold: str = Threshold.FIXED.value,
               all_runs: bool = False, model: str | None = None, sort: str = "accuracy",
               scores_loader: ScoresLoader | None = None, max_paired_rows: int = 60, baseline: str | None = None,
               max_resampled_runs: int = 300) -> list[Row]:
    """One row per (model, variant, image size, fingerprint, backend), or per run with ``all_runs``.

    A row's 95% CIs are those of its shown mean (``row_intervals``): with ``scores_loader``, a
    hierarchical bootstrap over seeds and test images for a row of several seeds, up to
    ``max_resampled_runs`` runs in all. Records that are not valid run records are left out here;
    ``ResultStore.load`` names them."""
    if sort not in SORTABLE:
        raise XRayBenchError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    t = Threshold.parse(threshold)
    valid = []
    for r in records:
        try:
            valid.append(coerce(r))
        except InvalidRecord:
            continue
    done = [r for r in valid if r.status is RunStatus.DONE and r.metrics_at(t)]
    for flag, name in (("--model", model), ("--baseline", baseline)):
        if name:
            check_model_has_runs(name, {r.model for r in valid}, flag)
    reference, note = choose_reference(done, baseline)
    if model:  # the reference's runs stay until ΔAcc and p are known: `--model` shows them too
        done = [r for r in done if r.model == model or (reference is not None and r.model == reference.model)]
    groups: dict[tuple, list[RunRecord]] = {}
    for r in done:
        key = (r.run_id,) if all_runs else (r.model, variant(r), r.image_size, r.fingerprint, trained_on(r))
        groups.setdefault(key, []).append(r)
    rows = [_row(runs, t, reference, note) for runs in _pool_ensembles(groups).values()]
    # Rows told apart only by their backend say which is which in the Variant column.
    by_config = Counter((r.model, r.variant, r.image_size, r.fingerprint) for r in rows)
    for row in rows:
        row.backend_shown = by_config[(row.model, row.variant, row.image_size, row.fingerprint)] > 1
    loader = None if scores_loader is None else read_once(scores_loader)  # the paired tests and intervals share it
    compare_with_reference(rows, reference, loader, max_paired_rows, t)
    rows = [r for r in rows if r.model == model] if model else rows
    _mark_data_sets(rows)
    row_intervals(rows, t, loader, max_resampled_runs)
    present = sorted((r for r in rows if r.value(sort) is not None), key=lambda r: r.value(sort),
                     reverse=sort not in ASCENDING)
    return present + [r for r in rows if r.value(sort) is None]


DATA_MARKS = "†‡§¶"  # after the px of rows not on the data set with most rows (doubled past four data sets)


def _mark_data_sets(rows: list[Row]) -> None:
    """Rows on different data sets (fingerprints) side by side say so: those on the data set with
    most rows (then runs) stay unmarked, the others carry a mark the legend names (``columns.data_legend``),
    as a built-in 28 px copy's run is no rival of full-data runs."""
    counts, runs = Counter(r.fingerprint for r in rows), Counter[str]()
    for r in rows:
        runs[r.fingerprint] += r.runs
    order = sorted(counts, key=lambda f: (-counts[f], -runs[f], f))
    marks = {f: DATA_MARKS[k % len(DATA_MARKS)] * (k // len(DATA_MARKS) + 1) for k, f in enumerate(order[1:])}
    for row in rows:
        row.data_mark = marks.get(row.fingerprint, "")


def _row(runs: list[RunRecord], t: Threshold, reference: Reference | None, note: str) -> Row:
    """The row of one group of runs; its lowest-seed run represents it (``compare`` takes its id; its
    intervals stand until ``row_intervals``)."""
    runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, r.created_at))
    first = runs[0]
    flats = [{m.key: m.value(r.metrics_at(t) or {}) for m in REGISTRY} for r in runs]
    seeds = sorted({r.seed for r in runs}, key=lambda s: (s is None, s if s is not None else 0))
    distinct = distinct_runs(runs)  # identical repeats (same command, `run --force`) count once
    over_seeds = {key: _over_seeds(runs, [f[key] for f in flats]) for key in METRICS}
    train = _over_seeds(runs, [r.train_seconds for r in runs])
    return Row(
        model=first.model, variant=variant(first), runs=distinct, repeats=len(runs) - distinct,
        run_ids=[r.run_id for r in runs], seeds=seeds, distinct_seeds=len(seeds),
        runs_text=str(distinct) if len(seeds) == distinct else f"{distinct} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})",
        image_size=first.image_size, data_name=_data_name(first),
        data_source=mask_text(str((first.data or {}).get("source") or "")),
        precision=sorted({r.precision for r in runs if r.precision}), param_count=first.param_count,  # ensemble: none
        fingerprint=first.fingerprint, threshold=threshold_label(t, sorted({r.threshold_method() for r in runs})),
        transductive=t.transductive, distribution=f"{first.distribution} {first.version}",
        created_at=max(r.created_at for r in runs), study=(first.tags or {}).get("study"),
        representative_run=first.run_id,
        representative_threshold=(first.metrics_at(t) or {}).get("threshold", FIXED_THRESHOLD),
        intervals=first.intervals_at(t),
        wall_seconds_per_run=[r.wall_seconds for r in runs], cpu_seconds_per_run=[r.cpu_seconds for r in runs],
        commands=sorted({mask_command(r.command or "") for r in runs}),  # old records too
        hardware=sorted({_hardware(r) for r in runs}), backend=trained_on(first), reference=reference,
        estimates={key: mean for key, (mean, _) in over_seeds.items()},
        sds={key: sd for key, (_, sd) in over_seeds.items()},
        train_seconds=train[0], train_seconds_sd=train[1], epochs=_mean_sd([r.epochs_run for r in runs])[0],
        members=None if first.members is None else [[m["run_id"] for m in r.members or []] for r in runs],
        reference_note=note or None, records=runs)


def _mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD in floats: ``statistics.stdev`` is exact (Fractions) and was a sixth
    of the leaderboard's start-up with 1,000 runs, for digits nobody reads."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    n = len(present)
    mean = math.fsum(present) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1))


def _over_seeds(runs: list[RunRecord], values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and SD over distinct seeds: runs that repeat a seed are averaged into that seed's
    value first, so repeats never pass for a spread (one seed: no SD)."""
    if len({run.seed for run in runs}) == len(runs):  # the usual case: every run its own seed
        return _mean_sd(values)
    per_seed: dict[Any, list[float]] = {}
    for run, value in zip(runs, values):
        if value is not None:
            per_seed.setdefault(run.seed, []).append(value)
    return _mean_sd([_mean_sd(v)[0] for v in per_seed.values()])


def _hardware(record: RunRecord) -> str:
    from xraybench.specs import trained_with

    env = record.environment or {}
    cpu = env.get("cpu") or {}
    device = env.get("accelerator") or f"CPU ({cpu.get('model', '?')}, {cpu.get('cores', '?')} cores)"
    if record.members is not None:  # where its members trained is in their own records
        return f"mean of {len(record.members)} runs' scores (trained with {trained_on(record) or 'no Keras backend'})"
    library, backend = trained_with(record)
    return f"{library}{' / ' + backend if backend else ''} on {device}"


def _data_name(record: RunRecord) -> str:
    """A data set in a few words, for the footer: its reader's name for it, else its file or folder name."""
    data = record.data or {}
    return mask_text(str(data.get("dataset") or PurePath(str(data.get("source") or "?")).name))


def row_intervals(rows: list[Row], t: Threshold, loader: ScoresLoader | None, max_runs: int = 300) -> None:
    """Give every row the 95% intervals of the values it shows, and say which they are.

    A row of one seed keeps its (lowest-seed) run's stored test bootstrap (``interval_method``
    "run"). A row of several seeds shows their mean, so its intervals come from a hierarchical
    bootstrap of that mean (``stats.hierarchical_intervals``: seeds, then the test images they
    share, each run at its own threshold; ``ROW_RESAMPLES`` resamples, seeded) computed from the
    runs' per-image scores ("hierarchical"). Where those cannot be used (no ``loader``, a scores
    file missing or damaged, runs scored on other images, more than ``max_runs`` runs to
    resample) the row keeps its lowest-seed run's interval ("lowest-seed run") and
    ``interval_note`` says why; the table marks its CI cells with ``*``."""
    several = [row for row in rows if row.distinct_seeds >= 2]
    too_many = sum(len(row.records) for row in several) > max_runs
    intervals: dict | None
    why: str | None
    for row in several:
        if loader is None:
            intervals, why = None, "per-image scores not read"
        elif too_many:
            intervals, why = None, f"more than {max_runs} runs to resample (--model NAME narrows the table)"
        else:
            intervals, why = _over_seeds_and_images(row.records, t, loader)
        if intervals is None:
            row.interval_method, row.interval_note = "lowest-seed run", why
            continue
        for key, iv in intervals.items():
            if key != "_meta" and row.estimates.get(key) is not None:
                iv["estimate"] = row.estimates[key]  # the shown mean (the stored metrics; recomputed, the same figure)
        row.intervals, row.interval_method = intervals, "hierarchical"


def _over_seeds_and_images(runs: list[RunRecord], t: Threshold, loader: ScoresLoader) -> tuple[dict | None, str | None]:
    """The hierarchical bootstrap intervals of a row's runs, or None and why not."""
    from xraybench.stats import hierarchical_intervals

    try:
        _ids, labels, seeds = by_seed(runs, t, loader)
    except Unusable as why:
        return None, str(why)
    return hierarchical_intervals(labels, seeds, resamples=ROW_RESAMPLES, seed=ROW_BOOTSTRAP_SEED), None


def _pool_ensembles(groups: dict[tuple, list[RunRecord]]) -> dict[tuple, list[RunRecord]]:
    """The row groups with ensembles taken out of any single model's group. Ensembles of one
    configuration are pooled (mean ± SD) only when ``MIN_POOLED_ENSEMBLES`` of them have distinct
    seeds and disjoint members (``_disjoint_by_seed``): ensembles that share a member run share its
    errors, so their spread would understate the variation between seeds. Every other ensemble is
    a row of its own."""
    out: dict[tuple, list[RunRecord]] = {}
    for key, runs in groups.items():
        singles = [r for r in runs if r.members is None]
        if singles:
            out[key] = singles
        ensembles = [r for r in runs if r.members is not None]
        pooled = _disjoint_by_seed(ensembles)
        pooled = pooled if len(pooled) >= MIN_POOLED_ENSEMBLES else []
        if pooled:
            out[key + ("ensemble",)] = pooled
        chosen = {id(r) for r in pooled}
        for r in ensembles:
            if id(r) not in chosen:
                out[key + ("ensemble", r.run_id)] = [r]
    return out


def _disjoint_by_seed(ensembles: list[RunRecord]) -> list[RunRecord]:
    """Ensembles of distinct seeds whose member runs are disjoint, picked lowest seed (then oldest)
    first; an ensemble of mixed seeds (seed None) is never pooled."""
    chosen: list[RunRecord] = []
    used: set[str] = set()
    seeds: set[int] = set()
    for r in sorted(ensembles, key=lambda r: (r.seed is None, r.seed or 0, r.created_at, r.run_id)):
        ids = {m["run_id"] for m in r.members or []}
        if r.seed is None or r.seed in seeds or ids & used:
            continue
        chosen.append(r)
        used |= ids
        seeds.add(r.seed)
    return chosen


def check_model_has_runs(model: str, models: Iterable[str], flag: str = "--model") -> None:
    """A one-line XRayBenchError unless some run (of any status) is of ``model`` (given as ``flag``):
    a name that no run has is a typo or a model never run, which "no finished runs" (or every
    ΔAcc "-") would misstate; the models that do have runs are named so the user can pick one."""
    have = sorted(set(models))
    if model in have:
        return
    listing = f"runs exist of: {', '.join(have)}" if have else "there are no runs yet"
    raise XRayBenchError(f"{flag} {model}: no run of model {model!r}; {listing} "
                         "(`xraybench run --model MODEL` makes one)")


def count_statuses(records: Iterable[RunRecord], invalid: int = 0, model: str | None = None) -> dict[str, int]:
    """Runs per status (``RunStatus`` labels, in its order), ``invalid`` being the files that
    failed validation: the leaderboard ranks only done runs and says how many others there are."""
    counts = {s.label: 0 for s in RunStatus}
    for r in records:
        if model is None or r.model == model:
            counts[r.status.label] += 1
    counts[RunStatus.INVALID.label] = invalid
    return counts


def lacking(records: Iterable[RunRecord], threshold: str) -> int:
    """Done runs with no metrics at ``threshold`` (records older than an optional operating point):
    left out of its table, and counted so the command can say so."""
    t = Threshold.parse(threshold)
    return sum(1 for r in records if r.status is RunStatus.DONE and r.metrics_at(t) is None)
