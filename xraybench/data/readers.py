"""The built-in data set readers: Kaggle's folder layout and MedMNIST's ``.npz``.

They register through the ``register_datasets`` hook like any third-party
reader would (see the ``datasets`` entry point in ``pyproject.toml``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from xraybench.errors import DataError
from xraybench.hookspecs import hookimpl
from xraybench.specs import LABELS, DatasetSpec, ImageSet, RawDataset

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


def _kaggle_layout(root: Path) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [files]}} after checking the layout, with one-line errors."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data PATH or set XRAYBENCH_DATA")
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {'/ and '.join(missing)}/ folder; expected the Kaggle layout "
            f"ROOT/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg"
        )
    layout: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = [c for c in classes if c not in LABELS]
        if unknown:
            raise DataError(
                f"unknown class folder {folder / unknown[0]}; xraybench expects exactly NORMAL and "
                f"PNEUMONIA in each split: move or remove it"
            )
        layout[split] = {}
        for label in LABELS:
            class_dir = folder / label
            if not class_dir.is_dir():
                if split == "val":
                    continue
                raise DataError(f"missing class folder {class_dir}; each split needs NORMAL/ and PNEUMONIA/")
            with os.scandir(class_dir) as entries:
                files = sorted(
                    e.path
                    for e in entries
                    if not e.name.startswith(".")
                    and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                    and e.is_file()
                )
            if not files and split != "val":
                raise DataError(f"class folder {class_dir} holds no images (.jpeg/.jpg/.png); add its images")
            layout[split][label] = files
    return layout


def _kaggle_files(root: Path) -> list[str]:
    layout = _kaggle_layout(root)
    return [f for split in layout.values() for files in split.values() for f in files]


def _decode_many(paths: list[str], size: int, channels: int):
    from xraybench.data.parallel import decode_files  # a process pool over the cores (parallel.py)

    return decode_files(paths, size, channels)


def _kaggle_read(root: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    layout = _kaggle_layout(root)
    stats: dict = {"reader": "kaggle", "splits": {}, "sizes": Counter(), "modes": Counter(), "skipped_bad": []}
    sets: dict[str, ImageSet] = {}
    bad: list[str] = []
    every = [f for classes in layout.values() for label in LABELS for f in classes.get(label, [])]
    decoded_all = iter(_decode_many(every, size, channels))  # one pool for all splits, in this order
    for split, classes in layout.items():
        images, labels, ids, groups = [], [], [], []
        split_stats = {}
        for label_index, label in enumerate(LABELS):
            files = classes.get(label, [])
            decoded = [next(decoded_all) for _ in files]
            seen: dict[str, str] = {}
            duplicates = 0
            patients = set()
            for path, (arr, mode, original, digest, error) in zip(files, decoded):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                if error is not None:
                    bad.append(f"{path} ({error})")
                    stats["skipped_bad"].append(rel)
                    continue
                if digest in seen:
                    duplicates += 1
                seen.setdefault(digest, rel)
                stats["sizes"][f"{original[0]}x{original[1]}"] += 1
                stats["modes"][mode] += 1
                pid = patient_id(os.path.basename(path))
                patients.add(pid)
                images.append(arr)
                labels.append(label_index)
                ids.append(rel)
                groups.append(f"{split}:{pid}")
            split_stats[label] = {"images": len(seen) + duplicates, "patients": len(patients), "duplicates": duplicates}
        stats["splits"][split] = split_stats
        empty = np.zeros((0, size, size, channels), np.uint8)
        sets[split] = ImageSet(
            images=np.stack(images) if images else empty,
            labels=np.asarray(labels, dtype=np.int64),
            ids=ids,
            groups=groups,
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
    return RawDataset(train=sets["train"], test=sets["test"], val=None, stats=stats)


# --- MedMNIST npz ---------------------------------------------------------------------

NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")


def _npz_detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _resize_array(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    import numpy as np
    from PIL import Image

    img = Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def _npz_read(path: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    try:
        archive = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as .npz ({exc}); re-download it") from None
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(f"{path} lacks key(s) {', '.join(missing)}; a MedMNIST .npz has {', '.join(NPZ_KEYS)}")
        sets = {}
        sizes: dict[str, int] = {}
        for split in ("train", "val", "test"):
            images, labels = archive[f"{split}_images"], archive[f"{split}_labels"].reshape(-1)
            if len(images) != len(labels):
                raise DataError(
                    f"{path}: {split}_images has {len(images)} entries but {split}_labels has {len(labels)}; "
                    f"the file is damaged: re-download it"
                )
            if images.dtype != np.uint8:
                raise DataError(f"{path}: {split}_images is {images.dtype}, expected uint8 (MedMNIST format)")
            if not set(np.unique(labels).tolist()) <= {0, 1}:
                raise DataError(f"{path}: {split}_labels holds values other than 0 and 1; not a binary data set")
            sizes[f"{images.shape[2]}x{images.shape[1]}"] = sizes.get(f"{images.shape[2]}x{images.shape[1]}", 0) + len(images)
            resized = np.stack([_resize_array(a, size, channels) for a in images]) if len(images) else np.zeros(
                (0, size, size, channels), np.uint8
            )
            ids = [f"{split}/{i}" for i in range(len(images))]
            sets[split] = ImageSet(resized, labels.astype(np.int64), ids, list(ids))
    stats = {
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
