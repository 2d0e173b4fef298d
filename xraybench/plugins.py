"""Plugin discovery, isolated so that one broken plugin never takes the harness down.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails
to import; here every entry point is imported, registered and asked for its
models inside its own ``try``. A failure becomes a ``PluginInfo`` with status
``error`` and a one-line reason, and everything else keeps working.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Iterable

import pluggy

from xraybench import hookspecs
from xraybench.errors import PluginError
from xraybench.specs import DatasetSpec, GenericModel, KerasModel, ModelSpec

GROUP = "xraybench"
DISABLE_ENV = "XRAYBENCH_DISABLE_PLUGINS"
EXTRA_ENV = "XRAYBENCH_PLUGINS"  # comma-separated module paths, loaded as if installed


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    status: str = "ok"  # ok | error | disabled
    reason: str = ""
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> ModelSpec:
        """The spec called ``name``, or a one-line error listing what exists."""
        if name in self.models:
            return self.models[name]
        if name in self.conflicts:
            raise PluginError(self.conflicts[name])
        for info in self.plugins:
            if info.status == "error" and name in info.models:
                raise PluginError(f"model {name!r} is unavailable: plugin {info.name} failed: {info.reason}")
        known = ", ".join(sorted(self.models)) or "none"
        raise PluginError(f"unknown model {name!r}; known models: {known} (see `xraybench models`)")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _disabled_names(extra: Iterable[str] = ()) -> set[str]:
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return names | {n for n in extra if n}


def _candidates() -> list[tuple[str, str, str, str, Any]]:
    """(name, distribution, version, module path, loader) for every advertised plugin."""
    found = []
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.append(
            (ep.name, dist.name if dist else "unknown", dist.version if dist else "unknown", ep.value, ep.load)
        )
    for path in os.environ.get(EXTRA_ENV, "").split(","):
        path = path.strip()
        if path:
            found.append((path, "local", "0", path, lambda p=path: importlib.import_module(p)))
    return found


_extra_objects: list[tuple[str, Any]] = []  # plugins registered in-process (xraybench.testing)


def load_registry(disabled: Iterable[str] = ()) -> Registry:
    """Import every plugin in isolation and collect the models and datasets they register."""
    registry = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = _disabled_names(disabled)
    owners: dict[str, str] = {}

    candidates = _candidates() + [
        (name, "local", "0", getattr(obj, "__name__", name), (lambda o=obj: o)) for name, obj in _extra_objects
    ]
    for name, dist, version, module, loader in candidates:
        info = PluginInfo(name=name, distribution=dist, version=version, module=module)
        registry.plugins.append(info)
        if name in blocked or dist in blocked:
            info.status, info.reason = "disabled", f"disabled by {DISABLE_ENV} or --disable-plugin"
            continue
        try:
            plugin: ModuleType | Any = loader()
            pm.register(plugin, name=f"{dist}:{name}")
        except Exception as exc:  # a plugin's import may raise anything
            info.status, info.reason = "error", f"import failed: {one_line(exc)}"
            continue
        for hook_name, kind_ok, target in (
            ("register_models", (KerasModel, GenericModel), registry.models),
            ("register_datasets", (DatasetSpec,), registry.datasets),
        ):
            impl = getattr(plugin, hook_name, None)
            if impl is None:
                continue
            staged: list[Any] = []
            try:
                impl(register=staged.append)
            except Exception as exc:
                info.status, info.reason = "error", f"{hook_name} raised {one_line(exc)}"
                continue
            for spec in staged:
                if not isinstance(spec, kind_ok):
                    info.status = "error"
                    info.reason = f"{hook_name} registered {type(spec).__name__}, expected {kind_ok[0].__name__}"
                    continue
                spec.distribution, spec.version = dist, version
                label = f"{dist} {version} (plugin {name})"
                if spec.name in target or spec.name in registry.conflicts:
                    first = owners.get(f"{hook_name}:{spec.name}", "another plugin")
                    message = (
                        f"{spec.name!r} is registered twice: by {first} and by {label}; "
                        f"uninstall one or disable it with {DISABLE_ENV}"
                    )
                    registry.conflicts[spec.name] = message
                    target.pop(spec.name, None)
                    info.status, info.reason = "error", message
                    continue
                owners[f"{hook_name}:{spec.name}"] = label
                target[spec.name] = spec
                (info.models if hook_name == "register_models" else info.datasets).append(spec.name)
    return registry
