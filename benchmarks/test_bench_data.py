"""Cold decode (all 5,856 images) against a warm load from the cache, checksums verified. Target: warm <= cold / 50.

The warm load checks every cached byte against the CRC-32 checksums written with the entry
(xraybench/data/cache.py); ``verify_s`` is that check alone, so the report shows what the
integrity guarantee costs inside the warm figure.
"""

import time

import pytest
from conftest import report
from xraybench.data import cache, load_dataset


@pytest.mark.parametrize("size", [64, 128])
def test_data_cold_vs_warm(benchmark, real_data, bench_cache, size):
    colds = []
    for _ in range(2):
        cache.clear()
        start = time.perf_counter()
        cold = load_dataset(real_data, image_size=size)
        colds.append(time.perf_counter() - start)
        assert not cold.cache_hit
    warm = benchmark.pedantic(lambda: load_dataset(real_data, image_size=size), rounds=10, iterations=1, warmup_rounds=1)
    assert warm.cache_hit and len(warm.splits.test) == 624
    files = [p for p in warm.cache_path.iterdir() if p.name not in (cache.MARKER, cache.MANIFEST)]
    verifies = []
    for _ in range(5):
        start = time.perf_counter()
        cache.checksums(files)
        verifies.append(time.perf_counter() - start)
    cold_s = min(colds)
    warm_s = benchmark.stats.stats.mean
    report(benchmark, size=size, cold_s=cold_s, warm_s=warm_s, verify_s=min(verifies),
           cached_mb=sum(p.stat().st_size for p in files) / 1e6, ratio_cold_over_warm=cold_s / warm_s, target=">= 50")
