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
- *Integrity.* ``manifest.json`` records, for every other file, its size, its CRC-32
  checksums (per 16 MiB block) and its identity (mtime, ctime and inode), taken at write
  time. A warm load stats each file (O(1) per file): a file whose size differs is damaged;
  a file whose identity differs (it was written, touched, replaced or copied) has its
  checksums computed, and a mismatch makes the entry "damaged": discarded and rebuilt
  with a one-line warning; a match (a ``touch``, a copy) records the new identity. Any
  edit through the file system changes the ctime, which no user call can set back, so
  an edit that restores the mtime (``os.utime``) is still checked. An identity taken
  within ``RACY_NS`` of the file's last write is not trusted (a second write in the same
  timestamp tick would leave it as it was): the next load checksums that file again, so
  loads in the second after an entry is written cost the full check. What this does not
  see: bytes that change without the file system knowing (a failing disk, a write to
  the raw device, a file system that keeps no ctime); ``rescan=True``
  (``load_dataset``) checks every checksum. CRC-32 (zlib, ~4 GB/s, on two threads)
  rather than a cryptographic hash because the threat is accident, not malice: whoever
  can rewrite an array can rewrite the manifest beside it.
- *Freshness, in O(folders).* An entry's folder name comes from the reader, the
  preprocessing and the source's real path (a moved data folder is decoded again; a
  changed one replaces its entry); its manifest records the source's state:
  the mtime, ctime and inode of every folder under the data folder (or of the file,
  for a one-file source), taken before the files were listed, and a key over every
  listed file's relative path, size and mtime (``files_key``). Adding, removing or
  renaming an image changes its folder's mtime, so a warm load stats only the folders.
  When one differs (or was modified within ``RACY_NS`` of the snapshot, when a later
  change could keep the same timestamp), the files are listed and stat()ed again: the
  same ``files_key`` keeps the entry (and records the new folder state), another one
  decodes again and replaces it. An image rewritten in place under its own name leaves
  its folder's mtime alone: ``rescan=True`` (``xraybench data --rescan``) is what
  notices it, by listing and stat()ing every file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import mmap
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.errors import DataError
from xraybench.specs import ImageSet

CACHE_ENV = "XRAYBENCH_CACHE"
FORMAT = 3
MARKER = "XRAYBENCH_CACHE_ENTRY"
MANIFEST = "manifest.json"
META = "meta.json"
MADE_BY = "xraybench"
BLOCK = 16 << 20
# A folder modified this close to the snapshot of the source's state (or later) may change again
# within the same timestamp tick unseen: such a snapshot is checked file by file until it is older.
RACY_NS = 1_000_000_000
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


def entry_path(key: str) -> Path:
    return cache_root() / key[:24]


def warn(message: str) -> None:
    """One line on stderr: the cache repaired something the user should know about."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def replace_atomically(path: Path, write: Callable[[Path], Any]) -> bool:
    """``write`` a temporary file beside ``path`` (named like the files clearing removes), then rename it
    into place; False, leaving nothing, on an OSError: a read-only cache still works, it just checks
    or computes again next time. Other errors propagate, leaving nothing either."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:  # whatever ``write`` raised
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_json(path: Path, record: Any) -> bool:
    """:func:`replace_atomically` for a JSON file."""
    return replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


# --- keys, freshness and the fingerprint ------------------------------------------------


def _params(reader: str, reader_version: str, **params: Any) -> bytes:
    return json.dumps({"format": FORMAT, "reader": reader, "v": reader_version, **params}, sort_keys=True).encode()


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
    """Full freshness key (``files_key``): relative path, size and mtime of every source file, plus preprocessing.

    O(files): computed on a cold load, with ``rescan``, and when the source's folders changed.
    """
    h = hashlib.sha256(_params(reader, reader_version, **params))
    cut = len(str(root if root.is_dir() else root.parent)) + 1
    for name in sorted(map(str, files)):
        h.update(f"{name[cut:]}\t{_stat_line(name)}\n".encode())
    return h.hexdigest()


def entry_key(reader: str, reader_version: str, root: Path, **params: Any) -> str:
    """Where an entry lives: the reader, the preprocessing and the source's real path; O(1).

    Freshness is not in it (that is the manifest's ``source`` and ``files_key``): one entry
    per source and preprocessing, replaced when the source changes.
    """
    return hashlib.sha256(_params(reader, reader_version, source=os.path.realpath(root), **params)).hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    """What changes whenever a file's or folder's content or entries change: [mtime, ctime, inode]."""
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _trusted(now: list[int] | None, recorded: Any, at: Any) -> bool:
    """The one freshness rule: identity ``now`` (ending in mtime, ctime, inode) is the one recorded at ``at`` (ns) and
    was not modified within ``RACY_NS`` of it (a write in the same timestamp tick would leave the identity as it was)."""
    return now is not None and now == recorded and isinstance(at, int) and max(now[-3:-1]) < at - RACY_NS


def unchanged(st: os.stat_result, recorded: Any) -> bool:
    """True when ``st`` has the identity recorded with a cache file (``{"stat": ..., "at": ns}``) and can be trusted."""
    return isinstance(recorded, dict) and _trusted(_identity(st), recorded.get("stat"), recorded.get("at"))


def _state_of(path: str | Path, with_size: bool = False) -> list[int] | None:
    """The identity of ``path`` (with its size first for a file); None when it cannot be stat()ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_size, *_identity(st)] if with_size else _identity(st)


def source_state(root: Path, outside: Sequence[str] = ()) -> dict[str, Any]:
    """The source's state as the folders show it: O(folders) to check, O(entries) to take.

    Every folder under ``root`` with its identity, symlinked folders followed (the readers follow
    them too: a ``train -> /big/train`` link must not hide the images added below it) and each
    real folder recorded once, so a link loop ends; or for a one-file source the file's size
    and identity; plus the ``outside`` folders (absolute paths: see :func:`with_outside`).
    Taken *before* the files are listed, so a change during a cold load shows as a
    difference later.
    """
    state: dict[str, Any] = {"taken_ns": time.time_ns()}
    root = Path(root)
    folders: dict[str, list[int]] = {}
    if not root.is_dir():
        state["file"] = _state_of(root, with_size=True)
    seen: set[tuple[int, int]] = set()
    for current, dirs, _ in os.walk(root, followlinks=True) if root.is_dir() else ():
        try:
            st = os.stat(current)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) in seen:
            dirs[:] = []  # unreadable, or a second way into a folder already recorded (a link loop, or two links)
            continue
        seen.add((st.st_dev, st.st_ino))
        folders[os.path.relpath(current, root)] = _identity(st)
    folders.update({folder: _state_of(folder) or [] for folder in outside})
    if folders or root.is_dir():
        state["folders"] = folders
    return state


def with_outside(state: dict[str, Any], root: Path, files: list) -> dict[str, Any]:
    """``state`` plus the folders of listed files outside ``root`` (a plugin's reader may list such files),
    absolute, stat()ed now (after the listing: a change in between leaves them modified after
    ``taken_ns``, which the racy rule then checks file by file)."""
    base = os.path.abspath(root if Path(root).is_dir() else Path(root).parent)
    found = {os.path.dirname(os.path.abspath(f)) for f in files}
    outside = sorted(d for d in found if d != base and not d.startswith(base.rstrip(os.sep) + os.sep))
    if outside:
        state.setdefault("folders", {}).update({d: _state_of(d) or [] for d in outside})
    return state


def source_unchanged(root: Path, state: Any) -> bool:
    """True when every recorded folder (and the file) still has its identity and none was racy; O(folders).

    False means "look closer" (list and stat the files), not "changed".
    """
    if not isinstance(state, dict) or not isinstance(state.get("taken_ns"), int):
        return False
    root, taken, folders = Path(root), state["taken_ns"], state.get("folders", {})
    if "file" in state:
        if root.is_dir() or not _trusted(_state_of(root, with_size=True), state["file"], taken):
            return False
    elif not root.is_dir() or not folders:
        return False
    # an absolute (outside) folder joins to itself
    return isinstance(folders, dict) and all(_trusted(_state_of(os.path.join(root, rel)), recorded, taken)
                                             for rel, recorded in folders.items())


def content_fingerprint(root: Path, files: list, split_counts: dict[str, Any], skipped: Sequence[str] = ()) -> str:
    """sha256 over the sorted manifest (relative path + content sha256) and the split counts.

    Independent of mtimes and of where the data lives, so two machines holding the
    same files agree on it. Files the reader skipped (``--skip-bad``; ``skipped`` holds
    their relative paths) enter as "skipped" and are not read again.
    """
    base = root if root.is_dir() else root.parent
    skip = set(skipped)
    h = hashlib.sha256()
    for rel, path in sorted((os.path.relpath(p, base).replace(os.sep, "/"), p) for p in files):
        digest = "skipped"
        if rel not in skip:
            try:
                with open(path, "rb") as fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
            except OSError as exc:
                raise DataError(f"cannot read {path} ({exc.strerror or exc}); fix it or pass --skip-bad") from None
        h.update(f"{rel}\t{digest}\n".encode())
    h.update(json.dumps(split_counts, sort_keys=True).encode())
    return h.hexdigest()


# --- checksums -------------------------------------------------------------------------


def _map(path: Path, populate: bool = True):
    """The file's bytes, memory-mapped read-only; with ``populate`` (on Linux) pre-faulted in one call.

    Pre-faulting is for a file about to be checksummed: one mapping serves both the
    checksum and the array, the bytes are paged in once, and MAP_POPULATE makes that one
    kernel call instead of a fault per 4 KiB page. A file whose identity matches is mapped
    lazily: O(1), its pages come in as training reads them.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        if populate and hasattr(mmap, "MAP_POPULATE"):
            return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _start_checksums(buffers: dict[str, Any]) -> dict[str, list[Future]]:
    """CRC-32 of each 16 MiB block of each buffer, running on worker threads; collect them with ``_collect``."""
    if not buffers:
        return {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    views = {name: memoryview(buf) for name, buf in buffers.items()}
    # zlib drops the GIL
    futures = {name: [pool.submit(zlib.crc32, view[start:start + BLOCK]) for start in range(0, max(len(view), 1), BLOCK)]
               for name, view in views.items()}
    pool.shutdown(wait=False)  # the futures still run; nothing waits here
    return futures


def _collect(futures: dict[str, list[Future]]) -> dict[str, list[int]]:
    return {name: [future.result() for future in blocks] for name, blocks in futures.items()}


def checksums(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """{file name: {"size": bytes, "crc32": [one per 16 MiB block], "stat": identity, "at": ns}} for files in one folder.

    The identity is taken before the bytes are read: a write during the checksum changes it again;
    ``at`` before the identity, for the racy rule (:func:`unchanged`).
    """
    stats = {p.name: (time.time_ns(), os.stat(p)) for p in paths}
    crcs = _collect(_start_checksums({p.name: _map(p) for p in paths}))
    return {name: {"size": st.st_size, "crc32": crcs[name], "stat": _identity(st), "at": at}
            for name, (at, st) in stats.items()}


def _mismatch(recorded: dict[str, dict[str, Any]], futures: dict[str, list[Future]]) -> str | None:
    """The first file whose checksums (still running in ``futures``) are not the recorded ones, as a reason."""
    return next((f"{name} does not match its checksum" for name, crcs in _collect(futures).items()
                 if crcs != recorded[name].get("crc32")), None)


def _stats(folder: Path, recorded: dict[str, dict[str, Any]]) -> dict[str, os.stat_result]:
    """Every recorded file's stat; Damaged when one is missing or has another size than was written."""
    out = {}
    for name, info in recorded.items():
        try:
            st = os.stat(folder / name)
        except OSError:
            raise Damaged(f"{name} is missing") from None
        if not isinstance(info, dict) or st.st_size != info.get("size"):
            raise Damaged(f"{name} has {st.st_size} bytes, {info.get('size') if isinstance(info, dict) else '?'} were written")
        out[name] = st
    return out


# --- reading and writing entries ------------------------------------------------------


class Damaged(Exception):
    """An entry that cannot be trusted; the message says why in a few words."""


class Stale(Exception):
    """An intact entry of data that has changed since: a miss, replaced by the next write."""


def _read_manifest(folder: Path, key: str) -> dict[str, Any]:
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
    if not isinstance(manifest.get("source"), dict):
        raise Damaged(f"{MANIFEST} does not record its source")
    return manifest


def forget_source_state(root: Path, keep: Path | None = None) -> int:
    """Make every other entry of this source (any size, channels or reader options) list and stat its
    source files at its next load; returns how many. Called after a rescan.

    An image rewritten in place under its own name changes no folder, so only a full listing sees
    it; ``--rescan`` lists for the entry it loads, and this makes the entries of the other sizes
    look too (their ``files_key`` then decides), rather than serve the old pixels.
    """
    real = os.path.realpath(root)
    forgotten = 0
    for folder in sorted(cache_root().iterdir()) if cache_root().is_dir() else []:
        if folder == keep or not (folder / MARKER).is_file():
            continue
        try:
            meta = json.loads((folder / META).read_text())
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            continue  # a damaged entry is discarded, with a warning, when it is next opened
        if (isinstance(meta, dict) and isinstance(manifest, dict) and isinstance(meta.get("source"), str)
                and isinstance(manifest.get("source"), dict) and os.path.realpath(meta["source"]) == real
                and manifest["source"].get("state") is not None):
            manifest["source"] = {**manifest["source"], "state": None}
            write_json(folder / MANIFEST, manifest)
            forgotten += 1
    return forgotten


def _fresh_state(root: Path, source: dict[str, Any], files_key: Callable[[], str], rescan: bool) -> dict | None:
    """None when the source's folders say nothing changed; else its state, taken now, once ``files_key()``
    (O(files)) says the files are those the entry was made from (else Stale)."""
    state = source.get("state")
    if not rescan and source_unchanged(root, state):
        return None
    folders = state.get("folders") if isinstance(state, dict) else None
    outside = [f for f in folders or {} if isinstance(f, str) and os.path.isabs(f)]
    fresh_state = source_state(root, outside)  # before listing: a change while listing shows next time
    if files_key() != source.get("files_key"):
        raise Stale()
    return fresh_state


def _open(folder: Path, key: str, root: Path, files_key: Callable[[], str] | None, rescan: bool):
    """(sets, meta, pending check). Raises Stale (the source changed) or Damaged.

    The source: O(folders) unless a folder changed (or ``rescan``), then ``files_key()``
    (O(files)) decides. The entry's files: a stat each; only files whose identity differs
    from the manifest's (every file with ``rescan``) are checksummed: the small ones before
    anything is read, the big image arrays on worker threads while the caller carves its
    split (they decide nothing there); ``pending()`` waits for them and, when all match,
    records the new identities and source state so the next load is O(1) again.
    """
    manifest = _read_manifest(folder, key)
    files, source = manifest["files"], manifest["source"]
    # no files_key: the caller's own load checked the source a moment ago (a run's child: ``loading.reopen``)
    fresh_state = None if files_key is None else _fresh_state(root, source, files_key, rescan)
    checked_at = time.time_ns()
    stats = _stats(folder, files)
    changed = {name for name, st in stats.items() if rescan or not unchanged(st, files[name])}
    try:
        big = {name: _map(folder / name, populate=name in changed) for name in files if name.endswith("_images.npy")}
    except (OSError, ValueError) as exc:
        raise Damaged(f"its image arrays do not map ({exc})") from None
    pending = _start_checksums({name: buf for name, buf in big.items() if name in changed})
    problem = _mismatch(files, _start_checksums({n: _map(folder / n) for n in files if n in changed and n not in big}))
    if problem:
        raise Damaged(problem)
    meta, sets = _load_sets(folder, big)

    def check() -> str | None:
        problem = _mismatch(files, pending)
        if problem is None and (changed or fresh_state is not None):
            for name in changed:
                files[name].update(stat=_identity(stats[name]), at=checked_at)  # what the checksum was taken under
            if fresh_state is not None:
                source["state"] = fresh_state
            write_json(folder / MANIFEST, manifest)
        return problem

    return sets, meta, check


def _load_sets(folder: Path, big: dict[str, Any]) -> tuple[dict[str, Any], dict[str, ImageSet]]:
    """(meta, {split: ImageSet}) of an entry whose small files are verified; images are views of ``big``."""
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
    return meta, sets


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


def open_entry(key: str, root: Path, files_key: Callable[[], str] | None, rescan: bool = False):
    """(sets, meta, confirm) or None (a miss). ``confirm()`` waits for the image checksums: True when they
    match; False when they do not, after discarding the entry with a warning (the sets must not be used).
    Anything else that is damaged is discarded, with the warning, before this returns (None); an entry of
    data that has changed since is left for the next write to replace (None, no warning).

    ``files_key()`` computes the source's full key (:func:`source_key`); it is called only when the
    source's folders changed, or with ``rescan`` (also every checksum).
    """
    folder = entry_path(key)
    if not folder.is_dir() or not (folder / MARKER).is_file():
        return None
    try:
        sets, meta, pending = _open(folder, key, root, files_key, rescan)
    except Stale:
        return None
    except Damaged as why:
        _discard(folder, why)
        return None

    def confirm() -> bool:
        problem = pending()
        if problem:
            _discard(folder, problem)
        return not problem

    return sets, meta, confirm


def write_entry(key: str, sets: dict[str, ImageSet], meta: dict[str, Any], source: dict[str, Any]) -> Path:
    """Write an entry atomically; ``source`` is ``{"state": source_state(root), "files_key": ...}``, both
    taken before the source was read."""
    final = entry_path(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        (tmp / MARKER).write_text(_MARKER_TEXT)  # first, so that even a half-written entry is known to be ours
        for split, data in sets.items():
            np.save(tmp / f"{split}_images.npy", np.ascontiguousarray(data.images))
            np.save(tmp / f"{split}_labels.npy", np.asarray(data.labels))
        info = {split: {"ids": list(data.ids), "groups": list(data.groups)} for split, data in sets.items()}
        (tmp / META).write_text(json.dumps({**meta, "key": key, "sets": info}))
        written = sorted(p for p in tmp.iterdir() if p.name not in (MARKER, MANIFEST))
        manifest = {"made_by": MADE_BY, "format": FORMAT, "key": key, "source": source, "files": checksums(written)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if final.exists() and not remove_entry(final, force=True):  # ours, or a pre-marker entry of ours
            raise DataError(f"cache folder {final} is in the way and was not made by xraybench (or holds files it did "
                            f"not write); move it, or set {CACHE_ENV} to another folder")
        try:
            os.rename(tmp, final)
        except OSError:
            remove_entry(tmp)  # another process renamed its own complete copy first: keep theirs
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
    if folder.is_symlink() or not folder.is_dir() or not ((folder / MARKER).is_file() or force and _old_entry(folder)):
        return False
    try:
        for child in list(folder.iterdir()):
            if child.name != MARKER and _own(child.name) and (child.is_symlink() or child.is_file()):
                with suppress(OSError):
                    child.unlink()
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
    result = Cleared(cache_root())
    for child in sorted(result.root.iterdir()) if result.root.is_dir() else []:
        if not child.is_dir() or child.is_symlink():
            result.foreign.append(child.name)
        elif (child / MARKER).is_file():
            (result.removed if remove_entry(child) else result.partly).append(child.name)
        elif _old_entry(child):
            (result.removed if force and remove_entry(child, force=True) else result.old_entries).append(child.name)
        else:
            result.foreign.append(child.name)
    return result
