"""Metrics and the bootstrap on 624 scores; leaderboard rendering of 1,000 runs. Target: bootstrap < 0.2 s."""

import io
import sys
from pathlib import Path

import numpy as np

from conftest import report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _scores(n=624, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.625).astype(int)
    return y, np.clip(y * 0.4 + rng.random(n) * 0.7, 0, 1)


def test_bootstrap_1000x624_all_metrics(benchmark):
    from xraybench.stats import bootstrap_intervals

    y, s = _scores()
    result = benchmark(bootstrap_intervals, y, s, 0.5, 1000, 0)
    assert result["roc_auc"]["low"] < result["roc_auc"]["high"]
    report(benchmark, seconds=benchmark.stats.stats.mean, target="< 0.2 s")


def test_metrics_on_624_scores(benchmark):
    from xraybench.metrics import evaluate

    y, s = _scores()
    benchmark(evaluate, y, s, 0.5)
    report(benchmark, seconds=benchmark.stats.stats.mean)


def test_leaderboard_1000_runs(benchmark):
    from recordfactory import make_record
    from rich.console import Console

    from xraybench import leaderboard as lb

    records = [make_record(model=f"model_{i % 25}", seed=i)[0] for i in range(1000)]

    def render():
        rows = lb.build_rows(records)
        lb.render_table(rows, lb.published_rows(), "bench", console=Console(file=io.StringIO(), width=250))
        return rows

    rows = benchmark(render)
    assert len(rows) == 25
    report(benchmark, seconds=benchmark.stats.stats.mean)
