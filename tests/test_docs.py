"""The docs stay true to the code."""

import inspect
import re
from pathlib import Path

from xraybench import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def test_every_hookspec_is_documented_in_the_plugin_guide():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "xraybench_spec")]
    assert specs, "no hookspecs found"
    for name in specs:
        assert f"### `{name}(register)`" in guide, f"docs/plugins.md lacks a section for hookspec {name}"


def test_cli_reference_matches_the_parser(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    from xraybench.clidoc import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run `COLUMNS=100 python -m xraybench.clidoc > docs/cli.md`"
    )


def test_architecture_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for path in sorted((ROOT / "xraybench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name in ("__init__.py", "__main__.py"):
            continue
        assert f"`{rel}`" in text, f"docs/architecture.md does not mention {rel}"


def test_readme_has_install_run_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    assert "python -m pip install ." in readme
    assert "xraybench run --model baseline_cnn" in readme
    section = readme.split("## Run the tests", 1)[1]
    assert re.search(r"^python -m pytest", section, re.M)
    assert "docs/plugins.md" in readme and "Kermany" in readme and "CC BY 4.0" in readme
