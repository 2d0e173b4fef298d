"""Cold decode (all 5,840 images) against a warm load from the cache. Target: warm <= cold / 50.

A warm load checks the source's folders and each cache file's identity (size, mtime, ctime,
inode: xraybench/data/cache.py); it checksums only files whose identity changed. ``verify_s``
is the CRC-32 of every cached array alone and ``rescan_s`` a whole ``rescan=True`` load (every
source file listed and stat()ed, every cached byte checksummed): what the full checks cost.
"""

import statistics
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
    # A load in the first second after the entry was written checksums it (its files' identities were taken in
    # the same second as their writes: xraybench.data.cache.RACY_NS); that cost is verify_s. Later loads do not.
    load_dataset(real_data, image_size=size)
    time.sleep(1.1)
    warm = benchmark.pedantic(lambda: load_dataset(real_data, image_size=size), rounds=10, iterations=1, warmup_rounds=1)
    assert warm.cache_hit and len(warm.splits.test) == 624
    files = [p for p in warm.cache_path.iterdir() if p.name not in (cache.MARKER, cache.MANIFEST)]
    verifies = []
    for _ in range(5):
        start = time.perf_counter()
        cache.checksums(files)
        verifies.append(time.perf_counter() - start)
    rescans = []
    for _ in range(3):
        start = time.perf_counter()
        assert load_dataset(real_data, image_size=size, rescan=True).cache_hit
        rescans.append(time.perf_counter() - start)
    cold_s = min(colds)
    warm_s = benchmark.stats.stats.median
    report(benchmark, size=size, cold_s=cold_s, warm_s=warm_s, warm_mean_s=benchmark.stats.stats.mean,
           verify_s=min(verifies), rescan_s=statistics.median(rescans),
           cached_mb=sum(p.stat().st_size for p in files) / 1e6, ratio_cold_over_warm=cold_s / warm_s, target=">= 50")
