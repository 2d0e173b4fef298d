"""Untrusted text made safe for rich: plugin names and descriptions, import errors, ``--param``
values, data paths and record fields are shown literally, never read as markup.

Rich reads ``[...]`` in a printed string as markup: ``[/x]`` raises ``MarkupError`` (a crash),
``[link=...]`` becomes a clickable link and ``[bold red]`` restyles the line. Everything that
did not come from xraybench's own source goes through ``esc`` (inside a markup string) or
``plain`` (a table cell or title, which is then never parsed at all).
"""

from __future__ import annotations

from typing import Any


def esc(value: Any) -> str:
    """``str(value)`` with rich markup escaped, for interpolation into a markup string."""
    from rich.markup import escape

    return escape(str(value))


def plain(value: Any, style: str = ""):
    """``value`` as a rich ``Text``: shown literally (no markup, no ``:emoji:`` codes)."""
    from rich.text import Text

    return Text(str(value), style=style)


def console(**kwargs: Any):
    """The console every command prints through: ``:emoji:`` codes in interpolated text stay text."""
    from rich.console import Console

    return Console(emoji=False, **kwargs)
