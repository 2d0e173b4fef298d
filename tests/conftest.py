import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helper plugins must be importable here and in child processes the harness spawns.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "helper_plugins"), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(HERE / "helper_plugins"))

from xraybench.training.backend import ensure_keras_backend, installed  # noqa: E402
from proctools import spawn  # noqa: E402, F401 (the fixture of every test that starts xraybench processes)

# The suite trains on TensorFlow where it is installed (".[test]" brings it), as the published rows
# did: named here, explicitly, since the default backend is JAX whatever is installed
# (training/backend.py). A KERAS_BACKEND the caller set still wins. Before a test module's
# importorskip("keras") lets Keras pick by itself.
CALLERS_BACKEND = os.environ.get("KERAS_BACKEND") or None  # test_backend checks the rule below
if installed("tensorflow"):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ensure_keras_backend()


@pytest.fixture(autouse=True)
def _no_user_folders(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's cache, data, results or Keras folders; fixtures such as
    ``real_cache`` and ``xraybench_env`` still choose their own."""
    home = tmp_path_factory.mktemp("user")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("KERAS_HOME", "keras")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("XRAYBENCH_CACHE", str(home / "xraybench-cache"))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(home / "xraybench-results"))


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
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture
def real_cache(_real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """One decode cache shared by every real-data test of the session; results stay per test."""
    monkeypatch.setenv("XRAYBENCH_CACHE", str(_real_cache_dir))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    return _real_cache_dir
