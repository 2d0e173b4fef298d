"""Cold decoding spread over processes, in a deterministic order.

Decoding a JPEG and resizing it is CPU-bound Python + C; threads share one interpreter
lock for the Python part, so a process pool is what makes the cold load scale with
cores. Files go to the workers in chunks (one pickle round-trip per chunk, not per
image) and come back in input order, so the arrays are identical to a serial decode.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path

import numpy as np

from xraybench.data.cache import checksums, replace_atomically, unchanged, warn, write_json
from xraybench.errors import DataError

WORKERS_ENV = "XRAYBENCH_DECODE_WORKERS"
# Files per task. Each task costs a pickle round-trip and the decoded pixels come back through
# the pool's pipe; 64-file tasks held two workers to 1.33x one worker on 20,000 generated 128-px
# images, 512-file tasks reached 1.57x, and on the real data at 64 px both gave 1.83-1.85x
# (docs/performance.md, "Cold decode, two workers").
CHUNK = 512

# (array or None, original mode, original (w, h), sha256 of the file, error text or None)
Decoded = tuple


def default_workers() -> int:
    """``$XRAYBENCH_DECODE_WORKERS`` if set, else every core the process may use."""
    env = os.environ.get(WORKERS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise DataError(f"{WORKERS_ENV}={env!r} is not a positive whole number; set it to 1 or more, or unset it")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def decode_one(path: str, size: int, channels: int) -> Decoded:
    """One file: decoded array, its mode and size, its sha256, or the error that stopped it."""
    from xraybench.data.images import BadImage, decode_image

    try:
        with open(path, "rb") as fh:
            data = fh.read()
        arr, mode, original = decode_image(io.BytesIO(data), size, channels)  # type: ignore[arg-type]
        return arr, mode, original, hashlib.sha256(data).hexdigest(), None
    except BadImage as exc:
        error = str(exc)
    except OSError as exc:
        error = exc.strerror or str(exc)
    except MemoryError:
        error = "too large to read into memory"
    return None, None, None, None, error


def _decode_chunk(paths: Sequence[str], size: int, channels: int) -> list[Decoded]:
    return [decode_one(p, size, channels) for p in paths]


def _context():
    """fork where it is safe (about 10 ms a worker), else forkserver (about 1 s to start: imports).

    Forking a process that already runs a backend's thread pools can deadlock the child, so
    once TensorFlow, torch or JAX is imported the workers start from a clean server process.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and not any(name in sys.modules for name in ("tensorflow", "torch", "jax")):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def decode_files(paths: Sequence[str], size: int, channels: int, workers: int | None = None) -> list[Decoded]:
    """Decode ``paths`` in order; ``workers`` processes (default: :func:`default_workers`).

    One worker (or a handful of files) decodes in this process: no pool to start.
    """
    paths = list(map(str, paths))
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(paths) <= CHUNK:
        return _decode_chunk(paths, size, channels)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_context()) as pool:
        return [d for part in pool.map(_decode_chunk, chunks, [size] * len(chunks), [channels] * len(chunks)) for d in part]


def rows_on_disk(images, index, path, verify: bool = False) -> np.ndarray:
    """``images[index]`` as a memory-mapped ``.npy`` at ``path``, written once in chunks.

    A carved split (train minus validation) indexed in memory would copy every training
    image into RAM at each warm load: time and memory growing with the data set. Kept on
    disk beside the cache entry it is mapped in O(1) from the second load on. Its CRC-32
    and identity (mtime, ctime, inode: see ``xraybench.data.cache``) are written beside it;
    the CRC is computed again only when the identity differs, or with ``verify``. Where the
    source is not memory-mapped, or the cache cannot be written, the plain in-memory copy.
    """
    index = np.asarray(index, dtype=np.int64)
    if not _file_backed(images):
        return images[index]
    path, shape = Path(path), (len(index), *images.shape[1:])
    kept = _kept(path, shape, images.dtype, verify)
    if kept is not None:
        return kept

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=images.dtype, shape=shape)
        for start in range(0, len(index), 1024):
            out[start : start + 1024] = images[index[start : start + 1024]]
        out.flush()

    try:
        if replace_atomically(path, write):
            # checksummed under the identity it has after the rename (some file systems, ext4, move the ctime)
            write_json(path.with_suffix(".json"), {"file": checksums([path])[path.name]})
            return np.load(path, mmap_mode="r")
    except OSError:
        pass
    return images[index]


def _kept(path: Path, shape: tuple, dtype, verify: bool) -> np.ndarray | None:
    """The rows already at ``path`` when they are those written there (by their identity, else their
    CRC-32, recorded beside them), else None: missing, unreadable or damaged (then with a warning)."""
    if not path.is_file():
        return None
    check = path.with_suffix(".json")
    try:
        arr = np.load(path, mmap_mode="r")
        recorded = json.loads(check.read_text())["file"]
        if arr.shape == shape and arr.dtype == dtype:
            if not verify and unchanged(os.stat(path), recorded):
                return arr
            now = checksums([path])[path.name]
            if now["crc32"] == recorded["crc32"]:
                write_json(check, {"file": now})
                return arr
        warn(f"carved split {path} does not match its checksum; written again")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable, damaged or of an older format: written again
    return None


def _file_backed(arr) -> bool:
    """True for an np.memmap or a view of a file mapping (the cache hands out views of its mmaps)."""
    while arr is not None:
        if isinstance(arr, (np.memmap, mmap.mmap)):
            return True
        arr = getattr(arr, "base", None)
    return False


def drop_other_carved(entry, keep_prefix: str) -> None:
    """Delete carved-split image files of other seeds/fractions, so the cache holds one carved copy.

    Runs usually repeat one seed (O(1) loads); a sweep over seeds rewrites the copy once per
    seed (the cost the in-memory copy had at every load) instead of keeping one per seed on
    disk. A file another process still maps stays readable to it (POSIX); where it cannot be
    deleted it is left.
    """
    for path in [*Path(entry).glob("val-index-*_images.npy"), *Path(entry).glob("val-index-*_images.json")]:
        if not path.name.startswith(keep_prefix + "-"):
            with suppress(OSError):
                path.unlink()
