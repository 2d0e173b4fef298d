"""The built-in data set readers: Kaggle's folder layout and MedMNIST's ``.npz``.

They register through the ``register_datasets`` hook like any third-party
reader would (see the ``datasets`` entry point in ``pyproject.toml``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from xraybench.data.builtin import SPEC as XRAYBENCH_NPZ
from xraybench.data.layout import IMAGE_SUFFIXES, kaggle_layout, patient_id
from xraybench.errors import DataError, first_line
from xraybench.hookspecs import hookimpl
from xraybench.specs import LABELS, DatasetSpec, ImageSet, RawDataset, ReaderStats

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["IMAGE_SUFFIXES", "patient_id", "register_datasets"]  # the first two re-exported from layout.py
BAD_LISTED = 3


# --- Kaggle folder layout -------------------------------------------------------------


def _kaggle_files(root: Path) -> list[str | Path]:
    """Every entry, usable or not: a bad one that changes must change the cache key too."""
    layout, bad = kaggle_layout(root)
    return [*(f for split in layout.values() for files in split.values() for f in files),
            *(path for split in bad.values() for entries in split.values() for path, _ in entries)]


def _kaggle_read(root: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    from xraybench.data.parallel import decode_files  # a process pool over the cores

    layout, bad_entries = kaggle_layout(root)
    stats: dict[str, Any] = {"reader": "kaggle", "splits": {}, "sizes": Counter(), "modes": Counter(), "skipped_bad": [],
                             "skipped_reasons": []}
    every = [f for classes in layout.values() for label in LABELS for f in classes.get(label, [])]
    decoded = iter(decode_files(every, size, channels))  # one pool for all splits, in this order
    sets: dict[str, ImageSet] = {}
    for split, classes in layout.items():
        found: list[tuple[Any, int, str, str]] = []  # (image, label, id, patient group)
        stats["splits"][split] = {}
        for label_index, label in enumerate(LABELS):
            for path, why in bad_entries[split].get(label, []):
                _skip(stats, root, path, why)
            files = classes.get(label, [])
            stats["splits"][split][label] = _add_class(found, stats, root, split, label_index,
                                                       zip(files, [next(decoded) for _ in files]))
        images, labels, ids, groups = (list(column) for column in zip(*found)) if found else ([], [], [], [])
        sets[split] = ImageSet(images=np.stack(images) if images else np.zeros((0, size, size, channels), np.uint8),
                               labels=np.asarray(labels, dtype=np.int64), ids=ids, groups=groups)
    bad = [os.path.join(root, reason) for reason in stats["skipped_reasons"]]
    if bad and not skip_bad:
        more = f" and {len(bad) - BAD_LISTED} more" if len(bad) > BAD_LISTED else ""
        raise DataError(f"{len(bad)} unreadable image(s): {'; '.join(bad[:BAD_LISTED])}{more}; fix or remove them, "
                        f"or pass --skip-bad")
    stats.update(sizes=dict(stats["sizes"].most_common(10)), modes=dict(stats["modes"]),
                 skipped_bad_count=len(stats["skipped_bad"]))
    if "val" in sets:
        stats["kaggle_val_images"] = len(sets["val"])
    # Kaggle's own val/ holds 16 images: reported, never relied on; the core carves its own.
    # (Built as a plain dict: Counters while counting, and "skipped_reasons", which loading.py reads.)
    return RawDataset(train=sets["train"], test=sets["test"], val=None, stats=cast(ReaderStats, stats))


def _skip(stats: dict, root: Path, path: str | Path, why: str) -> None:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    stats["skipped_bad"].append(rel)
    stats["skipped_reasons"].append(f"{rel} ({why})")


def _add_class(found: list, stats: dict, root: Path, split: str, label_index: int, decoded) -> dict[str, int]:
    """Add one class folder's decoded files (``(path, decode_files' tuple)`` pairs) to ``found``; its counts."""
    digests: list[str] = []
    patients = set()
    for path, (arr, mode, original, digest, error) in decoded:
        if error is not None:
            _skip(stats, root, path, error)
            continue
        digests.append(digest)
        stats["sizes"][f"{original[0]}x{original[1]}"] += 1
        stats["modes"][mode] += 1
        pid = patient_id(os.path.basename(path))
        patients.add(pid)
        found.append((arr, label_index, os.path.relpath(path, root).replace(os.sep, "/"), f"{split}:{pid}"))
    return {"images": len(digests), "patients": len(patients), "duplicates": len(digests) - len(set(digests))}


# --- MedMNIST npz ---------------------------------------------------------------------

NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")


def _npz_detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _damage_errors() -> tuple[type[BaseException], ...]:
    """Any of these, raised while the archive or a member is read, means the file is damaged."""
    import zipfile
    import zlib

    return (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, KeyError)


def _npz_array(archive, path: Path, key: str) -> np.ndarray:
    """One member, loaded without pickle; a damaged or object-typed member is a one-line DataError."""
    try:
        return archive[key]
    except _damage_errors() as exc:
        text = first_line(exc)
        if "allow_pickle" in text:
            text = "it holds Python objects, which xraybench does not unpickle"
        raise DataError(f"cannot read {key} from {path} ({text}); re-download the file") from None


def _npz_check_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The labels as int64 0/1 after checking both arrays against the MedMNIST format; else one line."""
    import numpy as np

    where = f"{path}: {split}_images"
    if images.dtype != np.uint8:
        raise DataError(f"{where} is {images.dtype}, expected uint8 (MedMNIST format); re-download the file")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(f"{where} has shape {images.shape}; expected (N, H, W) or (N, H, W, 1 or 3) (MedMNIST format)")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise DataError(f"{where} has shape {images.shape}: images of zero pixels; re-download the file")
    if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
        raise DataError(f"{path}: {split}_labels has shape {labels.shape}; expected (N,) or (N, 1) (one binary label each)")
    labels = labels.reshape(-1)
    if len(images) != len(labels):
        raise DataError(f"{where} has {len(images)} entries but {split}_labels has {len(labels)}; "
                        f"the file is damaged: re-download it")
    if labels.dtype.kind not in "biuf" or not np.isin(labels, (0, 1)).all():
        raise DataError(f"{path}: {split}_labels holds values other than 0 and 1; not a binary data set")
    return labels.astype(np.int64)


def _npz_read(path: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    from xraybench.data.images import resize_array

    try:
        archive = np.load(path, allow_pickle=False)
    except _damage_errors() as exc:
        reason = "empty file" if isinstance(exc, EOFError) else first_line(exc)
        raise DataError(f"cannot read {path} as .npz ({reason}); re-download it") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single .npy array, not a .npz archive of {', '.join(NPZ_KEYS)}; re-download it")
    sets, sizes = {}, Counter[str]()
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(f"{path} lacks key(s) {', '.join(missing)}; a MedMNIST .npz has {', '.join(NPZ_KEYS)}")
        for split in ("train", "val", "test"):
            images = _npz_array(archive, path, f"{split}_images")
            labels = _npz_check_split(path, split, images, _npz_array(archive, path, f"{split}_labels"))
            sizes[f"{images.shape[2]}x{images.shape[1]}"] += len(images)
            resized = np.stack([resize_array(a, size, channels) for a in images]) if len(images) else \
                np.zeros((0, size, size, channels), np.uint8)
            ids = [f"{split}/{i}" for i in range(len(images))]
            sets[split] = ImageSet(resized, labels, ids, list(ids))
    stats: ReaderStats = {
        "reader": "medmnist",
        "splits": {s: {LABELS[c]: {"images": int((sets[s].labels == c).sum()), "patients": None, "duplicates": None}
                       for c in (0, 1)} for s in sets},
        "sizes": dict(sizes),
        "modes": {"uint8 array": sum(sizes.values())},
        "skipped_bad": [],
        "skipped_bad_count": 0,
    }
    return RawDataset(train=sets["train"], test=sets["test"], val=sets["val"], stats=stats)


@hookimpl
def register_datasets(register) -> None:
    register(DatasetSpec(
        name="kaggle_folders",
        description="Kaggle 'Chest X-Ray Images (Pneumonia)' layout: ROOT/{train,test}/{NORMAL,PNEUMONIA}/*",
        detect=lambda p: Path(p).is_dir(),
        files=_kaggle_files,
        read=_kaggle_read,
        version="1",
    ))
    register(XRAYBENCH_NPZ)  # before medmnist_npz: both read .npz, this one only its own kind
    register(DatasetSpec(
        name="medmnist_npz",
        description="MedMNIST .npz (e.g. pneumoniamnist.npz) with its own train/val/test split",
        detect=_npz_detect,
        files=lambda p: [p],
        read=_npz_read,
        version="1",
    ))
