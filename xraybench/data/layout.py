"""Kaggle's folder layout ``ROOT/{train,test[,val]}/{NORMAL,PNEUMONIA}/*``: which entries are images of
which split and class, which cannot be used and why, and whose patient each image is.

Shared by the Kaggle reader (``readers.py``) and the built-in copy's rebuild (``builtin.py``), and
importing nothing heavy: registering the readers happens for every command.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from xraybench.errors import DataError
from xraybench.specs import LABELS

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "test")

_PERSON = re.compile(r"person(\d+)[_\-.]", re.IGNORECASE)
_IM = re.compile(r"IM-(\d+)", re.IGNORECASE)

Layout = dict[str, dict[str, list[str]]]  # {split: {class: [files]}}
BadEntries = dict[str, dict[str, list[tuple[str, str]]]]  # {split: {class: [(entry, why it cannot be used)]}}


def patient_id(filename: str) -> str:
    """The patient a file belongs to, grouped conservatively.

    ``person123_bacteria_4.jpeg`` and ``person123_virus_9.jpeg`` are one patient;
    ``IM-0115-0001.jpeg`` and ``NORMAL2-IM-0115-0002.jpeg`` are put together too:
    merging two patients costs a little split balance, splitting one leaks.
    """
    name = Path(filename).name
    for pattern, prefix in ((_PERSON, "person"), (_IM, "IM-")):
        match = pattern.search(name)
        if match:
            return f"{prefix}{int(match.group(1))}"
    return Path(name).stem


def _listing_error(folder: Path, exc: OSError) -> DataError:
    return DataError(f"cannot list {folder} ({exc.strerror or exc}); check its permissions")


def _why_unusable(path: str, real_root: str) -> str | None:
    """Why a symlink named like an image cannot be used (None: a regular file, or a folder, inside)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return f"broken symlink to {os.readlink(path)}" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
    target = os.path.realpath(path)
    if stat.S_ISDIR(st.st_mode):
        return None
    if os.path.commonpath([real_root, target]) != real_root:
        return f"symlink to {target}, outside the data folder; copy the file in instead"
    return None if stat.S_ISREG(st.st_mode) else "not a regular file"


def scan_class(class_dir: Path, real_root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(image files, [(entry, why it cannot be used)]) in one class folder, both sorted.

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
            entries = [e for e in listing if e.name[0] != "." and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
    except OSError as exc:
        raise _listing_error(class_dir, exc) from None
    for e in entries:
        if e.is_file(follow_symlinks=False):  # a plain file: no system call, the common case
            good.append(e.path)
        elif not e.is_symlink():
            if not e.is_dir(follow_symlinks=False):
                bad.append((e.path, "not a regular file"))
        elif (why := _why_unusable(e.path, real_root)) is not None:
            bad.append((e.path, why))
        elif not os.path.isdir(e.path):
            good.append(e.path)
    return sorted(good), sorted(bad)


def kaggle_layout(root: Path) -> tuple[Layout, BadEntries]:
    """({split: {class: [files]}}, {split: {class: [(bad entry, why)]}}) after checking the layout."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data PATH or set XRAYBENCH_DATA")
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root} has no {'/ and '.join(missing)}/ folder; expected the Kaggle layout "
                        f"ROOT/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg")
    real_root = os.path.realpath(root)
    layout: Layout = {}
    bad: BadEntries = {}
    for split in (s for s in SPLITS if (root / s).is_dir()):
        folder = root / split
        try:
            unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[0] != "." and p.name not in LABELS)
        except OSError as exc:
            raise _listing_error(folder, exc) from None
        if unknown:
            raise DataError(f"unknown class folder {folder / unknown[0]}; xraybench expects exactly NORMAL and "
                            f"PNEUMONIA in each split: move or remove it")
        layout[split], bad[split] = {}, {}
        for label in LABELS:
            class_dir = folder / label
            if not class_dir.is_dir():
                if split == "val":
                    continue
                raise DataError(f"missing class folder {class_dir}; each split needs NORMAL/ and PNEUMONIA/")
            layout[split][label], bad[split][label] = scan_class(class_dir, real_root)
            if not layout[split][label] and not bad[split][label] and split != "val":
                raise DataError(f"class folder {class_dir} holds no images (.jpeg/.jpg/.png); add its images")
    return layout, bad
