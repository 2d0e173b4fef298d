"""Benchmarks on the real data: run with `python -m pytest benchmarks` (see docs/performance.md)."""

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "training: trains Keras models (minutes on a 2-core CPU)")


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = os.environ.get("XRAYBENCH_DATA")
    if not path or not (Path(path) / "train").is_dir():
        pytest.skip("set XRAYBENCH_DATA to the chest X-ray data")
    return Path(path)


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench-cache")
    os.environ["XRAYBENCH_CACHE"] = str(path)
    return path


def report(benchmark, **figures) -> None:
    """Attach figures to the JSON report and print them, so every run shows its ratios."""
    benchmark.extra_info.update(figures)
    print("\n  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
