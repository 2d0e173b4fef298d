"""The built-in data set readers: Kaggle's folder layout and MedMNIST's ``.npz``.

They register through the ``register_datasets`` hook like any third-party
reader would (see the ``datasets`` entry point in ``pyproject.toml``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from xraybench.errors import DataError
from xraybench.hookspecs import hookimpl
from xraybench.specs import LABELS, DatasetSpec, ImageSet, RawDataset, ReaderStats

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# Kept here (not imported from images.py) so that registering this reader stays import-light.
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"}

SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "test")
BAD_LISTED = 3

_PERSON = re.compile(r"person(\d+)[_\-.]", re.IGNORECASE)
_IM = re.compile(r"IM-(\d+)", re.IGNORECASE)


def patient_id(filename: str) -> str:
    """The patient a file belongs to, grouped conservatively.

    ``person123_bacteria_4.jpeg`` and ``person123_virus_9.jpeg`` are one patient;
    ``IM-0115-0001.jpeg`` and ``NORMAL2-IM-0115-0002.jpeg`` are put together too:
    merging two patients costs a little split balance, splitting one leaks.
    """
    name = Path(filename).name
    match = _PERSON.search(name)
    if match:
        return f"person{int(match.group(1))}"
    match = _IM.search(name)
    if match:
        return f"IM-{int(match.group(1))}"
    return Path(name).stem


# --- Kaggle folder layout -------------------------------------------------------------


def _kaggle_detect(path: Path) -> bool:
    return path.is_dir()


def _scan_class(class_dir: Path, real_root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(image files, [(entry, why it cannot be used)]) in one class folder.

    Never opens anything, so a FIFO named ``x.jpeg`` cannot hang it. A symlink loop,
    a dangling link, something that is not a regular file, or a file symlink that
    leads outside the data folder is a bad entry: named in the error, or skipped and
    recorded with ``--skip-bad``. (A link out of the data folder would put files into
    the benchmark that its fingerprint's owner never sees in the folder; copy the file
    in instead.) Folders named like images are not entries at all.
    """
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    try:
        with os.scandir(class_dir) as listing:
            entries = [e for e in listing if e.name[0] != "." and e.name[e.name.rfind("."):].lower() in IMAGE_SUFFIXES]
    except OSError as exc:
        raise DataError(f"cannot list {class_dir} ({exc.strerror or exc}); check its permissions") from None
    for e in entries:
        if e.is_file(follow_symlinks=False):  # a plain file: no system call, the common case
            good.append(e.path)
            continue
        if not e.is_symlink():
            if not e.is_dir(follow_symlinks=False):
                bad.append((e.path, "not a regular file"))
            continue
        try:
            st = os.stat(e.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                bad.append((e.path, "symlink loop"))
            elif exc.errno == errno.ENOENT:
                bad.append((e.path, f"broken symlink to {os.readlink(e.path)}"))
            else:
                bad.append((e.path, exc.strerror or str(exc)))
            continue
        target = os.path.realpath(e.path)
        if stat.S_ISDIR(st.st_mode):
            continue
        if os.path.commonpath([real_root, target]) != real_root:
            bad.append((e.path, f"symlink to {target}, outside the data folder; copy the file in instead"))
        elif not stat.S_ISREG(st.st_mode):
            bad.append((e.path, "not a regular file"))
        else:
            good.append(e.path)
    good.sort()
    bad.sort()
    return good, bad


def _kaggle_layout(root: Path) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, list[tuple[str, str]]]]]:
    """({split: {class: [files]}}, {split: {class: [(bad entry, why)]}}) after checking the layout."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data PATH or set XRAYBENCH_DATA")
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {'/ and '.join(missing)}/ folder; expected the Kaggle layout "
            f"ROOT/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg"
        )
    real_root = os.path.realpath(root)
    layout: dict[str, dict[str, list[str]]] = {}
    bad: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        try:
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            raise DataError(f"cannot list {folder} ({exc.strerror or exc}); check its permissions") from None
        unknown = [c for c in classes if c not in LABELS]
        if unknown:
            raise DataError(
                f"unknown class folder {folder / unknown[0]}; xraybench expects exactly NORMAL and "
                f"PNEUMONIA in each split: move or remove it"
            )
        layout[split], bad[split] = {}, {}
        for label in LABELS:
            class_dir = folder / label
            if not class_dir.is_dir():
                if split == "val":
                    continue
                raise DataError(f"missing class folder {class_dir}; each split needs NORMAL/ and PNEUMONIA/")
            files, bad_entries = _scan_class(class_dir, real_root)
            if not files and not bad_entries and split != "val":
                raise DataError(f"class folder {class_dir} holds no images (.jpeg/.jpg/.png); add its images")
            layout[split][label] = files
            bad[split][label] = bad_entries
    return layout, bad


def _kaggle_files(root: Path) -> list[str | Path]:
    """Every entry, usable or not: a bad one that changes must change the cache key too."""
    layout, bad = _kaggle_layout(root)
    return [
        *(f for split in layout.values() for files in split.values() for f in files),
        *(path for split in bad.values() for entries in split.values() for path, _ in entries),
    ]


def _decode_many(paths: list[str], size: int, channels: int):
    from xraybench.data.parallel import decode_files  # a process pool over the cores (parallel.py)

    return decode_files(paths, size, channels)


def _kaggle_read(root: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    layout, bad_entries = _kaggle_layout(root)
    stats: dict = {"reader": "kaggle", "splits": {}, "sizes": Counter(), "modes": Counter(), "skipped_bad": [],
                   "skipped_reasons": []}
    sets: dict[str, ImageSet] = {}
    bad: list[str] = []
    every = [f for classes in layout.values() for label in LABELS for f in classes.get(label, [])]
    decoded_all = iter(_decode_many(every, size, channels))  # one pool for all splits, in this order
    for split, classes in layout.items():
        found = _Found()
        split_stats = {}
        for label_index, label in enumerate(LABELS):
            for path, why in bad_entries[split].get(label, []):
                _skip(stats, bad, root, path, why)
            files = classes.get(label, [])
            decoded = [next(decoded_all) for _ in files]
            split_stats[label] = _add_class(found, stats, bad, root, split, label_index, files, decoded)
        stats["splits"][split] = split_stats
        empty = np.zeros((0, size, size, channels), np.uint8)
        sets[split] = ImageSet(
            images=np.stack(found.images) if found.images else empty,
            labels=np.asarray(found.labels, dtype=np.int64),
            ids=found.ids,
            groups=found.groups,
        )
    if bad and not skip_bad:
        listed = "; ".join(bad[:BAD_LISTED])
        more = f" and {len(bad) - BAD_LISTED} more" if len(bad) > BAD_LISTED else ""
        raise DataError(
            f"{len(bad)} unreadable image(s): {listed}{more}; fix or remove them, or pass --skip-bad"
        )
    stats["sizes"] = dict(stats["sizes"].most_common(10))
    stats["modes"] = dict(stats["modes"])
    stats["skipped_bad_count"] = len(stats["skipped_bad"])
    val = sets.get("val")
    if val is not None:
        stats["kaggle_val_images"] = len(val)
    # Kaggle's own val/ holds 16 images: reported, never relied on; the core carves its own.
    # (Built as a plain dict: Counters while counting, and "skipped_reasons", which loading.py reads.)
    return RawDataset(train=sets["train"], test=sets["test"], val=None, stats=cast(ReaderStats, stats))


@dataclass
class _Found:
    """One split's decoded images, as the reader accumulates them class by class."""

    images: list = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def _skip(stats: dict, bad: list[str], root: Path, path: str | Path, why: str) -> None:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    bad.append(f"{path} ({why})")
    stats["skipped_bad"].append(rel)
    stats["skipped_reasons"].append(f"{rel} ({why})")


def _add_class(found: _Found, stats: dict, bad: list[str], root: Path, split: str, label_index: int,
               files: list[str], decoded: list) -> dict[str, int]:
    """Add one class folder's decoded files to ``found``; its counts for the reader's stats."""
    seen: dict[str, str] = {}
    duplicates = 0
    patients = set()
    for path, (arr, mode, original, digest, error) in zip(files, decoded):
        if error is not None:
            _skip(stats, bad, root, path, error)
            continue
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        if digest in seen:
            duplicates += 1
        seen.setdefault(digest, rel)
        stats["sizes"][f"{original[0]}x{original[1]}"] += 1
        stats["modes"][mode] += 1
        pid = patient_id(os.path.basename(path))
        patients.add(pid)
        found.images.append(arr)
        found.labels.append(label_index)
        found.ids.append(rel)
        found.groups.append(f"{split}:{pid}")
    return {"images": len(seen) + duplicates, "patients": len(patients), "duplicates": duplicates}


# --- MedMNIST npz ---------------------------------------------------------------------

NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")


def _npz_detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _resize_array(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


# Any of these, raised while a member of the archive is read, means the file is damaged.
def _damage_errors() -> tuple[type[BaseException], ...]:
    import zipfile
    import zlib

    return (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, KeyError)


def _npz_array(archive, path: Path, key: str) -> np.ndarray:
    """One member, loaded without pickle; a damaged or object-typed member is a one-line DataError."""
    try:
        return archive[key]
    except _damage_errors() as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
        raise DataError(
            f"{path}: {split}_images has {len(images)} entries but {split}_labels has {len(labels)}; "
            f"the file is damaged: re-download it"
        )
    if labels.dtype.kind not in "biuf" or not np.isin(labels, (0, 1)).all():
        raise DataError(f"{path}: {split}_labels holds values other than 0 and 1; not a binary data set")
    return labels.astype(np.int64)


def _npz_read(path: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except _damage_errors() as exc:
        reason = "empty file" if isinstance(exc, EOFError) else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read {path} as .npz ({reason}); re-download it") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single .npy array, not a .npz archive of {', '.join(NPZ_KEYS)}; re-download it")
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(f"{path} lacks key(s) {', '.join(missing)}; a MedMNIST .npz has {', '.join(NPZ_KEYS)}")
        sets = {}
        sizes: dict[str, int] = {}
        for split in ("train", "val", "test"):
            images = _npz_array(archive, path, f"{split}_images")
            labels = _npz_check_split(path, split, images, _npz_array(archive, path, f"{split}_labels"))
            shape = f"{images.shape[2]}x{images.shape[1]}"
            sizes[shape] = sizes.get(shape, 0) + len(images)
            resized = np.stack([_resize_array(a, size, channels) for a in images]) if len(images) else np.zeros(
                (0, size, size, channels), np.uint8
            )
            ids = [f"{split}/{i}" for i in range(len(images))]
            sets[split] = ImageSet(resized, labels, ids, list(ids))
    stats: ReaderStats = {
        "reader": "medmnist",
        "splits": {
            s: {LABELS[c]: {"images": int((sets[s].labels == c).sum()), "patients": None, "duplicates": None} for c in (0, 1)}
            for s in sets
        },
        "sizes": sizes,
        "modes": {"uint8 array": sum(sizes.values())},
        "skipped_bad": [],
        "skipped_bad_count": 0,
    }
    return RawDataset(train=sets["train"], test=sets["test"], val=sets["val"], stats=stats)


@hookimpl
def register_datasets(register) -> None:
    register(
        DatasetSpec(
            name="kaggle_folders",
            description="Kaggle 'Chest X-Ray Images (Pneumonia)' layout: ROOT/{train,test}/{NORMAL,PNEUMONIA}/*",
            detect=_kaggle_detect,
            files=_kaggle_files,
            read=_kaggle_read,
            version="1",
        )
    )
    from xraybench.data.builtin import SPEC as XRAYBENCH_NPZ

    register(XRAYBENCH_NPZ)  # before medmnist_npz: both read .npz, this one only its own kind
    register(
        DatasetSpec(
            name="medmnist_npz",
            description="MedMNIST .npz (e.g. pneumoniamnist.npz) with its own train/val/test split",
            detect=_npz_detect,
            files=lambda p: [p],
            read=_npz_read,
            version="1",
        )
    )
