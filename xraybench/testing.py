"""Testing helpers for xraybench and for plugin authors, exposed to pytest via a ``pytest11`` entry point.

- ``make_kaggle_tree(root, ...)``: a tiny generated data set in the real Kaggle layout,
  with patient-style file names and a learnable signal (PNEUMONIA images carry a
  bright diffuse patch), so a model can beat chance in one short epoch.
- fixtures ``xray_data`` (that tree) and ``xraybench_env`` (cache and results in a
  temporary folder, so tests never touch the user's).
- ``registered_plugin(obj)``: registers a plugin module or object for the duration
  of a ``with`` block, as if it were installed.
- ``check_model(spec)``: the plugin contract that ``xraybench check`` runs.

This module is imported by pytest at start-up in any environment where xraybench
is installed, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

LABEL_NAMES = ("NORMAL", "PNEUMONIA")


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
            folder = root / split / LABEL_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                patient = i // images_per_patient
                name = (
                    f"IM-{patient:04d}-{i:04d}.jpeg" if label == 0
                    else f"person{patient}_{'bacteria' if i % 2 else 'virus'}_{i}.jpeg"
                )
                Image.fromarray(synthetic_image(rng, label, size)).convert(mode).save(folder / name, quality=92)
    return root


@pytest.fixture
def xraybench_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and results in a temporary folder; returns that folder."""
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture
def xray_data(tmp_path: Path, xraybench_env: Path) -> Path:
    """A tiny generated data set in the Kaggle layout."""
    return make_kaggle_tree(tmp_path / "chest_xray")


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None) -> Iterator[None]:
    """Register a plugin module or object (with hookimpl functions) for the block's duration.

    In-process only; to reach child processes too, put an importable module path
    in ``$XRAYBENCH_PLUGINS``.
    """
    from xraybench import plugins

    entry = (name or getattr(plugin, "__name__", type(plugin).__name__), plugin)
    plugins._extra_objects.append(entry)
    try:
        yield
    finally:
        plugins._extra_objects.remove(entry)


def check_model(spec: Any, size: int = 32, seed: int = 0) -> list[tuple[str, bool, str]]:
    """Run the plugin contract on tiny generated data; returns (check, passed, detail) rows."""
    from xraybench.contract import run_contract

    return run_contract(spec, size=size, seed=seed)
