"""The leaderboard's columns and what they mean, shared by every renderer (terminal table,
Markdown, the HTML report): each column's header and how a row's cell reads, which a narrow
terminal drops first, the names ``--columns`` takes (metric columns come from
``metric_registry.REGISTRY``); and the notes under the table: what ΔAcc, ±, the CIs and p mean
(``footnote``, short: ``short_legend``), the metric abbreviations (``legend``), the runs not
ranked (``status_line``) and why runs score below the seed's published 0.86.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from xraybench.errors import XRayBenchError
from xraybench.leaderboard.build import DATA_MARKS, MIN_POOLED_ENSEMBLES, ROW_RESAMPLES
from xraybench.leaderboard.reference import PAIRED_TESTS, reference_of
from xraybench.leaderboard.rows import Row
from xraybench.metric_registry import REGISTRY
from xraybench.records import RunStatus


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    drop: float = 0  # 0: always shown; else the higher, the sooner a narrow terminal drops it
    name: str = ""  # what --columns calls it


def fmt(value: float | None, sd: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text}±{sd:.{digits}f}" if sd is not None else text


def ci(row: Row, metric: str, digits: int = 3) -> str:
    """A metric's 95% interval, "low–high"; marked * when it is the lowest-seed run's, not the
    mean's (the footer says why)."""
    iv = (row.intervals or {}).get(metric)
    if not iv or iv.get("low") is None or iv["low"] != iv["low"]:
        return "-"
    mark = "*" if row.interval_method == "lowest-seed run" else ""
    return f"{iv['low']:.{digits}f}–{iv['high']:.{digits}f}{mark}"


def _seeds(seeds: list) -> str:
    """All seeds when they are few; first, last and count when a row pools many runs."""
    if len(seeds) <= 5:
        return ",".join(str(s) for s in seeds) or "-"
    return f"{seeds[0]}…{seeds[-1]} ({len(seeds)})"


def p_cell(row: Row) -> str:
    """The p cell: "ref" on the reference row itself; a "-" elsewhere is explained in the footer
    (``reference_gaps``)."""
    if row.p_value is None:
        return "ref" if row.is_reference else "-"
    return f"{row.p_value:.3f}" if row.p_value >= 0.001 else "<0.001"


def _run_id(row: Row) -> str:
    """The representative (lowest-seed) run's id, which ``xraybench compare`` takes, and how many
    more runs the row pools (Markdown, CSV and JSON list them all)."""
    run = row.representative_run
    if not run:
        return "-"
    more = len(row.run_ids or [run]) - 1
    return f"{run} +{more}" if more else run


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def epochs_text(value: float | None) -> str:
    """Epochs as trained: whole ("11", not "11.0"); a mean over seeds that is not whole, to one decimal."""
    return "-" if value is None else f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _value_column(key: str, label: str, digits: int, drop: float = 0) -> Column:
    return Column(label, lambda r: fmt(r.estimates.get(key), r.sds.get(key), digits), drop, key)


def _ci_column(key: str, label: str, digits: int, drop: float = 0) -> Column:
    return Column(f"{label} 95% CI", lambda r: ci(r, key, digits), drop, f"{key}_ci")


# Every table column, in order: identity, then each registry metric shown in tables (and its CI),
# then the comparison with the reference model and how the row was produced.
COLUMNS = [Column("Model", lambda r: r.model, name="model"),
           Column("Variant", lambda r: r.variant + (f" ({r.backend})" if r.backend_shown else ""), name="variant"),
           Column("Runs", lambda r: r.runs_text or str(r.runs), name="runs")]
for _m in REGISTRY:
    if _m.column is not None:
        COLUMNS.append(_value_column(_m.key, _m.label, _m.digits, _m.column))
        if _m.interval_column is not None:
            COLUMNS.append(_ci_column(_m.key, _m.label, _m.digits, _m.interval_column))
COLUMNS += [
    Column("ΔAcc", lambda r: "ref" if r.is_reference else _number(r.delta_accuracy, "+.3f"), 2, "delta_accuracy"),
    Column("p", p_cell, 3, "p"),
    Column("Train s", lambda r: _number(r.train_seconds, ".0f"), 7, "train_seconds"),
    Column("px", lambda r: str(r.image_size or "-") + r.data_mark, name="image_size"),
    Column("Epochs", lambda r: epochs_text(r.epochs), 8, "epochs"),
    Column("Seeds", lambda r: _seeds(r.seeds), 9, "seeds"),
    Column("Date", lambda r: (r.created_at or "-")[:10], 10, "date"),
    Column("Run id", _run_id, 5.5, "run_id"),
]
HEADERS = [c.header for c in COLUMNS]
# Columns the terminal table drops, first to last, when the terminal is too narrow for all of
# them; the rest (model, variant, runs, accuracy, per-class precision/recall/F1, AUC, image size)
# always stay. Narrower still, a borderless table shows two-digit means.
OPTIONAL_COLUMNS = tuple(c.header for c in sorted((c for c in COLUMNS if c.drop), key=lambda c: -c.drop))


def cells(row: Row, columns: Sequence[Column] | None = None) -> list[str]:
    return [c.cell(row) for c in (COLUMNS if columns is None else columns)]


def _named_columns() -> dict[str, Column]:
    """Every column ``--columns`` can name: the table's own (a registry metric by its key, its CI
    as KEY_ci, the others by a word) and each registry metric the full table leaves out."""
    table = {c.name: c for c in COLUMNS}
    named: dict[str, Column] = {name: table.pop(name) for name in ("model", "variant", "image_size", "runs")}
    for m in REGISTRY:  # in the registry's order, each metric then its CI
        named[m.key] = table.pop(m.key) if m.key in table else _value_column(m.key, m.label, m.digits)
        if m.bootstrapped:
            ci_key = f"{m.key}_ci"
            named[ci_key] = table.pop(ci_key) if ci_key in table else _ci_column(m.key, m.label, m.digits)
    return named | table  # then ΔAcc, p and how the row was produced


NAMED_COLUMNS = _named_columns()
# The terminal table's columns unless --columns says otherwise: they fit 80 columns. The image
# size tells apart rows of one model and variant (published figures come at three sizes).
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
        raise XRayBenchError(f"--columns: unknown column{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown)) or '(none given)'}; choose from "
                             f"{', '.join(NAMED_COLUMNS)}, or all")
    return names


TRANSDUCTIVE_NOTE = (
    "Operating point: prior shift, TRANSDUCTIVE. Each run's threshold is moved to the test prior P(PNEUMONIA) that "
    "EM (Saerens et al. 2002) estimates from that run's unlabeled test scores after Platt calibration on validation "
    "(never from the test labels). It reads the test set, so this table stands alone: never mix or rank it with the "
    "0.5 or validation-threshold rows. Runs recorded before it are left out until `xraybench runs --backfill`.")
ENSEMBLE_NOTE = (" Ensemble rows average their member runs' per-image scores (threshold chosen on the ensemble's own "
                 f"validation scores); they show mean±SD only over {MIN_POOLED_ENSEMBLES} or more ensembles of distinct "
                 "seeds with no member run in common, else one row per ensemble.")
INTERVAL_NOTE = (f"Each 95% CI is that of the value beside it: for a row of several seeds, a hierarchical percentile "
                 f"bootstrap of the mean ({ROW_RESAMPLES:,} resamples of the seeds, then of the test images they share, "
                 "each run at its own threshold), for a row of one seed, the percentile bootstrap of its run's test set "
                 "(1,000 resamples).")


def footnote(rows: list[Row], p: bool = True) -> str:
    """What ΔAcc, ±, the CIs and (``p``: where its column is shown) p mean, naming the reference
    model these rows were compared with and, where they come from several, each data set."""
    ref = reference_of(rows)
    note = next((r.reference_note for r in rows if r.reference_note), "")
    if ref is None:
        against = f"ΔAcc and p need a reference, and there is none{': ' + note if note else ''}."
    else:
        how = "declared by its plugin" if ref.chosen != "--baseline" else "chosen with --baseline"
        elsewhere = sorted({f"{r.reference_size} px on {r.data_name or '?'}" for r in rows
                            if r.reference_size not in (None, ref.image_size)})
        against = (f"ΔAcc = accuracy minus that of the reference, {ref.model} ({how}; default parameters, on the same "
                   f"data fingerprint, at its own {ref.image_size} px"
                   + (f"; where it has no run at that size, at the size it ran at: {', '.join(elsewhere)}" if elsewhere else "")
                   + ")." + (_tests_note(rows) if p else "") + (f" Note: {note}." if note else ""))
    lead = TRANSDUCTIVE_NOTE + " " if any(r.transductive for r in rows) else ""
    data = f" {legend}" if (legend := data_legend(rows)) else ""
    return (f"{lead}{against}{data} Values are mean±SD over distinct seeds (repeated seeds are averaged first and shown as "
            "\"runs (n seeds)\"; identical repeats, same model, parameters, seed, data, backend and version, count "
            f"once). {INTERVAL_NOTE}" + _fallback_note(rows)
            + (ENSEMBLE_NOTE if any(r.members for r in rows) else ""))


def _tests_note(rows: list[Row]) -> str:
    """The footer's sentence on the paired tests that gave the rows' p, only those used."""
    used = [words for test, words in PAIRED_TESTS.items() if any(r.p_test == test for r in rows)]
    return f" p tests each ΔAcc on the same test images: {'; '.join(used)}." if used else ""


def _fallback_note(rows: list[Row]) -> str:
    """The footer's sentence on rows whose CI is their lowest-seed run's, not their mean's (CI cells
    marked *), and why; empty when there is none."""
    why = Counter(str(r.interval_note) for r in rows if r.interval_method == "lowest-seed run")
    if not why:
        return ""
    n = sum(why.values())
    reasons = "; ".join(f"{reason} ({count})" if len(why) > 1 else reason for reason, count in why.items())
    return (f" CIs marked * ({n} row{'s' if n != 1 else ''}) are the lowest-seed run's test bootstrap, not the mean's: "
            f"{reasons}.")


def _metric_words(shown: set[str], per_class: bool) -> list[str]:
    """"Label = name" for each registry metric shown whose label abbreviates its name."""
    return [f"{m.label} = {m.name}" for m in REGISTRY
            if m.label in shown and (per_class or not m.per_class) and m.label.lower() != m.name.lower()]


def legend(headers: Iterable[str]) -> str:
    """What each metric column shown means, from the registry."""
    return f"N = NORMAL, P = PNEUMONIA. {'; '.join(_metric_words(set(headers), True))}."


def short_legend(rows: list[Row], headers: Sequence[str], sds: bool = True) -> str:
    """The terminal table's footer, short: the abbreviations shown, what ± and the CI are, what
    ΔAcc is measured against, and that ``--explain`` says the rest (``legend`` and ``footnote``).
    ``sds``: whether the table shows SDs (a narrow one drops them)."""
    shown = set(headers)
    words = ["N = NORMAL, P = PNEUMONIA"] if any(m.per_class and m.label in shown for m in REGISTRY) else []
    words += _metric_words(shown, False)
    named, against = [h for h in ("ΔAcc", "p") if h in shown], _against(rows)
    against = f" {', '.join(named)}: against {against}." if named and against else ""
    data = f" {legend}" if (legend := data_legend(rows)) else ""
    marked = _fallback_note(rows).replace(" CIs marked * (", " * (") if any(h.endswith("95% CI") for h in shown) else ""
    return (("; ".join(words) + ". ") if words else "") + (
        ("± = SD over seeds; " if sds else "") + "CI = 95% interval of the value shown (seeds, then test images, "
        "resampled)."
        f"{marked}{against}{data} More: --explain, --columns all.")


def data_legend(rows: list[Row]) -> str:
    """Which data set each mark after a px stands for, when the rows come from several (else "")."""
    first = {r.data_mark: r for r in reversed(rows)}
    if len(first) < 2:
        return ""
    named = [f"px{mark or ' unmarked'} = {r.data_name or '?'} "
             f"({f'data {r.fingerprint[:12]}' if r.fingerprint else 'no fingerprint'})"
             for mark, r in sorted(first.items(), key=lambda kv: _mark_order(kv[0]))]
    return f"Rows on {len(named)} data sets: {'; '.join(named)}."


def _mark_order(mark: str) -> tuple[int, int]:
    return len(mark), DATA_MARKS.find(mark[:1])


def _against(rows: list[Row]) -> str:
    """The reference row ΔAcc is taken against, on each data set where the rows come from several:
    "the reference row, MODEL default 32 px (shown as ref)"; "" without one."""
    ref = reference_of(rows)
    sizes = {r.data_mark: (r.reference_size, r.data_name) for r in reversed(rows) if r.reference_size is not None}
    if ref is None or not sizes:
        return ""
    several = len({r.data_mark for r in rows}) > 1
    where = ", ".join(f"{sizes[mark][0]} px" + (f" on {mark or sizes[mark][1]}" if several else "")
                      for mark in sorted(sizes, key=_mark_order))
    shown = " (shown as ref)" if any(r.is_reference for r in rows) else ""
    return f"the reference row{' on the same data' if several else ''}, {ref.model} default {where}{shown}"


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


def seed_note() -> str:
    """The leaderboard's short answer to the first question (why runs here score below the seed's
    published 0.86), with the doc to read; ``run`` prints the long one (``xraybench.published``)."""
    from xraybench.published import seed_figures

    return (f"Below the seed's {seed_figures()['accuracy']:.2f}? It appears to have early-stopped on its test set; "
            "here validation is patient-grouped and test is shifted: docs/results.md")
