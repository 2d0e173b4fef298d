"""The GPU benchmark of issue 16, item 1: `baseline_cnn` at 150 px on the full data, to early stopping.

    python benchmarks/gpu_baseline.py                    # every installed backend x two configurations
    python benchmarks/gpu_baseline.py --configs tensorflow:float32:32

Installs nothing. Each configuration BACKEND:PRECISION:BATCH runs in its own child process
(Keras fixes its backend at import) through the harness, exactly as ``xraybench run`` trains:
the cached uint8 arrays, the harness's input pipeline (tf.data over indices with
prefetching under TensorFlow, ``keras.utils.PyDataset`` otherwise), augmentation on the device
(Keras' layers under TensorFlow, one fused warp under JAX and PyTorch: xraybench/training/augment.py),
compiled steps, early stopping on validation loss. ``--no-augment`` times the network alone.
Each configuration gets ``--timeout`` seconds, so one slow configuration cannot take a short
GPU lease (on an H200, Keras' augmentation layers under JAX took 43 s for one epoch). Printed per
configuration: training images/s over the epochs after the first (tracing excluded) and over
the whole fit, epochs run, wall time of the whole child (start, data from cache, training,
test predictions), and test accuracy. Targets: >= 5,000 images/s and < 60 s wall.
Data: ``--data`` or ``$XRAYBENCH_DATA``; the first configuration fills the cache.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _setup, however the script is started


def child(backend: str, precision: str, batch: int, data: str | None, seed: int, size: int, epochs: int | None,
          augment: bool = True) -> None:
    os.environ["KERAS_BACKEND"] = backend
    start = time.perf_counter()
    import numpy as np

    from _setup import model_params, timed_fit
    from xraybench.data import load_dataset

    d = load_dataset(data, image_size=size)
    spec, params = model_params(batch_size=batch, augment=augment, **({"epochs": epochs} if epochs else {}))
    fitted, epoch_times = timed_fit(spec, d.splits.train, d.splits.val, params, seed=seed, precision=precision)
    scores = fitted.predict(d.splits.test.images)
    accuracy = float(np.mean((np.asarray(scores).reshape(-1) >= 0.5) == d.splits.test.labels))
    n = len(d.splits.train)
    later = epoch_times[1:] or epoch_times
    print(json.dumps({
        "backend": backend, "precision": fitted.precision, "batch": batch, "augment": augment, "epochs": len(epoch_times),
        "img_s_after_epoch1": n * len(later) / sum(later), "img_s_fit": fitted.info.get("train_images_per_second"),
        "train_s": fitted.info.get("train_seconds"), "wall_s": time.perf_counter() - start,
        "test_accuracy": accuracy, "devices": [str(x) for x in _devices(backend)],
    }))


def _devices(backend: str) -> list:
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=None, help="BACKEND:PRECISION:BATCH ...")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=150, help="150 for the figure; small only to smoke-test the script")
    ap.add_argument("--epochs", type=int, default=None, help="default: the model's (early stopping decides)")
    ap.add_argument("--no-augment", action="store_true", help="train without augmentation (the network's own rate)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per configuration (default 300)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        backend, precision, batch = args.one.split(":")
        child(backend, precision, int(batch), args.data, args.seed, args.image_size, args.epochs, not args.no_augment)
        return
    backends = [b for b in ("jax", "tensorflow", "torch") if importlib.util.find_spec(b)]  # fastest first (H200)
    configs = args.configs or [f"{b}:{p}:{n}" for b in backends for p, n in (("mixed_bfloat16", 256), ("float32", 32))]
    rows = []
    for config in configs:
        cmd = [sys.executable, __file__, "--one", config, "--seed", str(args.seed), "--image-size", str(args.image_size)]
        cmd += (["--data", args.data] if args.data else []) + (["--epochs", str(args.epochs)] if args.epochs else [])
        cmd += ["--no-augment"] if args.no_augment else []
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{config}: timed out after {args.timeout:.0f} s", flush=True)
            continue
        if out.returncode:
            print(f"{config}: failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| backend | precision | batch | augment | epochs | images/s (after epoch 1) | images/s (whole fit) | wall s | "
          "test accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['precision']} | {r['batch']} | {'on' if r['augment'] else 'off'} | {r['epochs']} | "
              f"{r['img_s_after_epoch1']:.0f} | {r['img_s_fit'] or 0:.0f} | {r['wall_s']:.1f} | {r['test_accuracy']:.3f} |")


if __name__ == "__main__":
    main()
