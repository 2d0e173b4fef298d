"""Commands for plugin authors: ``check`` (the plugin contract) and ``new-plugin`` (a scaffold)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import shlex
from pathlib import Path

from xraybench.cli import command_line, positive_seconds
from xraybench.errors import XRayBenchError
from xraybench.records import DEFAULT_SEED, RunStatus, Threshold


def cmd_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.plugin_checks import run_contract
    from xraybench.isolation import interruptible
    from xraybench.plugins import load_registry
    from xraybench.richtext import console as make_console, plain

    interruptible()
    spec = load_registry(args.disable_plugin).model(args.model)
    rows = run_contract(spec, size=args.image_size, seed=args.seed, timeout=args.timeout, disabled=list(args.disable_plugin))
    table = Table(title=plain(f"xraybench check {spec.name} ({spec.distribution} {spec.version}, {spec.kind})"),
                  header_style="bold", title_justify="left")
    for col in ("Check", "Result", "Detail"):
        table.add_column(col)
    for name, ok, detail in rows:  # details quote the plugin's own errors
        table.add_row(plain(name), plain("pass", "green") if ok else plain("FAIL", "red"), plain(detail))
    console = make_console()
    console.print(table)
    failed = sum(not ok for _, ok, _ in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


SCAFFOLD_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "xraybench model plugin: {name}"
requires-python = ">=3.11"
dependencies = ["xraybench"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.xraybench]
{module} = "{module}.models"

[tool.setuptools]
packages = ["{module}"]
"""

SCAFFOLD_MODELS = '''"""xraybench model plugin: {name}."""

from __future__ import annotations

import xraybench


def build(input_shape, params):
    import keras  # imported here, never at module level

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="{name}")


def search_space(trial):
    return {{
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }}


@xraybench.hookimpl
def register_models(register):
    register(
        xraybench.KerasModel(
            name="{name}",
            description="{name}: a small CNN (edit me)",
            defaults={{"dropout": 0.2, "epochs": 20}},
            search_space=search_space,
            build=build,
            image_size=128,
        )
    )
'''

SCAFFOLD_TEST = '''"""The xraybench plugin contract, on tiny generated data (see xraybench.testing)."""

from xraybench import load_registry
from xraybench.testing import check_model


def test_{name}_is_registered():
    assert "{name}" in load_registry().models


def test_{name}_passes_the_contract():
    rows = check_model(load_registry().model("{name}"))
    failed = [(check, detail) for check, ok, detail in rows if not ok]
    assert not failed, failed
'''


def cmd_new_plugin(args: argparse.Namespace) -> int:
    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise XRayBenchError(f"plugin name {name!r} must be lower case letters, digits and _ (a Python identifier)")
    module = f"xraybench_{name}"
    dist = f"xraybench-{name.replace('_', '-')}"
    target = Path(args.directory or dist)
    if target.exists() and any(target.iterdir()):
        raise XRayBenchError(f"{target} exists and is not empty; choose another --directory")
    (target / module).mkdir(parents=True, exist_ok=True)
    (target / "tests").mkdir(exist_ok=True)
    (target / "pyproject.toml").write_text(SCAFFOLD_PYPROJECT.format(dist=dist, name=name, module=module))
    (target / module / "__init__.py").write_text("")
    (target / module / "models.py").write_text(SCAFFOLD_MODELS.format(name=name))
    (target / "tests" / f"test_{name}.py").write_text(SCAFFOLD_TEST.format(name=name))
    (target / "README.md").write_text(
        f"# {dist}\n\nAn xraybench model plugin.\n\n    pip install -e .[test]\n    pytest\n"
        f"    xraybench check {name}\n    xraybench run --model {name}\n"
    )
    print(f"wrote {target}/: pip install -e '{target}[test]', then `xraybench check {name}` and `pytest {target}`")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise XRayBenchError("`xraybench report` draws its plots with matplotlib: pip install 'xraybench[report]'")
    from xraybench import html_report as report
    from xraybench.results import ResultStore

    from xraybench.cli import report_skipped

    html_path, md_path, skipped = report.write(ResultStore(args.results), Path(args.output), args.threshold,
                                               args.force, args.baseline)
    report_skipped(skipped)
    print(f"wrote {html_path} and {md_path}")
    return 0


_ENDED = {RunStatus.INTERRUPTED.label: "interrupted", RunStatus.ERROR.label: "stopped by an error",
          RunStatus.TIMEOUT.label: "stopped by its timeout"}  # how a run that is not done ended, in words


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.leaderboard import record_keys
    from xraybench.metric_registry import bootstrapped
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console, plain
    from xraybench.stats import bootstrap_intervals, compare_runs, format_interval

    store = ResultStore(args.results)
    a, b = store.get(args.run_a), store.get(args.run_b)  # one-line errors naming a damaged file
    try:
        sa, sb = store.scores(a["run_id"]), store.scores(b["run_id"])
    except ValueError as exc:
        raise XRayBenchError(str(exc)) from None
    for record in (a, b):  # before the scores: an interrupted run has none, and that is not what is wrong
        if record["status"] != RunStatus.DONE.label:
            reason = f" ({record['reason']})" if record.get("reason") else ""
            raise XRayBenchError(f"run {record['run_id']} was {_ENDED.get(record['status'], record['status'])}"
                                 f"{reason}; only done runs can be compared (`xraybench leaderboard` lists them)")
    for record, scores in ((a, sa), (b, sb)):
        if not scores:
            raise XRayBenchError(f"{store.runs / (record['run_id'] + '.scores.json')} is missing: both runs need "
                                 "per-image scores to be compared")
    fa, fb = a.get("data", {}).get("fingerprint"), b.get("data", {}).get("fingerprint")
    console = make_console()
    if fa != fb:
        raise XRayBenchError(f"not compared: the runs used different data (fingerprints {str(fa)[:12]} and {str(fb)[:12]})")
    key, key_intervals = record_keys(args.threshold)
    ta, tb = a[key]["threshold"], b[key]["threshold"]
    # Intervals are stored with every run; metrics a record predates are bootstrapped here (same resamples).
    def intervals(record: dict, scores: dict, threshold: float) -> dict:
        stored = dict(record.get(key_intervals) or {})
        missing = [m.key for m in bootstrapped() if m.key not in stored]
        if missing:
            meta = stored.get("_meta") or {}
            stored.update(bootstrap_intervals(scores["test_labels"], scores["test_scores"], threshold,
                                              resamples=meta.get("resamples", 1000),
                                              seed=meta.get("seed", record.get("seed") or 0), keys=missing))
        return stored

    ia, ib = intervals(a, sa, ta), intervals(b, sb, tb)
    table = Table(title=plain(f"{a['run_id']} vs {b['run_id']} (95% bootstrap CIs, threshold {args.threshold})"),
                  header_style="bold", title_justify="left")
    table.add_column("Metric")
    table.add_column(plain(f"A: {a['model']} seed {a.get('seed')}"))
    table.add_column(plain(f"B: {b['model']} seed {b.get('seed')}"))
    for metric in bootstrapped():
        table.add_row(metric.name, format_interval(ia.get(metric.key), metric.digits),
                      format_interval(ib.get(metric.key), metric.digits))
    console.print(table)
    result = compare_runs(sa, sb, ta, tb)
    mc, auc = result["mcnemar"], result["auc"]
    console.print(f"exact McNemar: A right/B wrong {mc['only_a']}, B right/A wrong {mc['only_b']}, p = {mc['p_value']:.4f}")
    console.print(f"AUC(B) - AUC(A) = {auc['difference']:+.4f} [{auc['low']:+.4f}, {auc['high']:+.4f}], "
                  f"paired bootstrap p = {auc['p_value']:.4f}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Every run file with its status and reason, invalid ones included: failures stay visible."""
    from rich.markup import escape
    from rich.table import Table

    from xraybench.records import RunStatus
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console

    store = ResultStore(args.results)
    console = make_console()
    if args.backfill:
        from xraybench.backfill import backfill
        from xraybench.plugins import load_registry

        changed = backfill(store, load_registry(args.disable_plugin))
        for name, what in changed:
            console.print(escape(f"{store.runs / name}: added {what}"), highlight=False)
        console.print(f"backfilled {len(changed)} record{'s' if len(changed) != 1 else ''} in {escape(str(store.runs))}")
        return 0
    loaded = store.load()
    rows = []
    for r in loaded.records:
        reason = r.reason
        if r.status is RunStatus.DONE and r.has_scores and not (store.runs / f"{r.run_id}.scores.json").is_file():
            reason = "per-image scores file missing (no curves, paired tests or compare)"
        rows.append((r.created_at, f"{r.run_id}.json", r.model, "-" if r.seed is None else str(r.seed), r.status, reason))
    rows += [("", s.path.name, "-", "-", RunStatus.INVALID, s.reason) for s in loaded.skipped]
    if args.status:
        rows = [r for r in rows if r[4].label == args.status]
    rows.sort(key=lambda r: (r[0], r[1]))
    table = Table(title=f"runs in {escape(str(store.runs))}", header_style="bold", title_justify="left")
    for col in ("Created", "File", "Model", "Seed", "Status", "Reason"):
        table.add_column(col, overflow="fold")
    for created, name, model, seed, status, reason in rows:
        table.add_row(escape(created[:19] or "-"), escape(name), escape(model), seed, status.markup(), escape(reason or ""))
    console.print(table)
    counts = {s.label: sum(1 for r in rows if r[4] is s) for s in RunStatus}
    console.print(", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no runs")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from xraybench import tuning
    from xraybench.params import parse_assignments
    from xraybench.plugins import load_registry
    from xraybench.terminal_report import print_run_report
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console, esc
    from xraybench.isolation import interruptible
    from xraybench.runner import DEFAULT_TIMEOUT, Interrupted, RunRequest, prepare, run_isolated

    interruptible()  # kill -INT stops tuning cleanly even where SIGINT was inherited ignored
    console = make_console()
    from xraybench.progress import set_verbose

    set_verbose(args.verbose)
    if not args.show and (not args.storage or not args.no_final):
        ResultStore(args.results).check_writable()  # the study file or the final run goes there
    storage = _storage(args)
    if args.show:
        return _show_study(console, storage, args.show)
    if not args.model:
        raise XRayBenchError("tune needs --model NAME (or --show STUDY)")
    registry = load_registry(args.disable_plugin)
    spec = registry.model(args.model)
    tuning.require_tunable(spec)  # before any data is loaded
    from xraybench.cli import flag_overrides

    if args.epochs is not None and args.epochs < 1:
        raise XRayBenchError(f"--epochs must be at least 1, got {args.epochs}")
    fixed = flag_overrides(spec, parse_assignments(args.param), {} if args.epochs is None else {"epochs": args.epochs}, console)
    from xraybench.cli import _announce_builtin

    _announce_builtin(args.data, console)
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
    from xraybench import distributed

    optimise = tuning.run_study
    if distributed.wanted(args):  # the trials as Dask tasks; see docs/distributed.md
        optimise = functools.partial(distributed.run_study, workers=args.workers, scheduler=args.scheduler, gpu=args.gpu)
    try:
        study, session, seconds = optimise(
            spec, data.splits.train, data.splits.val, storage, study_name, args.trials, args.timeout, args.metric,
            args.sampler, args.pruner, fixed, args.seed, args.precision, console,
            trial_timeout=args.trial_timeout or DEFAULT_TIMEOUT, disabled=list(args.disable_plugin),
        )
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished trials are kept in {esc(tuning.masked(storage))}; "
                      f"run the same command to resume study {esc(repr(study_name))}")
        return 130
    states = [t.state for t in study.trials]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    from xraybench.progress import plural

    console.print(f"{plural(len(states), 'trial')} in the study ({done} complete, "
                  f"{states.count(optuna.trial.TrialState.PRUNED)} pruned, {states.count(optuna.trial.TrialState.FAIL)} failed); "
                  f"this session {seconds:.0f}s, {plural(sum(session.epochs_trained), 'epoch')} trained"
                  + (f", {session.duplicates} repeated parameter sets not retrained" if session.duplicates else ""))
    if not done:
        raise XRayBenchError(f"study {study_name!r} has no complete trial; nothing to evaluate")
    best = study.best_trial
    console.print(esc(f"best trial {best.number}: {args.metric} {best.value:.4f} with {best.params}"))
    if args.no_final:
        return 0
    store = ResultStore(args.results)
    final = dataclasses.replace(
        request,
        params={**best.params, **fixed},
        tags={"tuned": True, "study": study_name, "storage": tuning.masked(storage), "trials": len(states),
              "complete_trials": done, "metric": args.metric, "best_value": best.value, "best_trial": best.number},
        command=command_line(),
        checkpoints=str(store.root),  # as `run` does: an interrupted final run keeps its epochs
    )
    console.rule(f"[bold]{esc(spec.name)}[/] with the best parameters, evaluated once on test")
    try:
        record, scores = run_isolated(prepare(final, registry, datasets))
    except Interrupted as stop:
        console.print(f"[dim]recorded {esc(store.save(stop.record))}[/]")
        return 130
    path = store.save(record, scores)
    print_run_report(record, console)
    console.print(f"[dim]recorded {esc(path)}[/]")  # where the tuned run is, as `run` says
    return 0 if record["status"] == RunStatus.DONE.label else 1


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
    shown = tuning.masked(storage)
    note = "" if shown == storage else " (put your password back where *** stands)"
    console.print(esc(f"dashboard: pip install optuna-dashboard && optuna-dashboard {shlex.quote(shown)}{note}"))
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    import optuna
    from rich.table import Table

    from xraybench import tuning
    from xraybench.richtext import console as make_console, plain

    storage = _storage(args)
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


def _storage(args: argparse.Namespace) -> str:
    """``--storage``, else the SQLite file in the results folder (a one-line error when that cannot be made)."""
    from xraybench import tuning
    from xraybench.results import RESULTS_ENV, results_dir

    if args.storage:
        return args.storage
    folder = results_dir(args.results)
    try:
        return tuning.default_storage(folder)
    except OSError as exc:
        raise XRayBenchError(f"results folder {folder} cannot hold the study file ({exc.strerror or type(exc).__name__}); "
                             f"pass --results DIR, set ${RESULTS_ENV} or give --storage URL") from None


def add_commands(sub, formatter) -> None:
    from xraybench.cli import THRESHOLDS, _data_options, image_size_arg

    p = sub.add_parser("tune", help="tune a model's hyperparameters with Optuna on the validation split",
                       formatter_class=formatter)
    p.add_argument("--model", metavar="NAME", help="a model with a search space")
    p.add_argument("--trials", type=int, default=20, metavar="N", help="trials to run in this process (a sampled repeat of a parameter set the study already has "
                   "is not trained again and not counted)")
    p.add_argument("--timeout", type=positive_seconds, metavar="SECONDS", help="stop starting trials after this long")
    p.add_argument("--trial-timeout", type=positive_seconds, metavar="SECONDS",
                   help="kill a trial after this long and record it as failed (default: run's --timeout default)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL, e.g. postgresql://user:pw@host/db "
                   "(default: sqlite file tuning.sqlite3 in the results folder)")
    p.add_argument("--study", metavar="NAME", help="study name (default: MODEL-METRIC-SIZEpx-seedSEED); same name resumes")
    p.add_argument("--metric", choices=("val_auc", "val_loss", "val_balanced_accuracy"), default="val_auc",
                   help="objective, on the validation split")
    p.add_argument("--sampler", choices=("tpe", "random", "cmaes"), default="tpe")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fix a parameter (repeatable)")
    p.add_argument("--epochs", type=int, metavar="N", help="cap on epochs per trial (Keras models)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for the split, the sampler and training")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto")
    _data_options(p, None)
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.add_argument("--no-final", action="store_true", help="skip the final run of the best parameters on test")
    p.add_argument("--show", metavar="STUDY", help="print a study's best trial, importances and the dashboard command")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's and absl's start-up messages")
    from xraybench import distributed

    distributed.add_options(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("studies", help="list tuning studies with trial counts and best values", formatter_class=formatter)
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: the results folder's SQLite file)")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("report", help="write a self-contained HTML report (and a Markdown twin) of recorded runs",
                       formatter_class=formatter)
    p.add_argument("--output", default="report.html", metavar="FILE",
                   help="HTML file to write; the .md twin goes beside it (naming X.md writes X.html and X.md)")
    p.add_argument("--force", action="store_true", help="overwrite the output files even if xraybench did not write them")
    p.add_argument("--baseline", metavar="MODEL", help="the reference for ΔAcc and p (default: the one a plugin declares)")
    p.add_argument("--threshold", choices=THRESHOLDS, default=Threshold.FIXED.value,
                   help="metrics at 0.5, or at the threshold chosen on validation")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list every recorded run with its status and reason (failed and invalid ones too)",
                       formatter_class=formatter)
    p.add_argument("--status", choices=tuple(s.label for s in RunStatus), help="only runs with this status")
    p.add_argument("--backfill", action="store_true",
                   help="once, after an upgrade: store intervals of newly registered metrics (from the per-image scores) "
                        "and the installed specs' reference and image size in older records")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("compare", help="two runs side by side, with intervals and paired tests", formatter_class=formatter)
    p.add_argument("run_a", metavar="RUN_A", help="run id (or a unique prefix)")
    p.add_argument("run_b", metavar="RUN_B", help="run id (or a unique prefix)")
    p.add_argument("--threshold", choices=THRESHOLDS, default=Threshold.FIXED.value,
                   help="compare at 0.5, or at each run's validation-chosen threshold")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("check", help="check a model plugin against the contract on tiny generated data",
                       formatter_class=formatter)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--image-size", type=image_size_arg, default=32, help="size of the generated images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=positive_seconds, default=600.0, metavar="SECONDS",
                   help="kill a check after this long and report it as failed; the other checks go on")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("new-plugin", help="write a ready-to-install model plugin package", formatter_class=formatter)
    p.add_argument("name", metavar="NAME", help="model name (a Python identifier)")
    p.add_argument("--directory", metavar="DIR", help="where to write it (default: ./xraybench-NAME)")
    p.set_defaults(func=cmd_new_plugin)
