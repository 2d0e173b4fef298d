"""The commands that read recorded runs: ``leaderboard``, ``report``, ``runs`` and ``compare``.

None of them trains or imports a backend; each names, in one line, the run files it skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xraybench.cli import options
from xraybench.cli.common import command, count_arg, report_skipped
from xraybench.errors import XRayBenchError
from xraybench.records import EXPLAIN_RUNS, RunStatus, Threshold

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from xraybench.results import ResultStore


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from xraybench import leaderboard as lb
    from xraybench.generated import check_target
    from xraybench.results import ResultStore

    output = Path(args.output) if args.output else None
    if output is not None:  # before anything is read: a file xraybench did not write is never replaced
        check_target(output, lb.COMMAND, args.force, lb.CSV_HEADER if args.format == "csv" else None)
    if args.columns is not None and args.format != "table":
        raise XRayBenchError(f"--columns chooses the table's columns; --format {args.format} holds every column")
    columns = lb.table_columns(args.columns)  # before anything is read: a typo is a one-line error
    store = ResultStore(args.results)
    loaded = store.load()
    report_skipped(loaded.skipped)
    damaged: list = []  # scores files treated as missing, named in one line on stderr
    rows = lb.build_rows(loaded.records, threshold=args.threshold, all_runs=args.all_runs, model=args.model,
                         sort=args.sort, scores_loader=store.scores_loader(damaged), baseline=args.baseline)
    report_skipped(damaged=damaged)
    published = [] if args.no_published else lb.published_rows()
    statuses = lb.count_statuses(loaded.records, len(loaded.skipped), args.model)
    _say_lacking(lb.lacking((r for r in loaded.records if not args.model or r.model == args.model), args.threshold),
                 args.threshold)
    text = _leaderboard_text(args, rows, published, statuses, str(store.runs), columns, to_file=output is not None)
    if text is None:  # the table went to the terminal itself
        return 0
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(lb.with_marker(text, args.format))
    except OSError as exc:
        raise XRayBenchError(f"cannot write --output {output} ({exc.strerror or type(exc).__name__})") from None
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _leaderboard_text(args: argparse.Namespace, rows: list, published: list, statuses: dict[str, int], where: str,
                      columns: list[str] | None, to_file: bool) -> str | None:
    """The leaderboard in ``--format``; a table not written ``to_file`` is printed to fit the
    terminal instead (None)."""
    from xraybench import leaderboard as lb

    if args.format != "table":
        return {
            "markdown": lambda: lb.render_markdown(rows, published, _markdown_title(args.threshold), statuses),
            "csv": lambda: lb.render_csv(rows),
            "json": lambda: lb.render_json(rows, published, statuses),
        }[args.format]()
    from xraybench.richtext import PIPED_WIDTH, console as make_console, esc  # the title is rich markup; the folder's name is not

    threshold = rows[0].threshold if rows else lb.threshold_label(Threshold.parse(args.threshold))
    title = f"xraybench leaderboard ({esc(where)}; threshold {threshold})"
    if to_file:
        return lb.table_text(rows, published, title, statuses, where, columns)
    console = make_console()
    whole = console.width >= PIPED_WIDTH  # a pipe without COLUMNS has no width to fit: every column, every word
    lb.render_table(rows, published, title, statuses=statuses, where=where, console=console,
                    columns=columns if args.columns or whole else lb.DEFAULT_COLUMNS, explain=args.explain or whole)
    return None


def _markdown_title(threshold: str) -> str:
    return f"xraybench leaderboard, at {Threshold.parse(threshold).words}"


def _say_lacking(count: int, threshold: str) -> None:
    """One line on stderr (never in a --format json/csv stream) naming the done runs an optional
    operating point leaves out because they were recorded before it."""
    if count:
        print(f"{count} done run{'s' if count != 1 else ''} without metrics at --threshold {threshold} (recorded "
              "before it) left out; `xraybench runs --backfill` adds them", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise XRayBenchError("`xraybench report` draws its plots with matplotlib, a dependency of xraybench that is "
                             "missing from this environment: pip install matplotlib (or reinstall xraybench)")
    from xraybench import html_report as report
    from xraybench.results import ResultStore
    from xraybench.richtext import console, esc

    html_path, md_path, skipped = report.write(ResultStore(args.results), Path(args.output), args.threshold,
                                               args.force, args.baseline, args.explain_runs)
    report_skipped(skipped)
    # absolute, whole (never wrapped), escaped: a path to open or paste as it is
    console().print(f"wrote {esc(html_path.absolute())} and {esc(md_path.absolute())}", highlight=False, soft_wrap=True)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.comparison import compare
    from xraybench.metric_registry import bootstrapped
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console, plain
    from xraybench.stats import format_interval

    c = compare(ResultStore(args.results), args.run_a, args.run_b, args.threshold)
    a, b = c.a, c.b
    console = make_console()
    table = Table(title=plain(f"{a.run_id} vs {b.run_id} (95% bootstrap CIs, threshold {args.threshold})"),
                  header_style="bold", title_justify="left")
    table.add_column("Metric")
    table.add_column(plain(f"A: {a.model} seed {a.seed}"))
    table.add_column(plain(f"B: {b.model} seed {b.seed}"))
    for metric in bootstrapped():
        table.add_row(metric.name, format_interval(c.intervals_a.get(metric.key), metric.digits),
                      format_interval(c.intervals_b.get(metric.key), metric.digits))
    console.print(table)
    mc, auc = c.paired["mcnemar"], c.paired["auc"]
    console.print(f"exact McNemar: A right/B wrong {mc['only_a']}, B right/A wrong {mc['only_b']}, {p_text(mc['p_value'])}")
    console.print(f"AUC(B) - AUC(A) = {auc['difference']:+.4f} [{auc['low']:+.4f}, {auc['high']:+.4f}], "
                  f"paired bootstrap {p_text(auc['p_value'])}")
    return 0


def p_text(p: float) -> str:
    """"p = 0.0123", or "p < 0.001" below that: a bootstrap of 1,000 resamples cannot tell smaller
    values apart, and "p = 0.0000" reads as an impossible certainty."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.4f}"


def cmd_runs(args: argparse.Namespace) -> int:
    """Every run file with its status and reason, invalid ones included: failures stay visible."""
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console

    store = ResultStore(args.results)
    console = make_console()
    if args.backfill:
        return _backfill(store, args.disable_plugin, console)
    loaded = store.load()
    rows = []
    for r in loaded.records:
        reason = r.reason
        if r.status is RunStatus.DONE and r.has_scores and not (store.runs / f"{r.run_id}.scores.json").is_file():
            reason = "per-image scores file missing (no curves, paired tests or compare)"
        rows.append((r.created_at, r.run_id, r.model, "-" if r.seed is None else str(r.seed), r.status, reason))
    rows += [("", s.path.name, "-", "-", RunStatus.INVALID, s.reason) for s in loaded.skipped]
    if args.status:
        rows = [r for r in rows if r[4].label == args.status]
    rows.sort(key=lambda r: (r[0], r[1]))
    _print_runs_table(rows, f"runs in {store.runs}", console)
    counts = {s.label: sum(1 for r in rows if r[4] is s) for s in RunStatus}
    console.print(", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no runs")
    return 0


def _print_runs_table(rows: list[tuple], title: str, console: Console) -> None:
    """``runs``' table of (created, run id, model, seed, status, reason) rows, at the console's width."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=escape(title), header_style="bold", title_justify="left")
    # A run id is never wrapped: it is copied into compare, predict, ensemble. Where the table would leave the reason
    # under 20 columns, Created, then Model, give way (xraybench's run ids begin with both) and the reason goes under
    # the id; then Seed and Status too. Widths: Created 19, Seed 4, Status 11 ("interrupted"), Reason at least 20,
    # and 3 cells of rule and padding a column.
    width, model_width = (max((len(str(r[i])) for r in rows), default=0) for i in (1, 2))
    layouts = (((0, 1, 2, 3, 4, 5), 19 + width + model_width + 35), ((1, 2, 3, 4, 5), width + model_width + 35),
               ((1, 3, 4), width + 15), ((1,), 0))
    shown = next(cols for cols, need in layouts if need + 3 * len(cols) + 1 <= console.width or not need)
    narrow, dropped = 5 not in shown, [("Created", "Model")[i // 2] for i in (0, 2) if i not in shown]
    for i in shown:
        table.add_column(("Created", "Run", "Model", "Seed", "Status", "Reason")[i], no_wrap=i == 1 and len(shown) > 1,
                         overflow="ellipsis" if i == 1 and len(shown) > 1 else "fold",
                         max_width=(width or None) if i == 1 else None)  # alone, an id too long for the line folds
    for created, name, model, seed, status, reason in rows:
        run: str | Text = escape(name)
        under = ([f"seed {seed}, {status.markup()}"] if 3 not in shown else []) + ([escape(reason)] if narrow and reason else [])
        if under:
            run = Text.from_markup(f"{run}\n[dim]{'; '.join(under)}")
            run.no_wrap = False  # what is under the id wraps, in the id's width
        cells = (escape(created[:19] or "-"), run, escape(model), seed, status.markup(), escape(reason or ""))
        table.add_row(*(cells[i] for i in shown))
    console.print(table)
    if dropped:
        below = "; seed, status and reason under each id" if 3 not in shown else "; reasons under the ids" if narrow else ""
        console.print(f"{' and '.join(dropped)}: in the run ids (TIME-MODEL-HASH){below}; wider terminals show "
                      f"{'them' if len(dropped) > 1 or below else 'it'} in columns.", style="dim")


def _backfill(store: ResultStore, disabled: list[str], console: Console) -> int:
    """``runs --backfill``: each record brought up to the registry and schema, each change named."""
    from rich.markup import escape

    from xraybench.backfill import backfill
    from xraybench.plugins import load_registry

    damaged: list = []
    # A damaged scores file: nothing computed from it, named below. The loader stands in for the method on
    # this instance (what backfill calls), by design.
    store.scores = store.scores_loader(damaged)  # type: ignore[method-assign, assignment]
    changed = backfill(store, load_registry(disabled))
    report_skipped(damaged=damaged)
    for name, what in changed:
        console.print(escape(f"{store.runs / name}: added {what}"), highlight=False)
    console.print(f"backfilled {len(changed)} record{'s' if len(changed) != 1 else ''} in {escape(str(store.runs))}")
    return 0


def add_leaderboard(sub) -> None:
    p = command(sub, "leaderboard", cmd_leaderboard, "show recorded runs ranked, beside published figures")
    p.add_argument("--sort", default="accuracy", metavar="METRIC",
                   help="metric to rank by, e.g. accuracy, roc_auc, macro_f1, normal_f1")
    p.add_argument("--model", metavar="NAME", help="only this model")
    p.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table",
                   help="table fits the terminal (--columns chooses its columns; where it is narrow, SDs, then "
                        "digits, are dropped and named, and long names cut with …); markdown, csv and json hold every "
                        "column")
    p.add_argument("--output", metavar="FILE", help="write the table (plain text, every column) or markdown/csv/json here "
                                                    "instead of stdout")
    options.force(p, "overwrite --output even if xraybench did not write it")
    p.add_argument("--columns", metavar="A,B,...",
                   help="the table's columns, by name: model, variant, image_size, runs, a metric's key (accuracy, "
                        "normal_f1, roc_auc, mcc, ...) or KEY_ci for its CI, delta_accuracy, p, train_seconds, "
                        "epochs, seeds, date, run_id; all for every column (default: on a terminal, a set that fits 80 columns: "
                        "model, variant, image size, runs, accuracy and its CI, NORMAL and PNEUMONIA F1, AUC, ΔAcc; into "
                        "a pipe or an --output file, all)")
    p.add_argument("--explain", action="store_true",
                   help="under the table, the whole legend (every abbreviation, ΔAcc's reference, how ± and the CIs are "
                        "computed) instead of its short form")
    p.add_argument("--all-runs", action="store_true", help="one row per run instead of mean ± SD per model")
    options.threshold(p, "metrics at 0.5, at the threshold chosen on validation (Youden's J, or the run's --target-sensitivity), "
                         "or at prior: transductive, moved to the test prior that EM estimates from the unlabeled test "
                         "scores (runs recorded before it are left out until `xraybench runs --backfill`)",
                      transductive=True)
    options.baseline(p, "compare every row with this model (ΔAcc, p) instead of the one a plugin declares as reference")
    p.add_argument("--no-published", action="store_true", help="hide the rows of published figures")
    p.add_argument("--no-references", dest="no_published", action="store_true", help=argparse.SUPPRESS)  # its older name
    options.results(p)


def add_report(sub) -> None:
    p = command(sub, "report", cmd_report, "write a self-contained HTML report (and a Markdown twin) of recorded runs")
    p.add_argument("--output", default="report.html", metavar="FILE",
                   help="HTML file to write; the .md twin goes beside it (naming X.md writes X.html and X.md)")
    options.force(p, "overwrite the output files even if xraybench did not write them")
    options.baseline(p, "the reference for ΔAcc and p (default: the one a plugin declares)")
    options.threshold(p, "metrics at 0.5, or at the threshold chosen on validation")
    p.add_argument("--explain-runs", type=count_arg(0), default=EXPLAIN_RUNS, metavar="N",
                   help="in the section on where the models look, occlusion maps of the most confident errors and "
                        "correct calls of the N best-ranked runs whose model file is here (the models run in a child "
                        "process: 8 to 11 s for one Keras and one scikit-learn run at 32 px on 2 busy cores); 0: none")
    options.results(p)


def add_runs(sub) -> None:
    p = command(sub, "runs", cmd_runs, "list every recorded run with its status and reason (failed and invalid ones too)")
    p.add_argument("--status", choices=tuple(s.label for s in RunStatus), help="only runs with this status")
    p.add_argument("--backfill", action="store_true",
                   help="once, after an upgrade: store intervals of newly registered metrics and the prior-shift "
                        "operating point (from the per-image scores) and the installed specs' reference and image size "
                        "in older records")
    options.results(p)


def add_compare(sub) -> None:
    p = command(sub, "compare", cmd_compare, "two runs side by side, with intervals and paired tests")
    p.add_argument("run_a", metavar="RUN_A", help="run id (or a unique prefix)")
    p.add_argument("run_b", metavar="RUN_B", help="run id (or a unique prefix)")
    options.threshold(p, "compare at 0.5, or at each run's validation-chosen threshold")
    options.results(p)
