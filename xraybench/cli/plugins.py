"""The plugin commands: ``models`` and ``plugins`` (what is installed), ``check`` (the plugin
contract, ``plugin_checks.py``) and ``new-plugin`` (a ready-to-install scaffold)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xraybench.cli import options
from xraybench.cli.common import command, console
from xraybench.errors import XRayBenchError


def cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.plugins import PluginStatus, load_registry
    from xraybench.richtext import plain

    registry = load_registry(args.disable_plugin)
    native = _default_native_size()
    columns = ("Model", "Distribution", "Kind", "Input", "Tunable", "Status", "Description")
    rows: list[tuple] = []  # Every cell is plain Text: names, versions, descriptions and errors come from plugins.
    for name in sorted(registry.models):
        spec = registry.models[name]
        size = f"{spec.image_size}px" if native is None or native == spec.image_size else \
            f"{native}px (own {spec.image_size})"
        rows.append((name, f"{spec.distribution} {spec.version}", _kind(spec), f"{size} x{spec.channels}",
                     "yes" if spec.search_space else "no", PluginStatus.OK, spec.description))
    for name, message in sorted(registry.conflicts.items()):
        rows.append((name, "-", "-", "-", "-", PluginStatus.ERROR, message))
    for info in registry.plugins:
        if info.status is not PluginStatus.OK and not info.models:
            rows.append((f"({info.name})", f"{info.distribution} {info.version}", "-", "-", "-", info.status, info.reason))
    out = console()
    table = Table(title="xraybench models", header_style="bold")
    for col in columns:
        table.add_column(col, no_wrap=col == "Model")
    for row in rows:
        table.add_row(*map(plain, row[:5]), plain(row[5], row[5].colour), plain(row[6]))
    widths = [max(plain(r[i]).cell_len for r in (columns, *rows)) for i in range(6)]
    if sum(widths) + 3 * len(columns) + 1 + 40 <= out.width:  # 40 columns left for the description: a table
        out.print(table)
    else:  # narrow: a model a line (its name whole, its status), then its description whole, indented below
        _print_narrow(out, (columns, *rows), widths)
    if native is not None:
        out.print(plain(f"Input: the size a model trains at on the default data here, the built-in {native} px copy "
                        "(own: its size on other data, which --data PATH gives; --image-size N sets another); "
                        "xN: N channels."))
    _print_plugin_tracebacks(registry, args.traceback)
    return 0


def _print_narrow(out: Any, rows: Sequence[tuple], widths: list[int]) -> None:
    """`models` where the table does not fit: Model, Status, Kind, Input on a line (aligned where that
    fits, never cut: the name is what `--model` takes), the description wrapped under it, no padding."""
    import textwrap

    from rich.text import Text

    from xraybench.escaping import terminal_text
    from xraybench.richtext import plain

    for n, row in enumerate(rows):
        order = [(0, "bold"), (5, "bold" if n == 0 else row[5].colour), (2, ""), (3, "")]
        cells = [str(row[i]) for i, _ in order]
        aligned = "  ".join(c.ljust(widths[i]) for c, (i, _) in zip(cells, order)).rstrip()
        spaced = [c.ljust(widths[i]) if len(aligned) <= out.width and k < 3 else c
                  for k, (c, (i, _)) in enumerate(zip(cells, order))]
        out.print(Text("  ").join(plain(c, style) for c, (_, style) in zip(spaced, order)), soft_wrap=True)
        wrapped = textwrap.fill(terminal_text(row[6]), max(20, out.width - 1), initial_indent="    ", subsequent_indent="    ")
        out.print(plain(wrapped, "bold" if n == 0 else ""), soft_wrap=True)
    out.print(plain("Distribution and Tunable (by `xraybench tune`): shown in a wider terminal."), style="dim")


def _kind(spec) -> str:
    """The spec's family, with the training recipe a plain run uses where the family has recipes
    ("keras (seed)"): `run --recipe NAME` changes it."""
    recipe = getattr(spec, "recipe", None)
    return f"{spec.kind} ({recipe})" if recipe else spec.kind


def _default_native_size() -> int | None:
    """The size every model really trains at on the data a plain command uses here, where that data
    has one size of its own (the built-in 28 px copy, when no --data, $XRAYBENCH_DATA or user data
    folder is there); None where each model uses its own size. Why: `models` said 32px while
    `run --model M` trained at 28."""
    from xraybench.data.builtin import native_size

    try:
        return native_size(None)
    except XRayBenchError:  # a bad $XRAYBENCH_DATA is `run`'s error to report, not the listing's
        return None


def _print_plugin_tracebacks(registry, wanted: bool) -> None:
    """``--traceback``: each broken plugin's stored traceback (its import, its hook), on stderr."""
    for info in registry.plugins if wanted else ():
        if info.traceback:
            sys.stderr.write(f"--- plugin {info.name} ({info.distribution} {info.version}) ---\n{info.traceback}")


def cmd_plugins(args: argparse.Namespace) -> int:
    from xraybench.plugins import load_registry

    registry = load_registry(args.disable_plugin)
    if args.requirements:
        seen = set()
        for info in registry.plugins:
            if info.distribution not in ("local", "unknown") and info.distribution not in seen:
                seen.add(info.distribution)
                print(f"{info.distribution}=={info.version}")
        return 0
    from rich.table import Table

    from xraybench.richtext import plain

    table = Table(title="xraybench plugins", header_style="bold")
    for col in ("Plugin", "Distribution", "Version", "Module", "Status", "Registers"):
        table.add_column(col)
    for info in registry.plugins:
        registers = ", ".join(info.models + info.datasets) or "-"
        status = plain(info.status, info.status.colour) + (plain(f": {info.reason}") if info.reason else "")
        table.add_row(*map(plain, (info.name, info.distribution, info.version, info.module)), status, plain(registers))
    console().print(table)
    _print_plugin_tracebacks(registry, args.traceback)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xraybench.isolation import interruptible
    from xraybench.plugin_checks import run_contract
    from xraybench.plugins import load_registry
    from xraybench.richtext import plain

    interruptible()
    spec = load_registry(args.disable_plugin).model(args.model)
    tracebacks: dict[str, str] = {}
    rows = run_contract(spec, size=args.image_size, seed=args.seed, timeout=args.timeout, disabled=list(args.disable_plugin),
                        tracebacks=tracebacks)
    table = Table(title=plain(f"xraybench check {spec.name} ({spec.distribution} {spec.version}, {spec.kind})"),
                  header_style="bold", title_justify="left")
    for col in ("Check", "Result", "Detail"):
        table.add_column(col)
    for name, ok, detail in rows:  # details quote the plugin's own errors
        table.add_row(plain(name), plain("pass", "green") if ok else plain("FAIL", "red"), plain(detail))
    out = console()
    out.print(table)
    failed = sum(not ok for _, ok, _ in rows)
    out.print(f"{len(rows) - failed} passed, {failed} failed")
    for name, text in tracebacks.items() if args.traceback else ():
        sys.stderr.write(f"--- {name} ---\n{text}")
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


SCAFFOLD_SKLEARN_MODELS = '''"""xraybench model plugin: {name} (scikit-learn)."""

from __future__ import annotations

import xraybench


class {cls}:
    """The GenericModel contract: ``fit(train, val)`` on ``xraybench.ImageSet`` splits (uint8
    images (N, H, W, C), labels, ids, groups), ``predict_proba(images)`` -> P(PNEUMONIA), shape (N,).
    The harness owns the data, the splits, the seed and the metrics: the estimator never scores itself."""

    def __init__(self, params, seed):
        from sklearn.linear_model import LogisticRegression  # imported here, never at module level
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=float(params["C"]), max_iter=2000, random_state=seed),
        )

    @staticmethod
    def _features(images):
        import numpy as np

        return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0

    def fit(self, train, val):
        self.model.fit(self._features(train.images), train.labels)
        return self

    def predict_proba(self, images):
        return self.model.predict_proba(self._features(images))[:, 1]


def create(params, seed):
    return {cls}(params, seed)


def search_space(trial):
    return {{"C": trial.suggest_float("C", 1e-4, 10.0, log=True)}}


@xraybench.hookimpl
def register_models(register):
    register(
        xraybench.GenericModel(
            name="{name}",
            description="{name}: logistic regression on raw pixels (edit me)",
            defaults={{"C": 0.01}},
            search_space=search_space,
            create=create,
            image_size=32,
        )
    )
'''


SCAFFOLD_TEST = '''"""The xraybench plugin contract, on tiny generated data (see xraybench.testing)."""

from xraybench import load_registry
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
    cls = "".join(part.title() for part in name.split("_")) + "Estimator"
    models = SCAFFOLD_SKLEARN_MODELS if args.kind == "sklearn" else SCAFFOLD_MODELS
    (target / module / "models.py").write_text(models.format(name=name, cls=cls))
    (target / "tests" / f"test_{name}.py").write_text(SCAFFOLD_TEST.format(name=name))
    (target / "README.md").write_text(
        f"# {dist}\n\nAn xraybench model plugin.\n\n    pip install -e .[test]\n    pytest\n"
        f"    xraybench check {name}\n    xraybench run --model {name}\n"
    )
    print(f"wrote {target}/: pip install -e '{target}[test]', then `xraybench check {name}` and `pytest {target}`")
    return 0


PLUGIN_FAILURES = "each plugin that failed to import or whose hook raised"


def add_models(sub) -> None:
    options.traceback(command(sub, "models", cmd_models, "list every registered model"), PLUGIN_FAILURES)


def add_plugins(sub) -> None:
    p = command(sub, "plugins", cmd_plugins, "list installed plugins, their versions and status")
    p.add_argument("--requirements", action="store_true", help="print pip requirement lines that reinstall them")
    options.traceback(p, PLUGIN_FAILURES)


def add_check(sub) -> None:
    p = command(sub, "check", cmd_check, "check a model plugin against the contract on tiny generated data")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--image-size", type=options.image_size_arg, default=32, help="size of the generated images")
    options.seed(p, None, default=0)
    p.add_argument("--timeout", type=options.positive_seconds, default=600.0, metavar="SECONDS",
                   help="kill a check after this long and report it as failed; the other checks go on")
    options.traceback(p, "each failed check, and of the plugin's import when it failed")


def add_new_plugin(sub) -> None:
    p = command(sub, "new-plugin", cmd_new_plugin, "write a ready-to-install model plugin package")
    p.add_argument("name", metavar="NAME", help="model name (a Python identifier)")
    p.add_argument("--directory", metavar="DIR", help="where to write it (default: ./xraybench-NAME)")
    p.add_argument("--kind", choices=("keras", "sklearn"), default="keras",
                   help="keras: a KerasModel (a small CNN); sklearn: a GenericModel whose create(params, seed) returns "
                        "an estimator with fit(train, val) and predict_proba(images)")
