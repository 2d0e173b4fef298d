"""The decode-once cache: uint8 arrays on disk, keyed by the source's state and the preprocessing.

A cache entry is a folder of ``.npy`` arrays plus ``meta.json``; it is built in a
temporary folder and renamed into place, so two processes loading at once never
see (or leave) a half-written entry. Warm loads memory-map the arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.specs import ImageSet

CACHE_ENV = "XRAYBENCH_CACHE"
FORMAT = 1


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("xraybench"))


def source_key(reader: str, reader_version: str, root: Path, files: list, **params: Any) -> str:
    """Cheap freshness key: relative path, size and mtime of every source file, plus preprocessing."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "reader": reader, "v": reader_version, **params}, sort_keys=True).encode())
    base = str(root if root.is_dir() else root.parent)
    cut = len(base) + 1
    for name in sorted(map(str, files)):
        st = os.stat(name)
        h.update(f"{name[cut:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_fingerprint(root: Path, files: list, split_counts: dict[str, Any]) -> str:
    """sha256 over the sorted manifest (relative path + content sha256) and the split counts.

    Independent of mtimes and of where the data lives, so two machines holding the
    same files agree on it.
    """
    base = root if root.is_dir() else root.parent
    h = hashlib.sha256()
    relative = sorted((os.path.relpath(p, base).replace(os.sep, "/"), p) for p in files)
    for rel, path in relative:
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        h.update(f"{rel}\t{digest}\n".encode())
    h.update(json.dumps(split_counts, sort_keys=True).encode())
    return h.hexdigest()


def entry_path(key: str) -> Path:
    return cache_root() / key[:24]


def read_entry(key: str) -> tuple[dict[str, ImageSet], dict[str, Any]] | None:
    folder = entry_path(key)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            return None
        sets = {}
        for split, info in meta["sets"].items():
            sets[split] = ImageSet(
                images=np.load(folder / f"{split}_images.npy", mmap_mode="r"),
                labels=np.load(folder / f"{split}_labels.npy"),
                ids=info["ids"],
                groups=info["groups"],
            )
        return sets, meta
    except (OSError, ValueError, KeyError):
        return None  # damaged entry: rebuild it


def write_entry(key: str, sets: dict[str, ImageSet], meta: dict[str, Any]) -> Path:
    final = entry_path(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        info = {}
        for split, data in sets.items():
            np.save(tmp / f"{split}_images.npy", np.ascontiguousarray(data.images))
            np.save(tmp / f"{split}_labels.npy", np.asarray(data.labels))
            info[split] = {"ids": data.ids, "groups": data.groups}
        (tmp / "meta.json").write_text(json.dumps({**meta, "key": key, "sets": info}))
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)  # stale or damaged entry under the same key
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process renamed its own complete copy first: keep theirs.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clear() -> int:
    """Remove every cache entry; returns how many were removed."""
    root = cache_root()
    if not root.is_dir():
        return 0
    count = 0
    for child in root.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
            count += 1
    return count
