"""Text from plugins, paths and records is inert in every output format (xraybench/escaping.py):
a Markdown table keeps its shape, a CSV cell is never a formula, HTML never gains a tag, JSON
round-trips, a plot's label is no mathtext and the terminal gets no escape sequence."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from recordfactory import make_record

from xraybench import escaping
from xraybench import leaderboard as lb
from xraybench.cli import main
from xraybench.results import ResultStore

HOSTILE = ('=HYPERLINK("http://evil.example")|a`b<script>alert(1)</script>[click](javascript:x)\n'
           "| forged | row |\x1b[31mred\x1b]0;title\x07 *em* _u_ \u202eabc $\\frac{x$")
COMMAND = "xraybench run --model `rm -rf ~` | tee <b>x</b>"


def _hostile_store(root) -> ResultStore:
    store = ResultStore(root)
    for seed in (1, 2):
        store.save(*make_record("baseline_cnn", seed=seed))
        record, scores = make_record(HOSTILE, seed=seed)
        record["command"] = COMMAND
        record["params"] = record["tags"]["overrides"] = {"k|<i>": "`v`\n[x](y)"}
        store.save(record, scores)
    return store


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_leaderboard_keeps_its_table_shape_and_shows_text_literally(tmp_path, capsys):
    _hostile_store(tmp_path)
    assert main(["leaderboard", "--format", "markdown", "--results", str(tmp_path)]) == 0
    md = capsys.readouterr().out
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Model |"))
    width = _unescaped_pipes(lines[header])
    body = [line for line in lines[header + 2:] if line.startswith("|")]
    assert body and all(_unescaped_pipes(line) == width for line in body[:2]), body[:2]
    for raw in ("<script", "</script", "](javascript", "<i>", "\x1b", "\u202e", "\n| forged"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), md), raw  # only ever after a backslash
    assert "\\<script\\>" in md and "\\[click\\]" in md and "<br>" in md  # shown, escaped, not dropped
    assert "``xraybench run --model `rm -rf ~` \\| tee <b>x</b>``" in md  # a code span that holds backticks


def test_csv_leaderboard_never_starts_a_cell_with_a_formula(tmp_path, capsys):
    _hostile_store(tmp_path)
    assert main(["leaderboard", "--format", "csv", "--results", str(tmp_path)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    hostile = next(r for r in rows if "HYPERLINK" in r["model"])
    assert hostile["model"].startswith("'=HYPERLINK(")
    for row in rows:
        for key, value in row.items():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), (key, value)
            assert not value.startswith("-") or value == "-" or escaping._is_number(value), (key, value)


def test_json_leaderboard_round_trips_the_text_exactly(tmp_path, capsys):
    _hostile_store(tmp_path)
    assert main(["leaderboard", "--format", "json", "--results", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert HOSTILE in {r["model"] for r in data["rows"]}  # JSON's own escaping is the right one: nothing changed


def test_terminal_leaderboard_sends_no_escape_sequence(tmp_path):
    from rich.console import Console

    store = _hostile_store(tmp_path)
    rows = lb.build_rows(store.load().records)
    out = io.StringIO()
    lb.render_table(rows, [], "t", console=Console(file=out, width=400, color_system=None))
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert "\\x1b[31mred" in out.getvalue()  # shown, as an escape


def test_html_report_and_its_markdown_twin_escape_everything(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    store = _hostile_store(tmp_path / "results")
    store.runs.joinpath("bad<img src=x onerror=alert(1)>.json").write_text("[")  # a skipped file's name, too
    target = tmp_path / "out" / "report.html"
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(target)]) == 0  # no mathtext error
    page = target.read_text()
    assert "<script" not in page and "<img src=x" not in page and "\x1b" not in page
    assert "&lt;script&gt;" in page
    twin = target.with_suffix(".md").read_text()
    assert "bad<img src=x onerror=alert(1)>.json` (not JSON)" in twin  # a path is a code span: literal there
    prose = re.sub(r"(`+).*?\1", "", twin)  # what is outside code spans
    for raw in ("<script", "<img src=x", "](javascript", "\x1b"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), prose), raw


@pytest.mark.parametrize("value, cell", [
    ("a|b", "a\\|b"), ("x\ny", "x<br>y"), ("<b>", "\\<b\\>"), ("[l](u)", "\\[l\\](u)"), ("`c`", "\\`c\\`"),
    ("baseline_cnn", "baseline_cnn"), ("_u_", "\\_u\\_"), ("*e*", "\\*e\\*"), ("a\\b", "a\\\\b"),
])
def test_md_cell(value, cell):
    assert escaping.md_cell(value) == cell


@pytest.mark.parametrize("value, out", [
    ("=1+2", "'=1+2"), ("+x", "'+x"), ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("-0.5", "-0.5"), ("-", "-"), ("plain", "plain"), (0.5, 0.5), (None, None),
])
def test_csv_cell(value, out):
    assert escaping.csv_cell(value) == out


def test_md_code_holds_any_backticks_and_html_escapes_quotes():
    assert escaping.md_code("a`b") == "``a`b``"
    assert escaping.md_code("`x`") == "`` `x` ``"
    assert escaping.md_code("a|b", in_table=True) == "`a\\|b`"
    assert escaping.html_text('<a href="x" title=\'y\'>') == "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;"
    assert escaping.terminal_text("a\x1b[2Jb\u202ec\n\t") == "a\\x1b[2Jb\\u202ec\n\t"
    assert escaping.mpl_text("a$x$") == "a\\$x\\$"
