"""Output into a pipe or a file is not cut to 80 columns: it has no width to fit."""

import io

import pytest

from recordfactory import make_record
from xraybench import leaderboard as lb
from xraybench.results import ResultStore
from xraybench.richtext import PIPED_RULE_WIDTH, PIPED_WIDTH, console

LONG_MODEL = "a_model_whose_name_is_long_enough_to_wrap_at_eighty_columns"


def test_a_piped_console_is_wide_unless_columns_says_otherwise(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # they would make a StringIO count as a terminal
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    piped = console(file=out)
    assert piped.width == PIPED_WIDTH
    piped.print("word " * 60)
    piped.rule("section")
    first, rule = out.getvalue().splitlines()
    assert first.rstrip() == ("word " * 60).rstrip()  # one line, no word cut
    assert len(rule) == PIPED_RULE_WIDTH  # a rule, not PIPED_WIDTH dashes
    assert console(file=io.StringIO(), width=50).width == 50
    monkeypatch.setenv("COLUMNS", "100")
    assert console(file=io.StringIO()).width == 100


def _xb_piped(xb, *args):
    """The CLI as a process with no terminal anywhere (stdin, stdout and stderr) and no COLUMNS."""
    return xb.process(*args, env={"COLUMNS": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None}, timeout=120)


@pytest.fixture
def store(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in (1, 2):
        record, scores = make_record(LONG_MODEL, seed)
        store.save(record, scores)
    return store


def test_piped_leaderboard_has_every_column_and_whole_names(store, xb):
    out = _xb_piped(xb, "leaderboard", "--results", str(store.root), "--no-references")
    assert out.code == 0, out.err[-2000:]
    assert "Not shown at this terminal width" not in out.out
    header = next(line for line in out.out.splitlines() if "Model" in line)
    assert all(h in header for h in lb.HEADERS), header
    assert any(line.startswith(f"│ {LONG_MODEL} ") for line in out.out.splitlines()), out.out


def test_piped_runs_lists_one_line_per_run(store, xb):
    out = _xb_piped(xb, "runs", "--results", str(store.root))
    assert out.code == 0, out.err[-2000:]
    lines = out.out.splitlines()
    for path in store.runs.glob("*.json"):
        if not path.name.endswith(".scores.json") and not path.name.startswith("."):
            assert any(f" {path.stem} " in line and LONG_MODEL in line for line in lines), (path.stem, out.out)  # its id
