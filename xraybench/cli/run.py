"""``xraybench run``: parse, plan (``run_plan``), run each prepared run (``runner``), record and report."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from xraybench.cli import options
from xraybench.cli.common import announce_builtin, command, command_line, console as make_console, no_empty_folders_on_failure
from xraybench.errors import XRayBenchError
from xraybench.records import RunRecord, RunStatus
from xraybench.runner import DEFAULT_TIMEOUT  # runner imports nothing heavy at module level

if TYPE_CHECKING:
    from rich.console import Console

    from xraybench.results import ResultStore
    from xraybench.runner import Prepared


def cmd_run(args: argparse.Namespace) -> int:
    from xraybench.isolation import interruptible
    from xraybench.params import parse_assignments
    from xraybench.plugins import load_registry
    from xraybench.progress import set_verbose
    from xraybench.results import ResultStore
    from xraybench.run_plan import RunPlan, training_flags
    from xraybench.runner import RunRequest
    from xraybench.terminal_report import print_data_brief

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
                   resume=args.resume, save_model=not args.no_save_model)
    plan.check()
    if options.on_cluster(args):  # the cluster flags and the scheduler's address, before any data is loaded
        from xraybench import distributed  # the Dask layer only for a cluster run

        distributed.check(args.workers, args.scheduler, args.gpu)
    registry = load_registry(args.disable_plugin)
    console = make_console()
    store = ResultStore(args.results)
    with no_empty_folders_on_failure(store.runs):  # a command that fails before training leaves no empty folder
        store.check_writable()  # before any data is decoded or model trained
        if not args.resume:
            announce_builtin(args.data, console)
        prepared = plan.prepare(registry, store, console)  # every model, parameter and data set checked before anything trains
    for p in {id(p.dataset): p.dataset for p in prepared}.values():
        print_data_brief(p, console)
    if options.on_cluster(args):  # each run a Dask task; see docs/distributed.md (always trained: no --force needed)
        if args.no_isolation:
            raise XRayBenchError("--no-isolation runs in this process; it cannot be combined with --workers/--scheduler")
        from xraybench import distributed

        return distributed.run_batch(prepared, store, console, args.workers, args.scheduler, args.gpu)
    return _run_each(prepared, store, console, args)


def _run_each(prepared: list[Prepared], store: ResultStore, console: Console, args: argparse.Namespace) -> int:
    """Run and record each prepared run in turn (or show the done run it repeats), then the summary."""
    from xraybench import repeats
    from xraybench.progress import about
    from xraybench.richtext import esc
    from xraybench.runner import Interrupted, run_in_process, run_isolated
    from xraybench.terminal_report import print_run_report, print_run_summary

    records: list[RunRecord] = []
    runner = run_in_process if args.no_isolation else run_isolated
    # Same command, same run (xraybench/repeats.py): the done runs a new one may repeat; a resume never does.
    check_repeats = not (args.force or args.resume)
    known = store.load().records if check_repeats else []
    shown: set[str] = set()
    batch_start = time.perf_counter()
    for i, p in enumerate(prepared, 1):
        count = f" (run {i}/{len(prepared)})" if len(prepared) > 1 else ""
        if i > 1:  # the runs so far, as the measure of those left
            mean = (time.perf_counter() - batch_start) / (i - 1)
            count = f" (run {i}/{len(prepared)}, {about(mean * (len(prepared) - i + 1))} left)"
        console.rule(f"[bold]{esc(p.spec.name)}[/] seed {p.request.seed}{count}")
        first_result = not any(r.status is RunStatus.DONE for r in records)  # says why it differs from the seed
        found = repeats.find_recorded(p, known, store.find) if check_repeats else None
        if found is not None:
            console.print(esc(repeats.recorded_line(found)), highlight=False)
            print_run_report(found, console, explain=first_result, recorded=True)
            records.append(found)
            shown.add(found.run_id)
            continue
        try:
            record, scores = runner(p)
        except Interrupted as stop:
            store.save(stop.record)
            run_id = esc(stop.record.run_id)
            resumable = " (resume it with `xraybench run --resume " + run_id + "`)" if stop.record.checkpoint else ""
            console.print(f"[yellow]interrupted[/]: recorded run {run_id} as interrupted{resumable}")
            records.append(stop.record)
            print_run_summary(records, console, recorded=shown)
            return stop.exit_code
        path = store.save(record, scores)
        print_run_report(record, console, explain=first_result)
        records.append(record)
        if check_repeats and record.status is RunStatus.DONE:
            known.append(record)  # `--seeds 1 1` trains seed 1 once
        if args.traceback and record.traceback:
            sys.stderr.write(record.traceback)
        console.print(f"[dim]recorded {esc(path)}[/]")
    print_run_summary(records, console, recorded=shown)
    return 0 if all(r.status is RunStatus.DONE for r in records) else 1


def add_run(sub) -> None:
    p = command(sub, "run", cmd_run, "train and evaluate models, record the runs")
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
                   help="kill a model's run after this long (a --resume takes this command's value, not the "
                        "interrupted run's, and says so)")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="choose the second operating point on validation for this sensitivity instead of Youden's J")
    options.results(p)
    p.add_argument("--no-save-model", action="store_true",
                   help="keep no model file: by default each done run's trained model is saved beside its record "
                        "(runs/RUN_ID.keras or .skops, its SHA-256 and size in the record), for `xraybench predict`")
    p.add_argument("--no-isolation", action="store_true", help="train in this process instead of a child process (debugging)")
    options.verbose(p)
    p.add_argument("--traceback", action="store_true",
                   help="print a failed plugin's full traceback (it is always stored in the run record)")
    options.force(p, "train even where a done run of the same model, parameters (recipe included), seed, data, backend, "
                     "precision and xraybench version is recorded in the results folder (without it, that run's result "
                     "is shown; --workers/--scheduler always train)")
    options.cluster(p)
