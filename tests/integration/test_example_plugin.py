"""The example third-party plugin under docs/examples, pip-installed by .ci/run."""

import json
import os

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


def test_models_lists_the_third_party_plugin(example_installed, xb):
    out = xb("models")
    assert out.code == 0
    assert "example_tiny_cnn" in out.out and "xraybench-example-plugin" in out.out


def test_third_party_plugin_runs_end_to_end_on_real_data(example_installed, real_data, real_cache, xb):
    out = xb("run", "--model", "example_tiny_cnn", "--model", "example_centroid", "--data", str(real_data),
             "--image-size", "32", "--epochs", "1")
    assert out.code == 0, out.out[-3000:] + out.err[-3000:]
    rows = {r["model"]: r for r in json.loads(xb("leaderboard", "--format", "json").out)["rows"]}
    assert rows["example_tiny_cnn"]["distribution"] == "xraybench-example-plugin 0.1.0"
    assert rows["example_centroid"]["accuracy"] > 0.5
