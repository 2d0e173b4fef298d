"""Reading JSON files that anyone may have written: run records, scores sidecars, indexes.

Why a module of its own: ``json.load`` is safe for data we wrote, but a results folder is
shared, copied and edited by hand, and three kinds of file break a reader that trusts it:

- one nested deeply enough (``[[[[...]]]]``, 100,000 levels) exhausts the parser's recursion
  limit: ``RecursionError``, which no ``except ValueError`` catches, so a command that lists
  the folder showed a traceback instead of the good records beside it;
- one nested *less* deeply than that parses, then breaks whatever walks it recursively later
  (masking secrets, rendering, copying), far from the file that caused it;
- one of gigabytes is read whole into memory.

:func:`load` turns each of these into a :class:`UnsafeJSON` (a ``ValueError``, so every
``except (OSError, ValueError)`` that already names and skips a damaged file handles them
too) whose message is the one-line reason. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_DEPTH = 64  # a run record nests about 5 levels; anything past this is not one of ours
MAX_BYTES = 256 * 1024 * 1024  # a record is kilobytes, a scores file of 100,000 images a few megabytes


class UnsafeJSON(ValueError):
    """A file that is JSON, or may be, but that a reader must not walk: the message is the reason."""


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` levels deep; iterative, so the
    check itself cannot run out of stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads(text: str, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`UnsafeJSON` for nesting past ``limit`` (at any depth,
    the parser's own recursion limit included) and ``ValueError`` for text that is not JSON."""
    if text.count("[") + text.count("{") > limit:  # only then can it be too deep: a C-speed count first
        try:
            value = json.loads(text)
        except RecursionError:
            raise UnsafeJSON(f"nested more than {limit} levels deep") from None
        if too_deep(value, limit):
            raise UnsafeJSON(f"nested more than {limit} levels deep")
        return value
    return json.loads(text)


def load(path: str | os.PathLike, limit: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """The decoded JSON of the file at ``path``: ``OSError`` when it cannot be read,
    :class:`UnsafeJSON` when it is too large or too deep, another ``ValueError`` (a
    ``UnicodeDecodeError`` or ``JSONDecodeError``) when it is not UTF-8 JSON text."""
    with open(Path(path), "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise UnsafeJSON(f"too large: {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                             "a run file can be")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it (a special file, or a writer still at work)
        raise UnsafeJSON(f"too large: more than the {max_bytes / 2**20:.0f} MiB a run file can be")
    return loads(data.decode("utf-8"), limit)
