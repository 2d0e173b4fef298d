"""The options several commands share, each defined once: its flag, type, default and help.

A command module adds the ones it takes (``options.results(p)``); where two commands give one
flag different meanings (``--force``, ``--seed``), the help is passed in and the rest stays here.
Nothing heavy is imported: ``--help`` builds every parser.
"""

from __future__ import annotations

import argparse
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    INDUCTIVE_THRESHOLDS,
    PRECISIONS,
    Threshold,
)

THRESHOLDS = tuple(t.value for t in Threshold)
INDUCTIVE = tuple(t.value for t in INDUCTIVE_THRESHOLDS)  # set without the test set


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            text += " (default: %(default)s)"
        return text


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


def results(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", metavar="DIR", help="results folder (default: $XRAYBENCH_RESULTS, then ./leaderboards)")


def data(p: argparse.ArgumentParser, image_size_default: int | None) -> None:
    """Where the images come from and how they are decoded and split; ``image_size_default`` None
    means each model's own size and channels."""
    p.add_argument("--data", metavar="PATH", help="data set folder or .npz (default: $XRAYBENCH_DATA, then the user data "
                   "folder, then the built-in 28 px copy)")
    p.add_argument("--image-size", type=image_size_arg, default=None, metavar="N",
                   help="square image size in pixels (default: " + (f"{image_size_default}" if image_size_default else
                   "each model's own") + "; 28 on the built-in copy)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None if image_size_default is None else 1,
                   help="1 = grayscale, 3 = RGB" + (" (default: each model's own)" if image_size_default is None else ""))
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="share of train held out as the patient-grouped validation split")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and recorded) instead of failing")


def seed(p: argparse.ArgumentParser, help: str | None, default: int = DEFAULT_SEED) -> None:
    p.add_argument("--seed", type=int, default=default, help=help)


def threshold(p: argparse.ArgumentParser, help: str, transductive: bool = False) -> None:
    """``--threshold``; ``transductive`` also offers ``prior`` (set with the unlabeled test scores),
    which only the leaderboard shows, as a table of its own: the report and ``compare`` stay with
    the operating points chosen without the test set."""
    p.add_argument("--threshold", choices=THRESHOLDS if transductive else INDUCTIVE, default=Threshold.FIXED.value,
                   help=help)


def precision(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=help)


def param(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help=help)


def epochs(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--epochs", type=int, metavar="N", help=help)


def recipe(p: argparse.ArgumentParser) -> None:
    """``--recipe NAME``: a training recipe (xraybench/training/recipes.py) for every Keras model of the command."""
    from xraybench.training.recipes import RECIPES  # pure data: imports no backend

    p.add_argument("--recipe", choices=tuple(RECIPES), metavar="NAME",
                   help=f"training recipe for Keras models: {', '.join(RECIPES)} (default: each model's own; "
                        "`xraybench models` shows it). Same as --param recipe=NAME")


def force(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--force", action="store_true", help=help)


def baseline(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--baseline", metavar="MODEL", help=help)


def storage(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--storage", metavar="URL", help=help)


def verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show the Keras backend's start-up messages (TensorFlow's, JAX's, absl's)")


DISABLE_HELP = ("switch a plugin off by entry-point or distribution name (repeatable; before or after the command; "
                "also $XRAYBENCH_DISABLE_PLUGINS)")


def disable_plugin(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--disable-plugin NAME``, accepted before the command and after it (where users put
    every other flag). After it, the names go to ``disable_plugin_after``, which ``cli.main``
    merges into ``disable_plugin``: argparse gives a command's namespace its own list, which
    would otherwise replace the names given before the command."""
    where: dict[str, Any] = {"default": []} if top else {"dest": "disable_plugin_after", "default": argparse.SUPPRESS}
    p.add_argument("--disable-plugin", action="append", metavar="NAME", help=DISABLE_HELP, **where)


def every_command(parser: argparse.ArgumentParser):
    """Every command parser under ``parser`` (``data download`` too), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                yield command
                yield from every_command(command)


def traceback(p: argparse.ArgumentParser, what: str) -> None:
    """``--traceback``: print the stored tracebacks of ``what`` to stderr (they are never shown
    otherwise: a failure is one line; its author needs the rest)."""
    p.add_argument("--traceback", action="store_true", help=f"print the full traceback of {what} to stderr")


def cluster(p: argparse.ArgumentParser) -> None:
    """The Dask flags of ``run`` and ``tune`` (xraybench/distributed/ checks and uses them)."""
    group = p.add_argument_group("cluster (Dask; pip install \"xraybench[dask]\"; see docs/distributed.md)")
    group.add_argument("--workers", type=int, metavar="N",
                       help="run the tasks on a local Dask cluster of N worker processes")
    group.add_argument("--scheduler", nargs="?", const="dask-config", metavar="ADDR",
                       help="run the tasks on an existing Dask scheduler: tcp://host:8786, a scheduler file, "
                            "or no value for Dask's own config ($DASK_SCHEDULER_ADDRESS)")
    group.add_argument("--gpu", action="store_true",
                       help="each task asks Dask for one GPU: only workers started with `--resources GPU=N` run it")


def on_cluster(args: argparse.Namespace) -> bool:
    """True when the command line asks for a Dask cluster (``--workers`` or ``--scheduler``)."""
    return args.workers is not None or bool(args.scheduler)
