"""Writes docs/api.md, the plugin API reference, from the docstrings, so it cannot drift from the code.

    python docs/apidoc.py > docs/api.md

It covers exactly what is promised to plugin authors: every name in ``xraybench.__all__``,
every hook in ``xraybench.hookspecs``, and the helpers and fixtures of ``xraybench.testing``
(with the sizes of the data set they generate, read from ``make_kaggle_tree``'s defaults).
The docstrings are the reference, as in pluggy and pytest; this module only lays them out.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from collections.abc import Callable
from typing import Any, ForwardRef, is_typeddict

INTRO = """# xraybench plugin API reference

Generated from the docstrings by `python docs/apidoc.py > docs/api.md`; a test fails when
this file and the code disagree. This is the whole promise to plugin authors: the names
exported by `xraybench` (import them from there, e.g. `from xraybench import KerasModel`), the
hooks in `xraybench.hookspecs` and the test helpers in `xraybench.testing`. Every other module
and name is internal and may change in any release. The guide is [plugins.md](plugins.md).
"""

# The sections of `xraybench.__all__`, in reading order. Every exported name sits in exactly
# one; render() fails on a name missing here, so a new export cannot go undocumented.
GROUPS: dict[str, tuple[str, ...]] = {
    "Hooks marker": ("hookimpl",),
    "Model specs": ("KerasModel", "GenericModel", "ModelSpec", "Estimator", "ParamCounted", "register_trainer"),
    "Data": ("ImageSet", "LABELS", "DatasetSpec", "RawDataset", "ReaderStats", "ClassStats"),
    "Registry": ("load_registry", "Registry", "PluginInfo", "PluginStatus"),
    "Errors": ("XRayBenchError", "DataError", "PluginError"),
    "Version": ("__version__",),
}


def _md(text: str) -> str:
    """reST-flavoured docstring text as markdown: ``x`` and :class:`x` become `x`; ``::`` blocks stay indented code."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return re.sub(r"::\n", ":\n", text)


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    if not doc:
        raise ValueError(f"{getattr(obj, '__qualname__', obj)!r} has no docstring; the API reference needs one")
    return _md(doc)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(annotation: Any) -> str:
    """An annotation as its source text (they are strings here: the modules use postponed annotations)."""
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        return annotation.replace("'", "").replace('"', "")
    return inspect.formatannotation(annotation)


class _Plain:
    """Stands in for an annotation so that ``str(Signature)`` prints it unquoted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(fn: Callable[..., Any], drop_self: bool = False) -> str:
    sig = inspect.signature(fn)
    empty = inspect.Signature.empty
    params = [p.replace(annotation=_Plain(_type(p.annotation))) if p.annotation is not empty else p
              for p in sig.parameters.values()]
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    ret = sig.return_annotation
    return str(sig.replace(parameters=params, return_annotation=_Plain(_type(ret)) if ret is not empty else empty))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:  # an enum member as its class and name: PluginStatus.OK
        shown = f"{type(f.default).__name__}.{f.default.name}" if isinstance(f.default, enum.Enum) else repr(f.default)
        return f"`{shown}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory.__name__}()`"  # type: ignore[attr-defined]  # the factories are classes and functions
    return "required"


def _methods(cls: type) -> list[str]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not callable(member):
            continue
        doc = inspect.getdoc(member)
        line = f"- `{name}{_signature(member, drop_self=True)}`"
        out.append(line + (f": {_md(doc.splitlines()[0])}" if doc else ""))
    return out


def _bases(cls: type) -> str:
    names = [b.__name__ for b in cls.__bases__ if b is not object]
    if getattr(cls, "_is_protocol", False):
        names = ["Protocol"]
    if is_typeddict(cls):
        # is_typeddict() does not narrow `type` to a TypedDict class, whose __total__ mypy cannot see
        names = ["TypedDict" + ("" if cls.__total__ else ", total=False")]  # type: ignore[attr-defined]
    return f"({', '.join(names)})" if names else ""


def _class(name: str, cls: type) -> list[str]:
    out = [f"### `{name}`\n", f"```python\nclass {name}{_bases(cls)}\n```\n", _doc(cls), ""]
    if dataclasses.is_dataclass(cls):
        out += ["| field | type | default |", "|---|---|---|"]
        out += [f"| `{f.name}` | `{_cell(_type(f.type))}` | {_cell(_default(f))} |" for f in dataclasses.fields(cls)]
        out.append("")
    elif is_typeddict(cls):
        out += ["| key | type | required |", "|---|---|---|"]
        for key, annotation in cls.__annotations__.items():
            required = "yes" if key in cls.__required_keys__ else "no"  # type: ignore[attr-defined]  # (see _bases)
            out.append(f"| `{key}` | `{_cell(_type(annotation))}` | {required} |")
        out.append("")
    methods = _methods(cls)
    if methods:
        out += ["Methods:\n", *methods, ""]
    return out


def _function(name: str, fn: Callable[..., Any], prefix: str = "") -> list[str]:
    return [f"### `{prefix}{name}`\n", f"```python\n{name}{_signature(fn)}\n```\n", _doc(fn), ""]


def _exported(name: str, value: Any) -> list[str]:
    if name == "__version__":
        return [f"### `{name}`\n", "The installed xraybench version (a string); every run records it.", ""]
    if inspect.isclass(value):
        return _class(name, value)
    if callable(value):
        return _function(name, value)
    return [f"### `{name}`\n", f"```python\n{name} = {value!r}\n```\n"]


def _hooks() -> list[str]:
    from xraybench import hookspecs

    out = ["## Hooks (`xraybench.hookspecs`)\n", _doc(hookspecs), ""]
    for name, fn in vars(hookspecs).items():
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec"):
            out += _function(name, fn)
    return out


def _fixture_parts(obj: Any) -> tuple[Callable[..., Any], str] | None:
    """(wrapped function, scope) of a pytest fixture, across pytest versions; None for anything else."""
    marker = getattr(obj, "_fixture_function_marker", None) or getattr(obj, "_pytestfixturefunction", None)
    if marker is None:
        return None
    wrapped = obj._get_wrapped_function() if hasattr(obj, "_get_wrapped_function") else obj
    scope = marker.scope if isinstance(marker.scope, str) else "function"
    return wrapped, scope


def _generated_data(make_tree: Callable[..., Any]) -> list[str]:
    d = {k: p.default for k, p in inspect.signature(make_tree).parameters.items()}
    (train_n, train_p), (test_n, test_p), size = d["n_train"], d["n_test"], d["size"]
    return [
        "### The generated data set\n",
        f"`make_kaggle_tree(root)` with its defaults, which is what the `xray_data` fixture writes: "
        f"JPEG files in the Kaggle layout, {size}x{size} px, PIL mode `{d['mode']}`, "
        f"{d['images_per_patient']} images per patient, seed {d['seed']}, no `val/` folder "
        f"(the core carves a patient-grouped validation split from `train`).\n",
        "| split | NORMAL | PNEUMONIA | total |",
        "|---|---|---|---|",
        f"| train | {train_n} | {train_p} | {train_n + train_p} |",
        f"| test | {test_n} | {test_p} | {test_n + test_p} |",
        "",
    ]


def _testing() -> list[str]:
    from xraybench import testing

    out = ["## Test helpers (`xraybench.testing`)\n", _doc(testing), ""]
    functions, fixtures = [], []
    for name, obj in vars(testing).items():
        if name.startswith("_"):
            continue
        parts = _fixture_parts(obj)
        if parts is not None:
            fixtures.append((name, *parts))
        elif inspect.isfunction(obj) and obj.__module__.startswith("xraybench"):
            functions.append((name, obj))
    functions.sort(key=lambda item: item[0])  # by name: stable whichever module defines each
    fixtures.sort(key=lambda item: item[0])
    for name, fn in functions:
        out += _function(name, fn, prefix="xraybench.testing.")
    out += _generated_data(testing.make_kaggle_tree)
    out += ["### Fixtures\n", "Registered through the `pytest11` entry point: request them by name, nothing to import.\n",
            "| fixture | scope | uses | returns | what |", "|---|---|---|---|---|"]
    for name, fixture, scope in fixtures:
        sig = inspect.signature(fixture)
        uses = ", ".join(f"`{p}`" for p in sig.parameters) or "-"
        returns = _cell(_type(sig.return_annotation)) if sig.return_annotation is not inspect.Signature.empty else "-"
        out.append(f"| `{name}` | {scope} | {uses} | `{returns}` | {_cell(_doc(fixture).replace(chr(10), ' '))} |")
    out.append("")
    return out


def render() -> str:
    import xraybench

    exported = set(xraybench.__all__)
    grouped = [n for names in GROUPS.values() for n in names]
    missing, extra = exported - set(grouped), set(grouped) - exported
    if missing or extra or len(grouped) != len(set(grouped)):
        raise ValueError(f"apidoc GROUPS and xraybench.__all__ disagree: missing {sorted(missing)}, extra {sorted(extra)}")
    out = [INTRO]
    for title, names in GROUPS.items():
        out.append(f"## {title}\n")
        for name in names:
            out += _exported(name, getattr(xraybench, name))
    out += _hooks()
    out += _testing()
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
