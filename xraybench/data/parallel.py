"""Cold decoding spread over processes, in a deterministic order.

Decoding a JPEG and resizing it is CPU-bound Python + C; threads share one interpreter
lock for the Python part, so a process pool is what makes the cold load scale with
cores. Files go to the workers in chunks (one pickle round-trip per chunk, not per
image) and come back in input order, so the arrays are identical to a serial decode.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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
            from xraybench.errors import DataError

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
        return None, None, None, None, str(exc)
    except OSError as exc:
        return None, None, None, None, exc.strerror or str(exc)
    except MemoryError:
        return None, None, None, None, "too large to read into memory"


def _decode_chunk(paths: Sequence[str], size: int, channels: int) -> list[Decoded]:
    return [decode_one(p, size, channels) for p in paths]


def _context():
    """fork where it is safe (about 10 ms a worker), else forkserver (about 1 s to start: imports).

    Forking a process that already runs a backend's thread pools can deadlock the child, so
    once TensorFlow, torch or JAX is imported the workers start from a clean server process.
    """
    import sys

    methods = multiprocessing.get_all_start_methods()
    backend_loaded = any(name in sys.modules for name in ("tensorflow", "torch", "jax"))
    if "fork" in methods and not backend_loaded:
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
    out: list[Decoded] = []
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_context()) as pool:
        for part in pool.map(_decode_chunk, chunks, [size] * len(chunks), [channels] * len(chunks)):
            out.extend(part)
    return out


def rows_on_disk(images, index, path, verify: bool = False) -> np.ndarray:
    """``images[index]`` as a memory-mapped ``.npy`` at ``path``, written once in chunks.

    A carved split (train minus validation) indexed in memory would copy every training
    image into RAM at each warm load: time and memory growing with the data set. Kept on
    disk beside the cache entry it is mapped in O(1) from the second load on. Its CRC-32
    and identity (mtime, ctime, inode: see ``xraybench.data.cache``) are written beside it;
    the CRC is computed again only when the identity differs, or with ``verify``. Where the
    source is not memory-mapped, or the cache cannot be written, the plain in-memory copy.
    """
    import numpy as np
    from pathlib import Path

    from xraybench.data.cache import stamp, unchanged, warn

    index = np.asarray(index, dtype=np.int64)
    shape = (len(index), *images.shape[1:])
    if not _file_backed(images):
        return images[index]
    path = Path(path)
    check = path.with_suffix(".json")  # its CRC-32 and identity, written with it: verified like the entry
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r")
            recorded = json.loads(check.read_text())
            if arr.shape == shape and arr.dtype == images.dtype:
                st, now = stamp(path)
                if not verify and unchanged(st, recorded):
                    return arr
                if recorded["crc32"] == _crc32(arr):
                    _write_check(check, {"crc32": recorded["crc32"], **now})
                    return arr
            warn(f"carved split {path} does not match its checksum; written again")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # missing, unreadable or damaged: write it again
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=images.dtype, shape=shape)
        for start in range(0, len(index), 1024):
            out[start : start + 1024] = images[index[start : start + 1024]]
        out.flush()
        del out
        st = os.stat(tmp)  # before the checksum: a write during it changes the identity again
        crc = _crc32(np.load(tmp, mmap_mode="r"))
        os.replace(tmp, path)  # some file systems (ext4) move the ctime on rename: the identity is taken after it
        after, now = stamp(path)
        _write_check(check, {"crc32": crc, **(now if _same_file(st, after) else {})})
        return np.load(path, mmap_mode="r")
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return images[index]


def _same_file(before, after) -> bool:
    """True when ``after`` describes the file ``before`` did, unwritten since (a rename may move its ctime)."""
    return (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def _write_check(check, record: dict) -> None:
    tmp = check.with_name(f".{check.stem}.{os.getpid()}.tmp.json")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, check)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def _file_backed(arr) -> bool:
    """True for an np.memmap or a view of a file mapping (the cache hands out views of its mmaps)."""
    import mmap

    import numpy as np

    while arr is not None:
        if isinstance(arr, (np.memmap, mmap.mmap)):
            return True
        arr = getattr(arr, "base", None)
    return False


def _crc32(arr) -> int:
    """CRC-32 of an array's bytes, in 16 MiB blocks (a memory map is never read whole into RAM)."""
    import zlib

    import numpy as np

    flat = np.asarray(arr).reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, len(flat), 1 << 24):
        # An ndarray is a buffer; numpy declares __buffer__ only for Python >= 3.12, so mypy at 3.11 cannot see it.
        crc = zlib.crc32(flat[start : start + (1 << 24)], crc)  # type: ignore[arg-type]
    return crc


def drop_other_carved(entry, keep_prefix: str) -> None:
    """Delete carved-split image files of other seeds/fractions, so the cache holds one carved copy.

    Runs usually repeat one seed (O(1) loads); a sweep over seeds rewrites the copy once per
    seed (the cost the in-memory copy had at every load) instead of keeping one per seed on
    disk. A file another process still maps stays readable to it (POSIX); where it cannot be
    deleted it is left.
    """
    from pathlib import Path

    for path in [*Path(entry).glob("val-index-*_images.npy"), *Path(entry).glob("val-index-*_images.json")]:
        if not path.name.startswith(keep_prefix + "-"):
            try:
                path.unlink()
            except OSError:
                pass
