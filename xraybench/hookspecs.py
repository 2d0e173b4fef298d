"""The hooks a plugin may implement, and the ``hookimpl`` marker that declares an implementation.

A plugin is any importable module or object, advertised under the ``xraybench``
entry-point group, that implements one or more of the hooks below with
``@xraybench.hookimpl``. This module is the reference: every hook a plugin may
implement is declared here, ``docs/plugins.md`` documents each one and
``docs/api.md`` is generated from these docstrings (tests keep all three in step).

Example ``pyproject.toml`` of a plugin package::

    [project.entry-points.xraybench]
    my_models = "my_package.models"

Hooks receive a ``register`` callable rather than returning lists (the pattern of
Simon Willison's ``llm``) so that one plugin can register any number of things and
the harness can attribute each registration to the distribution that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from xraybench.specs import DatasetSpec, ModelSpec

PROJECT = "xraybench"

hookspec = pluggy.HookspecMarker(PROJECT)
_impl_marker = pluggy.HookimplMarker(PROJECT)
F = TypeVar("F", bound=Callable[..., Any])


def hookimpl(function: F | None = None, *, specname: str | None = None, optionalhook: bool = False) -> Any:
    """Mark ``function`` as the implementation of the hook of the same name: ``@xraybench.hookimpl``.

    Only marked functions count: a hook-named function without the marker makes the
    plugin an ``error`` ("not marked @xraybench.hookimpl"), never silently ignored,
    and so does a marked one whose name (or ``specname``) is no hook below
    ("unknown hook"), or whose arguments are not the hook's. ``specname`` implements
    the hook under another function name; ``optionalhook=True`` lets a plugin
    implement a hook that an older xraybench lacks without being an error there.
    Used bare (``@hookimpl``) or with options (``@hookimpl(specname="register_models")``).
    """
    return _impl_marker(function, specname=specname, optionalhook=optionalhook)


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model specs by calling ``register(spec)`` once per model.

    ``spec`` is a :class:`xraybench.KerasModel` (the plugin supplies ``build``;
    the harness owns the training loop, so every Keras model is trained the same
    way) or a :class:`xraybench.GenericModel` (the plugin supplies an object with
    ``fit(train, val)`` and ``predict_proba(images)``, e.g. a scikit-learn
    pipeline). Model names are global: two distributions registering the same
    name is an error naming both.

    Keep this hook cheap: it runs for ``xraybench models`` and ``--help``-speed
    commands, so import keras or heavy libraries inside ``build``/``create``,
    never at module import or here.
    """


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register data set readers by calling ``register(spec)`` once per reader.

    A :class:`xraybench.DatasetSpec` says whether it recognises a path
    (``detect``), which source files decide cache freshness (``files``) and how
    to decode them into uint8 image arrays (``read``). The core caches what
    ``read`` returns, fingerprints the source, and carves the validation split,
    so a reader never has to.
    """
