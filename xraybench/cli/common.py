"""What every command shares when it talks to the user: the console, the command line as typed
(recorded with each run), the one-line error, and the notices several commands print."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SAVED_RUN = "a done run with a model file (or a unique prefix of its id; `xraybench runs` lists them)"


def command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str,
            description: str | None = None) -> argparse.ArgumentParser:
    """A command's parser, with the help formatter every command uses and ``func`` to run it."""
    from xraybench.cli.options import Formatter

    p = sub.add_parser(name, help=help, description=description, formatter_class=Formatter)
    p.set_defaults(func=func)
    return p


def count_arg(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, else a one-line usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {what}>= {minimum}")
        return value

    return parse


def console():
    from xraybench.richtext import console

    return console()


def command_line() -> str:
    """The command as typed, recorded with each run so that it can be repeated, with its
    secrets (a storage URL's password, ``--param token=...``) masked: records get published."""
    from xraybench.redaction import mask_argv

    return "xraybench " + " ".join(shlex.quote(a) for a in mask_argv(sys.argv[1:]))


def err(message: str) -> None:
    from xraybench.redaction import mask_text

    print(f"error: {mask_text(message)}", file=sys.stderr)  # a URL quoted in an error keeps its password hidden


def announce_builtin(data: str | None, out=None) -> bool:
    """Say, in one line, when a command falls back to the built-in 28 px copy."""
    from xraybench.data.builtin import fallback_notice

    notice = fallback_notice(data)
    if notice:
        (out or console()).print(notice, markup=False, highlight=False)
    return notice is not None


def report_skipped(skipped: list | None = None, damaged: list | None = None) -> None:
    """The one line naming every run file a command skipped, and the one naming every scores file
    it treated as missing, on stderr (stdout may be data)."""
    from xraybench.results import damaged_scores_line, skipped_line

    for line in (skipped_line(skipped or []), damaged_scores_line(damaged or [])):
        if line:
            print(line, file=sys.stderr)


@contextlib.contextmanager
def no_empty_folders_on_failure(folder: Path) -> Iterator[None]:
    """Remove ``folder`` and the parents of it that the block created, if the block fails and they
    are still empty: a command that fails before it trains (a model name misspelt, a bad --data)
    leaves no empty results folder behind; anything written into them keeps them."""
    created = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        created.append(path)
    try:
        yield
    except BaseException:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:  # not empty (or not ours to remove): left as it is
                break
        raise
