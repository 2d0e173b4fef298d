"""Leaderboard rows from run records, and their rendering (rich table, Markdown, CSV, JSON).

Nothing here trains or imports keras: rows are built from stored metrics and intervals;
per-image scores are read by the exact McNemar test (pure Python) and by the hierarchical
bootstrap of a row of several seeds (``row_intervals``, numpy), so that a row's 95% CI is
that of the mean it shows. Runs of the same model, variant (default, tuned or overridden
parameters; bf16 marked), image size and data fingerprint form one row, shown as mean +- SD
over their distinct seeds; only ``done`` runs are ranked. Metric columns come from ``metric_registry.REGISTRY``. Ensembles
(``xraybench.ensemble``) are rows of their own, pooled over seeds only by ``_pool_ensembles``' rule.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from xraybench.metric_registry import REGISTRY
from xraybench.records import (FIXED_THRESHOLD, PRIOR_SHIFT_DESCRIPTION, InvalidRecord, RunRecord, RunStatus, Threshold,
                               coerce)
from xraybench.redaction import mask_command, mask_text
from xraybench.references import REFERENCES
from xraybench.repeats import distinct_runs

METRICS = {m.key: m.label for m in REGISTRY}
SORTABLE = tuple(METRICS) + ("train_seconds", "created_at")
_ASCENDING = {m.key for m in REGISTRY if not m.higher_is_better} | {"train_seconds"}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {m.key: m.value(metrics) for m in REGISTRY}


def _hardware(record: RunRecord) -> str:
    from xraybench.training.backend import KNOWN

    env = record.environment or {}
    cpu = env.get("cpu") or {}
    device = env.get("accelerator") or f"CPU ({cpu.get('model', '?')}, {cpu.get('cores', '?')} cores)"
    if record.members is not None:  # where its members trained is in their own records
        return f"mean of {len(record.members)} runs' scores (trained with {trained_on(record) or 'no Keras backend'})"
    if record.kind == "generic":
        return f"scikit-learn {env.get('scikit-learn') or '?'} on {device}"
    backend = trained_on(record) or "?"
    version = env.get(backend) if backend in KNOWN else None
    return f"keras {env.get('keras') or '?'} / {backend} {version or ''} on {device}".replace("  ", " ")


def trained_on(record: RunRecord) -> str | None:
    """The Keras backend a run trained with (None for families without one): the same command
    trains on TensorFlow or JAX depending on the install, with other random streams and other
    speeds, so runs of different backends are rows of their own, never one mean."""
    if record.members is not None:  # an ensemble trained nothing: its members' backends
        return "+".join(sorted({str(m["backend"]) for m in record.members if m.get("backend")})) or None
    if record.kind == "generic":
        return None
    return (record.environment or {}).get("backend")


def variant(record: RunRecord | dict[str, Any]) -> str:
    """"default", "tuned", or the ``--param``/``--epochs`` overrides a run was given, led by its
    training recipe unless that is the seed's and was not asked for (``modern label_smoothing=0.0``;
    tags hold the overrides, params the recipe a plugin defaults to: the results index keeps it
    in summaries), plus "bf16" for
    runs under mixed_bfloat16: another configuration gets its own row instead of joining the
    mean of the defaults, and rows of different recipes are never pooled. An ensemble's variant
    names its members' configurations (``ensemble_variant``)."""
    record = coerce(record)
    if record.members is not None:
        return ensemble_variant(record.members)
    tags = record.tags or {}
    overrides = dict(tags.get("overrides") or {})
    asked = overrides.pop("recipe", None)  # --recipe NAME: always named, the seed's too
    recipe = asked or (record.params or {}).get("recipe")  # none stored: before recipes, the seed's
    parts = [str(recipe)] if recipe and (asked or recipe != "seed") else []
    if tags.get("tuned"):
        name = " ".join(["tuned", *parts])
    else:
        name = " ".join([*parts, *(f"{k}={v}" for k, v in sorted(overrides.items()))]) or "default"
    return f"{name} bf16" if record.precision == "mixed_bfloat16" else name


def ensemble_variant(members: list[dict[str, Any]]) -> str:
    """An ensemble's member configurations, sorted so that the same members in any order name the
    same row: "cnn modern + resnet modern", a repeated one counted ("cnn default x2"), each
    member's image size added only where the members differ in it."""
    sizes = {m.get("image_size") for m in members}
    names = Counter(f"{m.get('model')} {m.get('variant') or 'default'}"
                    + (f" {m.get('image_size')}px" if len(sizes) > 1 else "") for m in members)
    return " + ".join(name + (f" x{n}" if n > 1 else "") for name, n in sorted(names.items()))


def threshold_label(t: Threshold, methods: Iterable[str] = ()) -> str:
    """How a row (and the table title) names its operating point; the transductive one says so."""
    if t is Threshold.FIXED:
        return t.value
    if t is Threshold.PRIOR:
        return f"prior ({PRIOR_SHIFT_DESCRIPTION})"
    methods = list(methods)
    return f"val ({'; '.join(methods)})" if methods else t.value


TRANSDUCTIVE_NOTE = (
    "Operating point: prior shift, TRANSDUCTIVE. Each run's threshold is moved to the test prior P(PNEUMONIA) that "
    "EM (Saerens et al. 2002) estimates from that run's unlabeled test scores after Platt calibration on validation "
    "(never from the test labels). It reads the test set, so this table stands alone: never mix or rank it with the "
    "0.5 or validation-threshold rows. Runs recorded before it are left out until `xraybench runs --backfill`.")


def lacking(records: Iterable[RunRecord], threshold: str) -> int:
    """Done runs with no metrics at ``threshold`` (records older than an optional operating point):
    left out of its table, and counted so the command can say so."""
    t = Threshold.parse(threshold)
    return sum(1 for r in records if r.status is RunStatus.DONE and r.metrics_at(t) is None)


def record_keys(threshold: str) -> tuple[str, str]:
    """The run-record keys holding metrics and intervals at threshold ``"0.5"``, ``"val"`` or ``"prior"``."""
    t = Threshold.parse(threshold)
    return t.metrics_key, t.intervals_key


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
    by_seed: dict[Any, list[float]] = {}
    for run, value in zip(runs, values):
        if value is not None:
            by_seed.setdefault(run.seed, []).append(value)
    return _mean_sd([_mean_sd(v)[0] for v in by_seed.values()])


@dataclass
class Reference:
    """The row every other row is compared with: a model's default runs at its own image size."""

    model: str
    image_size: int | None
    declared: str  # how it was chosen: "declared by its plugin" or "--baseline"

    def __str__(self) -> str:
        return f"{self.model} (default parameters, {self.image_size or '?'} px)"


def choose_reference(records: list[RunRecord], baseline: str | None = None) -> tuple[Reference | None, str]:
    """The reference model and size, from ``--baseline`` or from the records whose plugin
    declared ``reference=True`` on its spec; and a note when there is none or several."""
    note = ""
    if baseline:
        candidates = [r for r in records if r.model == baseline]
        if not candidates:
            return None, f"--baseline {baseline}: no finished run of that model"
        how = "--baseline"
    else:
        declared = sorted({r.model for r in records if r.reference})
        if not declared:
            return None, ("no run of a model that declares itself the reference (ModelSpec.reference) and no "
                          "--baseline MODEL was given")
        if len(declared) > 1:
            note = f"several models declare themselves the reference ({', '.join(declared)}); using {declared[0]}"
        baseline = declared[0]
        candidates = [r for r in records if r.model == baseline]
        how = "declared by its plugin"
    declared_sizes = [r for r in candidates if r.spec_image_size]
    size: int | None
    if declared_sizes:  # the newest run's: what the plugin declares now (a plugin may change its size)
        size = max(declared_sizes, key=lambda r: r.created_at).spec_image_size
    else:  # records from before specs were recorded: the size it was run at most often by default
        defaults = [r for r in candidates if variant(r) == "default"] or candidates
        size = Counter(r.image_size for r in defaults).most_common(1)[0][0]
    return Reference(baseline, size, how), note


def _seeds_text(runs: int, seeds: list) -> str:
    return str(runs) if len(seeds) == runs else f"{runs} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})"


def build_rows(
    records: Iterable[RunRecord | dict[str, Any]],
    threshold: str = Threshold.FIXED.value,
    all_runs: bool = False,
    model: str | None = None,
    sort: str = "accuracy",
    scores_loader: Callable[[str], dict | None] | None = None,
    max_paired_rows: int = 60,
    baseline: str | None = None,
    max_resampled_runs: int = 300,
) -> list[dict[str, Any]]:
    """One row per (model, variant, image size, fingerprint, backend), or per run with ``all_runs``.

    A row's 95% CIs are those of its shown mean (``row_intervals``): with ``scores_loader``, a
    hierarchical bootstrap over seeds and test images for a row of several seeds, up to
    ``max_resampled_runs`` runs in all. Records that are not valid run records are left out here;
    ``ResultStore.load`` names them."""
    if sort not in SORTABLE:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    t = Threshold.parse(threshold)
    done = []
    models = set()
    for r in records:
        try:
            r = coerce(r)
        except InvalidRecord:
            continue
        models.add(r.model)
        if r.status is RunStatus.DONE and r.metrics_at(t):
            done.append(r)
    if model:
        check_model_has_runs(model, models)
    reference, reference_note = choose_reference(done, baseline)
    if model:  # the reference's runs stay until ΔAcc and p are known: `--model` shows them too
        done = [r for r in done if r.model == model or (reference is not None and r.model == reference.model)]
    groups: dict[tuple, list[RunRecord]] = {}
    for r in done:
        key = (r.run_id,) if all_runs else (r.model, variant(r), r.image_size, r.fingerprint, trained_on(r))
        groups.setdefault(key, []).append(r)
    groups = _pool_ensembles(groups)
    rows = []
    runs_of: dict[int, list[RunRecord]] = {}  # id(row) -> its runs, for its intervals
    for runs in groups.values():
        runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, r.created_at))
        first = runs[0]  # the representative run: lowest seed (its paired test is shown; its intervals until row_intervals)
        flats = [flat_metrics(r.metrics_at(t) or {}) for r in runs]  # (every run in `done` has them)
        seeds = sorted({r.seed for r in runs}, key=lambda s: (s is None, s if s is not None else 0))
        methods = sorted({r.threshold_method() for r in runs})
        row: dict[str, Any] = {
            "model": first.model,
            "variant": variant(first),
            "runs": distinct_runs(runs),  # identical repeats (same command, `run --force`) count once
            "repeats": len(runs) - distinct_runs(runs),
            "run_ids": [r.run_id for r in runs],
            "seeds": seeds,
            "distinct_seeds": len(seeds),
            "runs_text": _seeds_text(distinct_runs(runs), seeds),
            "image_size": first.image_size,
            "data_name": _data_name(first),
            "data_source": mask_text(str((first.data or {}).get("source") or "")),
            "precision": sorted({str(r.precision) for r in runs}),
            "param_count": first.param_count,
            "fingerprint": first.fingerprint,
            "threshold": threshold_label(t, methods),
            "transductive": t.transductive,
            "distribution": f"{first.distribution} {first.version}",
            "created_at": max(r.created_at for r in runs),
            "study": (first.tags or {}).get("study"),
            "representative_run": first.run_id,
            "representative_threshold": (first.metrics_at(t) or {}).get("threshold", FIXED_THRESHOLD),
            "intervals": first.intervals_at(t),
            "wall_seconds_per_run": [r.wall_seconds for r in runs],
            "cpu_seconds_per_run": [r.cpu_seconds for r in runs],
            "commands": sorted({mask_command(r.command or "") for r in runs}),  # old records too
            "hardware": sorted({_hardware(r) for r in runs}),
            "backend": trained_on(first),
            "reference": None if reference is None else {"model": reference.model, "image_size": reference.image_size,
                                                          "chosen": reference.declared},
        }
        for name in METRICS:
            row[name], row[f"{name}_sd"] = _over_seeds(runs, [f[name] for f in flats])
        row["train_seconds"], row["train_seconds_sd"] = _over_seeds(runs, [r.train_seconds for r in runs])
        row["epochs"], _ = _mean_sd([r.epochs_run for r in runs])
        row["members"] = None if first.members is None else [[m["run_id"] for m in r.members or []] for r in runs]
        rows.append(row)
        runs_of[id(row)] = runs
    # Rows told apart only by their backend say which is which in the Variant column.
    by_config = Counter((r["model"], r["variant"], r["image_size"], r["fingerprint"]) for r in rows)
    for row in rows:
        row["backend_shown"] = by_config[(row["model"], row["variant"], row["image_size"], row["fingerprint"])] > 1
    base = reference_base(rows, reference)
    for row in rows:
        ref = reference_for(row, base)
        row["delta_accuracy_vs_baseline"] = (
            None if ref is None or row["accuracy"] is None else row["accuracy"] - ref["accuracy"]
        )
        row["p_vs_baseline"] = None
        row["is_reference"] = ref is row
        if reference is not None:  # the size it is compared at on this row's data (None: no reference run there)
            row["reference"] = {**row["reference"], "image_size": None if ref is None else ref["image_size"],
                                "own_image_size": reference.image_size}
        if reference_note:  # no reference, or several declared: said once in the footnote
            row["reference_note"] = reference_note
    if scores_loader is not None:  # the paired tests and the intervals read some files twice: once is enough
        scores_loader = _read_once(scores_loader)
    if scores_loader is not None and len(rows) <= max_paired_rows and reference is not None:
        _paired_vs_baseline(rows, base, scores_loader, reference)
    elif scores_loader is not None and reference is not None:  # said in the footer, never a silent "-"
        for row in rows:
            row["p_vs_baseline_note"] = (f"p not computed: more than {max_paired_rows} rows (--model NAME narrows the "
                                         "table)")
    if model:
        rows = [r for r in rows if r["model"] == model]
    row_intervals(rows, runs_of, t, scores_loader, max_resampled_runs)
    present = [r for r in rows if r.get(sort) is not None]
    present.sort(key=lambda r: r[sort], reverse=sort not in _ASCENDING)
    return present + [r for r in rows if r.get(sort) is None]


ROW_RESAMPLES = 1000  # the hierarchical bootstrap of a row of several seeds: resamples and seed (deterministic)
ROW_BOOTSTRAP_SEED = 0


def _read_once(loader: Callable[[str], dict | None]) -> Callable[[str], dict | None]:
    """``loader`` remembering what it returned for the length of one ``build_rows`` (nothing on
    disk); a file it cannot read is None, as ``_paired_vs_baseline`` treats it."""
    seen: dict[str, dict | None] = {}

    def read(run_id: str) -> dict | None:
        if run_id not in seen:
            try:
                seen[run_id] = loader(run_id)
            except (OSError, ValueError):
                seen[run_id] = None
        return seen[run_id]

    return read


def row_intervals(rows: list[dict[str, Any]], runs_of: dict[int, list[RunRecord]], t: Threshold,
                  loader: Callable[[str], dict | None] | None, max_runs: int = 300) -> None:
    """Give every row the 95% intervals of the values it shows, and say which they are.

    A row of one seed keeps its (lowest-seed) run's stored test bootstrap (``interval_method``
    "run"). A row of several seeds shows their mean, so its intervals come from a hierarchical
    bootstrap of that mean (``stats.hierarchical_intervals``: seeds, then the test images they
    share, each run at its own threshold; ``ROW_RESAMPLES`` resamples, seeded) computed from the
    runs' per-image scores ("hierarchical"). Where those cannot be used (no ``loader``, a scores
    file missing or damaged, runs scored on other images, more than ``max_runs`` runs to
    resample) the row keeps its lowest-seed run's interval ("lowest-seed run") and
    ``interval_note`` says why; the table marks its CI cells with ``*``."""
    several = [row for row in rows if row["distinct_seeds"] >= 2]
    for row in rows:
        row["interval_method"], row["interval_note"] = "run", None
    too_many = sum(len(runs_of[id(row)]) for row in several) > max_runs
    intervals: dict | None
    why: str | None
    for row in several:
        if loader is None:
            intervals, why = None, "per-image scores not read"
        elif too_many:
            intervals, why = None, f"more than {max_runs} runs to resample (--model NAME narrows the table)"
        else:
            intervals, why = _over_seeds_and_images(runs_of[id(row)], t, loader)
        if intervals is None:
            row["interval_method"], row["interval_note"] = "lowest-seed run", why
            continue
        for key, iv in intervals.items():
            if key != "_meta" and row.get(key) is not None:
                iv["estimate"] = row[key]  # the shown mean (the stored metrics; recomputed, the same figure)
        row["intervals"], row["interval_method"] = intervals, "hierarchical"


def _over_seeds_and_images(runs: list[RunRecord], t: Threshold,
                           loader: Callable[[str], dict | None]) -> tuple[dict | None, str | None]:
    """The hierarchical bootstrap intervals of a row's runs, or None and why not."""
    from xraybench.stats import hierarchical_intervals

    ids = labels = None
    by_seed: dict[Any, list[tuple[list, float]]] = {}
    for run in runs:
        scores = loader(run.run_id)
        if not scores:
            return None, "per-image scores missing or damaged"
        values, ys = scores["test_scores"], scores["test_labels"]
        if ids is None:
            ids, labels = scores["test_ids"], ys
        elif scores["test_ids"] != ids:  # the same images in another order are put in the first run's
            where = {image: k for k, image in enumerate(scores["test_ids"])}
            if len(where) != len(ids) or any(image not in where for image in ids):
                return None, "its runs were scored on different test images"
            values, ys = [values[where[i]] for i in ids], [ys[where[i]] for i in ids]
        if ys != labels:
            return None, "its runs' test labels differ"
        threshold = (run.metrics_at(t) or {}).get("threshold", FIXED_THRESHOLD)
        by_seed.setdefault(run.seed, []).append((values, threshold))
    return hierarchical_intervals(labels, list(by_seed.values()), resamples=ROW_RESAMPLES, seed=ROW_BOOTSTRAP_SEED), None


MIN_POOLED_ENSEMBLES = 3
ENSEMBLE_NOTE = (" Ensemble rows average their member runs' per-image scores (threshold chosen on the ensemble's own "
                 f"validation scores); they show mean±SD only over {MIN_POOLED_ENSEMBLES} or more ensembles of distinct "
                 "seeds with no member run in common, else one row per ensemble.")


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
        if len(pooled) < MIN_POOLED_ENSEMBLES:
            pooled = []
        else:
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


def reference_base(rows: list[dict[str, Any]], reference: Reference | None) -> list[dict[str, Any]]:
    """The reference model's default rows each row may be compared with: on every data set
    (fingerprint), those at one size, the reference's own where it ran at it there, else the
    size it ran at most there (nearest its own on a tie; on the built-in copy a model runs at its
    28 px by default). Why per data set: a fingerprint names the images, not their
    size, and data that comes at one size only (the built-in copy) would otherwise never be
    compared with anything."""
    if reference is None:
        return []
    default = [r for r in rows if r["model"] == reference.model and r["variant"] == "default"]
    runs_at: dict[str, Counter] = {}
    for r in default:
        runs_at.setdefault(r["fingerprint"], Counter())[r["image_size"]] += r["runs"]
    own = reference.image_size

    def size_for(counts: Counter) -> Any:
        if own in counts:
            return own
        return min(counts, key=lambda size: (-counts[size], abs((size or 0) - (own or 0)), size or 0))

    chosen = {fingerprint: size_for(counts) for fingerprint, counts in runs_at.items()}
    return [r for r in default if r["image_size"] == chosen[r["fingerprint"]]]


def reference_for(row: dict[str, Any], base: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reference row a row is compared with: the reference model's default row on the same
    data fingerprint, at the size ``reference_base`` chose for that data, trained on the row's
    backend where there is one (else the one with most runs); None when the data has none."""
    same_data = [b for b in base if b["fingerprint"] == row["fingerprint"]]
    if not same_data:
        return None
    if any(b is row for b in same_data):
        return row
    return max(same_data, key=lambda b: (b.get("backend") == row.get("backend"), b["runs"]))


def _data_name(record: RunRecord) -> str:
    """A data set in a few words, for the footer: its reader's name for it, else its file or folder name."""
    from pathlib import PurePath

    data = record.data or {}
    return mask_text(str(data.get("dataset") or PurePath(str(data.get("source") or "?")).name))


def make_reference_command(model: str, row: dict[str, Any]) -> str:
    """The command that records ``model``'s default run on a row's data, as the footer shows it
    (no ``--data`` where that data is the built-in copy a plain command falls back to here)."""
    import shlex

    from xraybench.data import builtin

    source = row.get("data_source") or ""
    try:
        plain_builtin = row.get("data_name") == builtin.NAME and builtin.fallback_notice(None) is not None
    except Exception:  # noqa: BLE001 - a bad $XRAYBENCH_DATA: name the data explicitly
        plain_builtin = False
    if plain_builtin:
        return f"`xraybench run --model {model}`"
    return f"`xraybench run --model {model} --data {shlex.quote(source) if source else 'PATH'}`"


def _declared_reference_model() -> str | None:
    """The model an installed plugin declares the reference (``ModelSpec.reference``), asked only
    when no recorded run names one, to say which command makes its first run; None if none does."""
    try:
        from xraybench.plugins import load_registry

        declared = sorted(name for name, spec in load_registry().models.items() if getattr(spec, "reference", False))
    except Exception:  # noqa: BLE001 - a footer hint is never worth a failed leaderboard
        return None
    return declared[0] if declared else None


def reference_gaps(rows: list[dict[str, Any]]) -> list[str]:
    """One line per reason a row's ΔAcc or p is "-", never silent: a data set with no run of the
    reference (and the command that makes one), no reference at all, or p not computed (why)."""
    if not rows:
        return []
    lines: list[str] = []
    ref = next((r["reference"] for r in rows if r.get("reference")), None)
    if ref is None:
        if any(str(r.get("reference_note", "")).startswith("--baseline") for r in rows):
            return lines  # the footnote names the --baseline model that has no finished run
        model = _declared_reference_model()
        if model:
            lines.append(f"ΔAcc and p are \"-\": no run of the reference model {model} (declared by its plugin) yet; "
                         f"{make_reference_command(model, rows[0])} makes one.")
        return lines
    missing: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if (row.get("reference") or {}).get("image_size") is None:
            missing.setdefault(row["fingerprint"], []).append(row)
    for fingerprint, without in missing.items():
        lines.append(f"ΔAcc and p are \"-\" for {len(without)} row{'s' if len(without) != 1 else ''} on "
                     f"{without[0].get('data_name') or '?'} (data {fingerprint[:12]}): no default run of the reference "
                     f"{ref['model']} there; {make_reference_command(ref['model'], without[0])} makes one.")
    notes = Counter(row["p_vs_baseline_note"] for row in rows if row.get("p_vs_baseline") is None
                    and not row.get("is_reference") and row.get("p_vs_baseline_note")
                    and (row.get("reference") or {}).get("image_size") is not None)
    for note, n in notes.items():
        lines.append(f"p is \"-\" for {n} row{'s' if n != 1 else ''}: {note}.")
    return lines


def _paired_vs_baseline(rows: list[dict[str, Any]], base: list[dict[str, Any]], loader, reference: Reference) -> None:
    """Exact McNemar test (accuracy at each run's threshold) of every row's run against the reference's.

    Only McNemar: it is pure Python and cheap enough for every leaderboard; `compare` and
    the report add the paired-bootstrap AUC difference.
    """
    from xraybench.stats import compare_runs

    def scores(run_id: str):
        try:
            return loader(run_id)
        except (OSError, ValueError):
            return None

    for row in rows:
        row["p_vs_baseline"] = None
        ref = reference_for(row, base)
        if ref is None:
            row["p_vs_baseline_note"] = (f"no default run of the reference {reference.model} on the same data: not "
                                         f"compared ({make_reference_command(reference.model, row)} makes one)")
            continue
        if ref is row:
            continue
        a, b = scores(ref["representative_run"]), scores(row["representative_run"])
        if not a or not b:
            row["p_vs_baseline_note"] = "per-image scores missing or damaged"
            continue
        try:
            result = compare_runs(a, b, ref["representative_threshold"], row["representative_threshold"], auc=False)
        except ValueError as exc:
            row["p_vs_baseline_note"] = str(exc)
            continue
        row["p_vs_baseline"] = result["mcnemar"]["p_value"]


def check_model_has_runs(model: str, models: Iterable[str]) -> None:
    """A one-line XRayBenchError unless some run (of any status) is of ``model``: a name that no run
    has is a typo or a model never run, which "no finished runs" would misstate; the models that
    do have runs are named so the user can pick one."""
    if model in set(models):
        return
    from xraybench.errors import XRayBenchError

    have = sorted(set(models))
    listing = f"runs exist of: {', '.join(have)}" if have else "there are no runs yet"
    raise XRayBenchError(f"--model {model}: no run of model {model!r}; {listing} "
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


def status_line(counts: dict[str, int] | None, where: str = "") -> str:
    """The footer: how many runs are not ranked and why, or, without a done run, that there is none
    (naming the others, so that a newcomer whose run was interrupted learns it here)."""
    counts = counts or {}
    others = [f"{counts[s.label]} {s.label}" for s in RunStatus if s is not RunStatus.DONE and counts.get(s.label)]
    listing = "`xraybench runs` lists them with their reasons"
    if not counts.get(RunStatus.DONE.label):
        head = f"no finished runs{' in ' + where if where else ''}"
        if others:
            return f"{head} ({', '.join(others)}; {listing}); run `xraybench run --model MODEL` (`xraybench models` lists them)"
        return f"{head}; run `xraybench run --model MODEL` first (`xraybench models` lists them)"
    if not others:
        return ""
    return f"Not ranked (only done runs are): {', '.join(others)}; {listing}."


def reference_rows() -> list[dict[str, Any]]:
    rows = []
    for ref in REFERENCES:
        row = {"model": ref["model"], "variant": "published", "runs": 0, "runs_text": "pub.", "source": ref["source"],
               "image_size": ref.get("image_size")}
        for m in REGISTRY:
            row[m.key], row[f"{m.key}_sd"] = m.value(ref), None
        rows.append(row)
    return rows


def seed_note() -> str:
    """The leaderboard's short answer to the first question (why runs here score below the seed's
    published 0.86), with the doc to read; ``run`` prints the long one (``references``)."""
    from xraybench.references import seed_reference

    return (f"Below the seed's {seed_reference()['accuracy']:.2f}? It appears to have early-stopped on its test set; "
            "here validation is patient-grouped and test is shifted: docs/results.md")


def fmt(value: float | None, sd: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text}±{sd:.{digits}f}" if sd is not None else text


def footnote(rows: list[dict[str, Any]]) -> str:
    """What ΔAcc, ±, the CIs and p mean, naming the reference these rows were compared with."""
    ref = next((r["reference"] for r in rows if r.get("reference")), None)
    note = next((r["reference_note"] for r in rows if r.get("reference_note")), "")
    if ref is None:
        against = f"ΔAcc and p need a reference, and there is none{': ' + note if note else ''}."
    else:
        how = "declared by its plugin" if ref["chosen"] != "--baseline" else "chosen with --baseline"
        own = ref.get("own_image_size", ref["image_size"])
        elsewhere = sorted({f"{r['reference']['image_size']} px on {r.get('data_name') or '?'}" for r in rows
                            if (r.get("reference") or {}).get("image_size") not in (None, own)})
        against = (f"ΔAcc = accuracy minus that of the reference, {ref['model']} ({how}; default parameters, on the same "
                   f"data fingerprint, at its own {own} px"
                   + (f"; where it has no run at that size, at the size it ran at: {', '.join(elsewhere)}" if elsewhere else "")
                   + "). p is the exact McNemar test of each row's lowest-seed run against the reference row's "
                   "lowest-seed run on the same test images." + (f" Note: {note}." if note else ""))
    lead = TRANSDUCTIVE_NOTE + " " if any(r.get("transductive") for r in rows) else ""
    return (f"{lead}{against} Values are mean±SD over distinct seeds (repeated seeds are averaged first and shown as "
            "\"runs (n seeds)\"; identical repeats, same model, parameters, seed, data, backend and version, count "
            f"once). {INTERVAL_NOTE}" + _fallback_note(rows)
            + (ENSEMBLE_NOTE if any(r.get("members") for r in rows) else ""))


INTERVAL_NOTE = (f"Each 95% CI is that of the value beside it: for a row of several seeds, a hierarchical percentile "
                 f"bootstrap of the mean ({ROW_RESAMPLES:,} resamples of the seeds, then of the test images they share, "
                 "each run at its own threshold), for a row of one seed, the percentile bootstrap of its run's test set "
                 "(1,000 resamples).")


def _fallback_note(rows: list[dict[str, Any]]) -> str:
    """The footer's sentence on rows whose CI is their lowest-seed run's, not their mean's (CI cells
    marked *), and why; empty when there is none."""
    why = Counter(str(r.get("interval_note")) for r in rows if r.get("interval_method") == "lowest-seed run")
    if not why:
        return ""
    n = sum(why.values())
    reasons = "; ".join(f"{reason} ({count})" if len(why) > 1 else reason for reason, count in why.items())
    return (f" CIs marked * ({n} row{'s' if n != 1 else ''}) are the lowest-seed run's test bootstrap, not the mean's: "
            f"{reasons}.")


def short_legend(rows: list[dict[str, Any]], headers: Sequence[str], sds: bool = True) -> str:
    """The terminal table's footer, short: the abbreviations shown, what ± and the CI are, what
    ΔAcc is measured against, and that ``--explain`` says the rest (``legend`` and ``footnote``).
    ``sds``: whether the table shows SDs (a narrow one drops them)."""
    shown = set(headers)
    words = ["N = NORMAL, P = PNEUMONIA"] if any(m.per_class and m.label in shown for m in REGISTRY) else []
    words += [f"{m.label} = {m.name}" for m in REGISTRY
              if m.label in shown and not m.per_class and m.label.lower() != m.name.lower()]
    ref = next((r["reference"] for r in rows if r.get("reference")), None)
    against = f" ΔAcc, p: against {ref['model']}'s default row." if ref and shown & {"ΔAcc", "p"} else ""
    marked = _fallback_note(rows).replace(" CIs marked * (", " * (") if any(h.endswith("95% CI") for h in shown) else ""
    return (("; ".join(words) + ". ") if words else "") + (
        ("± = SD over seeds; " if sds else "") + "CI = 95% interval of the value shown (seeds, then test images, "
        "resampled)."
        f"{marked}{against} More: --explain, --columns all.")


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    drop: float = 0  # 0: always shown; else the higher, the sooner a narrow terminal drops it


def _ci(row: dict[str, Any], metric: str, digits: int = 3) -> str:
    iv = (row.get("intervals") or {}).get(metric)
    if not iv or iv.get("low") is None or iv["low"] != iv["low"]:
        return "-"
    mark = "*" if row.get("interval_method") == "lowest-seed run" else ""  # not the mean's: the footer says why
    return f"{iv['low']:.{digits}f}–{iv['high']:.{digits}f}{mark}"


def _seeds(seeds: list) -> str:
    """All seeds when they are few; first, last and count when a row pools many runs."""
    if len(seeds) <= 5:
        return ",".join(str(s) for s in seeds) or "-"
    return f"{seeds[0]}…{seeds[-1]} ({len(seeds)})"


def _p(row: dict[str, Any]) -> str:
    """The p cell: "ref" on the reference row itself; a "-" elsewhere is explained in the footer
    (``reference_gaps``)."""
    p = row.get("p_vs_baseline")
    if p is None and row.get("is_reference"):
        return "ref"
    return "-" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _run_id(row: dict[str, Any]) -> str:
    """The representative (lowest-seed) run's id, which ``xraybench compare`` takes, and how many
    more runs the row pools (Markdown, CSV and JSON list them all)."""
    run = row.get("representative_run")
    if not run:
        return "-"
    more = len(row.get("run_ids") or [run]) - 1
    return f"{run} +{more}" if more else run


def _value_cell(key: str, digits: int) -> Callable[[dict[str, Any]], str]:
    return lambda r: fmt(r.get(key), r.get(f"{key}_sd"), digits)


def _ci_cell(key: str, digits: int) -> Callable[[dict[str, Any]], str]:
    return lambda r: _ci(r, key, digits)


def _columns() -> list[Column]:
    """Every table column, in order: identity, then each registry metric shown in tables (and its
    CI), then the comparison with the reference and how the row was produced."""
    cols = [Column("Model", lambda r: r["model"]),
            Column("Variant", lambda r: r["variant"] + (f" ({r['backend']})" if r.get("backend_shown") else "")),
            Column("Runs", lambda r: r.get("runs_text") or str(r["runs"]))]
    for m in REGISTRY:
        if m.column is None:
            continue
        cols.append(Column(m.label, _value_cell(m.key, m.digits), m.column))
        if m.interval_column is not None:
            cols.append(Column(f"{m.label} 95% CI", _ci_cell(m.key, m.digits), m.interval_column))
    delta = lambda r: "-" if r.get("delta_accuracy_vs_baseline") is None else f"{r['delta_accuracy_vs_baseline']:+.3f}"  # noqa: E731
    cols += [
        Column("ΔAcc", delta, 2),
        Column("p", _p, 3),
        Column("Train s", lambda r: "-" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}", 7),
        Column("px", lambda r: str(r.get("image_size") or "-")),
        Column("Epochs", lambda r: "-" if r.get("epochs") is None else f"{r['epochs']:.1f}", 8),
        Column("Seeds", lambda r: _seeds(r.get("seeds", [])), 9),
        Column("Date", lambda r: (r.get("created_at") or "-")[:10], 10),
        Column("Run id", _run_id, 5.5),
    ]
    return cols


COLUMNS = _columns()
HEADERS = [c.header for c in COLUMNS]
# Columns the terminal table drops, first to last, when the terminal is too narrow for all of
# them; the rest (model, variant, runs, accuracy, per-class precision/recall/F1, AUC, image size)
# always stay. Narrower still, a borderless table shows two-digit means.
OPTIONAL_COLUMNS = tuple(c.header for c in sorted((c for c in COLUMNS if c.drop), key=lambda c: -c.drop))


def legend(headers: Iterable[str]) -> str:
    """What each metric column shown means, from the registry."""
    shown = set(headers)
    names = "; ".join(f"{m.label} = {m.name}" for m in REGISTRY if m.label in shown and m.label.lower() != m.name)
    return f"N = NORMAL, P = PNEUMONIA. {names}."


def _cells(row: dict[str, Any], columns: Sequence[Column] | None = None) -> list[str]:
    return [c.cell(row) for c in (COLUMNS if columns is None else columns)]


def _named_columns() -> dict[str, Column]:
    """Every column ``--columns`` can name: the table's own (a registry metric by its key, its CI
    as KEY_ci, the others by a word) and each registry metric the full table leaves out."""
    words = {"Model": "model", "Variant": "variant", "Runs": "runs", "ΔAcc": "delta_accuracy", "p": "p",
             "Train s": "train_seconds", "px": "image_size", "Epochs": "epochs", "Seeds": "seeds", "Date": "date",
             "Run id": "run_id"}
    for m in REGISTRY:
        words[m.label], words[f"{m.label} 95% CI"] = m.key, f"{m.key}_ci"
    table = {words.get(c.header, c.header.lower().replace(" ", "_")): c for c in COLUMNS}
    named: dict[str, Column] = {name: table.pop(name) for name in ("model", "variant", "image_size", "runs") if name in table}
    for m in REGISTRY:  # in the registry's order, each metric then its CI
        named[m.key] = table.pop(m.key) if m.key in table else Column(m.label, _value_cell(m.key, m.digits))
        if m.bootstrapped:
            ci = f"{m.key}_ci"
            named[ci] = table.pop(ci) if ci in table else Column(f"{m.label} 95% CI", _ci_cell(m.key, m.digits))
    return named | table  # then ΔAcc, p and how the row was produced


NAMED_COLUMNS = _named_columns()
# The terminal table's columns unless --columns says otherwise: they fit 80 columns. The image
# size tells apart rows of one model and variant (the published reference runs at three sizes).
DEFAULT_COLUMNS = ("model", "variant", "image_size", "runs", "accuracy", "accuracy_ci", "normal_f1", "pneumonia_f1",
                   "roc_auc", "delta_accuracy")


def table_columns(spec: str | None) -> list[str] | None:
    """The column names of ``--columns a,b,c`` in their order ("all": None, every column of the
    full table); an unknown name is a one-line XRayBenchError listing the valid ones."""
    if spec is None or spec.strip().lower() == "all":
        return None
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    unknown = [name for name in names if name not in NAMED_COLUMNS]
    if unknown or not names:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"--columns: unknown column{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown)) or '(none given)'}; choose from "
                             f"{', '.join(NAMED_COLUMNS)}, or all")
    return names


MODEL_WIDTH = 24  # the Model column is at least this wide or as wide as the longest run name; longer published names get "…"
NAME_FLOORS = {"Model": 16, "Variant": 9}  # how far names are cut (with "…") before digits are; never wrapped
LAST_FLOORS = {"Model": 8, "Variant": 7}
_VALUE_HEADERS = {m.label for m in REGISTRY}


def _fewer_digits(text: str, signed: bool = False) -> str:
    try:
        return f"{float(text):+.2f}" if signed else f"{float(text):.2f}"
    except ValueError:
        return text


def _shortened(cell: str, header: str, level: int, first_value: bool) -> str:
    """A cell at narrowing ``level``: 1 no SD but the first metric's, 2 no SDs, 3 CIs to two
    digits, 4 every number to two digits."""
    if header in _VALUE_HEADERS:
        if level >= 2 or (level >= 1 and not first_value):
            cell = cell.split("±")[0]
        return _fewer_digits(cell) if level >= 4 else cell
    if header.endswith(" 95% CI") and level >= 3 and "–" in cell:
        mark = "*" if cell.endswith("*") else ""
        low, high = cell.rstrip("*").split("–")
        return f"{_fewer_digits(low)}–{_fewer_digits(high)}{mark}"
    if header == "ΔAcc" and level >= 4:
        return _fewer_digits(cell, signed=True)
    return cell


def _layout(body: list[list[str]], n_runs: int, width: int, headers: Sequence[str] | None = None) -> dict[str, Any]:
    """Columns, cells, fixed widths and table style for a table that fits ``width`` cells
    (widths None: too narrow even for the compact table, rich squeezes it).

    ``headers``: the columns of ``body`` (None: every column, and optional ones may be dropped,
    ``OPTIONAL_COLUMNS`` first to last). Chosen columns are never dropped. Then, in turn: a
    boxed table with every name whole, with run names whole (published names cut with "…"); a
    borderless one whose cells lose SDs and digits stage by stage (``_shortened``), first with
    run names whole, then with names cut down to ``NAME_FLOORS``. Names never wrap."""
    from rich.cells import cell_len

    every = headers is None
    heads = list(HEADERS if headers is None else headers)

    def attempt(cells: list[list[str]], shown: list[int], boxed: bool, floors: dict[str, int] | None) -> list[int] | None:
        w, runs_width = [], {}
        for k, i in enumerate(shown):
            head = cell_len(heads[i]) if boxed else max(map(cell_len, heads[i].split()))
            full = max([head] + [cell_len(r[i]) for r in cells])
            if heads[i] == "Model":
                runs_width[k] = min(full, max([head] + [cell_len(r[i]) for r in cells[:n_runs]]))
                if floors is not None:  # run names whole, published ones may be cut
                    full = min(full, max(MODEL_WIDTH, runs_width[k]))
            w.append(full)
        overhead = 3 * len(w) + 1 if boxed else 2 * (len(w) - 1)
        if sum(w) + overhead <= width:
            return w
        names = [k for k, i in enumerate(shown) if heads[i] in NAME_FLOORS]
        if not floors or not names:
            return None
        left = width - overhead - sum(x for k, x in enumerate(w) if k not in names)
        got = {k: min(w[k], floors[heads[shown[k]]]) for k in names}
        left -= sum(got.values())
        if left < 0:
            return None
        # what is left goes to run names first, then to the variant, then to published names
        for k, target in ([(k, runs_width[k]) for k in names if k in runs_width] + [(k, w[k]) for k in names]):
            more = max(0, min(target - got[k], left))
            got[k], left = got[k] + more, left - more
        for k in names:
            w[k] = got[k]
        return w

    shown = list(range(len(heads)))
    for name in (None,) + (OPTIONAL_COLUMNS if every else ()):
        if name is not None:
            shown.remove(heads.index(name))
        floors: dict[str, int] | None
        for floors in (None, {}):  # every name whole; then run names whole
            w = attempt(body, shown, True, floors)
            if w is not None:
                return {"shown": shown, "headers": heads, "cells": body, "widths": w, "cut": "", "compact": False}
    values = [i for i in shown if heads[i] in _VALUE_HEADERS]
    first = values[0] if values else None
    first_label = heads[first] if first is not None else ""
    cuts = ("", f"SDs but {first_label}'s", "SDs", "SDs, CIs' third digit", "SDs, third digit")
    levels: list[tuple[str, list[list[str]]]] = []
    for level, cut in enumerate(cuts):
        cells = [[_shortened(c, heads[i], level, i == first) for i, c in enumerate(r)] for r in body]
        if not levels or cells != levels[-1][1]:
            levels.append((cut, cells))
    for cut, cells in levels:  # digits before names: names are cut down to NAME_FLOORS first
        for floors in ({}, NAME_FLOORS):
            w = attempt(cells, shown, False, floors)
            if w is not None:
                return {"shown": shown, "headers": heads, "cells": cells, "widths": w, "cut": cut, "compact": True}
    cut, cells = levels[-1]
    w = attempt(cells, shown, False, LAST_FLOORS)
    if w is not None:
        return {"shown": shown, "headers": heads, "cells": cells, "widths": w, "cut": cut, "compact": True}
    return {"shown": shown, "headers": heads, "cells": cells, "widths": None, "cut": cut, "compact": True}


def _header_lines(header: str, width: int | None) -> str:
    """A borderless table's header broken at its spaces into lines of at most ``width`` cells
    ("Acc 95% CI" over a 9-cell column: "Acc 95%", "CI"); one word a line without a width."""
    if width is None:
        return header.replace(" ", "\n")
    lines: list[str] = []
    for word in header.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def full_width(rows: list[dict[str, Any]], refs: list[dict[str, Any]], columns: Sequence[str] | None = None) -> int:
    """The width at which the terminal table shows every column (or the ``columns`` named), names
    whole (what a file written with ``--format table --output`` gets: a file has no terminal to fit)."""
    cols = COLUMNS if columns is None else [NAMED_COLUMNS[name] for name in columns]
    body = [_cells(row, cols) for row in rows] + [_cells(row, cols) for row in refs]
    layout = _layout(body, len(rows), 10**6, None if columns is None else [c.header for c in cols])
    return sum(layout["widths"]) + 3 * len(layout["widths"]) + 1


def render_table(rows: list[dict[str, Any]], refs: list[dict[str, Any]], title: str, console=None,
                 statuses: dict[str, int] | None = None, where: str = "", columns: Sequence[str] | None = None,
                 explain: bool = False) -> None:
    """The leaderboard as a rich table that fits the terminal.

    ``columns``: the names of the columns to show (``NAMED_COLUMNS``; ``DEFAULT_COLUMNS`` is the
    terminal's set), None for every column of the full table. Cells are plain one-line strings
    whose widths are known here, so every column gets a fixed width: rich then skips measuring
    each cell, which was most of `leaderboard`'s time with many rows. Optional columns (of the
    full table), then SDs and a digit, are dropped, and named, rather than squeezed into
    truncated numbers; names are cut with "…", never wrapped; only a terminal too narrow even
    for that falls back to rich's own collapsing. The legend under it is short
    (``short_legend``) unless ``explain``.
    """
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from xraybench.escaping import terminal_text
    from xraybench.richtext import console as make_console

    console = console or make_console()
    cols = COLUMNS if columns is None else [NAMED_COLUMNS[name] for name in columns]
    cells = [_cells(row, cols) for row in rows] + [_cells(row, cols) for row in refs]
    layout = _layout(cells, len(rows), console.width, None if columns is None else [c.header for c in cols])
    shown, widths, headers = layout["shown"], layout["widths"], layout["headers"]
    options: dict[str, Any] = {"box": None, "pad_edge": False} if layout["compact"] else {}
    table = Table(title=title, show_lines=False, header_style="bold", **options)
    for k, i in enumerate(shown):
        h = headers[i]
        name = h in NAME_FLOORS
        # A model name is cut with "…" (only published names ever are), never broken over lines; a
        # variant wraps instead, since two variants cut to the same prefix would read as one row.
        wraps = h == "Variant"
        table.add_column(_header_lines(h, widths[k] if widths else None) if layout["compact"] else h,
                         justify="left" if name else "right",
                         no_wrap=not wraps and (name or widths is not None),
                         overflow="fold" if wraps or not name else "ellipsis",
                         width=widths[k] if widths else None, min_width=None if widths or not name else LAST_FLOORS[h])
    for n, row in enumerate(layout["cells"]):
        if n == len(rows):
            table.add_section()
        cells_shown = (Text(terminal_text(row[i])) for i in shown)  # a name's ANSI escapes never reach the terminal
        table.add_row(*cells_shown, style="dim italic" if n >= len(rows) else None)
    console.print(table)
    hidden = [h for i, h in enumerate(headers) if i not in shown] + ([layout["cut"]] if layout["cut"] else [])
    if hidden:
        console.print(f"[dim]Not shown at this terminal width: {', '.join(hidden)} (widen it, or use "
                      "--format markdown / json).[/]")
    if refs:
        console.print("[dim]Dim rows are published figures, not runs of xraybench.[/]")
    if explain or not rows:
        console.print(f"[dim]{escape(legend(headers[i] for i in shown))}[/]")
    if rows:  # without a run there is nothing for it to explain
        sds = not layout["cut"].startswith("SDs") or layout["cut"].startswith("SDs but")
        console.print(f"[dim]{escape(footnote(rows) if explain else short_legend(rows, [headers[i] for i in shown], sds))}[/]")
        for gap in reference_gaps(rows):  # why a ΔAcc or p is "-", and the command that fills it
            console.print(escape(gap), highlight=False)
        if refs:
            console.print(escape(seed_note()), highlight=False)
    line = status_line(statuses, where) if statuses is not None else ""
    if line:
        console.print(escape(line), highlight=False)


def render_markdown(rows: list[dict[str, Any]], refs: list[dict[str, Any]], title: str,
                    statuses: dict[str, int] | None = None) -> str:
    from xraybench.escaping import md_cell, md_code, md_text

    out = io.StringIO()  # text from plugins and records goes through md_*: a name is never Markdown
    out.write(f"## {md_text(title)}\n\n")
    out.write("| " + " | ".join(HEADERS) + " |\n")
    out.write("|" + "---|" * len(HEADERS) + "\n")
    ids = HEADERS.index("Run id")
    for row in rows:
        cells = [md_cell(c) for c in _cells(row)]
        cells[ids] = "<br>".join(md_cell(i) for i in row.get("run_ids") or []) or "-"  # all of them: Markdown has the room
        out.write("| " + " | ".join(cells) + " |\n")
    for row in refs:
        cells = [md_cell(c) for c in _cells(row)]
        cells[0] = f"*{cells[0]}*"
        out.write("| " + " | ".join(cells) + " |\n")
    if refs:
        out.write("\nRows in *italics* are published figures, not runs of xraybench.\n")
    out.write(f"\n{md_text(legend(HEADERS))}\n\n{md_text(footnote(rows))}\n")
    for gap in reference_gaps(rows):
        out.write(f"\n{md_text(gap)}\n")
    if rows and refs:
        out.write(f"\n{md_text(seed_note())}\n")
    line = status_line(statuses) if statuses is not None else ""
    if line:
        out.write(f"\n{md_text(line)}\n")
    if rows:
        out.write("\n### How each row was produced\n\n")
        out.write("| Model | Variant | px | Params | Epochs | Wall s per run | CPU s per run | Precision | Hardware | "
                  "Command(s) |\n")
        out.write("|---|---|---|---|---|---|---|---|---|---|\n")
        for row in rows:
            walls = ", ".join(f"{w:.0f}" for w in row.get("wall_seconds_per_run", []) if w is not None) or "-"
            cpu = row.get("cpu_seconds_per_run", [])
            cpus = ", ".join("-" if c is None else f"{c:.0f}" for c in cpu) if any(c is not None for c in cpu) else "-"
            params = f"{row['param_count']:,}" if row.get("param_count") else "-"
            epochs = "-" if row.get("epochs") is None else f"{row['epochs']:.1f}"
            commands = "<br>".join(md_code(c, in_table=True) for c in row.get("commands", []) if c) or "-"
            out.write(f"| {md_cell(row['model'])} | {md_cell(row['variant'])} | {md_cell(row.get('image_size'))} | {params} | "
                      f"{epochs} | {walls} | {cpus} | {md_cell(', '.join(map(str, row.get('precision', []))))} | "
                      f"{md_cell('; '.join(map(str, row.get('hardware', []))))} | {commands} |\n")
        for row in rows:
            note = row.get("p_vs_baseline_note")
            if note:
                out.write(f"\n- {md_text(row['model'])} ({md_text(row['variant'])}, {md_text(row.get('image_size'))} px): "
                          f"{md_text(note)}")
        out.write("\n")
    return out.getvalue()


def render_csv(rows: list[dict[str, Any]]) -> str:
    from xraybench.escaping import csv_cell

    out = io.StringIO()
    fields = ["model", "variant", "runs", "image_size", "epochs", "train_seconds", "seeds", "fingerprint",
              "representative_run", "run_ids"]
    for m in REGISTRY:
        fields += [m.key, f"{m.key}_sd"] + ([f"{m.key}_ci_low", f"{m.key}_ci_high"] if m.bootstrapped else [])
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        cis = {}
        for key, iv in (row.get("intervals") or {}).items():
            if key != "_meta" and isinstance(iv, dict):
                cis[f"{key}_ci_low"], cis[f"{key}_ci_high"] = iv.get("low"), iv.get("high")
        fields_of_row = {**row, **cis, "seeds": " ".join(map(str, row.get("seeds", []))),
                         "run_ids": " ".join(row.get("run_ids", []))}
        writer.writerow({k: csv_cell(v) for k, v in fields_of_row.items()})  # a model named "=cmd()" is no formula
    return out.getvalue()


CSV_HEADER = "model,variant,runs,"  # how a CSV this command wrote starts (CSV has no room for a marker)


def render_json(rows: list[dict[str, Any]], refs: list[dict[str, Any]], statuses: dict[str, int] | None = None) -> str:
    from xraybench.generated import json_key

    key, value = json_key(COMMAND)
    data: dict[str, Any] = {key: value, "rows": rows, "published_references": refs}
    if statuses is not None:
        data["statuses"] = statuses
    return json.dumps(data, indent=1)


COMMAND = "leaderboard"


def with_marker(text: str, fmt: str) -> str:
    """``text`` as written to an ``--output`` file: with the generator marker its format allows
    (``xraybench.generated``), so that a later run may overwrite it without ``--force``."""
    from xraybench.generated import comment_line

    if fmt == "markdown":
        return f"{comment_line(COMMAND)}\n{text}"
    if fmt == "table":
        return f"{comment_line(COMMAND, 'text')}\n{text}"
    return text  # json carries its key; csv is recognised by CSV_HEADER
