"""How cost grows with the data set: generated 128-px images at 5k, 20k and 50k (issue 16, item 3).

    python benchmarks/bench_scale.py                       # 5000 20000 50000
    python benchmarks/bench_scale.py --sizes 5000 20000    # fewer points
    python benchmarks/bench_scale.py --old-pipeline        # also the former whole-array tf.data input
    python benchmarks/bench_scale.py --decode-only --rounds 5 --sizes 5000 20000 50000 --real ../shared/datasets/chest_xray

For each size N it writes N small grayscale JPEGs in the Kaggle layout into a temporary
folder (generated in parallel, 90% train / 10% test, half PNEUMONIA), then measures:

* cold decode with 1 and with 2 worker processes (``xraybench.data.parallel.decode_files``
  over every file: decode + resize + sha256), ``--rounds`` times, alternating which goes first,
  reported as medians, the speed-up as the median of the per-round ratios (with ``--real``, the
  same for a real data set's files), and the whole cold ``load_dataset`` (decode
  with every core, fingerprint, write the cache);
* warm load: ``load_dataset`` from the cache (median of 5 after the first warm load, which
  writes the carved train/validation split once, and checksums the files written in the
  second before it: ``xraybench.data.cache.RACY_NS``; the median is taken after a 1.1 s
  pause); a warm load stats the source's folders and the cache files, not each image
  (``xraybench/data/cache.py``);
* cache bytes on disk;
* peak memory of a short training in a child process: warm load, then 300 steps of batch 32
  through the harness's input pipeline (``make_dataset``, shuffled over the whole train
  split) into a small CNN. Sampled from /proc/self/status every 20 ms: VmRSS (all resident
  pages, including the cache file's pages the kernel keeps mapped: reclaimable page cache)
  and RssAnon (the process's own memory, which is what must not grow with N), and the
  kernel's high-water mark VmHWM. (Not ``ru_maxrss``: Linux carries the parent's high-water
  mark across fork + exec into the child's, so it reports this script's own footprint.)

Everything generated is deleted at the end (``--keep`` keeps it). Needs ~0.3 GB of JPEGs and
~1.6 GB of cache per 50k images in the temporary folder (``--tmp``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SIZE = 128


def _write_chunk(args) -> int:
    root, start, stop, n_train, seed = args
    from PIL import Image

    rng = np.random.default_rng(seed + start)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = 90 + 40 * np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.45) ** 2))
    for i in range(start, stop):
        label = i % 2
        img = base + rng.normal(0, 12, (SIZE, SIZE))
        if label:
            cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.7)
            img = img + 70 * np.exp(-(((xx - cx) / 0.15) ** 2 + ((yy - cy) / 0.15) ** 2))
        split = "train" if i < n_train else "test"
        name = f"person{i}_bacteria_{i}.jpeg" if label else f"IM-{i:06d}-0001.jpeg"
        folder = Path(root) / split / ("PNEUMONIA" if label else "NORMAL")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
    return stop - start


def generate(root: Path, n: int, seed: int = 0) -> float:
    start = time.perf_counter()
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
    n_train = int(n * 0.9)
    chunks = [(str(root), s, min(n, s + 500), n_train, seed) for s in range(0, n, 500)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        assert sum(pool.map(_write_chunk, chunks)) == n
    return time.perf_counter() - start


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


CHILD = r"""
import json, os, resource, sys, threading, time
import numpy as np
peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
def sample():
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in peak:
                peak[key] = max(peak[key], int(line.split()[1]) * 1024)
stop = False
def loop():
    while not stop:
        sample(); time.sleep(0.02)
threading.Thread(target=loop, daemon=True).start()
from xraybench.data import load_dataset
d = load_dataset(sys.argv[1], image_size=int(sys.argv[2]))
after_load = dict(peak); sample(); after_load = {k: v for k, v in peak.items()}
import keras
from xraybench.training.batches import make_dataset
keras.utils.set_random_seed(0)
train = d.splits.train
if os.environ.get("BENCH_OLD_PIPELINE"):
    import tensorflow as tf
    x = np.ascontiguousarray(train.images)
    ds = (tf.data.Dataset.from_tensor_slices((x, train.labels.astype("float32"))).shuffle(len(x), seed=0)
          .batch(32).map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b)).prefetch(tf.data.AUTOTUNE)).repeat()
else:
    ds = make_dataset(train.images, train.labels, 32, shuffle=True, seed=0).repeat()
model = keras.Sequential([keras.Input(train.images.shape[1:]), keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")])
model.compile("adam", "binary_crossentropy")
start = time.perf_counter()
model.fit(ds, steps_per_epoch=int(sys.argv[3]), epochs=1, verbose=0)
seconds = time.perf_counter() - start
stop = True; sample()
print(json.dumps({"peak": peak, "after_load": after_load, "train_images": len(train), "fit_seconds": seconds,
                  "hwm": peak["VmHWM"]}))
"""


def train_memory(data: Path, cache: Path, steps: int, old: bool = False) -> dict:
    env = {**os.environ, "XRAYBENCH_CACHE": str(cache)}
    if old:
        env["BENCH_OLD_PIPELINE"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(SIZE), str(steps)], env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_rounds(files: list[str], size: int, rounds: int) -> dict:
    """1- and 2-worker cold decodes of ``files``, alternating which goes first each round (the
    VM's slow phases hit both alike): medians, and the median of the per-round ratios."""
    from xraybench.data.parallel import decode_files

    times: dict[int, list[float]] = {1: [], 2: []}
    ratios = []
    for i in range(rounds):
        for workers in ((1, 2) if i % 2 == 0 else (2, 1)):
            start = time.perf_counter()
            decoded = decode_files(files, size, 1, workers=workers)
            times[workers].append(time.perf_counter() - start)
            assert len(decoded) == len(files)
            del decoded
        ratios.append(times[1][-1] / times[2][-1])
    return {"decode_1w_s": statistics.median(times[1]), "decode_2w_s": statistics.median(times[2]),
            "decode_speedup_2w": statistics.median(ratios), "decode_speedup_range": [min(ratios), max(ratios)],
            "decode_rounds": rounds}


def measure(n: int, tmp: Path, steps: int, old: bool, rounds: int = 1, decode_only: bool = False) -> dict:
    from xraybench.data import load_dataset
    from xraybench.data.readers import _kaggle_files

    data, cache = tmp / f"data{n}", tmp / f"cache{n}"
    row: dict = {"images": n, "generate_s": generate(data, n)}
    row.update(decode_rounds(_kaggle_files(data), SIZE, rounds))
    if decode_only:
        return row
    os.environ["XRAYBENCH_CACHE"] = str(cache)
    start = time.perf_counter()
    cold = load_dataset(data, image_size=SIZE)
    row["cold_load_s"] = time.perf_counter() - start
    assert not cold.cache_hit
    del cold
    start = time.perf_counter()
    load_dataset(data, image_size=SIZE)
    row["first_warm_s"] = time.perf_counter() - start  # writes the carved split once
    time.sleep(1.1)  # past xraybench.data.cache.RACY_NS: a load within a second of a write checksums what it wrote
    warms = []
    for _ in range(5):
        start = time.perf_counter()
        warm = load_dataset(data, image_size=SIZE)
        warms.append(time.perf_counter() - start)
        assert warm.cache_hit
    row["warm_s"] = statistics.median(warms)
    row["cache_bytes"] = du(cache)
    mem = train_memory(data, cache, steps)
    row.update(peak_rss=mem["peak"]["VmRSS"], peak_anon=mem["peak"]["RssAnon"], hwm=mem["hwm"],
               load_anon=mem["after_load"]["RssAnon"], fit_s=mem["fit_seconds"])
    if old:
        mem = train_memory(data, cache, steps, old=True)
        row.update(old_peak_rss=mem["peak"]["VmRSS"], old_peak_anon=mem["peak"]["RssAnon"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    ap.add_argument("--steps", type=int, default=300, help="training steps (batch 32) for the memory figure")
    ap.add_argument("--tmp", default=None, help="folder for the generated data and cache (default: system temp)")
    ap.add_argument("--old-pipeline", action="store_true", help="also measure the former whole-array tf.data input")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternating 1-/2-worker decode rounds; the speed-up is the median of their pair ratios")
    ap.add_argument("--decode-only", action="store_true", help="measure the decode speed-up only")
    ap.add_argument("--real", metavar="PATH", help="with --decode-only: also a Kaggle-layout data set's own files")
    ap.add_argument("--real-size", type=int, default=64, help="the size those are decoded to (default 64)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be 1 or more, got {args.rounds}")
    load_at_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="xraybench-scale-", dir=args.tmp))
    rows = []
    try:
        if args.real:
            from xraybench.data.readers import _kaggle_files

            files = _kaggle_files(Path(args.real))
            rows.append({"images": len(files), "real": f"{args.real} at {args.real_size} px",
                         **decode_rounds(files, args.real_size, args.rounds)})
            print(json.dumps(rows[-1]), flush=True)
        for n in args.sizes:
            rows.append(measure(n, tmp, args.steps, args.old_pipeline, args.rounds, args.decode_only))
            print(json.dumps(rows[-1]), flush=True)
            if not args.keep:
                shutil.rmtree(tmp / f"data{n}", ignore_errors=True)
                shutil.rmtree(tmp / f"cache{n}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    mb = 1 / 2**20
    if args.decode_only:
        print(f"\nload average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs")
        print("| images | rounds | decode 1 worker s (median) | decode 2 workers s (median) | "
              "2w speed-up (median of pair ratios) | range |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            lo, hi = r["decode_speedup_range"]
            print(f"| {r['images']:,}{' (' + r['real'] + ')' if 'real' in r else ' generated'} | {r['decode_rounds']} | "
                  f"{r['decode_1w_s']:.2f} | {r['decode_2w_s']:.2f} | {r['decode_speedup_2w']:.2f}x | {lo:.2f}-{hi:.2f}x |")
        return
    print(f"\nload average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs, "
          f"{args.steps} training steps of 32")
    head = ("| images | decode 1 worker s | decode 2 workers s | 2w speed-up | s per 1k (2w) | cold load s | warm load s | "
            "cache MiB | peak RSS MiB | peak anon MiB |")
    if args.old_pipeline:
        head += " old pipeline peak RSS / anon MiB |"
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for r in rows:
        line = (f"| {r['images']:,} | {r['decode_1w_s']:.1f} | {r['decode_2w_s']:.1f} | {r['decode_speedup_2w']:.2f}x | "
                f"{1000 * r['decode_2w_s'] / r['images']:.2f} | {r['cold_load_s']:.1f} | {r['warm_s']:.3f} | "
                f"{r['cache_bytes'] * mb:.0f} | {r['peak_rss'] * mb:.0f} | {r['peak_anon'] * mb:.0f} |")
        if args.old_pipeline:
            line += f" {r['old_peak_rss'] * mb:.0f} / {r['old_peak_anon'] * mb:.0f} |"
        print(line)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        scale = b["images"] / a["images"]
        print(f"\n{b['images']:,} / {a['images']:,} images = {scale:.1f}x: "
              f"decode time {b['decode_2w_s'] / a['decode_2w_s']:.2f}x, "
              f"warm load {b['warm_s'] / a['warm_s']:.2f}x, peak anon memory {b['peak_anon'] / a['peak_anon']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
