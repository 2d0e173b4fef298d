"""Terminal reports with rich: one run in the seed's form, a batch summary, the data summary.

Record fields (model names, reasons that quote plugin errors or ``--param`` values, data paths)
are untrusted text: they go through ``esc``/``plain`` and are never read as rich markup.
"""

from __future__ import annotations

from typing import Any

from xraybench.richtext import esc, plain
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


def print_run_report(record: dict[str, Any], console) -> None:
    from rich.markup import escape

    from xraybench.records import RunStatus, describe_method

    status = RunStatus.parse(record["status"])
    if status is not RunStatus.DONE:
        console.print(f"{status.markup()} {escape(record['model'])} (seed {record['seed']}): {escape(record.get('reason', ''))}")
        return
    m = record["metrics"]
    console.print(_report_table(m, f"{record['model']} on test, threshold 0.5"))
    cm = m["confusion_matrix"]
    console.print(
        f"ROC AUC {m['roc_auc']:.4f}  sensitivity {m['sensitivity']:.4f}  specificity {m['specificity']:.4f}  "
        f"balanced accuracy {m['balanced_accuracy']:.4f}  confusion [[TN {cm[0][0]}, FP {cm[0][1]}], [FN {cm[1][0]}, TP {cm[1][1]}]]"
    )
    v = record["metrics_at_val_threshold"]
    console.print(
        f"at the validation-chosen threshold {v['threshold']:.3f} "
        f"({describe_method((record.get('val_threshold') or {}).get('method'))}, never test): "
        f"accuracy {v['accuracy']:.4f}  NORMAL recall {v['specificity']:.4f}  PNEUMONIA recall {v['sensitivity']:.4f}"
    )
    epochs = record.get("epochs_run")
    console.print(
        f"[dim]validation AUC {record['val_metrics']['roc_auc']:.4f}; trained {record['train_seconds']:.1f}s"
        f"{f', {esc(epochs)} epochs' if epochs else ''}; precision {esc(record.get('precision'))}; "
        f"{esc(record.get('param_count') or '?')} parameters[/]"
    )


def print_run_summary(records: list[dict[str, Any]], console) -> None:
    from rich.table import Table

    from xraybench.records import RunStatus

    table = Table(title="runs", header_style="bold", title_justify="left")
    for col in ("Run", "Model", "Seed", "Status", "Accuracy", "AUC", "Wall s", "Reason"):
        table.add_column(col)
    for r in records:
        m = r.get("metrics") or {}
        table.add_row(
            plain(r["run_id"]), plain(r["model"]), plain(r["seed"]), RunStatus.parse(r["status"]).markup(),
            f"{m['accuracy']:.4f}" if m else "-", f"{m['roc_auc']:.4f}" if m else "-",
            f"{r.get('wall_seconds', 0):.0f}", plain(r.get("reason", "")),
        )
    console.print(table)


def print_data_summary(dataset, console) -> None:
    from rich.table import Table

    stats = dataset.stats
    table = Table(title=plain(f"data set {dataset.source} ({dataset.reader})"), header_style="bold",
                  title_justify="left")
    for col in ("Split", "Class", "Images", "Patients", "Exact duplicates"):
        table.add_column(col, justify="right" if col not in ("Split", "Class") else "left")
    for split, classes in stats.get("splits", {}).items():
        for label in LABELS:
            s = classes.get(label)
            if s is None:
                continue
            none = lambda v: "-" if v is None else str(v)  # noqa: E731
            table.add_row(plain(split), label, str(s["images"]), none(s.get("patients")), none(s.get("duplicates")))
    console.print(table)
    counts = dataset.splits.counts()
    split_table = Table(title="splits used for training and evaluation", header_style="bold", title_justify="left")
    for col in ("Split", *LABELS, "Total", "Patients"):
        split_table.add_column(col, justify="right" if col != "Split" else "left")
    for name in ("train", "val", "test"):
        c = counts[name]
        patients = len(set(getattr(dataset.splits, name).groups))
        split_table.add_row(name, *(str(c[label]) for label in LABELS), str(sum(c[label] for label in LABELS)), str(patients))
    console.print(split_table)
    console.print(esc(f"validation: {dataset.val_strategy}, fraction {dataset.val_fraction}, seed {dataset.seed}"))
    if "kaggle_val_images" in stats:
        console.print(f"Kaggle val/ folder: {stats['kaggle_val_images']} images, reported but not used")
    console.print(esc(f"image sizes seen: {stats.get('sizes')}; modes: {stats.get('modes')}"))
    console.print(f"skipped unreadable images: {stats.get('skipped_bad_count', 0)}")
    console.print(esc(
        f"cache: {'hit' if dataset.cache_hit else 'written'} at {dataset.cache_path} "
        f"({dataset.image_size}px x{dataset.channels}, loaded in {dataset.load_seconds:.2f}s)"
    ))
    console.print(esc(f"fingerprint: {dataset.fingerprint}"))
