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
import time
from typing import Any, Sequence

from xraybench.errors import XRayBenchError
from xraybench.records import DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_VAL_FRACTION, RunStatus, Threshold
from xraybench.runner import DEFAULT_TIMEOUT  # runner imports nothing heavy at module level

THRESHOLDS = tuple(t.value for t in Threshold)


def _console():
    from xraybench.richtext import console

    return console()


def command_line() -> str:
    """The command as typed, recorded with each run so that it can be repeated, with its
    secrets (a storage URL's password, ``--param token=...``) masked: records get published."""
    from xraybench.redaction import mask_argv

    return "xraybench " + " ".join(shlex.quote(a) for a in mask_argv(sys.argv[1:]))


def _err(message: str) -> None:
    from xraybench.redaction import mask_text

    print(f"error: {mask_text(message)}", file=sys.stderr)  # a URL quoted in an error keeps its password hidden


def _announce_builtin(data: str | None, console=None) -> bool:
    """Say, in one line, when a command falls back to the built-in 28 px copy."""
    from xraybench.data.builtin import fallback_notice

    notice = fallback_notice(data)
    if notice:
        (console or _console()).print(notice, markup=False, highlight=False)
    return notice is not None


# --- commands ------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.plugins import load_registry
    from xraybench.richtext import plain

    registry = load_registry(args.disable_plugin)
    table = Table(title="xraybench models", header_style="bold")
    for col in ("Model", "Distribution", "Kind", "Input", "Tunable", "Status", "Description"):
        table.add_column(col, no_wrap=col == "Model")
    # Every cell is plain Text: names, versions, descriptions and errors come from plugins.
    for name in sorted(registry.models):
        spec = registry.models[name]
        table.add_row(*map(plain, (
            name, f"{spec.distribution} {spec.version}", spec.kind, f"{spec.image_size}px x{spec.channels}",
            "yes" if spec.search_space else "no")), plain("ok", "green"), plain(spec.description))
    for name, message in sorted(registry.conflicts.items()):
        table.add_row(*map(plain, (name, "-", "-", "-", "-")), plain("error", "red"), plain(message))
    for info in registry.plugins:
        if info.status != "ok" and not info.models:
            colour = "red" if info.status == "error" else "yellow"
            table.add_row(*map(plain, (f"({info.name})", f"{info.distribution} {info.version}", "-", "-", "-")),
                          plain(info.status, colour), plain(info.reason))
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

    from xraybench.richtext import plain

    table = Table(title="xraybench plugins", header_style="bold")
    for col in ("Plugin", "Distribution", "Version", "Module", "Status", "Registers"):
        table.add_column(col)
    for info in registry.plugins:
        colour = {"ok": "green", "error": "red", "disabled": "yellow"}[info.status]
        registers = ", ".join(info.models + info.datasets) or "-"
        status = plain(info.status, colour) + (plain(f": {info.reason}") if info.reason else "")
        table.add_row(*map(plain, (info.name, info.distribution, info.version, info.module)), status, plain(registers))
    _console().print(table)
    return 0


def flag_overrides(spec, params: dict[str, Any], flags: dict[str, Any], console=None) -> dict[str, Any]:
    """``--param`` overrides plus the ``--epochs`` / ``--batch-size`` flags that apply to ``spec``.

    The flags set Keras training parameters; a model without such a parameter (scikit-learn)
    ignores them with a note, in ``run`` and ``tune`` alike (several models share one command
    line), while an explicit ``--param`` it does not know stays an error."""
    own = dict(params)
    ignored = []
    for key, value in flags.items():
        if key in spec.all_defaults():
            own[key] = value
        else:
            ignored.append(f"--{key.replace('_', '-')}")
    if ignored and console is not None:
        from rich.markup import escape

        console.print(escape(f"note: {spec.name} has no {' or '.join(ignored)} parameter; ignored for it"))
    return own


def cmd_run(args: argparse.Namespace) -> int:
    from xraybench.plugins import load_registry
    from xraybench.params import parse_assignments
    from xraybench.progress import about, set_verbose
    from xraybench.terminal_report import print_data_brief, print_run_report, print_run_summary
    from xraybench.results import ResultStore
    from xraybench.richtext import esc
    from xraybench.runner import Interrupted, RunRequest, prepare, run_in_process, run_isolated

    from xraybench.isolation import interruptible

    interruptible()  # kill -INT stops a run cleanly even where SIGINT was inherited ignored
    set_verbose(args.verbose)
    overrides = parse_assignments(args.param)
    flags: dict[str, Any] = {}
    if args.epochs is not None:
        if args.epochs < 1:
            raise XRayBenchError(f"--epochs must be at least 1, got {args.epochs}")
        flags["epochs"] = args.epochs
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise XRayBenchError(f"--batch-size must be at least 1, got {args.batch_size}")
        flags["batch_size"] = args.batch_size
    if args.target_sensitivity is not None and not 0.0 < args.target_sensitivity <= 1.0:
        raise XRayBenchError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    seeds = args.seeds or [args.seed]
    if bool(args.model) == bool(args.resume):
        raise XRayBenchError("run needs --model NAME, or --resume RUN_ID (which takes the run's own model and settings)")
    registry = load_registry(args.disable_plugin)
    console = _console()
    store = ResultStore(args.results)
    store.check_writable()  # before any data is decoded or model trained
    datasets: dict = {}
    command = command_line()
    if not args.resume:
        _announce_builtin(args.data, console)
    # Check every model, parameter and data set before anything trains.
    prepared = []
    if args.resume:
        from xraybench.runner import check_resumed, resume_request

        request, resumed = resume_request(store, args.resume, command, args.data)
        prepared.append(prepare(request, registry, datasets))
        check_resumed(prepared[0], resumed)
    for model in args.model or []:
        spec = registry.model(model)
        own = flag_overrides(spec, overrides, flags, console)
        for seed in seeds:
            request = RunRequest(
                model=model, seed=seed, data=args.data, image_size=args.image_size, channels=args.channels,
                params=own, precision=args.precision, val_fraction=args.val_fraction, skip_bad=args.skip_bad,
                disabled=list(args.disable_plugin), timeout=args.timeout, command=command,
                target_sensitivity=args.target_sensitivity, tags={"overrides": own} if own else {},
                checkpoints=str(store.root),
            )
            prepared.append(prepare(request, registry, datasets))
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


def report_skipped(skipped) -> None:
    """The one line naming every run file a command skipped, on stderr (stdout may be data)."""
    from xraybench.results import skipped_line

    line = skipped_line(skipped)
    if line:
        print(line, file=sys.stderr)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xraybench import leaderboard as lb
    from xraybench.generated import check_target
    from xraybench.results import ResultStore

    output = Path(args.output) if args.output else None
    if output is not None:  # before anything is read: a file xraybench did not write is never replaced
        check_target(output, lb.COMMAND, args.force, lb.CSV_HEADER if args.format == "csv" else None)
    store = ResultStore(args.results)
    loaded = store.load()
    report_skipped(loaded.skipped)
    rows = lb.build_rows(loaded.records, threshold=args.threshold, all_runs=args.all_runs,
                         model=args.model, sort=args.sort, scores_loader=store.scores, baseline=args.baseline)
    refs = [] if args.no_references else lb.reference_rows()
    statuses = lb.count_statuses(loaded.records, len(loaded.skipped), args.model)
    if args.format == "table":
        from xraybench.richtext import esc  # the title is rich markup; the folder's name is not

        title = f"xraybench leaderboard ({esc(store.runs)}; threshold {rows[0]['threshold'] if rows else args.threshold})"
        if output is None:
            lb.render_table(rows, refs, title, statuses=statuses, where=str(store.runs))
            return 0
        import io

        from rich.console import Console

        buffer = io.StringIO()  # plain text, every column: a file has no width to fit
        lb.render_table(rows, refs, title, statuses=statuses, where=str(store.runs),
                        console=Console(file=buffer, width=lb.full_width(rows, refs), color_system=None, force_terminal=False,
                                        soft_wrap=False))
        text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
    else:
        text = {
            "markdown": lambda: lb.render_markdown(rows, refs, "xraybench leaderboard", statuses),
            "csv": lambda: lb.render_csv(rows),
            "json": lambda: lb.render_json(rows, refs, statuses),
        }[args.format]()
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
        print(_cleared_text(cache.clear(force=args.force)))
        return 0
    from xraybench.data import load_dataset
    from xraybench.terminal_report import print_data_summary

    from xraybench.data.builtin import native_size

    _announce_builtin(args.data)
    size = args.image_size or native_size(args.data) or DEFAULT_IMAGE_SIZE
    dataset = load_dataset(args.data, image_size=size, channels=args.channels, seed=args.seed,
                           val_fraction=args.val_fraction, skip_bad=args.skip_bad)
    print_data_summary(dataset, _console())
    return 0


def _cleared_text(done) -> str:
    """What --clear-cache removed, and what it left and why, in a few lines."""
    def names(items: list) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    n = len(done.removed)
    lines = [f"removed {n} cache entr{'y' if n == 1 else 'ies'} from {done.root}"]
    if done.partly:
        lines.append(f"kept {len(done.partly)} entr{'y' if len(done.partly) == 1 else 'ies'} holding files xraybench "
                     f"did not write (its own files are gone): {names(done.partly)}")
    if done.old_entries:
        lines.append(f"left {len(done.old_entries)} entr{'y' if len(done.old_entries) == 1 else 'ies'} from an older "
                     f"xraybench without the ownership marker: {names(done.old_entries)}; pass --force to remove them")
    if done.foreign:
        lines.append(f"left {len(done.foreign)} item(s) xraybench did not make: {names(done.foreign)}")
    return "\n".join(lines)


def image_size_arg(text: str) -> int:
    """argparse type of every --image-size: a whole number of pixels in range, else a one-line usage error."""
    from xraybench.data.limits import check_image_size

    try:
        return check_image_size(text.strip(), flag="")
    except XRayBenchError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


def positive_seconds(text: str) -> float:
    """argparse type of every seconds flag (--timeout, --trial-timeout): a finite number above 0,
    else a one-line usage error (0, a negative or nan would kill at once or never)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


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
    p.add_argument("--data", metavar="PATH", help="data set folder or .npz (default: $XRAYBENCH_DATA, then the user data "
                   "folder, then the built-in 28 px copy)")
    p.add_argument("--image-size", type=image_size_arg, default=None, metavar="N",
                   help="square image size in pixels (default: " + (f"{image_size_default}" if image_size_default else
                   "each model's own") + "; 28 on the built-in copy)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None if image_size_default is None else 1,
                   help="1 = grayscale, 3 = RGB" + (" (default: each model's own)" if image_size_default is None else ""))
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION, help="share of train held out as the patient-grouped validation split")
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
    p.add_argument("--model", action="append", metavar="NAME", help="model to run (repeatable)")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="continue an interrupted or timed-out Keras run from its last epoch's checkpoint, with the run's own "
                        "model, data and settings (a new record names it in resumed_from)")
    _data_options(p, None)
    p.add_argument("--epochs", type=int, metavar="N", help="cap on training epochs (Keras models)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (Keras models)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for the split and the training")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="run each model once per seed (overrides --seed)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter (repeatable)")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto",
                   help="Keras compute precision; auto = float32 on a CPU, mixed_bfloat16 on a GPU")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="kill a model's run after this long")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="choose the second operating point on validation for this sensitivity instead of Youden's J")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.add_argument("--no-isolation", action="store_true", help="train in this process instead of a child process (debugging)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's and absl's start-up messages")
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
    p.add_argument("--output", metavar="FILE", help="write the table (plain text, every column) or markdown/csv/json here "
                                                    "instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite --output even if xraybench did not write it")
    p.add_argument("--all-runs", action="store_true", help="one row per run instead of mean ± SD per model")
    p.add_argument("--threshold", choices=THRESHOLDS, default=Threshold.FIXED.value,
                   help="metrics at 0.5, or at the threshold chosen on validation (Youden's J, or the run's --target-sensitivity)")
    p.add_argument("--baseline", metavar="MODEL",
                   help="compare every row with this model (ΔAcc, p) instead of the one a plugin declares as reference")
    p.add_argument("--no-references", action="store_true", help="hide the published reference rows")
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("data", help="summarise the data set (counts, patients, duplicates, cache, fingerprint)",
                       formatter_class=_Formatter)
    _data_options(p, DEFAULT_IMAGE_SIZE)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the validation split")
    p.add_argument("--clear-cache", action="store_true",
                   help="remove the decoded-image cache entries xraybench made; anything else in the cache folder is left and named")
    p.add_argument("--force", action="store_true",
                   help="with --clear-cache, also remove entries an older xraybench made before entries carried an ownership marker")
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
