"""``xraybench report``: one self-contained HTML file (plots embedded) and its Markdown twin.

Built from recorded runs and their per-image scores (nothing is retrained): the results at a
glance (the top rows at the validation threshold, ``glance``), the leaderboard rows, ROC/PR
curves, confusion matrices, calibration and training curves, and where the models look
(``explain/report.py``: maps drawn in a child process by the runs' saved models, the shortcut
checks, the hard cases). It only ever overwrites files it
wrote itself: each carries a generator marker that ``write`` checks.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from xraybench import generated, leaderboard as lb
from xraybench.errors import XRayBenchError
# text from plugins, paths and records
from xraybench.progress import plural
from xraybench.escaping import html_img, html_table, html_text, md_code, md_img, md_table, md_text, mpl_text
from xraybench.explain import report as explain_report  # the "Where the models look" section (numpy only)
from xraybench.leaderboard.columns import data_legend
from xraybench.leaderboard.render import PRODUCED_HEADERS, produced
from xraybench.records import FIXED_THRESHOLD, LABELS, RunRecord, Threshold
from xraybench.results import ResultStore, Skipped

COMMAND = "report"  # its files carry xraybench.generated's marker: <meta name="generator"> and the Markdown's first line
MARKER = generated.marker(COMMAND)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _name(model: str, variant: str, size: int | None) -> str:
    """Model, variant and size: several rows can share a model name (an ensemble has no size)."""
    return f"{model}{'' if variant == 'default' else ' ' + variant}{f' {size}px' if size else ''}"


def _row_name(record: RunRecord) -> str:
    return _name(record.model, lb.variant(record), record.image_size)


def _label(record: RunRecord) -> str:
    """A plotted run: its row's name and its seed (a row's curves are its lowest-seed run's)."""
    seed = "" if record.seed is None else f" seed {record.seed}"
    return mpl_text(_row_name(record) + seed)  # a "$" in a name is no mathtext


PLOTTED_RUNS = ("The curves, confusion matrices and calibration lines draw one run a row, its lowest-seed run "
                "(named with its seed): the AUC in a legend is that run's, where the table shows the row's mean.")
LINE_STYLES = ("-", "--", "-.", ":")


def series_styles(n: int) -> list[tuple[str, str]]:
    """(colour, line style) for ``n`` curves on one plot, all distinct up to 80 (and 20 distinct
    colours): tab20's dark shades first, then its light ones, each with the next of four line
    styles, so that neighbours in the legend differ in both and 20 series stay apart in grey too."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    # tab20 is a ListedColormap (its 20 colours); the registry is typed as giving any Colormap
    tab20 = [to_hex(c) for c in colormaps["tab20"].colors]  # type: ignore[attr-defined]
    colours = tab20[0::2] + tab20[1::2]
    return [(colours[i % 20], LINE_STYLES[(i + i // 20) % 4]) for i in range(n)]


def _legend(ax, n: int, loc: str) -> None:
    """Inside the plot for up to ten series; beside it past ten, where it would hide the curves
    (``savefig(bbox_inches="tight")`` widens the image to hold it)."""
    if n <= 10:
        ax.legend(fontsize=7, loc=loc)
    else:
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _curves(runs: list[tuple[RunRecord, dict]]) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    roc_fig, roc_ax = plt.subplots(figsize=(6, 5))
    pr_fig, pr_ax = plt.subplots(figsize=(6, 5))
    for (record, scores), (colour, style) in zip(runs, series_styles(len(runs))):
        y, s = np.asarray(scores["test_labels"]), np.asarray(scores["test_scores"])
        fpr, tpr, _ = roc_curve(y, s)
        roc_ax.plot(fpr, tpr, color=colour, linestyle=style, label=f"{_label(record)} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y, s)
        pr_ax.plot(recall, precision, color=colour, linestyle=style, label=_label(record))
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_ax.set(xlabel="1 - specificity (NORMAL called PNEUMONIA)", ylabel="sensitivity", title="ROC, test set",
               xlim=(0, 1), ylim=(0, 1.01))
    pr_ax.set(xlabel="recall (PNEUMONIA)", ylabel="precision (PNEUMONIA)", title="Precision-recall, test set",
              xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc_ax, pr_ax):
        _legend(ax, len(runs), "lower right" if ax is roc_ax else "lower left")
        ax.grid(alpha=0.3)
    return _png(roc_fig), _png(pr_fig)


def _confusions(runs: list[tuple[RunRecord, dict]]) -> str:
    import matplotlib.pyplot as plt

    n = len(runs)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (record, _) in zip(axes.ravel(), runs):
        cm = np.asarray((record.metrics or {})["confusion_matrix"])
        ax.axis("on")
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks([0, 1], [LABELS[0], LABELS[1][:6] + "."])
        ax.set_yticks([0, 1], [LABELS[0], LABELS[1][:6] + "."])
        ax.set_xlabel(f"predicted (threshold {FIXED_THRESHOLD:g})")
        ax.set_ylabel("true")
        ax.set_title(_label(record), fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _reliability(runs: list[tuple[RunRecord, dict]]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for (record, scores), (colour, style) in zip(runs, series_styles(len(runs))):
        y, s = np.asarray(scores["test_labels"]), np.asarray(scores["test_scores"])
        index = np.minimum((s * 10).astype(int), 9)
        xs, ys = [], []
        for b in range(10):
            mask = index == b
            if mask.any():
                xs.append(s[mask].mean())
                ys.append(y[mask].mean())
        ece = (record.metrics or {}).get("ece", float("nan"))
        ax.plot(xs, ys, color=colour, linestyle=style, marker="o", ms=3, label=f"{_label(record)} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted P(PNEUMONIA)", ylabel="observed share PNEUMONIA", title="Reliability, test set (10 bins)",
           xlim=(0, 1), ylim=(0, 1))
    _legend(ax, len(runs), "upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def _history(records: list[RunRecord]) -> str | None:
    """One row's training curves, every seed in one figure (a colour per seed; solid: train loss and
    validation AUC, dashed: validation loss and accuracy), so a report of many seeded runs stays one
    figure a row; None for a row with no per-epoch history (a scikit-learn model)."""
    records = [r for r in records if (r.history or {}).get("loss")]
    if not records:
        return None
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.8))
    for record, colour in zip(records, plt.rcParams["axes.prop_cycle"].by_key()["color"] * len(records)):
        history = record.history or {}
        epochs = np.arange(1, len(history["loss"]) + 1)
        for axes, key, style in ((a, "loss", "-"), (a, "val_loss", "--"), (b, "val_auc", "-"), (b, "val_accuracy", "--")):
            if key in history:
                axes.plot(epochs, history[key], color=colour, linestyle=style,
                          label=f"{key}, seed {record.seed}" if len(records) > 1 else key)
    a.set(xlabel="epoch", title="loss (dashed: validation)")
    b.set(xlabel="epoch", title="validation AUC (dashed: accuracy)")
    for axes in (a, b):
        axes.legend(fontsize=6, ncol=2 if len(records) > 2 else 1)
    seeds = ", ".join(str(r.seed) for r in records)
    fig.suptitle(f"{mpl_text(_row_name(records[0]))}: {plural(len(records), 'run')}, "
                 f"seed{'s' if len(records) > 1 else ''} {seeds}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _plotted(store: ResultStore, representatives: list[RunRecord], scores_of: Any,
             skipped: list[Skipped]) -> list[tuple[RunRecord, dict]]:
    """(record, scores) of each row's representative run that has its scores; a scores file the
    record promises but that is gone is noted in ``skipped``. None at all is a one-line error."""
    runs = []
    for record in representatives:
        scores = scores_of(record.run_id)
        if scores:
            runs.append((record, scores))
        elif record.has_scores and not (store.runs / f"{record.run_id}.scores.json").is_file():
            skipped.append(Skipped(store.runs / f"{record.run_id}.scores.json", "missing: run left out of the plots"))
    if not runs:
        raise XRayBenchError(f"no finished runs with per-image scores in {store.runs}; run `xraybench run` first")
    return runs


def build(store: ResultStore, threshold: str = "0.5", baseline: str | None = None,
          explain_runs: int = explain_report.DEFAULT_RUNS) -> dict[str, Any]:
    import functools

    loaded = store.load(full=True)
    skipped = list(loaded.skipped)

    @functools.cache  # the leaderboard's paired tests read them too
    def scores_of(run_id: str) -> dict | None:
        try:
            return store.scores(run_id)
        except ValueError as exc:
            skipped.append(Skipped(store.runs / f"{run_id}.scores.json", str(exc).rsplit(" (", 1)[-1].rstrip(")")))
            return None

    rows = lb.build_rows(loaded.records, threshold=threshold, scores_loader=scores_of, baseline=baseline)
    at_val = rows if threshold == "val" else lb.build_rows(loaded.records, threshold="val", scores_loader=scores_of,
                                                           baseline=baseline)
    by_id = {r.run_id: r for r in loaded.records}
    runs = _plotted(store, [by_id[str(row.representative_run)] for row in rows], scores_of, skipped)
    roc, pr = _curves(runs)
    histories = [(row.records[0], row.run_ids, image) for row in rows if (image := _history(row.records))]
    return {
        "rows": rows,
        "glance": at_val[:GLANCE_ROWS] if at_val else rows[:GLANCE_ROWS],  # runs recorded before val metrics: as ranked
        "glance_threshold": "val" if at_val else threshold,
        "glance_of": len(at_val or rows),
        "published": lb.published_rows(),
        "images": {"roc": roc, "pr": pr, "confusion": _confusions(runs), "reliability": _reliability(runs)},
        "histories": histories,
        "explain": explain_report.build(store, [record for record, _ in runs], loaded.records, scores_of, explain_runs),
        "data": _data_sets(rows),
        "environments": _environments(rows),
        "statuses": lb.count_statuses(loaded.records, len(loaded.skipped)),
        "skipped": sorted(set(skipped)),
        "threshold": threshold,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


WIDE_COLUMNS = 16  # past this many columns the leaderboard's type gets smaller (CSS table.wide)


def _table_html(rows: list[lb.Row], published: list[lb.PublishedRow]) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in lb.HEADERS)
    ids = lb.HEADERS.index("Run id")

    def cells(row: lb.Row) -> str:
        tags = ['<td class="id">' if i == ids else "<td>" for i in range(len(lb.HEADERS))]
        return "".join(f"{tag}{html_text(c)}</td>" for tag, c in zip(tags, lb.cells(row)))

    # published figures' rows keep the class "ref" the page's style sheet (and older copies of it) names
    body = [f"<tr>{cells(row)}</tr>" for row in rows] + [f'<tr class="ref">{cells(row)}</tr>' for row in published]
    wide = ' class="wide"' if len(lb.HEADERS) > WIDE_COLUMNS else ""
    return (f'<div id="board"><table id="leaderboard"{wide}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


STYLE = """body { font-family: system-ui, sans-serif; margin: 2rem; color: #111; background: #fff; }
table { border-collapse: collapse; font-size: 11px; margin: 1rem 0; }
/* The leaderboard fits the page: headers wrap at their spaces, numbers never do, wide tables
   get smaller type, and what is still too wide scrolls inside its box, not the page. */
#board { overflow-x: auto; max-width: 100%; }
#leaderboard { table-layout: auto; width: max-content; max-width: none; }
#leaderboard.wide { font-size: 9.5px; }
#leaderboard th { white-space: normal; vertical-align: bottom; }
#leaderboard td { white-space: nowrap; }
#leaderboard td.id { white-space: normal; word-break: break-all; min-width: 12em; font-family: monospace; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr.ref td { color: #666; font-style: italic; }
img { max-width: 100%; } figure { display: inline-block; margin: 0.5rem; }
""" + explain_report.STYLE

DATA_HEADERS = ("Data set", "Fingerprint", f"Images ({LABELS[0]} / {LABELS[1]})", "Validation", "Runs")
ENVIRONMENT_HEADERS = ("Software and hardware", "Rows")


def _data_sets(rows: list[lb.Row]) -> list[list[str]]:
    """One line per data set (fingerprint) the rows were trained on, its split counts in words."""
    lines = []
    for fingerprint in dict.fromkeys(str(row.fingerprint) for row in rows):
        same = [row for row in rows if str(row.fingerprint) == fingerprint]
        data = (same[0].records[0].data or {}) if same[0].records else {}
        counts = data.get("split_counts") or {}
        splits = "; ".join(f"{split} {c.get(LABELS[0], '?')} / {c.get(LABELS[1], '?')}" if isinstance(c, dict)
                           else f"{split} {c}" for split, c in counts.items()) if isinstance(counts, dict) else str(counts)
        validation = f"{data['val_strategy']}, fraction {data.get('val_fraction', '?')}" if "val_strategy" in data else "-"
        lines.append([same[0].data_name, fingerprint[:12], splits or "-", validation,
                      str(sum(len(row.run_ids) for row in same))])
    return lines


def _environments(rows: list[lb.Row]) -> list[list[str]]:
    """Each software and hardware the rows' runs were trained on, with the rows it covers."""
    covered: dict[str, list[str]] = {}
    for row in rows:
        for environment in row.hardware:
            covered.setdefault(str(environment), []).append(_name(row.model, row.variant, row.image_size))
    return [[environment, ", ".join(names)] for environment, names in covered.items()]


def _produced_html(rows: list[lb.Row]) -> str:
    """The Markdown's "How each row was produced", its commands as code."""
    body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in cells) + "<td>"
                   + ("<br>".join(f"<code>{html_text(c)}</code>" for c in commands) or "-") + "</td></tr>"
                   for cells, commands in map(produced, rows))
    head = "".join(f"<th>{html_text(h)}</th>" for h in PRODUCED_HEADERS)
    return f"<h3>How each row was produced</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(ctx: dict[str, Any]) -> str:
    histories = "".join(f"<figure>{html_img(b64, 'training curves ' + _row_name(r) + ': ' + ', '.join(ids))}</figure>"
                        for r, ids, b64 in ctx["histories"])
    fixed, images = ctx["threshold"] == "0.5", ctx["images"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{generated.html_meta(COMMAND)}<title>xraybench report</title>
<style>
{STYLE}
</style></head><body>
<h1>xraybench report</h1>
{_glance_html(ctx)}
<p>Generated {ctx['generated']}. Metrics at threshold {'0.5' if fixed else 'val'}
({'a fixed 0.5' if fixed else "chosen on validation, never on test: " + html_text(_methods(ctx))}).
Runs: {', '.join(f'{k} {v}' for k, v in ctx['statuses'].items())}; only done runs are ranked.</p>
{_skipped_html(ctx)}
<h2>Leaderboard, at {html_text(Threshold.parse(ctx['threshold']).words)}</h2>
{_table_html(ctx['rows'], ctx['published'])}
<p>{html_text(lb.footnote(ctx["rows"]))} Italic rows are published figures, not runs.</p>
{"".join(f"<p>{html_text(gap)}</p>" for gap in lb.reference_gaps(ctx["rows"]))}
{_produced_html(ctx['rows'])}
<h2>ROC and precision-recall curves</h2>
<p>{html_text(PLOTTED_RUNS)}</p>
<figure>{html_img(images['roc'], 'ROC curves')}</figure><figure>{html_img(images['pr'], 'precision-recall curves')}</figure>
<h2>Confusion matrices</h2>
<figure>{html_img(images['confusion'], 'confusion matrices')}</figure>
<h2>Calibration</h2>
<figure>{html_img(images['reliability'], 'reliability diagram')}</figure>
<h2>Training curves</h2>
{histories or '<p>No Keras runs with per-epoch history.</p>'}
{explain_report.render_html(ctx['explain'])}
<h2>Data</h2>
{html_table(DATA_HEADERS, ctx["data"])}
<p>The chest X-ray images: Kermany et al., Cell 2018 (CC BY 4.0); another data set, its own source.</p>
<h2>Environment</h2>
{html_table(ENVIRONMENT_HEADERS, ctx["environments"])}
</body></html>
"""


GLANCE_ROWS = 5  # the report opens with the top rows at the validation threshold
GLANCE_HEADERS = ("Model", "Variant", "px", "Runs", "Accuracy", "Accuracy 95% CI", "AUC")
GLANCE_COLUMNS = [lb.NAMED_COLUMNS[name] for name in ("image_size", "runs", "accuracy", "accuracy_ci", "roc_auc")]


def _moved(ctx: dict[str, Any]) -> str:
    """Why the leaderboard below ranks otherwise, where it is at another threshold, with the top
    row that ranks lowest there: a reader sees one row first here and last there."""
    if ctx["glance_threshold"] == ctx["threshold"] or not ctx["glance"]:
        return ""
    key = lambda r: (r.model, r.variant, r.image_size, r.fingerprint, r.backend)  # noqa: E731
    board = {key(r): i for i, r in enumerate(ctx["rows"], 1)}
    if [board.get(key(r), 0) for r in ctx["glance"]] == list(range(1, len(ctx["glance"]) + 1)):  # the same order
        return ""
    row = max(ctx["glance"], key=lambda r: board.get(key(r), 0))
    place = board.get(key(row), 0)
    example = (f"; {_name(row.model, row.variant, row.image_size)}, #{ctx['glance'].index(row) + 1} here, is "
               f"#{place} of {len(ctx['rows'])} there") if place > ctx["glance"].index(row) + 1 else ""
    return (f" The leaderboard below is at {Threshold.parse(ctx['threshold']).words}, so its order differs: there, a model whose "
            f"validation-chosen threshold is far from 0.5 loses accuracy{example} (xraybench report --threshold val "
            "ranks both alike).")


def glance(ctx: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The report's opening: one sentence on what is shown and the cells of its top rows (model,
    variant, size, runs, accuracy as mean ± SD with the row's 95% CI, AUC), ranked by accuracy at
    the threshold chosen on validation (the threshold asked for where no run has that one)."""
    rows = ctx["glance"]
    at = ("the threshold chosen on validation, never on test" if ctx["glance_threshold"] == "val"
          else f"threshold {ctx['glance_threshold']} (no run has metrics at a validation threshold)")
    marked = any(r.interval_method == "lowest-seed run" for r in rows)
    text = (f"The top {len(rows)} of {ctx['glance_of']} rows by accuracy, at {at}: mean ± SD over seeds, with the 95% "
            "CI of that mean (a hierarchical bootstrap over seeds and test images; a single seed: its run's test "
            "bootstrap)" + ("; * marks a CI that is the lowest-seed run's only (the footnote below says why)" if marked
                            else "") + "." + _moved(ctx) + (f" {legend}" if (legend := data_legend(ctx["rows"])) else "")
            + " The full leaderboard, curves and environment follow.")
    cells = [[r.model, r.variant, *lb.cells(r, GLANCE_COLUMNS)] for r in rows]
    return text, cells


def _glance_html(ctx: dict[str, Any]) -> str:
    text, cells = glance(ctx)
    table = html_table(GLANCE_HEADERS, cells, ' id="glance"')
    at = html_text(Threshold.parse(ctx["glance_threshold"]).words)
    return f"<h2>Results at a glance, at {at}</h2>\n{table}\n<p>{html_text(text)}</p>"


def _glance_markdown(ctx: dict[str, Any]) -> str:
    text, cells = glance(ctx)
    heading = f"## Results at a glance, at {Threshold.parse(ctx['glance_threshold']).words}\n"
    return "\n".join([heading, *md_table(GLANCE_HEADERS, cells)]) + f"\n\n{md_text(text)}\n"


def _methods(ctx: dict[str, Any]) -> str:
    return "; ".join(sorted({row.threshold for row in ctx["rows"]})) or "val"


def _skipped_html(ctx: dict[str, Any]) -> str:
    if not ctx["skipped"]:
        return ""
    items = "".join(f"<li><code>{html_text(str(s.path))}</code>: {html_text(s.reason)}</li>" for s in ctx["skipped"])
    return f"<p>Left out ({len(ctx['skipped'])}):</p><ul>{items}</ul>"


def render_markdown(ctx: dict[str, Any]) -> str:
    """The report's Markdown twin; paths, reasons, run ids and environments escaped (md_code, md_text)."""
    threshold = ctx["threshold"] if ctx["threshold"] == "0.5" else _methods(ctx)
    parts = [
        generated.comment_line(COMMAND),
        "# xraybench report\n",
        _glance_markdown(ctx),
        f"Generated {ctx['generated']}; metrics at threshold {threshold}.\n",
        *[f"- left out: {md_code(s.path)} ({md_text(s.reason)})" for s in ctx["skipped"]],
        lb.render_markdown(ctx["rows"], ctx["published"], f"Leaderboard, at {Threshold.parse(ctx['threshold']).words}"),
        "## ROC and precision-recall curves\n", md_text(PLOTTED_RUNS) + "\n",
        md_img(ctx["images"]["roc"], "ROC"), md_img(ctx["images"]["pr"], "PR"),
        "\n## Confusion matrices\n", md_img(ctx["images"]["confusion"], "confusion matrices"),
        "\n## Calibration\n", md_img(ctx["images"]["reliability"], "reliability"),
        "\n## Training curves\n", *[md_img(b64, f"training curves {_row_name(r)}: {', '.join(ids)}")
                                       for r, ids, b64 in ctx["histories"]],
        "\n" + explain_report.render_markdown(ctx["explain"]),
        "\n## Data\n", *md_table(DATA_HEADERS, ctx["data"]),
        "\n## Environment\n", *md_table(ENVIRONMENT_HEADERS, ctx["environments"]), "",
    ]
    return "\n".join(parts)


def targets(output: Path) -> tuple[Path, Path]:
    """The HTML file and its Markdown twin for ``--output``: X.html and X.md whichever is named."""
    if output.suffix.lower() == ".md":
        return output.with_suffix(".html"), output
    return output, output.with_suffix(".md")


def check_targets(output: Path, force: bool = False) -> tuple[Path, Path]:
    """Both target paths, or a one-line XRayBenchError before anything is built or written."""
    if output.is_dir():
        raise XRayBenchError(f"--output {output} is a folder; name the HTML file to write, e.g. {output / 'report.html'}")
    html_path, md_path = targets(output)
    for path in (html_path, md_path):
        if path.is_dir():
            raise XRayBenchError(f"{path} is a folder; choose another --output")
        generated.check_target(path, COMMAND, force)
    return html_path, md_path


def write(store: ResultStore, output: Path, threshold: str = "0.5", force: bool = False,
          baseline: str | None = None, explain_runs: int = explain_report.DEFAULT_RUNS) -> tuple[Path, Path, list[Skipped]]:
    html_path, md_path = check_targets(output, force)
    ctx = build(store, threshold, baseline, explain_runs)
    texts = [(html_path, render_html(ctx)), (md_path, render_markdown(ctx))]  # both rendered before either is written
    for path, text in texts:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise XRayBenchError(f"cannot write report {path} ({exc.strerror or type(exc).__name__})") from None
    return html_path, md_path, ctx["skipped"]
