"""``xraybench run``: parse, plan (``run_plan``), run each prepared run (``runner``), record and report."""

from __future__ import annotations

import argparse
import sys
import time

from xraybench.cli import options
from xraybench.cli.common import announce_builtin, command_line, console as make_console
from xraybench.errors import XRayBenchError
from xraybench.records import RunStatus
from xraybench.runner import DEFAULT_TIMEOUT  # runner imports nothing heavy at module level


def cmd_run(args: argparse.Namespace) -> int:
    from xraybench.isolation import interruptible
    from xraybench.params import parse_assignments
    from xraybench.plugins import load_registry
    from xraybench.progress import about, set_verbose
    from xraybench.results import ResultStore
    from xraybench.richtext import esc
    from xraybench.run_plan import RunPlan, training_flags
    from xraybench.runner import Interrupted, RunRequest, run_in_process, run_isolated
    from xraybench.terminal_report import print_data_brief, print_run_report, print_run_summary

    interruptible()  # kill -INT stops a run cleanly even where SIGINT was inherited ignored
    set_verbose(args.verbose)
    overrides = parse_assignments(args.param)
    flags = training_flags(args.epochs, args.batch_size, args.recipe)
    settings = RunRequest(
        model="", data=args.data, image_size=args.image_size, channels=args.channels, precision=args.precision,
        val_fraction=args.val_fraction, skip_bad=args.skip_bad, disabled=list(args.disable_plugin), timeout=args.timeout,
        command=command_line(), target_sensitivity=args.target_sensitivity,
    )
    plan = RunPlan(settings, models=args.model or [], seeds=args.seeds or [args.seed], overrides=overrides, flags=flags,
                   resume=args.resume)
    plan.check()
    registry = load_registry(args.disable_plugin)
    console = make_console()
    store = ResultStore(args.results)
    store.check_writable()  # before any data is decoded or model trained
    if not args.resume:
        announce_builtin(args.data, console)
    prepared = plan.prepare(registry, store, console)  # every model, parameter and data set checked before anything trains
    for p in {id(p.dataset): p.dataset for p in prepared}.values():
        print_data_brief(p, console)
    from xraybench import distributed

    if distributed.wanted(args):  # each run a Dask task; see docs/distributed.md
        if args.no_isolation:
            raise XRayBenchError("--no-isolation runs in this process; it cannot be combined with --workers/--scheduler")
        return distributed.run_batch(prepared, store, console, args.workers, args.scheduler, args.gpu)
    records = []
    runner = run_in_process if args.no_isolation else run_isolated
    batch_start = time.perf_counter()
    for i, p in enumerate(prepared, 1):
        count = f" (run {i}/{len(prepared)})" if len(prepared) > 1 else ""
        if i > 1:  # the runs so far, as the measure of those left
            mean = (time.perf_counter() - batch_start) / (i - 1)
            count = f" (run {i}/{len(prepared)}, {about(mean * (len(prepared) - i + 1))} left)"
        console.rule(f"[bold]{esc(p.spec.name)}[/] seed {p.request.seed}{count}")
        try:
            record, scores = runner(p)
        except Interrupted as stop:
            store.save(stop.record)
            run_id = esc(stop.record["run_id"])
            resumable = " (resume it with `xraybench run --resume " + run_id + "`)" if stop.record.get("checkpoint") else ""
            console.print(f"[yellow]interrupted[/]: recorded run {run_id} as interrupted{resumable}")
            records.append(stop.record)
            print_run_summary(records, console)
            return 130
        path = store.save(record, scores)
        records.append(record)
        print_run_report(record, console)
        if args.traceback and record.get("traceback"):
            sys.stderr.write(record["traceback"])
        console.print(f"[dim]recorded {esc(path)}[/]")
    print_run_summary(records, console)
    return 0 if all(r["status"] == RunStatus.DONE.label for r in records) else 1


def add_run(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate models, record the runs", formatter_class=options.Formatter)
    p.add_argument("--model", action="append", metavar="NAME", help="model to run (repeatable)")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="continue an interrupted or timed-out Keras run from its last epoch's checkpoint, with the run's own "
                        "model, data and settings (a new record names it in resumed_from)")
    options.data(p, None)
    options.epochs(p, "cap on training epochs (Keras models)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (Keras models)")
    options.recipe(p)
    options.seed(p, "seed for the split and the training")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="run each model once per seed (overrides --seed)")
    options.param(p, "override a model parameter (repeatable)")
    options.precision(p, "Keras compute precision; auto = float32 on a CPU, mixed_bfloat16 on a GPU")
    p.add_argument("--timeout", type=options.positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="kill a model's run after this long")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="choose the second operating point on validation for this sensitivity instead of Youden's J")
    options.results(p)
    p.add_argument("--no-isolation", action="store_true", help="train in this process instead of a child process (debugging)")
    options.verbose(p)
    p.add_argument("--traceback", action="store_true",
                   help="print a failed plugin's full traceback (it is always stored in the run record)")
    from xraybench import distributed

    distributed.add_options(p)
    p.set_defaults(func=cmd_run)
