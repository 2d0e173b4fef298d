"""Cold decode (all 5,840 images at 128 px) against a warm load from the cache. Target: warm <= cold / 50."""

import time

from conftest import report
from xraybench.data import cache, load_dataset


def test_data_cold_vs_warm(benchmark, real_data, bench_cache):
    colds = []
    for _ in range(2):
        cache.clear()
        start = time.perf_counter()
        cold = load_dataset(real_data, image_size=128)
        colds.append(time.perf_counter() - start)
        assert not cold.cache_hit
    warm = benchmark.pedantic(lambda: load_dataset(real_data, image_size=128), rounds=10, iterations=1, warmup_rounds=1)
    assert warm.cache_hit and len(warm.splits.test) == 624
    cold_s = min(colds)
    warm_s = benchmark.stats.stats.mean
    report(benchmark, cold_s=cold_s, warm_s=warm_s, ratio_cold_over_warm=cold_s / warm_s, target=">= 50")
