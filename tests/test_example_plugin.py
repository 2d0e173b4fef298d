"""The example third-party plugin under docs/examples, pip-installed by .ci/run."""

import json
import os
import subprocess
import sys

import pytest


def _installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("xraybench-example-plugin")
        return True
    except PackageNotFoundError:
        return False


@pytest.fixture
def example_installed():
    if not _installed():
        if os.environ.get("CI"):
            pytest.fail(".ci/run must pip-install docs/examples/xraybench-example-plugin")
        pytest.skip("pip install ./docs/examples/xraybench-example-plugin to run this test")


def test_models_lists_the_third_party_plugin(example_installed):
    out = subprocess.run([sys.executable, "-m", "xraybench", "models"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0
    assert "example_tiny_cnn" in out.stdout and "xraybench-example-plugin" in out.stdout


def test_third_party_plugin_runs_end_to_end_on_real_data(example_installed, real_data, real_cache):
    out = subprocess.run(
        [sys.executable, "-m", "xraybench", "run", "--model", "example_tiny_cnn", "--model", "example_centroid",
         "--data", str(real_data), "--image-size", "32", "--epochs", "1"],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    board = subprocess.run([sys.executable, "-m", "xraybench", "leaderboard", "--format", "json"],
                           capture_output=True, text=True)
    rows = {r["model"]: r for r in json.loads(board.stdout)["rows"]}
    assert rows["example_tiny_cnn"]["distribution"] == "xraybench-example-plugin 0.1.0"
    assert rows["example_centroid"]["accuracy"] > 0.5
