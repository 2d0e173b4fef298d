"""Commands for plugin authors: ``check`` (the plugin contract) and ``new-plugin`` (a scaffold)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from xraybench.errors import XRayBenchError


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from xraybench.contract import run_contract
    from xraybench.plugins import load_registry

    spec = load_registry(args.disable_plugin).model(args.model)
    rows = run_contract(spec, size=args.image_size, seed=args.seed)
    table = Table(title=f"xraybench check {spec.name} ({spec.distribution} {spec.version}, {spec.kind})",
                  header_style="bold", title_justify="left")
    for col in ("Check", "Result", "Detail"):
        table.add_column(col)
    for name, ok, detail in rows:
        table.add_row(name, "[green]pass[/]" if ok else "[red]FAIL[/]", detail)
    console = Console()
    console.print(table)
    failed = sum(not ok for _, ok, _ in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


SCAFFOLD_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "xraybench model plugin: {name}"
requires-python = ">=3.11"
dependencies = ["xraybench"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.xraybench]
{module} = "{module}.models"

[tool.setuptools]
packages = ["{module}"]
"""

SCAFFOLD_MODELS = '''"""xraybench model plugin: {name}."""

from __future__ import annotations

import xraybench


def build(input_shape, params):
    import keras  # imported here, never at module level

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="{name}")


def search_space(trial):
    return {{
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }}


@xraybench.hookimpl
def register_models(register):
    register(
        xraybench.KerasModel(
            name="{name}",
            description="{name}: a small CNN (edit me)",
            defaults={{"dropout": 0.2, "epochs": 20}},
            search_space=search_space,
            build=build,
            image_size=128,
        )
    )
'''

SCAFFOLD_TEST = '''"""The xraybench plugin contract, on tiny generated data (see xraybench.testing)."""

from xraybench.plugins import load_registry
from xraybench.testing import check_model


def test_{name}_is_registered():
    assert "{name}" in load_registry().models


def test_{name}_passes_the_contract():
    rows = check_model(load_registry().model("{name}"))
    failed = [(check, detail) for check, ok, detail in rows if not ok]
    assert not failed, failed
'''


def cmd_new_plugin(args: argparse.Namespace) -> int:
    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise XRayBenchError(f"plugin name {name!r} must be lower case letters, digits and _ (a Python identifier)")
    module = f"xraybench_{name}"
    dist = f"xraybench-{name.replace('_', '-')}"
    target = Path(args.directory or dist)
    if target.exists() and any(target.iterdir()):
        raise XRayBenchError(f"{target} exists and is not empty; choose another --directory")
    (target / module).mkdir(parents=True, exist_ok=True)
    (target / "tests").mkdir(exist_ok=True)
    (target / "pyproject.toml").write_text(SCAFFOLD_PYPROJECT.format(dist=dist, name=name, module=module))
    (target / module / "__init__.py").write_text("")
    (target / module / "models.py").write_text(SCAFFOLD_MODELS.format(name=name))
    (target / "tests" / f"test_{name}.py").write_text(SCAFFOLD_TEST.format(name=name))
    (target / "README.md").write_text(
        f"# {dist}\n\nAn xraybench model plugin.\n\n    pip install -e .[test]\n    pytest\n"
        f"    xraybench check {name}\n    xraybench run --model {name}\n"
    )
    print(f"wrote {target}/: pip install -e '{target}[test]', then `xraybench check {name}` and `pytest {target}`")
    return 0


def add_commands(sub, formatter) -> None:
    p = sub.add_parser("check", help="check a model plugin against the contract on tiny generated data",
                       formatter_class=formatter)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--image-size", type=int, default=32, help="size of the generated images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("new-plugin", help="write a ready-to-install model plugin package", formatter_class=formatter)
    p.add_argument("name", metavar="NAME", help="model name (a Python identifier)")
    p.add_argument("--directory", metavar="DIR", help="where to write it (default: ./xraybench-NAME)")
    p.set_defaults(func=cmd_new_plugin)
