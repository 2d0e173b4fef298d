"""``xraybench ensemble``: record the mean of recorded runs' per-image scores as a run of its own
(``xraybench.ensemble`` does the work; this module parses, saves and reports). Trains nothing and
imports no backend."""

from __future__ import annotations

import argparse

from xraybench.cli import options
from xraybench.cli.common import command, command_line
from xraybench.cli.common import console as make_console
from xraybench.records import RunRecord


def cmd_ensemble(args: argparse.Namespace) -> int:
    from xraybench.ensemble import build
    from xraybench.results import ResultStore
    from xraybench.richtext import esc

    store = ResultStore(args.results)
    record, scores = build(store, args.run_ids, command_line(), args.target_sensitivity)  # refusals: one line, exit 2
    store.check_writable()
    path = store.save(record, scores)
    console = make_console()
    console.print(f"[bold]ensemble[/]: {esc(record.description)}", highlight=False)
    for line in report_lines(record):
        console.print(line, highlight=False)
    console.print(f"[dim]recorded {esc(path)}; `xraybench leaderboard` ranks it, "
                  f"`xraybench compare {esc(record.run_id)} RUN_ID` compares it[/]")
    return 0


def report_lines(record: RunRecord) -> list[str]:
    """The ensemble's test metrics at 0.5 and at its own validation-chosen threshold, one line each."""

    def line(m: dict) -> str:
        return (f"accuracy {m['accuracy']:.4f}  ROC AUC {m['roc_auc']:.4f}  sensitivity {m['sensitivity']:.4f}  "
                f"specificity {m['specificity']:.4f}")

    at_val = record.metrics_at_val_threshold or {}
    return [f"test, threshold 0.5: {line(record.metrics or {})}",
            f"test, threshold {at_val['threshold']:.3f} ({record.threshold_method()}, never test): {line(at_val)}"]


def _sensitivity(text: str) -> float:
    """argparse type of --target-sensitivity: a share in (0, 1], else a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sensitivity in (0, 1]")
    return value


def add_ensemble(sub) -> None:
    p = command(sub, "ensemble", cmd_ensemble, "record the mean of finished runs' per-image scores as an ensemble run")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                   help="two or more finished runs (ids or unique prefixes) on the same data, with per-image scores")
    p.add_argument("--target-sensitivity", type=_sensitivity, metavar="X",
                   help="choose the second operating point on the ensemble's validation scores for this sensitivity "
                        "instead of Youden's J")
    options.results(p)
