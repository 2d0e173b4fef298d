"""The docs stay true to the code."""

import inspect
import re
import runpy
from pathlib import Path

from xraybench import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_every_hookspec_is_documented_in_the_plugin_guide():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "xraybench_spec")]
    assert specs, "no hookspecs found"
    for name in specs:
        assert f"### `{name}(register)`" in guide, f"docs/plugins.md lacks a section for hookspec {name}"


def test_cli_reference_matches_the_parser(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    render = runpy.run_path(str(ROOT / "docs" / "clidoc.py"))["render"]  # a docs tool, not part of the package

    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run `python docs/clidoc.py > docs/cli.md`"
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


def _doc_block(heading: str) -> str:
    """The first ```python block under ``heading`` in docs/plugins.md."""
    section = (ROOT / "docs" / "plugins.md").read_text().split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_data_set_plugin_example_in_the_guide_works(tmp_path, xraybench_env):
    """The guide's DatasetSpec example, run as written: registered, detected, decoded, split by patient."""
    import csv
    import types

    import numpy as np
    from PIL import Image

    from xraybench.data import load_dataset
    from xraybench.plugins import load_registry
    from xraybench.testing import registered_plugin

    module = types.ModuleType("my_data_readers")
    exec(compile(_doc_block("## A data set plugin"), "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 (our own doc)
    folder = tmp_path / "csv_data"
    (folder / "png").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "split", "patient"])
        for i in range(40):
            split, label = ("test" if i % 4 == 0 else "train"), ("PNEUMONIA" if i % 2 else "NORMAL")
            name = f"png/{i}.png"
            Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(folder / name)
            writer.writerow([name, label, split, f"p{i // 2}"])
    with registered_plugin(module, "my_data"):
        registry = load_registry()
        assert registry.datasets["labels_csv"].description.startswith("PNG files listed")
        data = load_dataset(folder, image_size=16, channels=1, registry=registry)
    assert data.reader == "labels_csv"
    assert len(data.splits.test) == 10 and len(data.splits.train) + len(data.splits.val) == 30
    assert data.splits.train.images.shape[1:] == (16, 16, 1)
    assert not set(data.splits.train.groups) & set(data.splits.val.groups)  # patient-grouped validation
