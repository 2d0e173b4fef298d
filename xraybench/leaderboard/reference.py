"""The reference model every row is compared with (ΔAcc and the paired test's p): which model
(declared by its plugin, ``ModelSpec.reference``, or ``--baseline MODEL``), at which size on each
data set, and the footer's line for every "-" it leaves, with the command that fills it.

Not to be confused with the published figures (``xraybench.published``), which are only shown.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from xraybench.leaderboard.rows import Reference, Row, variant
from xraybench.leaderboard.scores import ScoresLoader, Unusable, by_seed
from xraybench.records import RunRecord, Threshold

PAIRED_RESAMPLES = 1000  # the paired bootstrap of ΔAcc between rows of several seeds: resamples and seed
PAIRED_SEED = 0


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


def reference_base(rows: list[Row], reference: Reference | None) -> list[Row]:
    """The reference model's default rows each row may be compared with: on every data set
    (fingerprint), those at one size, the reference's own where it ran at it there, else the
    size it ran at most there (nearest its own on a tie; on the built-in copy a model runs at its
    28 px by default). Why per data set: a fingerprint names the images, not their
    size, and data that comes at one size only (the built-in copy) would otherwise never be
    compared with anything."""
    if reference is None:
        return []
    default = [r for r in rows if r.model == reference.model and r.variant == "default"]
    runs_at: dict[str, Counter] = {}
    for r in default:
        runs_at.setdefault(r.fingerprint, Counter())[r.image_size] += r.runs
    own = reference.image_size

    def size_for(counts: Counter) -> Any:
        if own in counts:
            return own
        return min(counts, key=lambda size: (-counts[size], abs((size or 0) - (own or 0)), size or 0))

    chosen = {fingerprint: size_for(counts) for fingerprint, counts in runs_at.items()}
    return [r for r in default if r.image_size == chosen[r.fingerprint]]


def reference_for(row: Row, base: list[Row]) -> Row | None:
    """The reference row a row is compared with: the reference model's default row on the same
    data fingerprint, at the size ``reference_base`` chose for that data, trained on the row's
    backend where there is one (else the one with most runs); None when the data has none."""
    same_data = [b for b in base if b.fingerprint == row.fingerprint]
    if not same_data:
        return None
    if any(b is row for b in same_data):
        return row
    return max(same_data, key=lambda b: (b.backend == row.backend, b.runs))


def compare_with_reference(rows: list[Row], reference: Reference | None, loader: ScoresLoader | None,
                           max_paired_rows: int, t: Threshold) -> None:
    """Give every row its reference row's size on its data, its ΔAcc, and (with per-image scores,
    up to ``max_paired_rows`` rows) the p of a paired test of that ΔAcc (``paired_test``), or why not."""
    base = reference_base(rows, reference)
    pairs = [(row, reference_for(row, base)) for row in rows]
    for row, ref in pairs:
        acc, ref_acc = row.estimates.get("accuracy"), None if ref is None else ref.estimates.get("accuracy")
        row.delta_accuracy = None if acc is None or ref_acc is None else acc - ref_acc
        row.is_reference = ref is row
        row.reference_size = None if ref is None else ref.image_size
    if loader is None or reference is None:
        return
    if len(rows) > max_paired_rows:  # said in the footer, never a silent "-"
        for row in rows:
            row.p_note = f"p not computed: more than {max_paired_rows} rows (--model NAME narrows the table)"
        return
    for row, ref in pairs:
        if ref is None:
            row.p_note = (f"no default run of the reference {reference.model} on the same data: not "
                          f"compared ({reference_command(reference.model, row)} makes one)")
        elif ref is not row:
            row.p_value, row.p_test, row.p_note = paired_test(ref, row, loader, t)


def paired_test(ref: Row, row: Row, loader: ScoresLoader, t: Threshold) -> tuple[float | None, str | None, str | None]:
    """(p, its test, why there is none) for a row's ΔAcc against the reference row, each run at its
    own threshold. The test is of the difference the table shows: two rows of one run each are two
    runs, compared by the exact McNemar test (pure Python; exact for one pair of runs); where
    either row has several runs (seeds, or repeats of one seed, which its mean averages), ΔAcc is a
    difference of means, and its p is the paired bootstrap of that difference
    (``stats.paired_mean_difference``: the images resampled together, each row's seeds on their
    own). An earlier version gave such rows the McNemar p of their lowest seeds, which tested
    another difference than the one shown.

    Calibration (simulated in ``tests/unit/test_paired_rows.py``; docs/results.md): resampling
    seeds and images counts the noise of each run on each image twice, so for rows of several
    seeds each the test is conservative (rejects less often than its level); for a row of one run
    against several, that one run's seed-to-seed spread is unknown and left out, so it is liberal."""
    if len(ref.records) == 1 and len(row.records) == 1:
        from xraybench.stats import compare_runs

        a, b = loader(str(ref.representative_run)), loader(str(row.representative_run))
        if not a or not b:
            return None, None, "per-image scores missing or damaged"
        try:
            result = compare_runs(a, b, ref.representative_threshold, row.representative_threshold, auc=False)
        except ValueError as exc:
            return None, None, str(exc)
        return result["mcnemar"]["p_value"], MCNEMAR, None
    from xraybench.stats import paired_mean_difference

    try:
        ids, labels, seeds_ref = by_seed(ref.records, t, loader, whose="the reference row's runs")
        _ids, _labels, seeds_row = by_seed(row.records, t, loader, order=(ids, labels),
                                           whose="the row's and the reference row's runs")
    except Unusable as why:
        return None, None, str(why)
    result = paired_mean_difference(labels, seeds_ref, seeds_row, resamples=PAIRED_RESAMPLES, seed=PAIRED_SEED)
    return result["p_value"], BOOTSTRAP, None


MCNEMAR, BOOTSTRAP = "exact McNemar", "paired bootstrap"  # a row's ``p_test``
PAIRED_TESTS = {
    MCNEMAR: "for a row and a reference row of one run each, the exact McNemar test of the two runs",
    BOOTSTRAP: (f"where either has several runs, a paired bootstrap of the difference of their means "
                f"({PAIRED_RESAMPLES:,} resamples of the test images, shared by both rows, and of each row's seeds; "
                "conservative when both rows have several seeds, too ready to reject when one row is a single run, "
                "whose seed-to-seed spread it cannot know)"),
}


def reference_command(model: str, row: Row) -> str:
    """The command that records ``model``'s default run on a row's data, as the footer shows it
    (no ``--data`` where that data is the built-in copy a plain command falls back to here)."""
    import shlex

    from xraybench.data import builtin

    source = row.data_source
    try:
        plain_builtin = row.data_name == builtin.NAME and builtin.fallback_notice(None) is not None
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


def reference_of(rows: list[Row]) -> Reference | None:
    """The reference these rows were compared with (None: there is none)."""
    return next((r.reference for r in rows if r.reference), None)


def reference_gaps(rows: list[Row]) -> list[str]:
    """One line per reason a row's ΔAcc or p is "-", never silent: a data set with no run of the
    reference (and the command that makes one), no reference at all, or p not computed (why)."""
    if not rows:
        return []
    ref = reference_of(rows)
    if ref is None:
        if any(str(r.reference_note or "").startswith("--baseline") for r in rows):
            return []  # the footnote names the --baseline model that has no finished run
        model = _declared_reference_model()
        return [f"ΔAcc and p are \"-\": no run of the reference model {model} (declared by its plugin) yet; "
                f"{reference_command(model, rows[0])} makes one."] if model else []
    missing: dict[str, list[Row]] = {}
    for row in rows:
        if row.reference_size is None:
            missing.setdefault(row.fingerprint, []).append(row)
    lines = [f"ΔAcc and p are \"-\" for {len(without)} row{'s' if len(without) != 1 else ''} on "
             f"{without[0].data_name or '?'} (data {fingerprint[:12]}): no default run of the reference "
             f"{ref.model} there; {reference_command(ref.model, without[0])} makes one."
             for fingerprint, without in missing.items()]
    notes = Counter(row.p_note for row in rows
                    if row.p_value is None and not row.is_reference and row.p_note and row.reference_size is not None)
    return lines + [f"p is \"-\" for {n} row{'s' if n != 1 else ''}: {note}." for note, n in notes.items()]
