"""The leaderboard: rows from run records (``build``: one ``Row`` per model, variant, size, data
and backend, mean ± SD over distinct seeds; only ``done`` runs are ranked), compared with the
reference model (``reference``), shown in columns with their notes (``columns``) beside the
published figures (``PublishedRow``), as a terminal table, Markdown, CSV or JSON (``render``).
Nothing here trains or imports keras.
"""

from xraybench.leaderboard.build import ROW_RESAMPLES, build_rows, count_statuses, lacking
from xraybench.leaderboard.columns import (COLUMNS, DEFAULT_COLUMNS, ENSEMBLE_NOTE, HEADERS, NAMED_COLUMNS, cells, ci,
                                           fmt, footnote, p_cell, short_legend, table_columns)
from xraybench.leaderboard.reference import reference_command, reference_gaps
from xraybench.leaderboard.render import (COMMAND, CSV_HEADER, render_csv, render_json, render_markdown, render_table,
                                          table_text, with_marker)
from xraybench.leaderboard.rows import (PublishedRow, Reference, Row, ensemble_variant, published_rows, threshold_label,
                                        variant)

__all__ = [
    "COLUMNS", "COMMAND", "CSV_HEADER", "DEFAULT_COLUMNS", "ENSEMBLE_NOTE", "HEADERS", "NAMED_COLUMNS", "ROW_RESAMPLES",
    "PublishedRow", "Reference", "Row", "build_rows", "cells", "ci", "count_statuses", "ensemble_variant", "fmt",
    "footnote", "lacking", "p_cell", "published_rows", "reference_command", "reference_gaps", "render_csv",
    "render_json", "render_markdown", "render_table", "short_legend", "table_columns", "table_text", "threshold_label",
    "variant", "with_marker",
]
