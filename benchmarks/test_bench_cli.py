"""CLI start-up against a bare `python -c "import rich"`. Target: under 0.5 s, no keras import."""

import os
import subprocess
import sys

import pytest

from conftest import report


@pytest.fixture(scope="module")
def thousand_runs(tmp_path_factory):
    import sys as _sys

    _sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "tests"))
    from recordfactory import make_record
    from xraybench.results import ResultStore

    root = tmp_path_factory.mktemp("runs")
    store = ResultStore(root)
    for i in range(1000):
        record, scores = make_record(model=f"model_{i % 25}", seed=i, n=624)
        store.save(record, scores)
    return root


def _time(benchmark, args, env):
    def call():
        subprocess.run(args, check=True, capture_output=True, env={**os.environ, **env})

    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
    return benchmark.stats.stats.mean


BARE = {}


def test_startup_bare_python_rich(benchmark):
    BARE["s"] = _time(benchmark, [sys.executable, "-c", "import rich"], {})
    report(benchmark, seconds=BARE["s"])


@pytest.mark.parametrize("command", [["--help"], ["models"], ["leaderboard"]], ids=["help", "models", "leaderboard"])
def test_startup(benchmark, command, thousand_runs):
    env = {"XRAYBENCH_RESULTS": str(thousand_runs), "COLUMNS": "200"}
    seconds = _time(benchmark, [sys.executable, "-m", "xraybench", *command], env)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "xraybench", *command], capture_output=True,
                         text=True, env={**os.environ, **env})
    heavy = sorted({line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()
                    if line.startswith("import time:")} & {"keras", "tensorflow", "torch", "jax"})
    report(benchmark, seconds=seconds, over_bare_rich=seconds / BARE.get("s", float("nan")),
           target="< 0.5 s", backend_imports=",".join(heavy) or "none")
    assert not heavy
