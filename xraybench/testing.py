"""Testing helpers for xraybench and for plugin authors, exposed to pytest via a ``pytest11`` entry point.

- ``make_kaggle_tree(root, ...)``: a tiny generated data set in the real Kaggle layout,
  with patient-style file names and a learnable signal (PNEUMONIA images carry a
  bright diffuse patch), so a model can beat chance in one short epoch.
- fixtures ``xray_data`` (that tree) and ``xraybench_env`` (cache and results in a
  temporary folder, so tests never touch the user's).
- ``registered_plugin(obj)``: registers a plugin module or object for the duration
  of a ``with`` block, as if it were installed.
- ``check_model(spec)``: the plugin contract that ``xraybench check`` runs.

This module is imported by pytest at start-up in any environment where xraybench
is installed, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The generated data set lives in xraybench.synthetic (no pytest there: `xraybench check` uses it
# on a plain install); re-exported here for plugin authors' tests.
from xraybench.records import LABELS  # noqa: E402,F401
from xraybench.synthetic import make_kaggle_tree, synthetic_image  # noqa: E402,F401


@pytest.fixture
def xraybench_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and results in a temporary folder; returns that folder."""
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture
def xray_data(tmp_path: Path, xraybench_env: Path) -> Path:
    """A tiny generated data set in the Kaggle layout."""
    return make_kaggle_tree(tmp_path / "chest_xray")


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None) -> Iterator[None]:
    """Register a plugin module or object (with hookimpl functions) for the block's duration.

    In-process only; to reach child processes too, put an importable module path
    in ``$XRAYBENCH_PLUGINS``.
    """
    from xraybench import plugins

    entry = (str(name or getattr(plugin, "__name__", type(plugin).__name__)), plugin)
    plugins._extra_objects.append(entry)
    try:
        yield
    finally:
        plugins._extra_objects.remove(entry)


CHECK_TIMEOUT = 300.0  # seconds per check: one short epoch on 48 tiny images takes seconds, a hang forever


def check_model(spec: Any, size: int = 32, seed: int = 0,
                timeout: float | None = CHECK_TIMEOUT) -> list[tuple[str, bool, str]]:
    """Run the plugin contract on tiny generated data; returns (check, passed, detail) rows.

    Each check runs in a child process and is killed after ``timeout`` seconds, becoming a failed
    row ("timeout: ...") while the others go on, so a model that hangs fails its plugin's test
    instead of hanging the test suite. The spec is sent to the child as it is when it pickles
    (module-level functions), else found there by name among the installed plugins;
    ``timeout=None`` runs every check in this process, without a limit.
    """
    from xraybench.plugin_checks import run_contract

    return run_contract(spec, size=size, seed=seed, timeout=timeout, timeout_name="check_model's timeout")
