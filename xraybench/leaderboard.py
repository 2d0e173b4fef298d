"""Leaderboard rows from run records, and their rendering (rich table, Markdown, CSV, JSON).

Rendering only: nothing here trains or imports keras. Runs of the same model,
variant (default, tuned or overridden parameters; bf16 marked), image size and data fingerprint form one row, shown
as mean +- SD over their seeds; only ``done`` runs are ranked.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Callable, Iterable

from xraybench.redaction import mask_command
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


def _hardware(record: dict[str, Any]) -> str:
    env = record.get("environment") or {}
    backend = env.get("backend") or "?"
    version = env.get(backend) if backend in ("tensorflow", "torch", "jax") else None
    device = env.get("accelerator") or f"CPU ({(env.get('cpu') or {}).get('model', '?')}, {(env.get('cpu') or {}).get('cores', '?')} cores)"
    if record.get("kind") == "generic":
        return f"scikit-learn {env.get('scikit-learn') or '?'} on {device}"
    return f"keras {env.get('keras') or '?'} / {backend} {version or ''} on {device}".replace("  ", " ")


def variant(record: dict[str, Any]) -> str:
    """"default", "tuned", or the ``--param``/``--epochs`` overrides a run was given, plus
    "bf16" for runs under mixed_bfloat16: another configuration gets its own row instead of
    joining the mean of the defaults."""
    tags = record.get("tags") or {}
    if tags.get("tuned"):
        name = "tuned"
    elif tags.get("overrides"):
        name = " ".join(f"{k}={v}" for k, v in sorted(tags["overrides"].items()))
    else:
        name = "default"
    return f"{name} bf16" if record.get("precision") == "mixed_bfloat16" else name


def record_keys(threshold: str) -> tuple[str, str]:
    """The run-record keys holding metrics and intervals at threshold ``"0.5"`` or ``"val"``."""
    if threshold == "val":
        return "metrics_at_val_threshold", "intervals_at_val_threshold"
    return "metrics", "intervals"


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample SD in floats: ``statistics.stdev`` is exact (Fractions) and was a sixth
    of the leaderboard's start-up with 1,000 runs, for digits nobody reads."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def build_rows(
    records: Iterable[dict[str, Any]],
    threshold: str = "0.5",
    all_runs: bool = False,
    model: str | None = None,
    sort: str = "accuracy",
    scores_loader: Callable[[str], dict | None] | None = None,
    max_paired_rows: int = 60,
) -> list[dict[str, Any]]:
    """One row per (model, variant, image size, fingerprint), or per run with ``all_runs``."""
    if sort not in SORTABLE:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTABLE)}")
    key_metrics, key_intervals = record_keys(threshold)
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
        runs.sort(key=lambda r: (r.get("seed") is None, r.get("seed"), r.get("created_at", "")))
        first = runs[0]  # the representative run: lowest seed (its intervals and paired test are shown)
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
            "study": first.get("tags", {}).get("study"),
            "representative_run": first["run_id"],
            "representative_threshold": first[key_metrics].get("threshold", 0.5),
            "intervals": first.get(key_intervals) or {},
            "wall_seconds_per_run": [r.get("wall_seconds") for r in runs],
            "cpu_seconds_per_run": [r.get("cpu_seconds") for r in runs],
            "commands": sorted({mask_command(r.get("command") or "") for r in runs}),  # old records too
            "hardware": sorted({_hardware(r) for r in runs}),
        }
        for name in METRICS:
            row[name], row[f"{name}_sd"] = _mean_sd([f[name] for f in flats])
        row["train_seconds"], row["train_seconds_sd"] = _mean_sd([r.get("train_seconds") for r in runs])
        row["epochs"], _ = _mean_sd([r.get("epochs_run") for r in runs])
        rows.append(row)
    base = [r for r in rows if r["model"] == BASELINE and r["variant"] == "default"]
    for row in rows:
        ref = reference_for(row, base)
        row["delta_accuracy_vs_baseline"] = (
            None if ref is None or row["accuracy"] is None else row["accuracy"] - ref["accuracy"]
        )
    if scores_loader is not None and len(rows) <= max_paired_rows:
        _paired_vs_baseline(rows, base, scores_loader)
    reverse = sort not in ("train_seconds",)
    rows.sort(key=lambda r: (r.get(sort) is None, -(r.get(sort) or 0) if reverse else (r.get(sort) or 0)))
    return rows


def reference_for(row: dict[str, Any], base: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline_cnn row a row is compared with: same data fingerprint, and the same image
    size when there is such a row, else baseline_cnn at its default 150 px, else its largest size."""
    same_data = [b for b in base if b["fingerprint"] == row["fingerprint"]]
    if not same_data:
        return None
    for b in same_data:
        if b["image_size"] == row["image_size"]:
            return b
    for b in same_data:
        if b["image_size"] == 150:
            return b
    return max(same_data, key=lambda b: (b["image_size"] or 0, b["runs"]))


def _paired_vs_baseline(rows: list[dict[str, Any]], base: list[dict[str, Any]], loader) -> None:
    """Exact McNemar test (accuracy at each run's threshold) of every row's run against baseline_cnn's.

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
            row["p_vs_baseline_note"] = "no baseline_cnn run with default parameters on the same data fingerprint: not compared"
            continue
        if ref is row:
            continue
        a, b = scores(ref["representative_run"]), scores(row["representative_run"])
        if not a or not b:
            row["p_vs_baseline_note"] = "per-image scores missing"
            continue
        try:
            result = compare_runs(a, b, ref["representative_threshold"], row["representative_threshold"], auc=False)
        except ValueError as exc:
            row["p_vs_baseline_note"] = str(exc)
            continue
        row["p_vs_baseline"] = result["mcnemar"]["p_value"]


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
    return f"{text}±{sd:.{digits}f}" if sd is not None else text


FOOTNOTE = (
    "ΔAcc = accuracy minus baseline_cnn's (default parameters, same data, same image size where it was run at that "
    "size, else 150 px). Values are mean±SD over seeds; 95% CIs are percentile bootstraps (1,000 resamples of the test set) of "
    "the lowest-seed run; p is the exact McNemar test of that run against that baseline_cnn row's lowest-seed run on "
    "the same test images (only runs with the same data fingerprint are compared)."
)

TABLE_COLUMNS = (
    "accuracy", "normal_precision", "normal_recall", "normal_f1",
    "pneumonia_precision", "pneumonia_recall", "pneumonia_f1", "macro_f1", "roc_auc",
)


def _ci(row: dict[str, Any], metric: str) -> str:
    iv = (row.get("intervals") or {}).get(metric)
    return "-" if not iv else f"{iv['low']:.3f}–{iv['high']:.3f}"


def _seeds(seeds: list) -> str:
    """All seeds when they are few; first, last and count when a row pools many runs."""
    if len(seeds) <= 5:
        return ",".join(str(s) for s in seeds) or "-"
    return f"{seeds[0]}…{seeds[-1]} ({len(seeds)})"


def _cells(row: dict[str, Any]) -> list[str]:
    cells = [row["model"], row["variant"], str(row["runs"]) if row["runs"] else "pub."]
    cells += [fmt(row.get("accuracy"), row.get("accuracy_sd")), _ci(row, "accuracy")]
    cells += [fmt(row.get(c), row.get(f"{c}_sd")) for c in TABLE_COLUMNS[1:-1]]
    cells += [fmt(row.get("roc_auc"), row.get("roc_auc_sd")), _ci(row, "roc_auc")]
    delta = row.get("delta_accuracy_vs_baseline")
    cells.append("-" if delta is None else f"{delta:+.3f}")
    p = row.get("p_vs_baseline")
    cells.append("-" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001"))
    cells.append("-" if row.get("train_seconds") is None else f"{row['train_seconds']:.0f}")
    cells.append(str(row.get("image_size") or "-"))
    cells.append("-" if row.get("epochs") is None else f"{row['epochs']:.1f}")
    cells.append(_seeds(row.get("seeds", [])))
    cells.append((row.get("created_at") or "-")[:10])
    return cells


HEADERS = [
    "Model", "Variant", "Runs", "Acc", "Acc 95% CI", "N prec", "N rec", "N F1", "P prec", "P rec", "P F1",
    "Macro F1", "AUC", "AUC 95% CI", "ΔAcc", "p", "Train s", "px", "Epochs", "Seeds", "Date",
]


# Columns the terminal table drops, first to last, when the terminal is too narrow for all of
# them; the rest (model, variant, runs, accuracy, per-class precision/recall/F1, AUC, image size)
# always stay. Narrower still, a borderless table shows two-digit means.
OPTIONAL_COLUMNS = ("Date", "Seeds", "Epochs", "Train s", "Macro F1", "AUC 95% CI", "Acc 95% CI", "p", "ΔAcc")
MODEL_WIDTH = 24  # the Model column is at least this wide or as wide as the longest run name; longer published names wrap


def _two_digits(cell: str) -> str:
    mean = cell.split("±")[0]
    try:
        return f"{float(mean):.2f}" if "." in mean else mean
    except ValueError:
        return mean


def _layout(body: list[list[str]], n_runs: int, width: int) -> dict[str, Any]:
    """Columns, cells, fixed widths and table style for a table that fits ``width`` cells
    (widths None: too narrow even for the compact table, rich squeezes it)."""
    from rich.cells import cell_len

    model_cap = max([MODEL_WIDTH] + [cell_len(r[0]) for r in body[:n_runs]])

    def widths(cells: list[list[str]], shown: list[int], word_headers: bool) -> list[int]:
        out = []
        for i in shown:
            head = max(map(cell_len, HEADERS[i].split())) if word_headers else cell_len(HEADERS[i])
            out.append(max([head] + [cell_len(r[i]) for r in cells]))
        out[0] = min(out[0], model_cap)
        return out

    shown = list(range(len(HEADERS)))
    for name in (None,) + OPTIONAL_COLUMNS:
        if name is not None:
            shown.remove(HEADERS.index(name))
        w = widths(body, shown, False)
        if sum(w) + 3 * len(w) + 1 <= width:  # one space each side of a cell, plus a rule
            return {"shown": shown, "cells": body, "widths": w, "cut": "", "compact": False}
    compact = [[c if i in (0, 1, 2, HEADERS.index("px")) else _two_digits(c) for i, c in enumerate(r)] for r in body]
    w = widths(compact, shown, True)
    w[0] = min(w[0], width - (sum(w[1:]) + 2 * (len(w) - 1)))  # borderless: two spaces between columns
    return {"shown": shown, "cells": compact, "widths": w if w[0] >= 10 else None, "cut": "SDs, third digit",
            "compact": True}


def render_table(rows: list[dict[str, Any]], refs: list[dict[str, Any]], title: str, console=None) -> None:
    """The leaderboard as a rich table that fits the terminal.

    Cells are plain one-line strings whose widths are known here, so every column gets a
    fixed width: rich then skips measuring each cell, which was most of `leaderboard`'s
    time with many rows. Columns (then SDs and a digit) are dropped, and named, rather than
    squeezed into truncated numbers; only a terminal too narrow even for the core columns
    falls back to rich's own collapsing.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    cells = [_cells(row) for row in rows] + [_cells(row) for row in refs]
    layout = _layout(cells, len(rows), console.width)
    shown, widths = layout["shown"], layout["widths"]
    options: dict[str, Any] = {"box": None, "pad_edge": False} if layout["compact"] else {}
    table = Table(title=title, show_lines=False, header_style="bold", **options)
    for k, i in enumerate(shown):
        h = HEADERS[i]
        table.add_column(h.replace(" ", "\n") if layout["compact"] else h,
                         justify="left" if h in ("Model", "Variant") else "right",
                         no_wrap=h != "Model" and widths is not None, overflow="fold",
                         width=widths[k] if widths else None)
    for n, row in enumerate(layout["cells"]):
        if n == len(rows):
            table.add_section()
        table.add_row(*(Text(row[i]) for i in shown), style="dim italic" if n >= len(rows) else None)
    console.print(table)
    hidden = [h for i, h in enumerate(HEADERS) if i not in shown] + ([layout["cut"]] if layout["cut"] else [])
    if hidden:
        console.print(f"[dim]Not shown at this terminal width: {', '.join(hidden)} (widen it, or use "
                      "--format markdown / json).[/]")
    if refs:
        console.print("[dim]Dim rows are published figures, not runs of xraybench. N = NORMAL, P = PNEUMONIA; "
                      "sensitivity = P rec, specificity = N rec.[/]")
    console.print(f"[dim]{FOOTNOTE}[/]")


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
                  "N = NORMAL, P = PNEUMONIA; sensitivity = P rec, specificity = N rec.\n")
    out.write(f"\n{FOOTNOTE}\n")
    if rows:
        out.write("\n### How each row was produced\n\n")
        out.write("| Model | Variant | px | Params | Epochs | Wall s per run | CPU s per run | Precision | Hardware | Command(s) |\n")
        out.write("|---|---|---|---|---|---|---|---|---|---|\n")
        for row in rows:
            walls = ", ".join(f"{w:.0f}" for w in row.get("wall_seconds_per_run", []) if w is not None) or "-"
            cpu = row.get("cpu_seconds_per_run", [])
            cpus = ", ".join("-" if c is None else f"{c:.0f}" for c in cpu) if any(c is not None for c in cpu) else "-"
            params = f"{row['param_count']:,}" if row.get("param_count") else "-"
            epochs = "-" if row.get("epochs") is None else f"{row['epochs']:.1f}"
            commands = "<br>".join(f"`{c}`" for c in row.get("commands", []) if c) or "-"
            out.write(f"| {row['model']} | {row['variant']} | {row.get('image_size')} | {params} | {epochs} | {walls} | {cpus} | "
                      f"{', '.join(row.get('precision', []))} | {'; '.join(row.get('hardware', []))} | {commands} |\n")
        for row in rows:
            note = row.get("p_vs_baseline_note")
            if note:
                out.write(f"\n- {row['model']} ({row['variant']}, {row.get('image_size')} px): {note}")
        out.write("\n")
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
