"""The README's results table and picture are generated from the committed leaderboard, and current."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("leaderboards_readme", ROOT / "leaderboards" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_and_picture_match_the_committed_leaderboard(capsys):
    assert _script().main(["--check"]) == 0, capsys.readouterr().out


def test_the_table_holds_only_rows_with_three_seeds_and_the_published_anchors():
    script = _script()
    data, digest = script._load()
    block = script.table(data, digest)
    assert block.startswith(script.START) and block.endswith(script.END)
    for row in script._top(data):
        assert row["distinct_seeds"] >= 3 and f"| {row['model']} |" in block
    assert "MedMNIST v2 ResNet-18 28px (published)" in block
