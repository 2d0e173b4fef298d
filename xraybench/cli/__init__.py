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
from typing import Sequence

from xraybench.cli import data, options, plugins, results, run, tune
from xraybench.cli.common import err
from xraybench.errors import XRayBenchError

# The commands, in the order ``--help`` lists them.
COMMANDS = (
    plugins.add_models, plugins.add_plugins, run.add_run, results.add_leaderboard, data.add_data, tune.add_tune,
    tune.add_studies, results.add_report, results.add_runs, results.add_compare, plugins.add_check,
    plugins.add_new_plugin,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xraybench",
        description="Benchmark pneumonia classifiers on chest X-rays: same data, same splits, same metrics.",
        formatter_class=options.Formatter,
    )
    from xraybench import __version__

    parser.add_argument("--version", action="version", version=f"xraybench {__version__}")
    parser.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="switch a plugin off by entry-point or distribution name (repeatable; also $XRAYBENCH_DISABLE_PLUGINS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
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
        err(str(exc))
        return 2
    except KeyboardInterrupt:
        err("interrupted")
        return 130



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
