"""The leaderboard's renderers: a rich table laid out to fit the terminal (optional columns,
then SDs and a digit, are dropped and named rather than squeezed into truncated numbers; names
are cut with "…", never wrapped), and Markdown (with how each row was produced), CSV and JSON
files with the generator marker an ``--output`` file carries. Text from plugins and records is
escaped for each format (``xraybench.escaping``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xraybench.leaderboard.columns import (COLUMNS, DEFAULT_COLUMNS, HEADERS, NAMED_COLUMNS, OPTIONAL_COLUMNS, cells, epochs_text,
                                           footnote, legend, seed_note, short_legend, status_line)
from xraybench.leaderboard.reference import reference_gaps
from xraybench.leaderboard.rows import PublishedRow, Row
from xraybench.metric_registry import REGISTRY

MODEL_WIDTH = 24  # the Model column is at least this wide or as wide as the longest run name; longer published names get "…"
VARIANT_WIDTH = 28  # a longer variant (an ensemble's members) is cut to this until the names have their room
NAME_FLOORS = {"Model": 16, "Variant": 9}  # how far names are cut (with "…") before digits are; never wrapped
LAST_FLOORS = {"Model": 8, "Variant": 7}
_VALUE_HEADERS = {m.label for m in REGISTRY}


@dataclass
class _Layout:
    """What the table shows: the indices of the columns ``shown`` (of ``headers``), the cells (SDs
    and digits cut as ``cut`` says), fixed ``widths`` (None: too narrow even for the compact
    table, rich squeezes it) and whether the table is ``compact`` (borderless)."""

    shown: list[int]
    headers: list[str]
    cells: list[list[str]]
    widths: list[int] | None
    cut: str = ""
    compact: bool = False


def _fewer_digits(text: str, signed: bool = False) -> str:
    try:
        return f"{float(text):+.2f}" if signed else f"{float(text):.2f}"
    except ValueError:
        return text


def _shortened(cell: str, header: str, level: int, first_value: bool) -> str:
    """A cell at narrowing ``level``: 1 no SD but the first metric's, 2 no SDs, 3 CIs to two
    digits, 4 every number to two digits."""
    if header in _VALUE_HEADERS:
        if level >= 2 or (level >= 1 and not first_value):
            cell = cell.split("±")[0]
        return _fewer_digits(cell) if level >= 4 else cell
    if header.endswith(" 95% CI") and level >= 3 and "–" in cell:
        mark = "*" if cell.endswith("*") else ""
        low, high = cell.rstrip("*").split("–")
        return f"{_fewer_digits(low)}–{_fewer_digits(high)}{mark}"
    if header == "ΔAcc" and level >= 4:
        return _fewer_digits(cell, signed=True)
    return cell


def _widths(heads: list[str], body: list[list[str]], n_runs: int, width: int, shown: list[int], boxed: bool,
            floors: dict[str, int] | None) -> list[int] | None:
    """Column widths for the ``shown`` columns within ``width`` cells, or None. ``floors`` None:
    every name whole; {}: run names whole, published names cut to ``MODEL_WIDTH``, variants to
    ``VARIANT_WIDTH``; else names cut down to ``floors``. What is left goes to run names first,
    then to variants up to ``VARIANT_WIDTH``, then to published names, then to long variants."""
    from rich.cells import cell_len

    w, runs_width = [], 0  # the longest run name's (published names come after the runs)
    for i in shown:
        head = cell_len(heads[i]) if boxed else max(map(cell_len, heads[i].split()))
        full = max([head] + [cell_len(r[i]) for r in body])
        if heads[i] == "Model":
            runs_width = min(full, max([head] + [cell_len(r[i]) for r in body[:n_runs]]))
        w.append(full)
    overhead = 3 * len(w) + 1 if boxed else 2 * (len(w) - 1)
    if sum(w) + overhead <= width:
        return w
    names = {heads[i]: k for k, i in enumerate(shown) if heads[i] in NAME_FLOORS}
    if floors is None or not names:
        return None
    left = width - overhead - sum(x for k, x in enumerate(w) if k not in names.values())
    first = {"Model": max(MODEL_WIDTH, runs_width), "Variant": VARIANT_WIDTH}
    got = {k: min(w[k], (floors or first)[h]) for h, k in names.items()}
    left -= sum(got.values())
    if left < 0:
        return None
    for h, target in (("Model", runs_width), ("Variant", VARIANT_WIDTH), ("Model", width), ("Variant", width)):
        if h in names:
            k = names[h]
            more = min(max(0, min(target, w[k]) - got[k]), left)
            got[k], left = got[k] + more, left - more
    for k in names.values():
        w[k] = got[k]
    return w


def _narrowed(body: list[list[str]], heads: list[str], shown: list[int]) -> list[tuple[str, list[list[str]]]]:
    """The cells at each narrowing level that changes them (``_shortened``), with what was cut."""
    values = [i for i in shown if heads[i] in _VALUE_HEADERS]
    first = values[0] if values else None
    first_label = heads[first] if first is not None else ""
    cuts = ("", f"SDs but {first_label}'s", "SDs", "SDs, CIs' third digit", "SDs, third digit")
    levels: list[tuple[str, list[list[str]]]] = []
    for level, cut in enumerate(cuts):
        narrowed = [[_shortened(c, heads[i], level, i == first) for i, c in enumerate(r)] for r in body]
        if not levels or narrowed != levels[-1][1]:
            levels.append((cut, narrowed))
    return levels


def _layout(body: list[list[str]], n_runs: int, width: int, headers: Sequence[str] | None = None,
            chosen: bool = False) -> _Layout:
    """The layout of a table that fits ``width`` cells.

    ``headers``: the columns of ``body`` (None: every column, and optional ones may be dropped,
    ``OPTIONAL_COLUMNS`` first to last). ``chosen`` columns (``--columns``) are never dropped. Then, in turn: a
    boxed table with every name whole, with run names whole (published names cut with "…"); a
    borderless one whose cells lose SDs and digits stage by stage (``_shortened``), first with
    run names whole, then with names cut down to ``NAME_FLOORS``; last, the rightmost default
    columns dropped until it fits (never the first value column). Names never wrap."""
    heads = list(HEADERS if headers is None else headers)
    shown = list(range(len(heads)))
    floors: dict[str, int] | None
    for name in (None,) + (OPTIONAL_COLUMNS if headers is None else ()):
        if name is not None:
            shown.remove(heads.index(name))
        for floors in (None, {}):
            w = _widths(heads, body, n_runs, width, shown, True, floors)
            if w is not None:
                return _Layout(shown, heads, body, w)
    levels = _narrowed(body, heads, shown)
    for cut, narrowed in levels:  # digits before names: names are cut down to NAME_FLOORS first
        for floors in ({}, NAME_FLOORS):
            w = _widths(heads, narrowed, n_runs, width, shown, False, floors)
            if w is not None:
                return _Layout(shown, heads, narrowed, w, cut, True)
    cut, narrowed = levels[-1]
    # Still too wide: the rightmost default columns give way (named under the table), down to the first value (Acc),
    # names cut to NAME_FLOORS; then the same with names at LAST_FLOORS.
    keep = next((k + 1 for k, i in enumerate(shown) if heads[i] in _VALUE_HEADERS), len(shown))
    for floors in ((NAME_FLOORS, LAST_FLOORS) if not chosen else ()):
        for end in range(len(shown), keep - 1, -1):
            w = _widths(heads, narrowed, n_runs, width, shown[:end], False, floors)
            if w is not None:
                return _Layout(shown[:end], heads, narrowed, w, cut, True)
    return _Layout(shown, heads, narrowed, _widths(heads, narrowed, n_runs, width, shown, False, LAST_FLOORS), cut, True)


def _fit(rows: list[Row], published: list[PublishedRow], width: int, columns: Sequence[str] | None) -> _Layout:
    cols = COLUMNS if columns is None else [NAMED_COLUMNS[name] for name in columns]
    body = [cells(row, cols) for row in [*rows, *published]]
    return _layout(body, len(rows), width, None if columns is None else [c.header for c in cols],
                   chosen=columns is not None and tuple(columns) != tuple(DEFAULT_COLUMNS))


def _header_lines(header: str, width: int | None) -> str:
    """A borderless table's header broken at its spaces into lines of at most ``width`` cells
    ("Acc 95% CI" over a 9-cell column: "Acc 95%", "CI"); one word a line without a width."""
    if width is None:
        return header.replace(" ", "\n")
    lines: list[str] = []
    for word in header.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def table_text(rows: list[Row], published: list[PublishedRow], title: str, statuses: dict[str, int] | None = None,
               where: str = "", columns: Sequence[str] | None = None) -> str:
    """The terminal table as plain text for a file (``--format table --output``): every column (or
    the ``columns`` named) with names whole, and the whole legend: a file has no width to fit."""
    from rich.console import Console

    widths = _fit(rows, published, 10**6, columns).widths or []
    buffer = io.StringIO()
    render_table(rows, published, title, statuses=statuses, where=where, columns=columns, explain=True,
                 console=Console(file=buffer, width=sum(widths) + 3 * len(widths) + 1, color_system=None,
                                 force_terminal=False, soft_wrap=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _rich_table(layout: _Layout, title: str, n_runs: int) -> Any:
    """The rich ``Table`` of a layout: cells are plain one-line strings of known widths, so every
    column gets a fixed width and rich skips measuring each cell (most of `leaderboard`'s time
    with many rows). Model and variant names are cut with "…", never broken over lines (the line
    under the table says so; Markdown and JSON keep them whole). Rows after the first ``n_runs``
    (published figures) are dim."""
    from rich.table import Table
    from rich.text import Text

    from xraybench.escaping import terminal_text

    widths = layout.widths
    options: dict[str, Any] = {"box": None, "pad_edge": False} if layout.compact else {}
    table = Table(title=title, show_lines=False, header_style="bold", **options)
    for k, i in enumerate(layout.shown):
        h = layout.headers[i]
        name = h in NAME_FLOORS
        table.add_column(_header_lines(h, widths[k] if widths else None) if layout.compact else h,
                         justify="left" if name else "right", no_wrap=name or widths is not None,
                         overflow="ellipsis" if name else "fold",
                         width=widths[k] if widths else None, min_width=None if widths or not name else LAST_FLOORS[h])
    for n, row in enumerate(layout.cells):
        if n == n_runs:
            table.add_section()
        cells_shown = (Text(terminal_text(row[i])) for i in layout.shown)  # a name's ANSI escapes never reach the terminal
        table.add_row(*cells_shown, style="dim italic" if n >= n_runs else None)
    return table


def _names_cut(layout: _Layout) -> bool:
    """Whether a name in the table is cut to its column's width (with "…")."""
    from rich.cells import cell_len

    return layout.widths is not None and any(
        cell_len(row[i]) > layout.widths[k] for row in layout.cells for k, i in enumerate(layout.shown)
        if layout.headers[i] in NAME_FLOORS)


def render_table(rows: list[Row], published: list[PublishedRow], title: str, console: Any = None,
                 statuses: dict[str, int] | None = None, where: str = "", columns: Sequence[str] | None = None,
                 explain: bool = False) -> None:
    """The leaderboard as a rich table that fits the terminal, then its notes.

    ``columns``: the names of the columns to show (``NAMED_COLUMNS``; ``DEFAULT_COLUMNS`` is the
    terminal's set), None for every column of the full table. Only a terminal too narrow even for
    the compact table falls back to rich's own collapsing. The legend under it is short
    (``short_legend``) unless ``explain``."""
    from rich.markup import escape

    from xraybench.richtext import console as make_console

    console = console or make_console()
    layout = _fit(rows, published, console.width, columns)
    console.print(_rich_table(layout, title, len(rows)))
    shown = [layout.headers[i] for i in layout.shown]
    hidden = [h for i, h in enumerate(layout.headers) if i not in layout.shown] + ([layout.cut] if layout.cut else [])
    hidden += ["whole names"] if _names_cut(layout) else []
    if hidden:
        console.print(f"[dim]Not shown at this terminal width: {', '.join(hidden)} (widen it, or use "
                      "--format markdown / json).[/]")
    if published:
        console.print("[dim]Dim rows are published figures, not runs of xraybench.[/]")
    if explain or not rows:
        console.print(f"[dim]{escape(legend(shown))}[/]")
    if rows:  # without a run there is nothing for it to explain
        sds = not layout.cut.startswith("SDs") or layout.cut.startswith("SDs but")
        console.print(f"[dim]{escape(footnote(rows, 'p' in shown) if explain else short_legend(rows, shown, sds))}[/]")
        for gap in reference_gaps(rows):  # why a ΔAcc or p is "-", and the command that fills it
            console.print(escape(gap), highlight=False)
        if published:
            console.print(escape(seed_note()), highlight=False)
    line = status_line(statuses, where) if statuses is not None else ""
    if line:
        console.print(escape(line), highlight=False)


COMMAND = "leaderboard"
CSV_HEADER = "model,variant,runs,"  # how a CSV this command wrote starts (CSV has no room for a marker)


def render_markdown(rows: list[Row], published: list[PublishedRow], title: str,
                    statuses: dict[str, int] | None = None) -> str:
    from xraybench.escaping import md_cell, md_text

    out = io.StringIO()  # text from plugins and records goes through md_*: a name is never Markdown
    out.write(f"## {md_text(title)}\n\n")
    out.write("| " + " | ".join(HEADERS) + " |\n")
    out.write("|" + "---|" * len(HEADERS) + "\n")
    ids = HEADERS.index("Run id")
    for row in [*rows, *published]:
        line = [md_cell(c) for c in cells(row)]
        if isinstance(row, PublishedRow):
            line[0] = f"*{line[0]}*"
        else:  # all of its runs: Markdown has the room
            line[ids] = "<br>".join(md_cell(i) for i in row.run_ids) or "-"
        out.write("| " + " | ".join(line) + " |\n")
    if published:
        out.write("\nRows in *italics* are published figures, not runs of xraybench.\n")
    out.write(f"\n{md_text(legend(HEADERS))}\n\n{md_text(footnote(rows))}\n")
    for gap in reference_gaps(rows):
        out.write(f"\n{md_text(gap)}\n")
    if rows and published:
        out.write(f"\n{md_text(seed_note())}\n")
    not_ranked = status_line(statuses) if statuses is not None else ""
    if not_ranked:
        out.write(f"\n{md_text(not_ranked)}\n")
    if rows:
        out.write(_how_produced(rows))
    return out.getvalue()


PRODUCED_HEADERS = ("Model", "Variant", "px", "Params", "Epochs", "Wall s per run", "CPU s per run", "Precision",
                    "Hardware", "Command(s)")


def produced(row: Row) -> tuple[list[str], list[str]]:
    """A row's cells under "How each row was produced" but the last, as text each renderer escapes,
    and its commands (shown as code). An ensemble has no size or precision of its own: "-"."""
    walls = ", ".join(f"{w:.0f}" for w in row.wall_seconds_per_run if w is not None) or "-"
    cpu = row.cpu_seconds_per_run
    cpus = ", ".join("-" if c is None else f"{c:.0f}" for c in cpu) if any(c is not None for c in cpu) else "-"
    params = f"{row.param_count:,}" if row.param_count else "-"
    precision = ", ".join(row.precision) or "-"
    return [row.model, row.variant, str(row.image_size or "-") + row.data_mark, params, epochs_text(row.epochs),
            walls, cpus, precision, "; ".join(map(str, row.hardware))], [c for c in row.commands if c]


def _how_produced(rows: list[Row]) -> str:
    """The Markdown section on how each row was produced (sizes, times, hardware, commands), then
    why a row's p is "-"."""
    from xraybench.escaping import md_cell, md_code, md_text

    lines = ["\n### How each row was produced\n\n| " + " | ".join(PRODUCED_HEADERS) + " |\n|"
             + "---|" * len(PRODUCED_HEADERS) + "\n"]
    for row in rows:
        cells, commands = produced(row)
        code = "<br>".join(md_code(c, in_table=True) for c in commands) or "-"
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + f" | {code} |\n")
    lines += [f"\n- {md_text(row.model)} ({md_text(row.variant)}{f', {row.image_size} px' if row.image_size else ''}): "
              f"{md_text(row.p_note)}" for row in rows if row.p_note]
    return "".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    from xraybench.escaping import csv_cell

    out = io.StringIO()
    fields = ["model", "variant", "runs", "image_size", "epochs", "train_seconds", "seeds", "fingerprint",
              "data_name", "representative_run", "run_ids"]
    for m in REGISTRY:
        fields += [m.key, f"{m.key}_sd"] + ([f"{m.key}_ci_low", f"{m.key}_ci_high"] if m.bootstrapped else [])
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        values = row.to_dict() | {"seeds": " ".join(map(str, row.seeds)), "run_ids": " ".join(row.run_ids)}
        for key, iv in (row.intervals or {}).items():
            if key != "_meta" and isinstance(iv, dict):
                values[f"{key}_ci_low"], values[f"{key}_ci_high"] = iv.get("low"), iv.get("high")
        writer.writerow({k: csv_cell(v) for k, v in values.items()})  # a model named "=cmd()" is no formula
    return out.getvalue()


def render_json(rows: list[Row], published: list[PublishedRow], statuses: dict[str, int] | None = None) -> str:
    """The rows and the published figures (under their older key, ``published_references``)."""
    from xraybench.generated import json_key

    key, value = json_key(COMMAND)
    data: dict[str, Any] = {key: value, "rows": [r.to_dict() for r in rows],
                            "published_references": [r.to_dict() for r in published]}
    if statuses is not None:
        data["statuses"] = statuses
    return json.dumps(data, indent=1)


def with_marker(text: str, fmt: str) -> str:
    """``text`` as written to an ``--output`` file: with the generator marker its format allows
    (``xraybench.generated``), so that a later run may overwrite it without ``--force``."""
    from xraybench.generated import comment_line

    if fmt in ("markdown", "table"):
        return f"{comment_line(COMMAND, 'markdown' if fmt == 'markdown' else 'text')}\n{text}"
    return text  # json carries its key; csv is recognised by CSV_HEADER
