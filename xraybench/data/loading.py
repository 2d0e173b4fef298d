"""From a path to ready splits: locate, pick a reader, decode once (cache), fingerprint, split."""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

import xraybench.data.cache as cache  # the submodule itself: loading is what the package's lazy names resolve to
from xraybench.data.builtin import is_builtin, locate_data
from xraybench.data.builtin import verify as verify_builtin
from xraybench.data.limits import check_image_size
from xraybench.data.parallel import drop_other_carved, rows_on_disk
from xraybench.data.splits import DEFAULT_VAL_FRACTION, carve_validation
from xraybench.errors import DataError
from xraybench.records import DEFAULT_IMAGE_SIZE, DEFAULT_SEED
from xraybench.specs import DatasetSpec, ImageSet

__all__ = ["Dataset", "Splits", "load_dataset", "load_raw", "locate_data",  # locate_data: builtin.py's
           "open_cached", "pick_reader", "reopen"]
CATCH_ALL_READERS = ("kaggle_folders",)  # readers whose detect() accepts any folder: tried after all others
CARVED = "patient-grouped, stratified, carved from train"


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
    val_strategy: str = CARVED
    cache_key: str = ""  # the entry's full key: how another process maps it again (``reopen``)

    def without_images(self) -> Dataset:
        """This data set to pickle for a run's child on this machine: without the images of its cache entry,
        which ``reopen`` maps there (a pipe would copy every image); as it is when it has no entry."""
        return replace(self, splits=None) if self.cache_key else self  # type: ignore[arg-type]  # reopen's to fill

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
    # The Kaggle reader claims every folder (so that one in no known layout gets an error naming the
    # layout it expected): it is asked last, or a plugin's folder reader would never be chosen.
    for spec in sorted(registry.datasets.values(), key=lambda spec: spec.name in CATCH_ALL_READERS):
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
    rescan: bool = False,
) -> tuple[dict[str, ImageSet], dict[str, Any], Path, bool]:
    """Decoded sets + meta, from the cache when it is fresh and intact. Returns (sets, meta, entry, hit).

    ``rescan``: list and stat every source file and checksum every cached byte (see ``load_dataset``)."""
    sets, meta, entry, hit, _ = _load(path, image_size, channels, skip_bad, registry, reader, rescan)
    return sets, meta, entry, hit


def _load(path: Path, image_size: int, channels: int, skip_bad: bool, registry, reader: str | None, rescan: bool,
          then: Callable[[dict[str, ImageSet], dict[str, Any], Path], Any] = lambda sets, meta, entry: None):
    """``load_raw`` and what ``then(sets, meta, entry)`` returns: it runs while the checksums of image
    arrays whose identity changed still run, and counts only once they match. When they do not, the
    entry was discarded with a warning and the second pass decodes."""
    for _ in range(2):
        sets, meta, entry, hit, confirm = _open_or_decode(path, image_size, channels, skip_bad, registry, reader, rescan)
        result = then(sets, meta, entry)
        if confirm():
            return sets, meta, entry, hit, result
    raise DataError(f"cache entry {entry} is damaged and could not be removed; delete it, or set "
                    f"{cache.CACHE_ENV} to another folder")


def _open_or_decode(path: Path, image_size: int, channels: int, skip_bad: bool, registry, reader: str | None,
                    rescan: bool) -> tuple[dict[str, ImageSet], dict[str, Any], Path, bool, Callable[[], bool]]:
    """(sets, meta, entry, hit, confirm): on a hit, the checksums of image arrays whose identity changed
    are still running; ``confirm()`` waits for them."""
    image_size = check_image_size(image_size)
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if is_builtin(path):  # checked on every load, warm ones too: the cache must not serve a changed copy's images
        verify_builtin(path)
    spec = pick_reader(path, registry, reader)
    params = dict(size=image_size, channels=channels, skip_bad=skip_bad)
    key = cache.entry_key(spec.name, spec.version, path, **params)
    listed: dict[str, Any] = {}

    def files_key() -> str:
        """The full key over every listed file: O(files), so only when the folders say the source changed."""
        if "key" not in listed:
            listed["files"] = spec.files(path)
            listed["key"] = cache.source_key(spec.name, spec.version, path, listed["files"], **params)
        return listed["key"]

    opened = cache.open_entry(key, path, files_key, rescan)
    if opened is not None:
        sets, meta, confirm = opened
        return sets, meta, cache.entry_path(key), True, confirm
    state = cache.source_state(path)  # before listing (again): what the new entry records
    listed.clear()
    files_key()
    sets, meta = _decode(spec, path, image_size, channels, skip_bad, listed["files"])
    entry = cache.write_entry(key, sets, meta, {"state": cache.with_outside(state, path, listed["files"]),
                                                "files_key": listed["key"]})
    return sets, {**meta, "key": key}, entry, False, lambda: True


def _decode(spec: DatasetSpec, path: Path, image_size: int, channels: int, skip_bad: bool,
            files: list) -> tuple[dict[str, ImageSet], dict[str, Any]]:
    """A cache miss: the reader decodes every image; the fingerprint covers the files and the counts."""
    raw = spec.read(path, image_size, channels, skip_bad)
    sets = {"train": raw.train, "test": raw.test, **({"val": raw.val} if raw.val is not None else {})}
    counts = {k: v.class_counts() for k, v in sets.items()}
    fingerprint = cache.content_fingerprint(path, files, counts, raw.stats.get("skipped_bad", []))
    return sets, {"reader": spec.name, "fingerprint": fingerprint, "stats": raw.stats, "source": str(path)}


def _read_val_index(marker: Path, n_train: int) -> np.ndarray | None:
    """The stored val indices if they are intact (checksum, range, no repeats), else None."""
    try:
        check = json.loads(marker.with_suffix(".json").read_text())
        index = np.load(marker, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if (not isinstance(check, dict) or index.ndim != 1 or index.dtype != np.int64 or check.get("n_train") != n_train
            or check.get("crc32") != zlib.crc32(index.tobytes())):
        return None
    if len(index) and (index.min() < 0 or index.max() >= n_train or len(np.unique(index)) != len(index)):
        return None
    return index


def _cached_split(entry: Path, train: ImageSet, fraction: float, seed: int, root: Path,
                  verify: bool = False, fingerprint: str = "") -> tuple[ImageSet, ImageSet]:
    """Carve (train, val) once per (seed, fraction) and keep the val indices, checksummed, beside the cache entry.

    The files are named after the data's fingerprint too: an entry folder is replaced in place when
    its source changes, and a process still reading the old entry must not leave a split of the old
    train set where a load of the new one would take it for its own.
    """
    marker = entry / f"val-index-seed{seed}-frac{fraction:.4f}-{fingerprint[:16]}.npy"
    val_index = _read_val_index(marker, len(train)) if marker.is_file() else None
    if val_index is None:
        try:
            _, val = carve_validation(train, fraction, seed)
        except ValueError as exc:
            raise DataError(f"{root}: {exc}") from None
        position = {image_id: i for i, image_id in enumerate(train.ids)}
        val_index = np.asarray([position[i] for i in val.ids], dtype=np.int64)
        # a read-only cache still works, it just splits again next time
        if cache.replace_atomically(marker, lambda tmp: np.save(tmp, val_index)):
            cache.write_json(marker.with_suffix(".json"), {"n_train": len(train), "crc32": zlib.crc32(val_index.tobytes())})
    mask = np.zeros(len(train), dtype=bool)
    mask[val_index] = True
    drop_other_carved(entry, marker.stem)
    parts = []
    for name, index in (("train", np.flatnonzero(~mask)), ("val", np.flatnonzero(mask))):
        images = rows_on_disk(train.images, index, marker.with_name(f"{marker.stem}-{name}_images.npy"), verify)
        parts.append(ImageSet(images, train.labels[index], _pick(train.ids, index), _pick(train.groups, index)))
    return parts[0], parts[1]


def _pick(items: list, index: np.ndarray) -> list:
    """``[items[i] for i in index]`` in C (operator.itemgetter): the part of a warm load that grows with the images."""
    rows = index.tolist()
    return [items[i] for i in rows] if len(rows) < 2 else list(itemgetter(*rows)(items))


def load_dataset(
    path: str | os.PathLike | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    channels: int = 1,
    seed: int = DEFAULT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    skip_bad: bool = False,
    registry=None,
    reader: str | None = None,
    rescan: bool = False,
) -> Dataset:
    """Load (decode once, then from cache) and split a data set.

    A warm load checks the source's folders and the cache files' identities (a stat each,
    independent of the number of images; see ``xraybench.data.cache``). ``rescan`` also
    lists and stat()s every source file (an image rewritten in place under its own name
    shows only there) and checksums every cached byte (damage the file system did not
    see); it costs about what the full checks of a warm load used to.
    """
    start = time.perf_counter()
    root = locate_data(path)

    sets, meta, entry, hit, (train, val, strategy) = _load(
        root, image_size, channels, skip_bad, registry, reader, rescan,
        lambda sets, meta, entry: _split(sets, meta, entry, root, val_fraction, seed, rescan))
    if rescan:  # the other sizes' entries of this source look again at their next load
        cache.forget_source_state(root, keep=entry)
    skipped = meta["stats"].get("skipped_reasons") or meta["stats"].get("skipped_bad") or []
    if skipped:  # on every load, warm ones too: a run on fewer images than the folder holds says so
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        cache.warn(f"--skip-bad skipped {len(skipped)} unreadable image(s) in {root}: {'; '.join(skipped[:3])}{more}")
    return Dataset(source=root, reader=meta["reader"], image_size=image_size, channels=channels, seed=seed,
                   val_fraction=val_fraction, fingerprint=meta["fingerprint"],
                   splits=Splits(train=train, val=val, test=sets["test"]), stats=meta["stats"], cache_path=entry,
                   cache_hit=hit, load_seconds=time.perf_counter() - start, val_strategy=strategy,
                   cache_key=meta["key"])


def _split(sets: dict[str, ImageSet], meta: dict[str, Any], entry: Path, root: Path, val_fraction: float, seed: int,
           rescan: bool) -> tuple[ImageSet, ImageSet, str]:
    """(train, val, how val was made): the data set's own, or carved from train (``_cached_split``)."""
    if "val" in sets:
        return sets["train"], sets["val"], "the data set's own validation split"
    # split while the image checksums run: the split reads only labels and ids, verified already
    return (*_cached_split(entry, sets["train"], val_fraction, seed, root, rescan, meta["fingerprint"]), CARVED)


def reopen(dataset: Dataset) -> Dataset:
    """``dataset`` (``without_images``) with its splits, in a run's child: its cache entry memory-mapped and
    checked as a warm load checks it, and its data those of ``dataset.fingerprint``. No reader, no registry
    and no look at the source: the load that found the entry, a moment ago, did that."""
    if not dataset.cache_key:
        return dataset
    if (opened := open_cached(dataset)) is not None:
        return opened
    raise DataError(f"cache entry {dataset.cache_path} changed since this run loaded {dataset.source}; run it again")


def open_cached(dataset: Dataset) -> Dataset | None:
    """``reopen``'s look, as a question: ``dataset`` with the splits of its cache entry (``cache_key``) when this
    machine's cache holds that entry, intact, with the data of ``dataset.fingerprint``; None otherwise (a Dask
    worker with a cache of its own then loads its own copy, ``distributed.worker.run_task``)."""
    opened = cache.open_entry(dataset.cache_key, dataset.source, None) if dataset.cache_key else None
    if opened is not None and opened[1].get("fingerprint") == dataset.fingerprint:
        sets, meta, confirm = opened
        train, val, _ = _split(sets, meta, cache.entry_path(dataset.cache_key), dataset.source, dataset.val_fraction,
                               dataset.seed, False)
        if confirm():
            return replace(dataset, splits=Splits(train=train, val=val, test=sets["test"]))
    return None
