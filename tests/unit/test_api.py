"""The plugin API is explicit: `xraybench.__all__` is the promise, docs/api.md is generated from it."""

import ast
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import xraybench
from xraybench import hookspecs, testing

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"


def test_api_reference_matches_the_docstrings():
    render = runpy.run_path(str(ROOT / "docs" / "apidoc.py"))["render"]  # a docs tool, not part of the package

    assert API_MD.read_text() == render(), "docs/api.md is stale: run `python docs/apidoc.py > docs/api.md`"


def test_every_export_hook_helper_and_fixture_has_a_section():
    text = API_MD.read_text()
    for name in xraybench.__all__:
        assert f"### `{name}`" in text, f"docs/api.md lacks xraybench.{name}"
    hooks = [n for n, f in vars(hookspecs).items() if hasattr(f, "xraybench_spec")]
    assert hooks
    for name in hooks:
        assert f"### `{name}`" in text, f"docs/api.md lacks hook {name}"
    for name in ("make_kaggle_tree", "registered_plugin", "check_model"):
        assert f"### `xraybench.testing.{name}`" in text
    for fixture, scope in (("xray_data", "function"), ("xraybench_env", "function")):
        assert re.search(rf"^\| `{fixture}` \| {scope} \|", text, re.M), fixture


def test_importing_xraybench_stays_cheap_and_every_export_resolves():
    code = (
        "import sys, xraybench\n"
        "heavy = [m for m in ('pluggy', 'numpy', 'keras', 'tensorflow', 'jax', 'rich') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in xraybench.__all__ if getattr(xraybench, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert set(xraybench.__all__) <= set(dir(xraybench))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_all_is_exactly_the_lazy_exports():
    assert xraybench.__all__ == [*xraybench._EXPORTS, "__version__"]


def test_private_names_are_not_attributes():
    with pytest.raises(AttributeError, match="no attribute 'one_line'"):
        xraybench.one_line  # noqa: B018  (internal to xraybench.plugins, not exported)


def _imports(source: str) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xraybench"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("xraybench")]
    return found


def _plugin_author_code() -> dict[str, str]:
    """What we show or hand to plugin authors: the guide's code, the example plugin, the scaffold."""
    from xraybench.cli import plugins as cli_plugins

    sources = {}
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", guide, re.S)):
        sources[f"docs/plugins.md block {i}"] = block
    for path in (ROOT / "docs" / "examples" / "xraybench-example-plugin").rglob("*.py"):
        sources[str(path.relative_to(ROOT))] = path.read_text()
    sources["new-plugin models.py"] = cli_plugins.SCAFFOLD_MODELS.replace("{name}", "demo")
    sources["new-plugin test"] = cli_plugins.SCAFFOLD_TEST.replace("{name}", "demo")
    return sources


def test_plugin_author_code_uses_only_the_public_api():
    public_testing = {n for n in vars(testing) if not n.startswith("_")}
    sources = _plugin_author_code()
    assert len(sources) >= 5
    for where, source in sources.items():
        for module, names in _imports(source):
            if module == "xraybench":
                assert set(names) <= set(xraybench.__all__), f"{where}: imports private {names} from xraybench"
            elif module == "xraybench.testing":
                assert set(names) <= public_testing, f"{where}: imports {names} from xraybench.testing"
            elif module == "xraybench_example" or module.startswith("xraybench_demo"):
                continue
            else:
                raise AssertionError(f"{where}: imports {module}, which is not part of the plugin API")
        for attribute in re.findall(r"\bxraybench\.(\w+)", source):
            assert attribute in set(xraybench.__all__) | {"testing"}, f"{where}: uses private xraybench.{attribute}"


def test_the_generated_data_is_as_documented(xray_data):
    from PIL import Image

    text = API_MD.read_text()
    size = int(re.search(r"Kaggle layout, (\d+)x\1 px", text).group(1))
    for split in ("train", "test"):
        row = re.search(rf"^\| {split} \| (\d+) \| (\d+) \| (\d+) \|$", text, re.M)
        assert row, f"docs/api.md has no {split} row"
        normal, pneumonia = (len(list((xray_data / split / label).glob("*.jpeg"))) for label in xraybench.LABELS)
        assert (normal, pneumonia, normal + pneumonia) == tuple(int(v) for v in row.groups())
    assert not (xray_data / "val").exists()
    with Image.open(next((xray_data / "train" / "NORMAL").glob("*.jpeg"))) as image:
        assert image.size == (size, size) and image.mode == "L"
