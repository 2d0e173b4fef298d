"""Untrusted text made safe for rich: plugin names and descriptions, import errors, ``--param``
values, data paths and record fields are shown literally, never read as markup.

Rich reads ``[...]`` in a printed string as markup: ``[/x]`` raises ``MarkupError`` (a crash),
``[link=...]`` becomes a clickable link and ``[bold red]`` restyles the line. Everything that
did not come from xraybench's own source goes through ``esc`` (inside a markup string) or
``plain`` (a table cell or title, which is then never parsed at all).
"""

from __future__ import annotations

import functools
import os
from typing import Any


def esc(value: Any) -> str:
    """``str(value)`` with rich markup escaped, for interpolation into a markup string; control
    characters (an ANSI escape in a model's name) shown as ``\\x1b``, never sent to the terminal."""
    from rich.markup import escape

    from xraybench.escaping import terminal_text

    return escape(terminal_text(value))


def plain(value: Any, style: str = ""):
    """``value`` as a rich ``Text``: shown literally (no markup, no ``:emoji:`` codes, no control characters)."""
    from rich.text import Text

    from xraybench.escaping import terminal_text

    return Text(terminal_text(value), style=style)


PIPED_WIDTH = 10_000  # "no width": wider than any table or line xraybench prints
PIPED_RULE_WIDTH = 80  # a rule stays a rule, not PIPED_WIDTH dashes


def console(**kwargs: Any):
    """The console every command prints through: ``:emoji:`` codes in interpolated text stay text.

    Output that goes to a pipe or a file (not a terminal) has no width to fit, but rich would
    wrap it at 80 columns: tables lose columns and cells break mid-word, lines of text break
    wherever column 80 falls. So there the console is ``PIPED_WIDTH`` wide, tables print at
    their natural width and lines whole; ``COLUMNS`` (or an explicit ``width``) still decides.
    """
    out = _console_type()(emoji=False, **kwargs)
    if kwargs.get("width") is None and not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out.width = PIPED_WIDTH
        out.rule_width = PIPED_RULE_WIDTH
    return out


@functools.cache
def _console_type() -> type:
    from rich.console import Console

    class XRayConsole(Console):
        """A rich Console whose rules can be narrower than the console (``rule_width``)."""

        rule_width: int | None = None

        def rule(self, *args: Any, **kwargs: Any) -> None:
            from rich.rule import Rule

            self.print(Rule(*args, **kwargs), width=min(self.width, self.rule_width or self.width))

    return XRayConsole
