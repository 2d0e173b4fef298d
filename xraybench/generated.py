"""Which output files xraybench wrote, so that a command only ever overwrites its own.

Every file a command writes for people to read (``report``'s HTML and Markdown, the
``leaderboard`` exports) carries a generator marker near its top, in the form its format
allows: ``<meta name="generator" content="xraybench CMD">`` in HTML, a first line
``<!-- generator: xraybench CMD -->`` in Markdown, ``# generator: xraybench CMD`` in plain
text, a first key ``"generator": "xraybench CMD"`` in JSON. CSV has no comments, so a CSV
file is recognised by the header row the command writes. Before writing, ``check_target``
refuses (one line, naming the file) to replace a file without its marker unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

from xraybench.errors import XRayBenchError

_HEAD = 2048  # the marker is always within the first line or two


def marker(command: str) -> str:
    """``xraybench CMD``: the generator name a command's files carry."""
    return f"xraybench {command}"


def html_meta(command: str) -> str:
    return f'<meta name="generator" content="{marker(command)}">'


def comment_line(command: str, style: str = "markdown") -> str:
    """The first line of a Markdown (``<!-- -->``) or plain-text (``#``) file."""
    return f"<!-- generator: {marker(command)} -->" if style == "markdown" else f"# generator: {marker(command)}"


def json_key(command: str) -> tuple[str, str]:
    return "generator", marker(command)


def made_by(path: Path, command: str, header: str | None = None) -> bool:
    """Whether ``path`` carries ``command``'s generator marker (or, for CSV, starts with ``header``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(_HEAD)
    except OSError:
        return False
    key, value = json_key(command)
    return (html_meta(command) in head or head.startswith((comment_line(command), comment_line(command, "text")))
            or (head.lstrip().startswith("{") and f'"{key}": "{value}"' in head)
            or (header is not None and head.startswith(header)))


def check_target(path: Path, command: str, force: bool = False, header: str | None = None) -> None:
    """A one-line XRayBenchError, before anything is built, when ``path`` cannot or must not be written."""
    if path.is_symlink():  # dangling or not, writing through it would land somewhere else
        raise XRayBenchError(f"--output {path} is a symbolic link; name a regular file to write")
    if path.is_dir():
        raise XRayBenchError(f"--output {path} is a folder; name the file to write, e.g. {path / 'out.txt'}")
    if path.exists() and not force and not made_by(path, command, header):
        raise XRayBenchError(f"{path} exists and was not written by xraybench {command}; "
                             "choose another --output, or pass --force to overwrite it")
