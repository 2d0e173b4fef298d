"""The ``xraybench`` command line: argument parsing and wiring only.

Heavy modules (keras, a backend, scikit-learn, optuna, matplotlib) are imported
inside the commands that need them, so ``--help``, ``models``, ``plugins`` and
``leaderboard`` start fast and never import keras.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Sequence

from xraybench.errors import XRayBenchError


def _console():
    from rich.console import Console

    return Console()


def command_line() -> str:
    """The command as typed, recorded with each run so that it can be repeated."""
    return "xraybench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


# --- commands ------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.plugins import load_registry

    registry = load_registry(args.disable_plugin)
    table = Table(title="xraybench models", header_style="bold")
    for col in ("Model", "Distribution", "Kind", "Input", "Tunable", "Status", "Description"):
        table.add_column(col, no_wrap=col == "Model")
    for name in sorted(registry.models):
        spec = registry.models[name]
        table.add_row(
            name, f"{spec.distribution} {spec.version}", spec.kind, f"{spec.image_size}px x{spec.channels}",
            "yes" if spec.search_space else "no", "[green]ok[/]", spec.description,
        )
    for name, message in sorted(registry.conflicts.items()):
        table.add_row(name, "-", "-", "-", "-", "[red]error[/]", message)
    for info in registry.plugins:
        if info.status != "ok" and not info.models:
            colour = "red" if info.status == "error" else "yellow"
            table.add_row(f"({info.name})", f"{info.distribution} {info.version}", "-", "-", "-",
                          f"[{colour}]{info.status}[/]", info.reason)
    _console().print(table)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from xraybench.plugins import load_registry

    registry = load_registry(args.disable_plugin)
    if args.requirements:
        seen = set()
        for info in registry.plugins:
            if info.distribution not in ("local", "unknown") and info.distribution not in seen:
                seen.add(info.distribution)
                print(f"{info.distribution}=={info.version}")
        return 0
    from rich.table import Table

    table = Table(title="xraybench plugins", header_style="bold")
    for col in ("Plugin", "Distribution", "Version", "Module", "Status", "Registers"):
        table.add_column(col)
    for info in registry.plugins:
        colour = {"ok": "green", "error": "red", "disabled": "yellow"}[info.status]
        registers = ", ".join(info.models + info.datasets) or "-"
        status = f"[{colour}]{info.status}[/]" + (f": {info.reason}" if info.reason else "")
        table.add_row(info.name, info.distribution, info.version, info.module, status, registers)
    _console().print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from xraybench.plugins import load_registry
    from xraybench.params import parse_assignments
    from xraybench.reporting import print_run_report, print_run_summary
    from xraybench.results import ResultStore
    from xraybench.isolation import interruptible
    from xraybench.runner import Interrupted, RunRequest, prepare, run_in_process, run_isolated

    interruptible()  # kill -INT stops a run cleanly even where SIGINT was inherited ignored
    overrides = parse_assignments(args.param)
    if args.epochs is not None:
        if args.epochs < 1:
            raise XRayBenchError(f"--epochs must be at least 1, got {args.epochs}")
        overrides["epochs"] = args.epochs
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise XRayBenchError(f"--batch-size must be at least 1, got {args.batch_size}")
        overrides["batch_size"] = args.batch_size
    if args.target_sensitivity is not None and not 0.0 < args.target_sensitivity <= 1.0:
        raise XRayBenchError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    seeds = args.seeds or [args.seed]
    registry = load_registry(args.disable_plugin)
    console = _console()
    store = ResultStore(args.results)
    datasets: dict = {}
    command = command_line()
    # Check every model, parameter and data set before anything trains.
    prepared = []
    for model in args.model:
        spec = registry.model(model)
        for seed in seeds:
            own = {k: v for k, v in overrides.items() if k in spec.all_defaults() or k not in ("epochs", "batch_size")}
            request = RunRequest(
                model=model, seed=seed, data=args.data, image_size=args.image_size, channels=args.channels,
                params=own, precision=args.precision, val_fraction=args.val_fraction, skip_bad=args.skip_bad,
                disabled=list(args.disable_plugin), timeout=args.timeout, command=command,
                target_sensitivity=args.target_sensitivity, tags={"overrides": own} if own else {},
            )
            prepared.append(prepare(request, registry, datasets))
    for p in {id(p.dataset): p.dataset for p in prepared}.values():
        console.print(
            f"[bold]data[/] {p.source} ({p.reader}) {p.image_size}px x{p.channels}, fingerprint {p.fingerprint[:12]}, "
            f"{'cache hit' if p.cache_hit else 'decoded and cached'} in {p.load_seconds:.1f}s; "
            f"split {p.splits.counts()}"
        )
    from xraybench import distributed

    if distributed.wanted(args):  # each run a Dask task; see docs/distributed.md
        if args.no_isolation:
            raise XRayBenchError("--no-isolation runs in this process; it cannot be combined with --workers/--scheduler")
        return distributed.run_batch(prepared, store, console, args.workers, args.scheduler, args.gpu)
    records = []
    runner = run_in_process if args.no_isolation else run_isolated
    for p in prepared:
        console.rule(f"[bold]{p.spec.name}[/] seed {p.request.seed}")
        try:
            record, scores = runner(p)
        except Interrupted as stop:
            store.save(stop.record)
            console.print(f"[yellow]interrupted[/]: recorded run {stop.record['run_id']} as interrupted")
            records.append(stop.record)
            print_run_summary(records, console)
            return 130
        path = store.save(record, scores)
        records.append(record)
        print_run_report(record, console)
        if args.traceback and record.get("traceback"):
            sys.stderr.write(record["traceback"])
        console.print(f"[dim]recorded {path}[/]")
    print_run_summary(records, console)
    return 0 if all(r["status"] == "done" for r in records) else 1


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from xraybench import leaderboard as lb
    from xraybench.results import ResultStore

    store = ResultStore(args.results)
    rows = lb.build_rows(store.summaries(), threshold=args.threshold, all_runs=args.all_runs,
                         model=args.model, sort=args.sort, scores_loader=store.scores)
    refs = [] if args.no_references else lb.reference_rows()
    title = f"xraybench leaderboard ({store.runs}; threshold {rows[0]['threshold'] if rows else args.threshold})"
    if args.format == "table":
        if not rows:
            print(f"no finished runs in {store.runs}; run `xraybench run --model baseline_cnn` first")
        lb.render_table(rows, refs, title)
        return 0
    text = {
        "markdown": lambda: lb.render_markdown(rows, refs, "xraybench leaderboard"),
        "csv": lambda: lb.render_csv(rows),
        "json": lambda: lb.render_json(rows, refs),
    }[args.format]()
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) == "download":
        from xraybench.data.download import download_pneumoniamnist

        if args.dataset != "pneumoniamnist":
            raise XRayBenchError(f"unknown data set {args.dataset!r}; downloadable: pneumoniamnist")
        from pathlib import Path

        path = download_pneumoniamnist(args.size, Path(args.dest) if args.dest else None)
        print(f"saved {path}; use it with --data {path}")
        return 0
    from xraybench.data import cache

    if args.clear_cache:
        n = cache.clear()
        print(f"removed {n} cache entr{'y' if n == 1 else 'ies'} from {cache.cache_root()}")
        return 0
    from xraybench.data import load_dataset
    from xraybench.reporting import print_data_summary

    dataset = load_dataset(args.data, image_size=args.image_size, channels=args.channels, seed=args.seed,
                           val_fraction=args.val_fraction, skip_bad=args.skip_bad)
    print_data_summary(dataset, _console())
    return 0


# --- parser --------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            text += " (default: %(default)s)"
        return text


def _data_options(p: argparse.ArgumentParser, image_size_default: int | None) -> None:
    p.add_argument("--data", metavar="PATH", help="data set folder or .npz (default: $XRAYBENCH_DATA, then the user data folder)")
    p.add_argument("--image-size", type=int, default=image_size_default, metavar="N",
                   help="square image size in pixels" + (" (default: each model's own)" if image_size_default is None else ""))
    p.add_argument("--channels", type=int, choices=(1, 3), default=None if image_size_default is None else 1,
                   help="1 = grayscale, 3 = RGB" + (" (default: each model's own)" if image_size_default is None else ""))
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of train held out as the patient-grouped validation split")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and recorded) instead of failing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xraybench",
        description="Benchmark pneumonia classifiers on chest X-rays: same data, same splits, same metrics.",
        formatter_class=_Formatter,
    )
    from xraybench import __version__

    parser.add_argument("--version", action="version", version=f"xraybench {__version__}")
    parser.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="switch a plugin off by entry-point or distribution name (repeatable; also $XRAYBENCH_DISABLE_PLUGINS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list every registered model", formatter_class=_Formatter)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("plugins", help="list installed plugins, their versions and status", formatter_class=_Formatter)
    p.add_argument("--requirements", action="store_true", help="print pip requirement lines that reinstall them")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("run", help="train and evaluate models, record the runs", formatter_class=_Formatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME", help="model to run (repeatable)")
    _data_options(p, None)
    p.add_argument("--epochs", type=int, metavar="N", help="cap on training epochs (Keras models)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (Keras models)")
    p.add_argument("--seed", type=int, default=42, help="seed for the split and the training")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="run each model once per seed (overrides --seed)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter (repeatable)")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto",
                   help="Keras compute precision; auto = mixed_bfloat16 where the CPU has native bf16")
    p.add_argument("--timeout", type=float, default=6 * 3600.0, metavar="SECONDS", help="kill a model's run after this long")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="choose the second operating point on validation for this sensitivity instead of Youden's J")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.add_argument("--no-isolation", action="store_true", help="train in this process instead of a child process (debugging)")
    p.add_argument("--traceback", action="store_true",
                   help="print a failed plugin's full traceback (it is always stored in the run record)")
    from xraybench import distributed

    distributed.add_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("leaderboard", help="show recorded runs ranked, with the published references", formatter_class=_Formatter)
    p.add_argument("--sort", default="accuracy", metavar="METRIC", help="metric to rank by, e.g. accuracy, roc_auc, macro_f1, normal_f1")
    p.add_argument("--model", metavar="NAME", help="only this model")
    p.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table",
                   help="table fits the terminal (optional columns, then SDs, are dropped and named); "
                        "markdown and json hold every column")
    p.add_argument("--output", metavar="FILE", help="write markdown/csv/json here instead of stdout")
    p.add_argument("--all-runs", action="store_true", help="one row per run instead of mean ± SD per model")
    p.add_argument("--threshold", choices=("0.5", "val"), default="0.5",
                   help="metrics at 0.5, or at the threshold chosen on validation (Youden's J)")
    p.add_argument("--no-references", action="store_true", help="hide the published reference rows")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("data", help="summarise the data set (counts, patients, duplicates, cache, fingerprint)",
                       formatter_class=_Formatter)
    _data_options(p, 150)
    p.add_argument("--seed", type=int, default=42, help="seed of the validation split")
    p.add_argument("--clear-cache", action="store_true", help="empty the decoded-image cache")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = data_sub.add_parser("download", help="download a public data set", formatter_class=_Formatter)
    d.add_argument("dataset", choices=("pneumoniamnist",))
    d.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224))
    d.add_argument("--dest", metavar="DIR", help="folder to save into (default: the user data folder)")
    p.set_defaults(func=cmd_data)

    from xraybench import cli_extra

    cli_extra.add_commands(sub, _Formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except XRayBenchError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
