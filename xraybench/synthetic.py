"""A tiny generated data set in the real Kaggle layout, for the plugin contract and tests.

Its own module, free of pytest, because ``xraybench check`` (``plugin_checks.py``) needs it on
a plain ``pip install .`` where pytest is absent; ``xraybench.testing`` re-exports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xraybench.records import LABELS


def synthetic_image(rng: np.random.Generator, label: int, size: int = 48) -> np.ndarray:
    """A grayscale 'chest' of smooth noise; PNEUMONIA adds a bright blurred patch in a lung field."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 90 + 40 * np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.5) / 0.45) ** 2))
    img = base + rng.normal(0, 12, (size, size))
    if label == 1:
        cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.7)
        img += 70 * np.exp(-(((xx - cx) / 0.15) ** 2 + ((yy - cy) / 0.15) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_kaggle_tree(
    root: str | os.PathLike,
    n_train: tuple[int, int] = (24, 36),
    n_test: tuple[int, int] = (10, 14),
    size: int = 48,
    seed: int = 0,
    images_per_patient: int = 2,
    mode: str = "L",
) -> Path:
    """Write ROOT/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg and return ROOT."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, counts in (("train", n_train), ("test", n_test)):
        for label, count in enumerate(counts):
            folder = root / split / LABELS[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                patient = i // images_per_patient
                name = (
                    f"IM-{patient:04d}-{i:04d}.jpeg" if label == 0
                    else f"person{patient}_{'bacteria' if i % 2 else 'virus'}_{i}.jpeg"
                )
                Image.fromarray(synthetic_image(rng, label, size)).convert(mode).save(folder / name, quality=92)
    return root
