"""The decode-once cache: uint8 arrays on disk, keyed by the source's state and the preprocessing.

A cache entry is a folder of ``.npy`` arrays, ``meta.json`` and ``manifest.json``; it is
built in a temporary folder and renamed into place, so two processes loading at once
never see (or leave) a half-written entry. Warm loads memory-map the arrays.

Two promises, because the cache root is a path a user can point anywhere
(``$XRAYBENCH_CACHE``):

- *Ownership.* The first file written into every entry folder (temporary ones included)
  is the marker ``XRAYBENCH_CACHE_ENTRY``. Clearing removes only folders that hold it,
  and inside them only the file names xraybench writes; anything else (a ``.git/``, a
  thesis) is left where it is and named. Entries from before the marker existed are
  removed only with ``force``.
- *Integrity.* ``manifest.json`` records the size and CRC-32 checksums (per 16 MiB
  block) of every other file, taken at write time. A warm load checks them all before
  it trusts a byte: an edited, truncated or missing file makes the entry "damaged", and
  it is discarded and rebuilt with a one-line warning. CRC-32 (zlib, ~4 GB/s, run on
  two threads) rather than a cryptographic hash because the threat is accident, not
  malice: whoever can rewrite an array can rewrite the manifest beside it, and a full
  check has to fit in a warm load that costs 1/50 of a cold one (docs/performance.md).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import mmap
import os
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.errors import DataError
from xraybench.specs import ImageSet

CACHE_ENV = "XRAYBENCH_CACHE"
FORMAT = 2
MARKER = "XRAYBENCH_CACHE_ENTRY"
MANIFEST = "manifest.json"
META = "meta.json"
MADE_BY = "xraybench"
BLOCK = 16 << 20
# Every name xraybench writes inside an entry folder; clearing deletes these and nothing else.
OWN_FILES = (MARKER, MANIFEST, META, "*_images.npy", "*_labels.npy", "val-index-*.npy", "val-index-*.json",
             "*.tmp.npy", "*.tmp.json")
_MARKER_TEXT = "Made by xraybench: a decoded-image cache entry. `xraybench data --clear-cache` removes it.\n"


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("xraybench"))


def warn(message: str) -> None:
    """One line on stderr: the cache repaired something the user should know about."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _stat_line(name: str) -> str:
    """``size\\tmtime`` of a source file; a symlink loop or a dangling link is keyed by the link itself."""
    try:
        st = os.stat(name)
    except OSError:
        try:
            st = os.lstat(name)
        except OSError:
            return "missing\t0"
        return f"link:{st.st_size}\t{st.st_mtime_ns}"
    return f"{st.st_size}\t{st.st_mtime_ns}"


def source_key(reader: str, reader_version: str, root: Path, files: list, **params: Any) -> str:
    """Cheap freshness key: relative path, size and mtime of every source file, plus preprocessing."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "reader": reader, "v": reader_version, **params}, sort_keys=True).encode())
    base = str(root if root.is_dir() else root.parent)
    cut = len(base) + 1
    for name in sorted(map(str, files)):
        h.update(f"{name[cut:]}\t{_stat_line(name)}\n".encode())
    return h.hexdigest()


def content_fingerprint(root: Path, files: list, split_counts: dict[str, Any], skipped: list[str] = ()) -> str:
    """sha256 over the sorted manifest (relative path + content sha256) and the split counts.

    Independent of mtimes and of where the data lives, so two machines holding the
    same files agree on it. Files the reader skipped (``--skip-bad``; ``skipped`` holds
    their relative paths) enter as "skipped" and are not read again.
    """
    base = root if root.is_dir() else root.parent
    skip = set(skipped)
    h = hashlib.sha256()
    relative = sorted((os.path.relpath(p, base).replace(os.sep, "/"), p) for p in files)
    for rel, path in relative:
        if rel in skip:
            digest = "skipped"
        else:
            try:
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            except OSError as exc:
                raise DataError(f"cannot read {path} ({exc.strerror or exc}); fix it or pass --skip-bad") from None
        h.update(f"{rel}\t{digest}\n".encode())
    h.update(json.dumps(split_counts, sort_keys=True).encode())
    return h.hexdigest()


def entry_path(key: str) -> Path:
    return cache_root() / key[:24]


# --- checksums -------------------------------------------------------------------------


def _map(path: Path):
    """The file's bytes, memory-mapped read-only and (on Linux) pre-faulted in one call.

    One mapping serves both the checksum and the array a warm load returns, so the
    bytes are paged in once; MAP_POPULATE makes that one kernel call instead of a fault
    per 4 KiB page, which is most of what a warm load of big arrays costs.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        if hasattr(mmap, "MAP_POPULATE"):
            return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _start_checksums(buffers: dict[str, Any]) -> tuple[list[str], list]:
    """CRC-32 of each 16 MiB block of each buffer, running on worker threads; collect them with ``_collect``."""
    names, futures = [], []
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    for name, buf in buffers.items():
        view = memoryview(buf)
        for start in range(0, max(len(view), 1), BLOCK):
            names.append(name)
            futures.append(pool.submit(zlib.crc32, view[start:start + BLOCK]))  # zlib drops the GIL
    pool.shutdown(wait=False)  # the futures still run; nothing waits here
    return names, futures


def _collect(names: list[str], futures: list) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, future in zip(names, futures):
        out.setdefault(name, []).append(future.result())
    return out


def checksums(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """{file name: {"size": bytes, "crc32": [one per 16 MiB block]}} for files in one folder."""
    crcs = _collect(*_start_checksums({p.name: _map(p) for p in paths}))
    return {p.name: {"size": p.stat().st_size, "crc32": crcs[p.name]} for p in paths}


def _mismatch(recorded: dict[str, dict[str, Any]], actual: dict[str, list[int]]) -> str | None:
    for name in actual:
        if actual[name] != recorded[name].get("crc32"):
            return f"{name} does not match its checksum"
    return None


def verify(folder: Path, recorded: dict[str, dict[str, Any]]) -> str | None:
    """None when every recorded file is there with its recorded size and checksums, else what is wrong."""
    problem = _sizes(folder, recorded)
    return problem or _mismatch(recorded, _collect(*_start_checksums({n: _map(folder / n) for n in recorded})))


def _sizes(folder: Path, recorded: dict[str, dict[str, Any]]) -> str | None:
    for name, info in recorded.items():
        try:
            size = (folder / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if not isinstance(info, dict) or size != info.get("size"):
            return f"{name} has {size} bytes, {info.get('size') if isinstance(info, dict) else '?'} were written"
    return None


# --- reading and writing entries ------------------------------------------------------


class Damaged(Exception):
    """An entry that cannot be trusted; the message says why in a few words."""


def _open(folder: Path, key: str):
    """(sets, meta, pending image checksums). Everything but the big image arrays is verified before it is read;
    the images' checksums run on worker threads while the caller carves its split (they decide nothing there)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"{MANIFEST} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("made_by") != MADE_BY or manifest.get("format") != FORMAT:
        raise Damaged(f"{MANIFEST} is not a format-{FORMAT} xraybench manifest")
    if manifest.get("key") != key:
        raise Damaged("its key belongs to other data")
    files = manifest.get("files")
    if not isinstance(files, dict) or META not in files:
        raise Damaged(f"{MANIFEST} lists no files")
    if any(not isinstance(n, str) or "/" in n or os.sep in n or n.startswith(".") for n in files):
        raise Damaged(f"{MANIFEST} names a file outside its folder")
    problem = _sizes(folder, files)
    if problem:
        raise Damaged(problem)
    try:
        big = {name: _map(folder / name) for name in files if name.endswith("_images.npy")}
    except (OSError, ValueError) as exc:
        raise Damaged(f"its image arrays do not map ({exc})") from None
    pending = _start_checksums(big)
    small = [name for name in files if name not in big]
    problem = _mismatch(files, _collect(*_start_checksums({n: _map(folder / n) for n in small})))
    if problem:
        raise Damaged(problem)
    try:
        meta = json.loads((folder / META).read_text())
        sets = {}
        for split, info in meta["sets"].items():
            images = _array(folder / f"{split}_images.npy", big[f"{split}_images.npy"])
            labels = np.load(folder / f"{split}_labels.npy", allow_pickle=False)
            if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels) or len(labels) != len(info["ids"]):
                raise Damaged(f"{split} arrays have the wrong shape")
            sets[split] = ImageSet(images=images, labels=labels, ids=info["ids"], groups=info["groups"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Damaged(f"its files do not load ({exc})") from None
    return sets, meta, lambda: _mismatch(files, _collect(*pending))


def _array(path: Path, buf) -> np.ndarray:
    """The .npy array at ``path`` as a read-only view of its mapping ``buf`` (what np.load's mmap_mode gives)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject or offset + int(np.prod(shape)) * dtype.itemsize != len(buf):
        raise ValueError(f"{path.name}: header does not match its size")
    return np.ndarray(shape, dtype, buffer=buf, offset=offset, order="F" if fortran else "C")


def _discard(folder: Path, why: object) -> None:
    removed = remove_entry(folder)
    why = " ".join(str(why).split())  # one line, whatever the exception said
    warn(f"cache entry {folder} is damaged ({why}); {'discarded it, ' if removed else ''}decoding the data again")


def open_entry(key: str):
    """(sets, meta, confirm) or None (a miss). ``confirm()`` waits for the image checksums: True when they
    match; False when they do not, after discarding the entry with a warning (the sets must not be used).
    Anything else that is damaged is discarded, with the warning, before this returns (None)."""
    folder = entry_path(key)
    if not folder.is_dir() or not (folder / MARKER).is_file():
        return None
    try:
        sets, meta, pending = _open(folder, key)
    except Damaged as why:
        _discard(folder, why)
        return None

    def confirm() -> bool:
        problem = pending()
        if problem:
            _discard(folder, problem)
        return not problem

    return sets, meta, confirm


def read_entry(key: str) -> tuple[dict[str, ImageSet], dict[str, Any]] | None:
    """The cached sets and meta, fully verified, or None (a miss or a damaged entry, discarded with a warning)."""
    opened = open_entry(key)
    if opened is None or not opened[2]():
        return None
    return opened[0], opened[1]


def write_entry(key: str, sets: dict[str, ImageSet], meta: dict[str, Any]) -> Path:
    final = entry_path(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        (tmp / MARKER).write_text(_MARKER_TEXT)  # first, so that even a half-written entry is known to be ours
        info = {}
        for split, data in sets.items():
            np.save(tmp / f"{split}_images.npy", np.ascontiguousarray(data.images))
            np.save(tmp / f"{split}_labels.npy", np.asarray(data.labels))
            info[split] = {"ids": list(data.ids), "groups": list(data.groups)}
        (tmp / META).write_text(json.dumps({**meta, "key": key, "sets": info}))
        written = sorted(p for p in tmp.iterdir() if p.name not in (MARKER, MANIFEST))
        manifest = {"made_by": MADE_BY, "format": FORMAT, "key": key, "files": checksums(written)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if final.exists() and not remove_entry(final, force=True):  # ours, or a pre-marker entry of ours
            raise DataError(
                f"cache folder {final} is in the way and was not made by xraybench (or holds files it did not "
                f"write); move it, or set "
                f"{CACHE_ENV} to another folder"
            )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process renamed its own complete copy first: keep theirs.
            remove_entry(tmp)
    except BaseException:
        remove_entry(tmp)
        raise
    return final


# --- clearing -------------------------------------------------------------------------


def _own(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_FILES)


def _old_entry(folder: Path) -> bool:
    """A format-1 entry (before the marker): meta.json with its key and sets, and only our file names."""
    try:
        meta = json.loads((folder / META).read_text())
        names = [p.name for p in folder.iterdir()]
    except (OSError, ValueError):
        return False
    return (isinstance(meta, dict) and str(meta.get("key", "")).startswith(folder.name) and "sets" in meta
            and all(_own(n) for n in names))


def remove_entry(folder: Path, force: bool = False) -> bool:
    """Delete an entry's own files and then the folder; True when the folder is gone.

    Only a folder holding the marker (or, with ``force``, a pre-marker entry) is
    touched, and only the file names in ``OWN_FILES``: whatever else a user put there
    stays, and so does the folder.
    """
    if folder.is_symlink() or not folder.is_dir():
        return False
    if not (folder / MARKER).is_file() and not (force and _old_entry(folder)):
        return False
    try:
        children = list(folder.iterdir())
    except OSError:
        return False
    for child in children:
        if child.name != MARKER and _own(child.name) and (child.is_symlink() or child.is_file()):
            try:
                child.unlink()
            except OSError:
                pass
    try:
        if any(p.name != MARKER for p in folder.iterdir()):
            return False  # files we did not write: the folder and its marker stay
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        return False
    return True


@dataclass
class Cleared:
    """What ``clear`` did: folders removed, and everything it left with the reason."""

    root: Path
    removed: list[str] = field(default_factory=list)
    old_entries: list[str] = field(default_factory=list)  # pre-marker entries, left without --force
    partly: list[str] = field(default_factory=list)  # our entries that also hold files we did not write
    foreign: list[str] = field(default_factory=list)  # not made by xraybench: never touched


def clear(force: bool = False) -> Cleared:
    """Remove every cache entry xraybench made, and nothing else."""
    root = cache_root()
    result = Cleared(root)
    if not root.is_dir():
        return result
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.is_symlink() and (child / MARKER).is_file():
            (result.removed if remove_entry(child) else result.partly).append(child.name)
        elif child.is_dir() and not child.is_symlink() and _old_entry(child):
            if force and remove_entry(child, force=True):
                result.removed.append(child.name)
            else:
                result.old_entries.append(child.name)
        else:
            result.foreign.append(child.name)
    return result
