"""Text from plugins, paths and records, made inert for each output format xraybench writes.

Why one module: a model's name, a plugin's description or error, a ``--param`` value, a data
path and every field of a hand-edited record reach the leaderboard (terminal, Markdown, CSV,
JSON), the HTML report and its Markdown twin. Written raw, a ``|`` or a newline breaks a Markdown
table, ``<script>`` runs in a rendered README, ``[x](javascript:...)`` becomes a link,
``=HYPERLINK(...)`` becomes a formula when the CSV is opened in a spreadsheet, and an ANSI escape
rewrites the user's terminal. Each renderer passes outside text through the function for its
format, here, and only outside text: numbers and xraybench's own words stay as they are.

- Markdown: :func:`md_text` (inline), :func:`md_cell` (a table cell), :func:`md_code` (a code span).
- CSV: :func:`csv_cell` (formula injection: ``=+-@``, tab and CR get a leading ``'``).
- HTML: :func:`html_text` (``html.escape``, quotes included: safe in attributes too).
- JSON: ``json.dumps`` escapes structure itself; :func:`terminal_text` is for what a terminal shows.
- Plots: :func:`mpl_text` (matplotlib reads ``$...$`` as mathtext: a parse error, or a different label).
- Terminal: :func:`terminal_text` (control characters, ANSI escapes and bidi overrides shown as
  ``\\x1b``-style escapes; rich markup is ``richtext.esc``'s job).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

# ASCII punctuation that starts Markdown inline syntax (code, emphasis, links, images, raw HTML,
# strikethrough, table cells) or escapes it; any ASCII punctuation may be backslash-escaped. An
# underscore inside a word (a_model_name) never emphasises (CommonMark's flanking rules), so it stays.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls (ESC starts ANSI sequences), DEL, and the bidirectional overrides that make
# text display in another order than it reads ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def md_text(value: Any) -> str:
    """``str(value)`` as literal Markdown inline text: syntax characters backslash-escaped, line
    breaks (which would end a list item or a paragraph) turned into spaces."""
    return _MD_SPECIAL.sub(r"\\\g<0>", _NEWLINES.sub(" ", terminal_text(value)))


def md_cell(value: Any) -> str:
    """``str(value)`` as the literal content of a Markdown table cell: as :func:`md_text`, with a
    line break kept as ``<br>`` (a raw newline would end the row)."""
    return "<br>".join(_MD_SPECIAL.sub(r"\\\g<0>", part) for part in _NEWLINES.split(terminal_text(value)))


def md_code(value: Any, in_table: bool = False) -> str:
    """``str(value)`` as a Markdown code span whatever backticks it holds: the fence is one
    backtick longer than the longest run inside. In a table cell a ``|`` is escaped even there
    (GitHub's tables split cells on it before they see the span)."""
    text = _NEWLINES.sub(" ", terminal_text(value))
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A CSV field that a spreadsheet shows as text: a string starting with ``= + - @``, a tab or
    a carriage return (a formula to Excel, LibreOffice and Google Sheets) gets a leading ``'``
    (OWASP's advice); numbers, and strings that are numbers ("-0.5"), are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value) and value != "-":
        return "'" + value
    return value


def html_text(value: Any) -> str:
    """``str(value)`` as HTML text or a quoted attribute value: ``& < > " '`` escaped, control
    characters (not allowed in HTML) shown as ``\\x1b``-style escapes."""
    return html.escape(terminal_text(value), quote=True)


def html_img(b64: str, alt: str) -> str:
    """A base64 PNG embedded in the page (the report is one self-contained file), its alt text escaped."""
    return f'<img alt="{html_text(alt)}" src="data:image/png;base64,{b64}">'


def html_table(head: Sequence[Any], rows: Iterable[Sequence[Any]], attrs: str = "") -> str:
    """A table of literal text: every header and cell through :func:`html_text`."""
    th = "".join(f"<th>{html_text(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def md_img(b64: str, alt: str) -> str:
    """A base64 PNG as a Markdown image, its alt text escaped."""
    return f"![{md_text(alt)}](data:image/png;base64,{b64})"


def md_table(head: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table of literal text (cells through :func:`md_cell`)."""
    line = lambda cells: "| " + " | ".join(md_cell(c) for c in cells) + " |"  # noqa: E731
    return [line(head), "|" + "---|" * len(head), *(line(row) for row in rows)]


def terminal_text(value: Any) -> str:
    """``str(value)`` with control characters (ANSI escapes above all) and bidi overrides shown as
    ``\\x1b``-style escapes instead of acting on the terminal or the reader; ``\\n`` and ``\\t`` kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def mpl_text(value: Any) -> str:
    """``str(value)`` for a matplotlib label or title: a ``$`` escaped, so a model named ``a$\\frac{x$``
    is drawn as written instead of failing the whole report with a mathtext ``ParseSyntaxException``."""
    return terminal_text(value).replace("$", r"\$")
