"""Leaderboard rows from run records, and their rendering (rich table, Markdown, CSV, JSON).

Rendering only: nothing here trains or imports keras. Runs of the same model,
variant (default or tuned), image size and data fingerprint form one row, shown
as mean +- SD over their seeds; only ``done`` runs are ranked.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Any, Iterable

from xraybench.references import REFERENCES

BASELINE = "baseline_cnn"

METRICS = {
    "accuracy": "Acc",
    "normal_precision": "N prec",
    "normal_recall": "N rec",
    "normal_f1": "N F1",
    "pneumonia_precision": "P prec",
    "pneumonia_recall": "P rec",
    "pneumonia_f1": "P F1",
    "macro_f1": "Macro F1",
    "roc_auc": "AUC",
    "sensitivity": "Sens",
    "specificity": "Spec",
    "balanced_accuracy": "Bal acc",
}
SORTABLE = tuple(METRICS) + ("train_seconds", "created_at")


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    per = metrics.get("per_class", {})
    out: dict[str, float | None] = {}
    for key in METRICS:
        if key.startswith("normal_") or key.startswith("pneumonia_"):
            label, _, name = key.partition("_")
            out[key] = per.get(label.upper(), {}).get(name)
        else:
            out[key] = metrics.get(key)
    return out


def variant(record: dict[str, Any]) -> str:
    return "tuned" if record.get("tags", {}).get("tuned") else "default"


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def build_rows(
    records: Iterable[dict[str, Any]],
    threshold: str = "0.5",
    all_runs: bool = False,
    model: str | None = None,
    sort: str = "accuracy",
) -> list[dict[str, Any]]:
    """One row per (model, variant, image size, fingerprint), or per run with ``all_runs``."""
    if sort not in SORTABLE:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    key_metrics = "metrics_at_val_threshold" if threshold == "val" else "metrics"
    done = [r for r in records if r.get("status") == "done" and r.get(key_metrics)]
    if model:
        done = [r for r in done if r.get("model") == model]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in done:
        fp = r.get("data", {}).get("fingerprint", "")
        key = (r["run_id"],) if all_runs else (r["model"], variant(r), r.get("image_size"), fp)
        groups.setdefault(key, []).append(r)
    rows = []
    for runs in groups.values():
        first = runs[0]
        flats = [flat_metrics(r[key_metrics]) for r in runs]
        row: dict[str, Any] = {
            "model": first["model"],
            "variant": variant(first),
            "runs": len(runs),
            "run_ids": [r["run_id"] for r in runs],
            "seeds": sorted({r.get("seed") for r in runs}),
            "image_size": first.get("image_size"),
            "precision": sorted({str(r.get("precision")) for r in runs}),
            "param_count": first.get("param_count"),
            "fingerprint": first.get("data", {}).get("fingerprint", ""),
            "threshold": "0.5" if threshold != "val" else "val (Youden J on validation)",
            "distribution": f"{first.get('distribution')} {first.get('version')}",
            "created_at": max(r.get("created_at", "") for r in runs),
            "command": first.get("command", ""),
            "study": first.get("tags", {}).get("study"),
        }
        for name in METRICS:
            row[name], row[f"{name}_sd"] = _mean_sd([f[name] for f in flats])
        row["train_seconds"], row["train_seconds_sd"] = _mean_sd([r.get("train_seconds") for r in runs])
        row["wall_seconds"], _ = _mean_sd([r.get("wall_seconds") for r in runs])
        row["epochs"], _ = _mean_sd([r.get("epochs_run") for r in runs])
        rows.append(row)
    base = [r for r in rows if r["model"] == BASELINE and r["variant"] == "default"]
    for row in rows:
        ref = next((b for b in base if b["fingerprint"] == row["fingerprint"] and b["image_size"] == row["image_size"]), None)
        ref = ref or next((b for b in base if b["fingerprint"] == row["fingerprint"]), None)
        row["delta_accuracy_vs_baseline"] = (
            None if ref is None or row["accuracy"] is None else row["accuracy"] - ref["accuracy"]
        )
    reverse = sort not in ("train_seconds",)
    rows.sort(key=lambda r: (r.get(sort) is None, -(r.get(sort) or 0) if reverse else (r.get(sort) or 0)))
    return rows


def reference_rows() -> list[dict[str, Any]]:
    rows = []
    for ref in REFERENCES:
        per = ref.get("per_class", {})
        row = {"model": ref["model"], "variant": "published", "runs": 0, "source": ref["source"], "image_size": ref.get("image_size")}
        for name in METRICS:
            if name.startswith(("normal_", "pneumonia_")):
                label, _, metric = name.partition("_")
                row[name] = per.get(label.upper(), {}).get(metric)
            else:
                row[name] = ref.get(name)
            row[f"{name}_sd"] = None
        rows.append(row)
    return rows


def fmt(value: float | None, sd: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return f"{text} ± {sd:.{digits}f}" if sd is not None else text


TABLE_COLUMNS = (
    "accuracy", "normal_precision", "normal_recall", "normal_f1",
    "pneumonia_precision", "pneumonia_recall", "pneumonia_f1", "macro_f1", "roc_auc",
)


def _cells(row: dict[str, Any]) -> list[str]:
    cells = [row["model"], row["variant"], str(row["runs"]) if row["runs"] else "pub."]
    cells += [fmt(row.get(c), row.get(f"{c}_sd")) for c in TABLE_COLUMNS]
    delta = row.get("delta_accuracy_vs_baseline")
    cells.append("-" if delta is None else f"{delta:+.3f}")
    cells.append("-" if row.get("train_seconds") is None else f"{row['train_seconds']:.0f}")
    cells.append(str(row.get("image_size") or "-"))
    cells.append("-" if row.get("epochs") is None else f"{row['epochs']:.1f}")
    cells.append(",".join(str(s) for s in row.get("seeds", [])) or "-")
    cells.append((row.get("created_at") or "-")[:10])
    return cells


HEADERS = [
    "Model", "Variant", "Runs", "Acc", "N prec", "N rec", "N F1", "P prec", "P rec", "P F1",
    "Macro F1", "AUC", "ΔAcc vs baseline", "Train s", "px", "Epochs", "Seeds", "Date",
]


def render_table(rows: list[dict[str, Any]], refs: list[dict[str, Any]], title: str, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title, show_lines=False, header_style="bold")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("Model", "Variant") else "right", no_wrap=h in ("Model",))
    for row in rows:
        table.add_row(*_cells(row))
    if refs:
        table.add_section()
        for row in refs:
            table.add_row(*_cells(row), style="dim italic")
    console.print(table)
    if refs:
        console.print("[dim]Dim rows are published figures, not runs of xraybench. N = NORMAL, P = PNEUMONIA; "
                      "sensitivity = P rec, specificity = N rec.[/]")


def render_markdown(rows: list[dict[str, Any]], refs: list[dict[str, Any]], title: str) -> str:
    out = io.StringIO()
    out.write(f"## {title}\n\n")
    out.write("| " + " | ".join(HEADERS) + " |\n")
    out.write("|" + "---|" * len(HEADERS) + "\n")
    for row in rows:
        out.write("| " + " | ".join(_cells(row)) + " |\n")
    for row in refs:
        cells = _cells(row)
        cells[0] = f"*{cells[0]}*"
        out.write("| " + " | ".join(cells) + " |\n")
    if refs:
        out.write("\nRows in *italics* are published figures, not runs of xraybench. "
                  "N = NORMAL, P = PNEUMONIA; sensitivity = P rec, specificity = N rec. Values are mean ± SD over seeds.\n")
    return out.getvalue()


def render_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = ["model", "variant", "runs", "image_size", "epochs", "train_seconds", "seeds", "fingerprint"]
    for m in METRICS:
        fields += [m, f"{m}_sd"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "seeds": " ".join(map(str, row.get("seeds", [])))})
    return out.getvalue()


def render_json(rows: list[dict[str, Any]], refs: list[dict[str, Any]]) -> str:
    return json.dumps({"rows": rows, "published_references": refs}, indent=1)
