"""From a path to ready splits: locate, pick a reader, decode once (cache), fingerprint, split."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xraybench.data import cache
from xraybench.data.splits import DEFAULT_VAL_FRACTION, carve_validation
from xraybench.errors import DataError
from xraybench.records import DEFAULT_IMAGE_SIZE, DEFAULT_SEED
from xraybench.specs import ImageSet

DATA_ENV = "XRAYBENCH_DATA"


def default_data_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("xraybench")) / "chest_xray"


def locate_data(explicit: str | os.PathLike | None = None) -> Path:
    """``--data PATH``, else ``$XRAYBENCH_DATA``, else the default folder, else the built-in
    28 px copy; a one-line error if none."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist; check --data")
        return path
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise DataError(f"{DATA_ENV}={path} does not exist; fix the variable or pass --data PATH")
        return path
    path = default_data_path()
    if path.exists():
        return path
    from xraybench.data import builtin

    if builtin.available():  # a fresh install with no download still runs on the real images, at 28 px
        return builtin.NPZ
    raise DataError(
        f"no data found: no --data given, {DATA_ENV} unset, {path} missing; download Kaggle's "
        f"'Chest X-Ray Images (Pneumonia)' and pass --data PATH, or run `xraybench data download pneumoniamnist`"
    )


@dataclass
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: getattr(self, name).class_counts() for name in ("train", "val", "test")}


@dataclass
class Dataset:
    """Everything a run needs to know about its data, and the splits themselves."""

    source: Path
    reader: str
    image_size: int
    channels: int
    seed: int
    val_fraction: float
    fingerprint: str
    splits: Splits
    stats: dict[str, Any] = field(default_factory=dict)
    cache_path: Path | None = None
    cache_hit: bool = False
    load_seconds: float = 0.0
    val_strategy: str = "patient-grouped, stratified, carved from train"

    def describe(self) -> dict[str, Any]:
        """The part of a run record that identifies the data."""
        return {
            "source": str(self.source),
            "reader": self.reader,
            **({"dataset": self.stats["dataset"]} if "dataset" in self.stats else {}),
            "fingerprint": self.fingerprint,
            "image_size": self.image_size,
            "channels": self.channels,
            "split_seed": self.seed,
            "val_fraction": self.val_fraction,
            "val_strategy": self.val_strategy,
            "split_counts": self.splits.counts(),
            "skipped_bad": self.stats.get("skipped_bad_count", 0),
        }


def pick_reader(path: Path, registry=None, name: str | None = None):
    if registry is None:
        from xraybench.plugins import load_registry

        registry = load_registry()
    if name:
        if name not in registry.datasets:
            raise DataError(f"unknown data set reader {name!r}; known: {', '.join(sorted(registry.datasets))}")
        return registry.datasets[name]
    for spec in registry.datasets.values():
        try:
            if spec.detect(path):
                return spec
        except Exception:
            continue
    raise DataError(
        f"no reader recognises {path}: expected a folder in the Kaggle layout "
        f"ROOT/{{train,test}}/{{NORMAL,PNEUMONIA}} or a MedMNIST .npz"
    )


def load_raw(
    path: Path,
    image_size: int,
    channels: int,
    skip_bad: bool = False,
    registry=None,
    reader: str | None = None,
) -> tuple[dict[str, ImageSet], dict[str, Any], Path, bool]:
    """Decoded sets + meta, from the cache when it is fresh. Returns (sets, meta, entry, hit)."""
    if image_size < 8 or image_size > 1024:
        raise DataError(f"--image-size {image_size} is out of range; use 8 to 1024 pixels")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    spec = pick_reader(path, registry, reader)
    files = spec.files(path)
    key = cache.source_key(spec.name, spec.version, path, files, size=image_size, channels=channels, skip_bad=skip_bad)
    hit = cache.read_entry(key)
    if hit is not None:
        sets, meta = hit
        return sets, meta, cache.entry_path(key), True
    raw = spec.read(path, image_size, channels, skip_bad)
    sets = {"train": raw.train, "test": raw.test}
    if raw.val is not None:
        sets["val"] = raw.val
    counts = {k: v.class_counts() for k, v in sets.items()}
    meta = {
        "reader": spec.name,
        "fingerprint": cache.content_fingerprint(path, files, counts),
        "stats": raw.stats,
        "source": str(path),
    }
    entry = cache.write_entry(key, sets, meta)
    return sets, meta, entry, False


def _cached_split(entry: Path, train: ImageSet, fraction: float, seed: int, root: Path) -> tuple[ImageSet, ImageSet]:
    """Carve (train, val) once per (seed, fraction) and keep the val indices beside the cache entry."""
    import numpy as np

    marker = entry / f"val-index-seed{seed}-frac{fraction:.4f}.npy"
    val_index = None
    if marker.is_file():
        try:
            val_index = np.load(marker)
        except (OSError, ValueError):
            val_index = None
    if val_index is None:
        try:
            _, val = carve_validation(train, fraction, seed)
        except ValueError as exc:
            raise DataError(f"{root}: {exc}") from None
        position = {image_id: i for i, image_id in enumerate(train.ids)}
        val_index = np.asarray([position[i] for i in val.ids], dtype=np.int64)
        tmp = marker.with_suffix(f".{os.getpid()}.tmp.npy")
        try:
            np.save(tmp, val_index)
            os.replace(tmp, marker)
        except OSError:
            pass  # a read-only cache still works, it just splits again next time
    mask = np.zeros(len(train), dtype=bool)
    mask[val_index] = True
    from xraybench.data.parallel import drop_other_carved, rows_on_disk

    drop_other_carved(entry, marker.stem)
    parts = []
    for name, index in (("train", np.flatnonzero(~mask)), ("val", np.flatnonzero(mask))):
        images = rows_on_disk(train.images, index, marker.with_name(f"{marker.stem}-{name}_images.npy"))
        parts.append(ImageSet(images, train.labels[index], [train.ids[i] for i in index], [train.groups[i] for i in index]))
    return parts[0], parts[1]


def load_dataset(
    path: str | os.PathLike | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    channels: int = 1,
    seed: int = DEFAULT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    skip_bad: bool = False,
    registry=None,
    reader: str | None = None,
) -> Dataset:
    """Load (decode once, then from cache) and split a data set."""
    start = time.perf_counter()
    root = locate_data(path)
    sets, meta, entry, hit = load_raw(root, image_size, channels, skip_bad, registry, reader)
    if "val" in sets:
        train, val = sets["train"], sets["val"]
        strategy = "the data set's own validation split"
    else:
        train, val = _cached_split(entry, sets["train"], val_fraction, seed, root)
        strategy = "patient-grouped, stratified, carved from train"
    return Dataset(
        source=root,
        reader=meta["reader"],
        image_size=image_size,
        channels=channels,
        seed=seed,
        val_fraction=val_fraction,
        fingerprint=meta["fingerprint"],
        splits=Splits(train=train, val=val, test=sets["test"]),
        stats=meta["stats"],
        cache_path=entry,
        cache_hit=hit,
        load_seconds=time.perf_counter() - start,
        val_strategy=strategy,
    )
