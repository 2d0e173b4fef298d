import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helper plugins must be importable here and in child processes the harness spawns.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "helper_plugins"), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(HERE / "helper_plugins"))

from xraybench.training.backend import ensure_keras_backend, installed  # noqa: E402
from proctools import XB, spawn  # noqa: E402, F401 (spawn: a running xraybench process, to signal or watch)
from recordfactory import TRAINED_MARK, TrainedRuns, read_runs, train_runs  # noqa: E402

# The suite trains on TensorFlow where it is installed (".[test]" brings it), as the published rows
# did: named here, explicitly, since the default backend is JAX whatever is installed
# (training/backend.py). A KERAS_BACKEND the caller set still wins. Before a test module's
# importorskip("keras") lets Keras pick by itself.
CALLERS_BACKEND = os.environ.get("KERAS_BACKEND") or None  # test_backend checks the rule below
if installed("tensorflow"):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ensure_keras_backend()


# The suite's three layers, one folder each, each a marker (`pytest -m unit` runs the quick ones):
# unit: functions on tiny generated data (a few start an interpreter to check what it imports);
# cli: commands through the `xb` fixture; integration: child processes, clusters, installs, signals,
# the shared data. A test file outside the three folders is refused, so no test escapes every layer.
LAYERS = ("unit", "cli", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = item.path.parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: put the test file in tests/unit, tests/cli or tests/integration")
        item.add_marker(layer)


@pytest.fixture(autouse=True)
def _no_user_folders(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's cache, data, results or Keras folders; fixtures such as
    ``real_cache`` and ``xraybench_env`` still choose their own. No test inherits a terminal size
    either: output read in-process is a pipe's, at its natural width, whoever exported ``COLUMNS``
    (pytest-xdist sets 80 in its workers, a user's shell may set anything)."""
    _private_user_folders(monkeypatch, tmp_path_factory.mktemp("user"))
    for var in ("COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)


def _private_user_folders(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("KERAS_HOME", "keras")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("XRAYBENCH_CACHE", str(home / "xraybench-cache"))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(home / "xraybench-results"))


@pytest.fixture
def xb(capfd: pytest.CaptureFixture[str]) -> XB:
    """The one way a test runs ``xraybench``: ``xb(*args, env=...)`` in this process, ``xb.process(...)``
    where the process is what is tested (proctools.XB); both return ``Result(code, out, err)``. It
    captures at the file descriptors, so what the command's children print is in the result too
    (and a test that takes ``xb`` cannot take ``capsys``: read the result instead)."""
    return XB(capfd)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Iterator[TrainedRuns]:
    """(data folder, results folder, {model: run id}): ``recordfactory.TRAINED_MODELS`` trained once
    per session, their models kept (``recordfactory.train_runs``). Shared by every test that asks:
    read it only; a test that writes into the results folder takes ``trained_copy``. At the end of
    the session, a file written or changed in it fails the session's last test, naming the file."""
    root = _session_dir(tmp_path_factory, "trained")
    with _one_at_a_time(root), pytest.MonkeyPatch.context() as mp:  # before any test's own _no_user_folders
        _private_user_folders(mp, root / "user")
        # the other xdist worker trained them (its last step marks it): read, never trained twice
        runs = read_runs(root) if (root / TRAINED_MARK).is_file() else train_runs(root)
    before = _state(runs)
    yield runs
    after = _state(runs)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"a test wrote into the shared trained runs (take trained_copy instead): {changed[:5]}"


def _session_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder for this test session: shared by its pytest-xdist workers (their base folders' parent is
    the session's), so what one builds the other reuses; the session's own folder without xdist."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.mktemp(name)
    path = tmp_path_factory.getbasetemp().parent / name
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (a file beside it): one xdist worker builds, the other waits, then reuses."""
    with open(f"{folder}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _state(runs: TrainedRuns) -> dict[str, tuple[int, int]]:
    """Each file's (size, mtime) under the data and results folders, less the summary index (being written, too): a
    cache any reader of the results folder may rewrite (``ResultStore.summaries``)."""
    files = [p for folder in (runs.data, runs.results) for p in folder.rglob("*") if p.is_file()]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if ".index.json" not in p.name}


@pytest.fixture
def trained_copy(trained: TrainedRuns, tmp_path: Path) -> TrainedRuns:
    """``trained`` with a results folder of the test's own (``tmp_path / "results"``), for a test
    that writes into it (records, exports, explanations, a changed model file)."""
    # less the summary index and its temporary copies: a reader in the other xdist worker may be rewriting them
    # (a copy raced one's rename away mid-copy); the copy's store builds its own index
    skip = shutil.ignore_patterns("*.index.json", "*.index.json.*")
    return trained._replace(results=Path(shutil.copytree(trained.results, tmp_path / "results", ignore=skip)))


def real_data_path() -> Path | None:
    path = os.environ.get("XRAYBENCH_DATA")
    return Path(path) if path and (Path(path) / "train").is_dir() else None


@pytest.fixture
def real_data() -> Path:
    path = real_data_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must set XRAYBENCH_DATA to the shared chest X-ray data")
        pytest.skip("needs the shared chest X-ray data (Kermany 2018, Kaggle layout): set XRAYBENCH_DATA to it")
    return path


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_test_models")


@pytest.fixture(scope="session")
def _real_cache_dir(tmp_path_factory) -> Path:
    return _session_dir(tmp_path_factory, "real-cache")  # one decode for both xdist workers (the cache takes both at once)


@pytest.fixture
def real_cache(_real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """One decode cache shared by every real-data test of the session; results stay per test."""
    monkeypatch.setenv("XRAYBENCH_CACHE", str(_real_cache_dir))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    return _real_cache_dir
