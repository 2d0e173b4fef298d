"""Per split and class: mean, spread and tails of pixel intensity (0-255), from xraybench's cache.

Asks whether the shift between validation and test (validation accuracy ~0.95, test ~0.80,
NORMAL test images called PNEUMONIA) is a plain exposure or contrast difference. Run:

    XRAYBENCH_DATA=../shared/datasets/chest_xray python docs/examples/intensity_by_split.py [SIZE]
"""

import os
import sys

import numpy as np

from xraybench.data import load_dataset

size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
data = load_dataset(os.environ["XRAYBENCH_DATA"], image_size=size, seed=42)
print(f"{size}px, per image then averaged over the images of each split and class")
for split in ("train", "val", "test"):
    part = getattr(data.splits, split)
    pixels = np.asarray(part.images, dtype=np.float32).reshape(len(part.labels), -1)
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        x = pixels[part.labels == label]
        mean, std = x.mean(1), x.std(1)
        print(f"{split:5s} {name:9s} n={len(x):4d}  mean {mean.mean():5.1f} (sd {mean.std():4.1f})  "
              f"contrast {std.mean():4.1f} (sd {std.std():4.1f})  p5 {np.percentile(x, 5, axis=1).mean():5.1f}  "
              f"p95 {np.percentile(x, 95, axis=1).mean():5.1f}")
