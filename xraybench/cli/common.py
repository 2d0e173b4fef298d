"""What every command shares when it talks to the user: the console, the command line as typed
(recorded with each run), the one-line error, and the notices several commands print."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path


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


def report_skipped(skipped) -> None:
    """The one line naming every run file a command skipped, on stderr (stdout may be data)."""
    from xraybench.results import skipped_line

    line = skipped_line(skipped)
    if line:
        print(line, file=sys.stderr)


def report_damaged_scores(damaged) -> None:
    """The one line naming every scores file a command treated as missing, on stderr."""
    from xraybench.results import damaged_scores_line

    line = damaged_scores_line(damaged)
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
