"""Terminal reports with rich: one run in the seed's form, a batch summary, the data summary.

Record fields (model names, reasons that quote plugin errors or ``--param`` values, data paths)
are untrusted text: they go through ``esc``/``plain`` and are never read as rich markup.
"""

from __future__ import annotations

from typing import Any

from xraybench.richtext import esc, plain
from xraybench.progress import plural
from xraybench.records import FIXED_THRESHOLD, RunRecord, RunStatus
from xraybench.specs import LABELS


def _report_table(metrics: dict[str, Any], title: str):
    from rich.table import Table

    table = Table(title=plain(title), header_style="bold", title_justify="left")
    for col in ("", "precision", "recall", "f1-score", "support"):
        table.add_column(col, justify="right")
    for label in LABELS:
        m = metrics["per_class"][label]
        table.add_row(label, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", str(m["support"]))
    total = sum(metrics["per_class"][label]["support"] for label in LABELS)
    table.add_row("accuracy", "", "", f"{metrics['accuracy']:.2f}", str(total))
    table.add_row("macro avg", "", "", f"{metrics['macro_f1']:.2f}", str(total))
    return table


def print_run_report(record: RunRecord, console, explain: bool = True, recorded: bool = False) -> None:
    """One run in the seed's form, then this run at 0.5 and at its validation threshold beside the
    seed's published figures (``explain``: with the sentence on why they differ and the doc to
    read; a batch says it once), then a summary line naming backend and precision. ``recorded``:
    the run was not trained now but found recorded (``run`` without ``--force``), and says so."""
    if record.status is not RunStatus.DONE:
        console.print(f"{record.status.markup()} {esc(record.model)} (seed {record.seed}): {esc(record.reason)}")
        return
    m = record.metrics or {}
    mark = " (recorded result)" if recorded else ""
    console.print(_report_table(m, f"{record.model} on test, threshold {FIXED_THRESHOLD:g}{mark}"))
    cm = m["confusion_matrix"]
    console.print(
        f"ROC AUC {m['roc_auc']:.4f}  sensitivity {m['sensitivity']:.4f}  specificity {m['specificity']:.4f}  "
        f"balanced accuracy {m['balanced_accuracy']:.4f}  "
        f"confusion [[TN {cm[0][0]}, FP {cm[0][1]}], [FN {cm[1][0]}, TP {cm[1][1]}]]"
    )
    print_against_seed(record, console, explain)
    line = prior_shift_line(record)
    if line:  # dim: a diagnostic beside the result, never a result to compare (it reads the test scores)
        console.print(f"[dim]{esc(line)}[/]", highlight=False)
    epochs = record.epochs_run
    console.print(
        f"[dim]validation AUC {(record.val_metrics or {})['roc_auc']:.4f}; trained {record.train_seconds or 0:.1f}s"
        f"{', ' + plural(epochs, 'epoch') if epochs else ''}; {esc(trained_with(record))}, precision "
        f"{esc(record.precision)}; {esc(record.param_count or '?')} parameters[/]"
    )


def trained_with(record: RunRecord) -> str:
    """What a run trained on, for its summary line: "backend jax 0.4.35", or "scikit-learn 1.5.2 (no
    Keras backend)" for a model that has none (``specs.trained_with``)."""
    from xraybench.specs import trained_with

    library, backend = trained_with(record)
    return f"backend {backend}" if backend else f"{library} (no Keras backend)"


def _seed_rows(record: RunRecord) -> list[tuple[str, list[str]]]:
    """(label, cells) for this run at 0.5, at its validation threshold, and the seed's published run."""
    from xraybench.published import seed_figures

    def cells(m: dict[str, Any], digits: int = 3) -> list[str]:
        pc = m.get("per_class") or {}
        values = [m.get("accuracy"), *(pc.get(label, {}).get(key) for label in LABELS for key in ("recall", "f1"))]
        return ["-" if v is None else f"{v:.{digits}f}" for v in values]

    rows = [(f"this run at {FIXED_THRESHOLD:g}", cells(record.metrics or {}))]
    v = record.metrics_at_val_threshold
    if v:
        rows.append((f"this run at {v['threshold']:.3f} (val)", cells(v)))
    seed = seed_figures()
    rows.append((seed["model"], cells(seed, digits=2)))  # as published: 0.86, not 0.860
    return rows


def print_against_seed(record: RunRecord, console, explain: bool = True) -> None:
    """The first question after a run, answered under it: how does it compare with the seed's
    published 0.86? This run at 0.5 and at its validation-chosen threshold beside the seed's
    figures, how the second threshold was chosen, and (``explain``) why the numbers differ, with
    the doc that says more (``published.WHY_DOC``)."""
    from rich.table import Table

    from xraybench.published import WHY_DOC, WHY_SEED_DIFFERS

    table = Table(title="this run beside the seed's published CNN (test set)", header_style="bold",
                  title_justify="left")
    table.add_column("", no_wrap=True)
    for head in ("accuracy", "NORMAL\nrecall", "NORMAL\nF1", "PNEUMONIA\nrecall", "PNEUMONIA\nF1"):
        table.add_column(head, justify="right", no_wrap=True)
    for label, cells in _seed_rows(record):
        table.add_row(plain(label), *cells)
    console.print(table)
    if record.metrics_at_val_threshold:
        method = record.threshold_method()
        console.print(esc(f"(val): threshold chosen by {method}, never on test."), highlight=False)
    if explain:
        console.print(esc(f"{WHY_SEED_DIFFERS} Read {WHY_DOC}."), highlight=False)


def prior_shift_line(record: RunRecord) -> str:
    """The transductive operating point in one line, the true test prior beside the estimate (shown,
    never used); "" for a record without it."""
    shift, m = record.prior_shift, record.metrics_at_prior_shift
    if not shift or not m:
        return ""
    true = shift.get("true_prior")
    return (f"prior-shift diagnostic (transductive; ranks only with --threshold prior): estimated P(PNEUMONIA) "
            f"{shift['estimated_prior']:.2f}, true {'?' if true is None else f'{true:.2f}'}; at {shift['threshold']:.3f}: "
            f"accuracy {m['accuracy']:.4f}, NORMAL recall {m['specificity']:.4f}")


def print_run_summary(records: list[RunRecord], console, recorded: set[str] | frozenset[str] = frozenset()) -> None:
    """One row per run. Names are never cut mid-word: at a narrow width the run-id column goes
    (the ids are in the "recorded" lines above) and reasons go under the table. A run found
    recorded (id in ``recorded``) rather than trained says "recorded" in the Status column."""
    from rich.table import Table

    reasons = [r for r in records if r.reason]

    def needed(with_ids: bool, with_reason: bool) -> int:
        """Columns that never wrap: their widest cell (or header), padding and rules."""
        widths = [max(len("Model"), *(len(r.model) for r in records)), 4, 11, 8, 6, 6]
        widths += [max(len(r.run_id) for r in records)] if with_ids else []
        widths += [24] if with_reason else []
        return sum(w + 3 for w in widths) + 1

    with_ids = bool(records) and needed(True, False) <= console.width
    with_reason = bool(reasons) and needed(with_ids, True) <= console.width
    table = Table(title="runs", header_style="bold", title_justify="left")
    for col in (["Run"] if with_ids else []) + ["Model", "Seed", "Status", "Accuracy", "AUC", "Wall s"]:
        table.add_column(col, no_wrap=True)
    if with_reason:
        table.add_column("Reason")
    for r in records:
        m = r.metrics or {}
        row = ([plain(r.run_id)] if with_ids else []) + [
            plain(r.model), plain(r.seed),
            "[green]recorded[/]" if r.run_id in recorded else r.status.markup(),
            f"{m['accuracy']:.4f}" if m else "-", f"{m['roc_auc']:.4f}" if m else "-",
            f"{r.wall_seconds or 0:.0f}",
        ]
        table.add_row(*row, *([plain(r.reason)] if with_reason else []))
    console.print(table)
    if reasons and not with_reason:
        for r in reasons:
            console.print(f"  {esc(r.model)} seed {r.seed}: {esc(r.reason)}", highlight=False)


def _splits_table(dataset, title: str):
    """train/val/test as used: classes, total and patients per split."""
    from rich.table import Table

    counts = dataset.splits.counts()
    table = Table(title=title, header_style="bold", title_justify="left")
    for col in ("Split", *LABELS, "Total", "Patients"):
        table.add_column(col, justify="right" if col != "Split" else "left")
    for name in ("train", "val", "test"):
        c = counts[name]
        patients = len(set(getattr(dataset.splits, name).groups))
        table.add_row(name, *(str(c[label]) for label in LABELS), str(sum(c[label] for label in LABELS)), str(patients))
    return table


def _counted(values: dict | None) -> str:
    """{'224x224': 5840} as '224x224 (5840)': a count per kind, not a Python dict."""
    return ", ".join(f"{k} ({v})" for k, v in (values or {}).items()) or "-"


def print_data_brief(dataset, console) -> None:
    """What `run` and `tune` say about their data: one line, then the splits as a small table."""
    name = dataset.stats.get("dataset") or dataset.reader
    console.print(f"[bold]data[/] {esc(name)} ({image_shape(dataset)})", highlight=False)
    console.print(f"  {esc(dataset.source)}", highlight=False, overflow="fold")  # a long path folds, not the line
    console.print(f"  {'read from the cache' if dataset.cache_hit else 'decoded and cached'} in "
                  f"{dataset.load_seconds:.1f}s; fingerprint {dataset.fingerprint[:12]}", highlight=False)
    console.print(f"  validation: {esc(dataset.val_strategy)}", highlight=False)
    console.print(_splits_table(dataset, "splits"))


def image_shape(dataset) -> str:
    """"28 px, 1 channel": the size and channels the images were decoded at, in words."""
    return f"{dataset.image_size} px, {plural(dataset.channels, 'channel')}"


def print_data_summary(dataset, console) -> None:
    """`xraybench data`: per source split and class, the splits as used, then the details, all as tables."""
    from rich.table import Table

    stats = dataset.stats
    title = f"data set {esc(dataset.source)} ({esc(stats.get('dataset') or dataset.reader)})"
    table = Table(title=title, header_style="bold", title_justify="left")
    for col in ("Split", "Class", "Images", "Patients", "Duplicates in split+class"):
        table.add_column(col, justify="right" if col not in ("Split", "Class") else "left")
    none = lambda v: "-" if v is None else str(v)  # noqa: E731
    for split, classes in stats.get("splits", {}).items():
        for label in LABELS:
            s = classes.get(label)
            if s is None:
                continue
            table.add_row(esc(split), label, str(s["images"]), none(s.get("patients")), none(s.get("duplicates")))
    console.print(table)
    console.print(_splits_table(dataset, "splits used for training and evaluation"))
    details = Table(show_header=False, box=None, padding=(0, 1))
    details.add_column(style="bold", no_wrap=True)
    details.add_column(overflow="fold")
    details.add_row("duplicates", "byte-identical copies of an image within the same split and class (the copies "
                    "beyond the first); copies across splits or classes are not counted")
    details.add_row("validation", f"{esc(dataset.val_strategy)}; fraction {dataset.val_fraction}, seed {dataset.seed}")
    if "kaggle_val_images" in stats:
        details.add_row("Kaggle val/", f"{stats['kaggle_val_images']} images, reported but not used")
    details.add_row("image sizes", esc(_counted(stats.get("sizes"))))
    details.add_row("modes", esc(_counted(stats.get("modes"))))
    details.add_row("skipped", f"{stats.get('skipped_bad_count', 0)} unreadable images")
    details.add_row(
        "cache",
        f"{'hit' if dataset.cache_hit else 'written'}, {image_shape(dataset)}, "
        f"loaded in {dataset.load_seconds:.2f}s: {esc(dataset.cache_path)}",
    )
    details.add_row("fingerprint", dataset.fingerprint)
    console.print(details)
