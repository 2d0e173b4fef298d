"""``xraybench tune`` (an Optuna study on the validation split, then one final run on test) and
``xraybench studies``. Optuna is imported inside the commands."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
from pathlib import Path
from typing import Any, Literal, overload

from xraybench.cli import options
from xraybench.cli.common import announce_builtin, command, command_line, no_empty_folders_on_failure
from xraybench.errors import XRayBenchError
from xraybench.records import RunStatus
from xraybench.tuning import OBJECTIVES, PRUNERS, SAMPLERS


def cmd_tune(args: argparse.Namespace) -> int:
    from xraybench import tuning
    from xraybench.isolation import interruptible
    from xraybench.progress import set_verbose
    from xraybench.richtext import console as make_console, esc

    interruptible()  # kill -INT stops tuning cleanly even where SIGINT was inherited ignored
    console = make_console()
    set_verbose(args.verbose)
    if args.show:
        storage = _storage(args, create=False)
        if storage is None:
            raise XRayBenchError(f"no study {args.show!r}: {_default_study_file(args)} does not exist (nothing tuned with "
                                 "this results folder yet; --storage URL names another)")
        return _show_study(console, storage, args.show)
    if not args.model:
        raise XRayBenchError("tune needs --model NAME (or --show STUDY)")
    plan = _plan(args, console)
    try:
        study, session, seconds = _optimise(args, plan, console)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM
        from xraybench.isolation import stop_exit_code

        console.print(f"[yellow]interrupted[/]: finished trials are kept in {esc(tuning.masked(plan.storage))}; "
                      f"run the same command to resume study {esc(repr(plan.study_name))}")
        return stop_exit_code(exc)
    done = _report_trials(study, session, seconds, console)
    if not done:
        if not study.trials:  # nothing ran (a --timeout spent before the first trial): a matter of the command line
            raise XRayBenchError(f"study {plan.study_name!r} has no trial; nothing to evaluate")
        return _all_trials_failed(study, plan.study_name, args.traceback)
    best = study.best_trial
    console.print(esc(f"best trial {best.number}: {args.metric} {best.value:.4f} with {best.params}"))
    return 0 if args.no_final else _final_run(args, plan, study, done, console)


@dataclasses.dataclass
class _Plan:
    """What ``tune`` settled before its first trial: where results and the study go, the fixed
    parameters, and the prepared run (its request, model and data, which the final run reuses)."""

    store: Any
    storage: str
    registry: Any
    fixed: dict[str, Any]
    datasets: dict
    prepared: Any
    study_name: str


def _plan(args: argparse.Namespace, console: Any) -> _Plan:
    """Check the cluster flags, the results folder, the model and its parameters, then load the data;
    a failure before the first trial leaves no empty results folder."""
    from xraybench import tuning
    from xraybench.params import parse_assignments
    from xraybench.plugins import load_registry
    from xraybench.results import ResultStore
    from xraybench.richtext import esc
    from xraybench.run_plan import flag_overrides, training_flags
    from xraybench.runner import RunRequest, prepare

    if options.on_cluster(args):  # the cluster flags and the scheduler's address, before any data is loaded
        from xraybench import distributed  # the Dask layer only for a cluster run

        distributed.check(args.workers, args.scheduler, args.gpu)
    store = ResultStore(args.results)
    with no_empty_folders_on_failure(store.runs):
        if not args.storage or not args.no_final:
            store.check_writable()  # the study file or the final run goes there
        storage = _storage(args)
        registry = load_registry(args.disable_plugin)
        spec = registry.model(args.model)
        tuning.require_tunable(spec)  # before any data is loaded
        fixed = flag_overrides(spec, parse_assignments(args.param), training_flags(args.epochs, recipe=args.recipe), console)
        announce_builtin(args.data, console)
        request = RunRequest(model=spec.name, seed=args.seed, data=args.data, image_size=args.image_size,
                             channels=args.channels, params=fixed, precision=args.precision,
                             val_fraction=args.val_fraction, skip_bad=args.skip_bad, disabled=list(args.disable_plugin))
        datasets: dict = {}  # the final run reuses the data loaded here
        prepared = prepare(request, registry, datasets)
    study_name = args.study or f"{spec.name}-{args.metric}-{prepared.dataset.image_size}px-seed{args.seed}"
    data = prepared.dataset
    console.print(f"[bold]tuning[/] {esc(spec.name)} on {esc(data.source)} ({data.image_size}px, "
                  f"fingerprint {esc(data.fingerprint[:12])}): "
                  f"train {len(data.splits.train)}, val {len(data.splits.val)} images; test is never used while tuning")
    console.print(esc(f"study {study_name!r} in {tuning.masked(storage)}; metric {args.metric}; sampler {args.sampler}; "
                      f"pruner {args.pruner}"))
    return _Plan(store, storage, registry, fixed, datasets, prepared, study_name)


def _optimise(args: argparse.Namespace, plan: _Plan, console: Any) -> Any:
    """The study's trials, here (one child process) or as Dask tasks (docs/distributed.md)."""
    from xraybench import distributed, tuning
    from xraybench.runner import DEFAULT_TIMEOUT

    optimise = tuning.run_study
    if options.on_cluster(args):
        optimise = functools.partial(distributed.run_study, workers=args.workers, scheduler=args.scheduler, gpu=args.gpu)
    splits = plan.prepared.dataset.splits
    return optimise(
        plan.prepared.spec, splits.train, splits.val, plan.storage, plan.study_name, args.trials, args.timeout, args.metric,
        args.sampler, args.pruner, plan.fixed, args.seed, args.precision, console,
        trial_timeout=args.trial_timeout or DEFAULT_TIMEOUT, disabled=list(args.disable_plugin),
    )


def _report_trials(study: Any, session: Any, seconds: float, console: Any) -> int:
    """One line on the study's trials and this session; returns how many completed."""
    import optuna

    from xraybench.progress import plural

    states = [t.state for t in study.trials]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    console.print(f"{plural(len(states), 'trial')} in the study ({done} complete, "
                  f"{states.count(optuna.trial.TrialState.PRUNED)} pruned, {states.count(optuna.trial.TrialState.FAIL)} failed); "
                  f"this session {seconds:.0f}s, {plural(sum(session.epochs_trained), 'epoch')} trained"
                  + (f", {session.duplicates} repeated parameter sets not retrained" if session.duplicates else ""))
    return done


def _final_run(args: argparse.Namespace, plan: _Plan, study: Any, done: int, console: Any) -> int:
    """The best parameters through the runner once, evaluated on test and recorded as ``tuned``."""
    from xraybench import tuning
    from xraybench.richtext import esc
    from xraybench.runner import Interrupted, prepare, run_isolated
    from xraybench.terminal_report import print_run_report

    best, store = study.best_trial, plan.store
    final = dataclasses.replace(
        plan.prepared.request,
        params={**best.params, **plan.fixed},
        tags={"tuned": True, "study": plan.study_name, "storage": tuning.masked(plan.storage), "trials": len(study.trials),
              "complete_trials": done, "metric": args.metric, "best_value": best.value, "best_trial": best.number},
        command=command_line(),
        checkpoints=str(store.root),  # as `run` does: an interrupted final run keeps its epochs
        models=str(store.root),  # and its trained model beside its record
    )
    console.rule(f"[bold]{esc(plan.prepared.spec.name)}[/] with the best parameters, evaluated once on test")
    try:
        record, scores = run_isolated(prepare(final, plan.registry, plan.datasets))
    except Interrupted as stop:
        console.print(f"[dim]recorded {esc(store.save(stop.record))}[/]")
        return stop.exit_code
    path = store.save(record, scores)
    print_run_report(record, console)
    if args.traceback and record.traceback:
        import sys

        sys.stderr.write(record.traceback)
    console.print(f"[dim]recorded {esc(path)}[/]")  # where the tuned run is, as `run` does
    return 0 if record.status is RunStatus.DONE else 1


def _all_trials_failed(study, study_name: str, show_traceback: bool) -> int:
    """Exit status 1, as ``run`` gives when a run failed: every trial ended for the plugin's reasons
    (raised, timed out, pruned), which no change to the command line fixes; 2 stays for usage
    errors. One line names the first failure; ``--traceback`` prints the stored tracebacks."""
    import sys

    from xraybench.cli.common import err

    reasons = [t.user_attrs.get("fail_reason") for t in study.trials if t.user_attrs.get("fail_reason")]
    first = f"; first failure: {reasons[0]}" if reasons else ""
    err(f"study {study_name!r} has no complete trial{first}; nothing to evaluate")
    if show_traceback:
        for trial in study.trials:
            text = trial.user_attrs.get("fail_traceback")
            if text:
                sys.stderr.write(f"--- trial {trial.number} ---\n{text}")
    return 1


def _show_study(console, storage: str, name: str) -> int:
    import optuna
    from rich.table import Table

    from xraybench.progress import plural

    from xraybench import tuning
    from xraybench.richtext import esc, plain

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=tuning.make_storage(storage))
    except KeyError:
        raise XRayBenchError(f"no study {name!r} in {tuning.masked(storage)}; `xraybench studies` lists them") from None
    try:
        best = study.best_trial
    except ValueError:
        raise XRayBenchError(f"study {name!r} has no complete trial yet") from None
    console.print(esc(f"study {name!r}: {plural(len(study.trials), 'trial')}; best trial {best.number}, value {best.value:.4f}"))
    console.print(esc(f"best parameters: {best.params}"))
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        importances = {}
        console.print(esc(f"parameter importances unavailable: {exc}"))
    if importances:
        table = Table(title="parameter importances (Optuna's default evaluator)", title_justify="left", header_style="bold")
        table.add_column("Parameter")
        table.add_column("Importance", justify="right")
        for key, value in importances.items():
            table.add_row(plain(key), f"{value:.3f}")
        console.print(table)
        line = importance_caveat(study)
        if line:
            console.print(esc(line), highlight=False)
    shown = tuning.masked(storage)
    note = "" if shown == storage else " (put your password back where *** stands)"
    console.print(esc(f"dashboard: pip install optuna-dashboard && optuna-dashboard {shlex.quote(shown)}{note}"))
    return 0


MIN_TRIALS_FOR_IMPORTANCE = 10  # below it, a random forest over the trials ranks parameters by chance


def importance_caveat(study) -> str:
    """A caveat under the importances of a study with fewer than ``MIN_TRIALS_FOR_IMPORTANCE``
    complete trials ("" otherwise): Optuna fits its importance forest to the trials there are,
    so two trials give confident-looking numbers that mean nothing."""
    import optuna

    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if complete >= MIN_TRIALS_FOR_IMPORTANCE:
        return ""
    return (f"caveat: these importances come from {complete} complete trial{'s' if complete != 1 else ''}; with fewer "
            f"than about {MIN_TRIALS_FOR_IMPORTANCE} they are mostly chance (`tune` with the same --study adds trials)")


def cmd_studies(args: argparse.Namespace) -> int:
    import optuna
    from rich.table import Table

    from xraybench import tuning
    from xraybench.richtext import console as make_console, plain

    storage = _storage(args, create=False)
    if storage is None:  # listing makes nothing: no folder, no empty study file
        make_console().print(plain(f"no studies: {_default_study_file(args)} does not exist (`xraybench tune --model "
                                   "MODEL` makes one)"))
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summaries = optuna.get_all_study_summaries(storage=tuning.make_storage(storage))
    table = Table(title=plain(f"studies in {tuning.masked(storage)}"), header_style="bold", title_justify="left")
    for col in ("Study", "Model", "Metric", "Trials", "Best value", "Started"):
        table.add_column(col)
    for s in summaries:
        best = f"{s.best_trial.value:.4f}" if s.best_trial is not None and s.best_trial.value is not None else "-"
        started = s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else "-"
        table.add_row(plain(s.study_name), plain(s.user_attrs.get("model", "-")), plain(s.user_attrs.get("metric", "-")),
                      str(s.n_trials), best, started)
    make_console().print(table)
    return 0


def _default_study_file(args: argparse.Namespace) -> Path:
    """The SQLite file a results folder keeps its studies in (``tuning.default_storage``)."""
    from xraybench.results import results_dir

    return results_dir(args.results) / "tuning.sqlite3"


@overload
def _storage(args: argparse.Namespace, create: Literal[True] = True) -> str: ...


@overload
def _storage(args: argparse.Namespace, create: bool) -> str | None: ...


def _storage(args: argparse.Namespace, create: bool = True) -> str | None:
    """``--storage``, else the SQLite file in the results folder (a one-line error when that cannot be made).
    ``create=False`` (``--show``, ``studies``: they only read) returns None where that file does not
    exist, instead of making the folder and an empty study file."""
    from xraybench import tuning
    from xraybench.results import RESULTS_ENV, results_dir

    if args.storage:
        return args.storage
    folder = results_dir(args.results)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not create and not _default_study_file(args).is_file() and existing.is_dir():
        return None  # (a results path at or under a file goes on to its one-line error below)
    try:
        return tuning.default_storage(folder)
    except OSError as exc:
        raise XRayBenchError(f"results folder {folder} cannot hold the study file ({exc.strerror or type(exc).__name__}); "
                             f"pass --results DIR, set ${RESULTS_ENV} or give --storage URL") from None


def add_tune(sub) -> None:
    p = command(sub, "tune", cmd_tune, "tune a model's hyperparameters with Optuna on the validation split")
    p.add_argument("--model", metavar="NAME", help="a model with a search space")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="trials to run in this process (a sampled repeat of a parameter set the study already has "
                        "is not trained again and not counted)")
    p.add_argument("--timeout", type=options.positive_seconds, metavar="SECONDS", help="stop starting trials after this long")
    p.add_argument("--trial-timeout", type=options.positive_seconds, metavar="SECONDS",
                   help="kill a trial after this long and record it as failed (default: run's --timeout default)")
    options.storage(p, "Optuna storage URL, e.g. postgresql://user:pw@host/db "
                    "(default: sqlite file tuning.sqlite3 in the results folder)")
    p.add_argument("--study", metavar="NAME", help="study name (default: MODEL-METRIC-SIZEpx-seedSEED); same name resumes")
    p.add_argument("--metric", choices=tuple(OBJECTIVES), default="val_auc", help="objective, on the validation split")
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default="tpe")
    p.add_argument("--pruner", choices=tuple(PRUNERS), default="median")
    options.param(p, "fix a parameter (repeatable)")
    options.epochs(p, "cap on epochs per trial (Keras models)")
    options.recipe(p)
    options.seed(p, "seed for the split, the sampler and training")
    options.precision(p)
    options.data(p, None)
    options.results(p)
    p.add_argument("--no-final", action="store_true", help="skip the final run of the best parameters on test")
    p.add_argument("--show", metavar="STUDY", help="print a study's best trial, importances and the dashboard command")
    options.verbose(p)
    options.traceback(p, "each failed trial and of a final run that failed (always stored: in the study, in the run record)")
    options.cluster(p)


def add_studies(sub) -> None:
    p = command(sub, "studies", cmd_studies, "list tuning studies with trial counts and best values")
    options.storage(p, "Optuna storage URL (default: the results folder's SQLite file)")
    options.results(p)
