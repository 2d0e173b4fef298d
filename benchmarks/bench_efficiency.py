"""CPU training efficiency of every Keras model in the registry (issue 16, item 4).

    python benchmarks/bench_efficiency.py                         # 64 and 150 px, real data
    python benchmarks/bench_efficiency.py --sizes 64 --images 256

For each model and image size: train through the harness (``xraybench.harness.fit``, the
model's default parameters, augmentation included, float32) for 2 epochs on the first N
training images of the real data (``$XRAYBENCH_DATA``), and take epoch 2's training time
(first batch to last, validation excluded: epoch 1 carries graph tracing). Images/s times
the model's training FLOPs per image (``flops.py``: conv + dense multiply-adds, 3x forward)
gives the arithmetic rate, quoted as a share of the float32 matrix-multiply rate measured
by TensorFlow in the same process (2048x2048, median of 10) just before and just after
that model's training: the mean of the two is its reference, so a machine that slows down
for a while slows both. On a shared VM, run it when quiet all the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _setup import head, timed_fit  # noqa: E402
from flops import training_flops  # noqa: E402


def matmul_gflops(repeats: int = 10) -> float:
    """TensorFlow's float32 matmul rate: this benchmark needs the ``tensorflow`` extra."""
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    tf.matmul(a, a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def keras_models(registry, names: list[str] | None) -> list:
    from xraybench.specs import KerasModel

    specs = [s for s in registry.models.values() if isinstance(s, KerasModel)]
    return [s for s in specs if names is None or s.name in names]


def measure(spec, data, n: int, size: int) -> dict:
    import keras

    train, val = head(data.splits.train, n), head(data.splits.val, 32)
    n = len(train)
    params = spec.all_defaults()
    params.update(epochs=2, patience=10)
    per_image = training_flops(spec.build((size, size, 1), dict(params)))
    keras.backend.clear_session()
    _, times = timed_fit(spec, train, val, params)
    seconds = times[-1]
    batches = -(-n // int(params.get("batch_size", 32)))
    return {"model": spec.name, "size": size, "images": n, "batches": batches, "epoch2_s": seconds,
            "images_per_s": n / seconds, "gflop_per_image": per_image / 1e9, "gflops": n / seconds * per_image / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 150])
    ap.add_argument("--images", type=int, default=None, help="training images per epoch (default 512 at <=64 px, 160 above)")
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from xraybench.data import load_dataset
    from xraybench.plugins import load_registry

    registry = load_registry()
    specs = keras_models(registry, args.models)
    before = matmul_gflops()
    print(f"float32 matmul before: {before:.1f} GFLOP/s; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for size in args.sizes:
        data = load_dataset(None, image_size=size)
        n = args.images or (512 if size <= 64 else 160)
        for spec in specs:
            mm_before = matmul_gflops()
            row = measure(spec, data, n, size)
            row["matmul_gflops"] = (mm_before + matmul_gflops()) / 2  # bracketing this model: drift cancels
            rows.append(row)
            print(json.dumps(row), flush=True)
    after = matmul_gflops()
    reference = (before + after) / 2
    print(f"float32 matmul after: {after:.1f} GFLOP/s; reference {reference:.1f}; load average {os.getloadavg()[0]:.1f}\n")
    print("| model | px | images/s | GFLOP per trained image | GFLOP/s | matmul GFLOP/s around it | share of matmul rate |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        r["share"] = r["gflops"] / r["matmul_gflops"]
        print(f"| {r['model']} | {r['size']} | {r['images_per_s']:.1f} | {r['gflop_per_image']:.3f} | "
              f"{r['gflops']:.1f} | {r['matmul_gflops']:.1f} | {100 * r['share']:.0f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_before": before, "matmul_after": after, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
