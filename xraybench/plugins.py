"""Plugin discovery, isolated so that one broken plugin never takes the harness down.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails
to import; here every entry point is imported, validated against the hookspecs
and called through pluggy inside its own ``try``, in a plugin manager of its own
(so one plugin's hook that raises never hides another's). A failure becomes a
``PluginInfo`` with status ``error`` and a one-line reason (a misspelled hook, an
undecorated one, an import or a hook that raises), and everything else keeps working.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from xraybench import hookspecs
from xraybench.errors import PluginError
from xraybench.specs import DatasetSpec, ModelSpec
from xraybench.training import has_trainer, one_line

GROUP = "xraybench"
DISABLE_ENV = "XRAYBENCH_DISABLE_PLUGINS"
EXTRA_ENV = "XRAYBENCH_PLUGINS"  # comma-separated module paths, loaded as if installed


class PluginStatus(enum.StrEnum):
    """What became of a plugin, with the colour every table shows it in. A ``str``, so code that
    compares ``info.status == "error"`` (third-party tools reading ``PluginInfo``) still works."""

    OK = "ok"
    ERROR = "error"
    DISABLED = "disabled"

    @property
    def colour(self) -> str:
        return {"ok": "green", "error": "red", "disabled": "yellow"}[self.value]


@dataclass
class PluginInfo:
    """One advertised plugin and what became of it (a row of ``xraybench plugins``).

    ``name`` is the entry-point name (or module path for ``$XRAYBENCH_PLUGINS``),
    ``distribution``/``version`` the package that advertised it (``local``/``0`` when
    loaded from the environment or ``xraybench.testing.registered_plugin``),
    ``module`` the object path. ``status`` is ``ok``, ``error`` (``reason`` says why
    in one line) or ``disabled``. ``models`` and ``datasets`` are the names it registered.
    """

    name: str
    distribution: str
    version: str
    module: str
    status: PluginStatus = PluginStatus.OK
    reason: str = ""
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    traceback: str = ""  # of an import or a hook that raised: printed by --traceback, for the plugin's author


@dataclass
class Registry:
    """Everything the installed plugins registered, as returned by :func:`load_registry`.

    ``models`` and ``datasets`` map a name to its spec, with ``distribution`` and
    ``version`` filled in; ``plugins`` holds one :class:`PluginInfo` per advertised
    plugin, broken and disabled ones included; ``conflicts`` maps a name that two
    plugins registered to the one-line error naming both (neither is usable).
    """

    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> ModelSpec:
        """The spec called ``name``; else a one-line ``PluginError`` saying why (unknown, conflict, broken plugin)."""
        if name in self.models:
            return self.models[name]
        if name in self.conflicts:
            raise PluginError(self.conflicts[name])
        for info in self.plugins:
            if info.status is PluginStatus.ERROR and name in info.models:
                raise PluginError(f"model {name!r} is unavailable: plugin {info.name} failed: {info.reason}",
                                  traceback=info.traceback)
        known = ", ".join(sorted(self.models)) or "none"
        broken = [info for info in self.plugins if info.status is PluginStatus.ERROR and not info.models and not info.datasets]
        if broken:  # it registered nothing, so nothing says which models it has: "unknown" would mislead
            which = "; ".join(f"plugin {info.name} ({info.distribution} {info.version}) {_failure(info.reason)}"
                              for info in broken)
            raise PluginError(f"model {name!r} is not registered, and {which}: it may be the one that provides it; "
                              f"fix or disable it (`xraybench plugins` lists it, --traceback shows why); known models: {known}",
                              traceback="".join(info.traceback for info in broken))
        raise PluginError(f"unknown model {name!r}; known models: {known} (see `xraybench models`)")


def _failure(reason: str) -> str:
    """A broken plugin's reason as a clause: "failed to import (ImportError: ...)"."""
    prefix = "import failed: "
    return f"failed to import ({reason[len(prefix):]})" if reason.startswith(prefix) else f"failed ({reason})"


def _disabled_names(extra: Iterable[str] = ()) -> set[str]:
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return names | {n for n in extra if n}


def check_disabled(names: Iterable[str] = ()) -> None:
    """A one-line ``PluginError`` for a name given to ``--disable-plugin`` (or in
    ``$XRAYBENCH_DISABLE_PLUGINS``) that no advertised plugin or distribution has.

    Why: a misspelt name disabled nothing, silently, and the run went on with the plugin it
    meant to switch off. Only entry points are listed (no plugin is imported), so it is cheap.
    """
    flagged = {n for n in names if n}
    from_env = _disabled_names() - flagged
    wanted = [(n, "--disable-plugin") for n in sorted(flagged)] + [(n, f"${DISABLE_ENV}") for n in sorted(from_env)]
    if not wanted:
        return
    candidates = _candidates() + [(name, "local", "0", name, None) for name, _ in _extra_objects]
    plugins = sorted({c[0] for c in candidates})
    distributions = sorted({c[1] for c in candidates} - {"local", "unknown"})
    for name, where in wanted:
        if name not in plugins and name not in distributions:
            raise PluginError(f"{where} {name!r}: no installed plugin or distribution has that name; known plugins: "
                              f"{', '.join(plugins) or 'none'}; distributions: {', '.join(distributions) or 'none'} "
                              "(see `xraybench plugins`)")


def _candidates() -> list[tuple[str, str, str, str, Any]]:
    """(name, distribution, version, module path, loader) for every advertised plugin."""
    found: list[tuple[str, str, str, str, Any]] = []
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


# hook name -> the spec type its ``register`` accepts (a model's only where its type has a trainer: has_trainer)
_HOOKS: dict[str, type[ModelSpec] | type[DatasetSpec]] = {
    "register_models": ModelSpec,
    "register_datasets": DatasetSpec,
}
HOOK_NAMES = tuple(
    name for name, fn in vars(hookspecs).items()
    if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
)


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Hook-named callables that lack ``@xraybench.hookimpl`` (pluggy would skip them silently)."""
    marker = f"{hookspecs.PROJECT}_impl"
    found = []
    for name in HOOK_NAMES:
        attr = inspect.getattr_static(plugin, name, None)
        attr = getattr(attr, "__func__", attr)  # staticmethod / classmethod
        if callable(attr) and not hasattr(attr, marker):
            found.append(name)
    return found


def _validated_manager(plugin: Any, label: str) -> pluggy.PluginManager:
    """A plugin manager holding this one plugin, its hooks checked against the hookspecs.

    One manager per plugin keeps every plugin's hooks isolated (one raising never hides
    another's) and makes each validation error that plugin's. Raises PluginError.
    """
    unmarked = _unmarked_hooks(plugin)
    if unmarked:
        raise PluginError(
            f"{', '.join(unmarked)} is not marked @xraybench.hookimpl, so it would be ignored; decorate it"
        )
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name=label)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec())
        if unknown:
            raise PluginError(
                f"unknown hook {', '.join(unknown)}; xraybench hooks are {', '.join(HOOK_NAMES)} (check the spelling)"
            ) from None
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PluginError(f"invalid hook implementation: {detail}") from None
    if not any(caller.has_spec() for caller in pm.get_hookcallers(plugin) or []):
        raise PluginError(f"implements no xraybench hook; expected one of {', '.join(HOOK_NAMES)} with @xraybench.hookimpl")
    return pm


def load_registry(disabled: Iterable[str] = ()) -> Registry:
    """Import every advertised plugin in isolation and collect what its hooks register.

    ``disabled`` names plugins or distributions to skip, on top of
    ``$XRAYBENCH_DISABLE_PLUGINS``. Never raises for a broken plugin: it becomes a
    ``PluginInfo`` with status ``error`` and a one-line reason, and the rest load.
    Plugin tests call it to see their models as users will (``load_registry().model(name)``).
    """
    from xraybench.training.backend import ensure_keras_backend

    ensure_keras_backend()  # a plugin importing keras at module level gets the backend training will use
    registry = Registry()
    blocked = _disabled_names(disabled)
    owners: dict[str, str] = {}

    candidates = _candidates() + [
        (name, "local", "0", getattr(obj, "__name__", name), (lambda o=obj: o)) for name, obj in _extra_objects
    ]
    for name, dist, version, module, loader in candidates:
        info = PluginInfo(name=name, distribution=dist, version=version, module=module)
        registry.plugins.append(info)
        if name in blocked or dist in blocked:
            info.status, info.reason = PluginStatus.DISABLED, f"disabled by {DISABLE_ENV} or --disable-plugin"
            continue
        pm = _import_and_validate(info, loader)
        if pm is not None:
            for hook_name, kind_ok in _HOOKS.items():
                _collect(registry, info, pm, hook_name, kind_ok, owners)
    return registry


def _import_and_validate(info: PluginInfo, loader: Any) -> pluggy.PluginManager | None:
    """The plugin's own hook manager, or None with ``info`` marked ``error`` and why."""
    try:
        plugin: ModuleType | Any = loader()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's import may raise anything, sys.exit() included
        info.status, info.reason = PluginStatus.ERROR, f"import failed: {one_line(exc)}"
        info.traceback = traceback.format_exc()
        return None
    try:
        return _validated_manager(plugin, f"{info.distribution}:{info.name}")
    except PluginError as exc:
        info.status, info.reason = PluginStatus.ERROR, str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # attribute access on a hostile plugin object
        info.status, info.reason = PluginStatus.ERROR, f"cannot inspect hooks: {one_line(exc)}"
    return None


def _collect(registry: Registry, info: PluginInfo, pm: pluggy.PluginManager, hook_name: str,
             kind_ok: type[ModelSpec] | type[DatasetSpec], owners: dict[str, str]) -> None:
    """Call one hook of one plugin and add what it registers, refusing wrong types and name clashes."""
    target: dict[str, Any] = registry.models if hook_name == "register_models" else registry.datasets
    caller = getattr(pm.hook, hook_name)
    if not caller.get_hookimpls():
        return
    staged: list[Any] = []
    try:
        caller(register=staged.append)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # sys.exit() in a hook takes down no command
        info.status, info.reason = PluginStatus.ERROR, f"{hook_name} raised {one_line(exc)}"
        info.traceback = traceback.format_exc()
        return
    label = f"{info.distribution} {info.version} (plugin {info.name})"
    for spec in staged:
        if not isinstance(spec, kind_ok):
            info.status, info.reason = PluginStatus.ERROR, (f"{hook_name} registered {type(spec).__name__}, "
                                                              f"expected {kind_ok.__name__}")
            continue
        if isinstance(spec, ModelSpec) and not has_trainer(spec):  # named, so that asking for it says why
            info.status, info.reason = PluginStatus.ERROR, (f"{spec.name!r} is of type {type(spec).__name__}, "
                                                          "which has no trainer: register one with xraybench.register_trainer")
            info.models.append(spec.name)
            continue
        spec.distribution, spec.version = info.distribution, info.version
        if spec.name in target or spec.name in registry.conflicts:
            first = owners.get(f"{hook_name}:{spec.name}", "another plugin")
            message = (
                f"{spec.name!r} is registered twice: by {first} and by {label}; "
                f"uninstall one or disable it with {DISABLE_ENV}"
            )
            registry.conflicts[spec.name] = message
            target.pop(spec.name, None)
            info.status, info.reason = PluginStatus.ERROR, message
            continue
        owners[f"{hook_name}:{spec.name}"] = label
        target[spec.name] = spec
        (info.models if hook_name == "register_models" else info.datasets).append(spec.name)
