"""The ``xraybench`` command line: one module per command group, options shared through
``options.py``. Commands parse and delegate (a run's planning is ``run_plan.py``, its execution
``runner.py``); this module assembles the parser and maps errors to exit codes.

Heavy modules (keras, a backend, scikit-learn, optuna, matplotlib) are imported inside the
commands that need them, so ``--help``, ``models``, ``plugins`` and ``leaderboard`` start fast
and never import keras.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from xraybench.cli import data, ensemble, explain, export, options, plugins, predict, results, run, tune
from xraybench.cli.common import err
from xraybench.errors import XRayBenchError

# The commands, in the order ``--help`` lists them.
COMMANDS = (
    plugins.add_models, plugins.add_plugins, run.add_run, results.add_leaderboard, data.add_data, tune.add_tune,
    tune.add_studies, results.add_report, results.add_runs, results.add_compare, ensemble.add_ensemble, predict.add_predict,
    explain.add_explain, export.add_export, plugins.add_check, plugins.add_new_plugin,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xraybench",
        description="Benchmark pneumonia classifiers on chest X-rays: same data, same splits, same metrics.",
        formatter_class=options.Formatter,
    )
    from xraybench import __version__

    parser.add_argument("--version", action="version", version=f"xraybench {__version__}")
    options.disable_plugin(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for command in options.every_command(parser):  # after the command, too: where users put every other flag
        options.disable_plugin(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.disable_plugin = [*args.disable_plugin, *vars(args).pop("disable_plugin_after", [])]
    try:
        if args.disable_plugin or os.environ.get("XRAYBENCH_DISABLE_PLUGINS", "").strip():
            from xraybench.plugins import check_disabled

            check_disabled(args.disable_plugin)  # a misspelt name would disable nothing, silently
        return int(args.func(args) or 0)
    except XRayBenchError as exc:
        err(str(exc))
        plugin_traceback = getattr(exc, "traceback", "")  # a broken plugin's own (PluginError), on request
        if getattr(args, "traceback", False) and plugin_traceback:
            sys.stderr.write(plugin_traceback)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command made it interruptible
        from xraybench.isolation import stop_exit_code

        err("interrupted")
        return stop_exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
