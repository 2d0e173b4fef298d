"""What ``xraybench explain`` and the report do with a recorded run: its test images, maps made in a
child process, the shortcut check written into its record.

- The run's test split itself is ``saved_model.read_test_split`` (shared with ``export``): read from
  the data set its record names (or the one given), refused in one line unless the data's
  fingerprint is the record's, since maps of other images would be filed under this run's test ids.
- :func:`sample`: which test images a limited explanation takes, a fixed, seeded choice
  (``SAMPLE_SEED``), so that the same command explains the same images every time.
- :class:`MapMaker`: saliency maps (:func:`xraybench.explain.run.explain`) for runs' saved models,
  computed in one child process (``isolation.py``), as ``predict`` scores: the model file is
  checked against the record's SHA-256 here first, then loaded and run there, so that Keras,
  the backend and the plugin's code never enter the command's (or the report's) own process.
- :func:`record_shortcut`: the run's ``shortcut_check`` updated in the file it was read from,
  atomically, only where xraybench wrote the record (``ResultStore.rewritable``, as
  ``runs --backfill`` does).

Imports numpy and the data layer only; nothing here imports Keras or a backend.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.explain.run import Method, SaliencyMaps
from xraybench.explain.shortcut import ShortcutShares
from xraybench.records import EXPLAIN_SAMPLE_SEED as SAMPLE_SEED, FIXED_THRESHOLD, RunRecord

if TYPE_CHECKING:  # pragma: no cover
    from xraybench.isolation import Child
    from xraybench.results import ResultStore


def threshold_of(record: RunRecord) -> float:
    """The run's validation-chosen threshold (the class each map explains is the one called there),
    or 0.5 for a run recorded without one."""
    value = (record.val_threshold or {}).get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else FIXED_THRESHOLD


def sample(n: int, limit: int | None, seed: int = SAMPLE_SEED) -> np.ndarray:
    """The indices of the images a limited explanation takes: all ``n`` when ``limit`` is None or
    at least ``n``; else ``limit`` of them drawn without replacement by ``seed``, in their order."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise XRayBenchError(f"--limit {limit} must be at least 1")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def shortcut_entry(shares: ShortcutShares, test_size: int, sample_seed: int | None) -> dict[str, Any]:
    """What a record's ``shortcut_check`` keeps for one method: the shares, the test set's size and
    the sample's seed (None: every test image was explained)."""
    return {**shares.as_dict(), "test_images": int(test_size), "sample_seed": sample_seed}


def describe(shares: ShortcutShares | dict[str, Any]) -> str:
    """One line: each region's share of the positive saliency beside its share of the image."""
    s = shares.as_dict() if isinstance(shares, ShortcutShares) else shares
    ratio = s["border_share"] / s["uniform_border_share"] if s["uniform_border_share"] else float("nan")
    return (f"border {s['border_share']:.1%} of the saliency (its area {s['uniform_border_share']:.1%}, "
            f"x{ratio:.2f}), corners {s['corner_share']:.1%} ({s['uniform_corner_share']:.1%}), lung field "
            f"{s['lung_share']:.1%} ({s['uniform_lung_share']:.1%})")


# --- the child process -------------------------------------------------------------------------------


def _maps_in_child(root: str, run_id: str, images: np.ndarray, method: Method, threshold: float) -> tuple[np.ndarray, str]:
    """In the child: load the run's model (its hash checked again) and explain ``images``."""
    from xraybench import saved_model
    from xraybench.explain.run import explain
    from xraybench.results import ResultStore

    store = ResultStore(root)
    record = store.find(run_id)
    result = explain(saved_model.load_model(store, record), images, method, threshold=threshold)
    return result.maps, result.method


class MapMaker(contextlib.AbstractContextManager["MapMaker"]):
    """Saliency maps for runs' saved models, made in one child process started on the first call
    and kept for the next ones (the report explains several runs: Keras is imported there once).
    ``timeout``: the report's bound per run, so that one hanging model costs one panel's maps,
    not the whole report; ``explain`` has none (its user is there to press Ctrl-C)."""

    def __init__(self, store: ResultStore, timeout: float | None = None) -> None:
        self.store = store
        self.timeout = timeout  # seconds one call may take before its child is killed (None: no limit)
        self._child: Child | None = None

    def maps(self, record: RunRecord, images: np.ndarray, method: Method = "auto") -> SaliencyMaps:
        """Maps (N, H, W) of ``images`` (uint8, as ``saved_model.read_test_split`` or ``read_images``
        give them) for the class ``record``'s model calls at its validation threshold. The model
        file is checked against the record here, before the child starts; one-line errors."""
        from xraybench import saved_model
        from xraybench.isolation import Child

        saved_model.verified_path(self.store, record)
        if self._child is None:
            self._child = Child((XRayBenchError,))
        args = (str(self.store.root), record.run_id, np.asarray(images), method, threshold_of(record))
        outcome = self._child.call(_maps_in_child, args, self.timeout)  # a timed-out child is replaced next call
        if not outcome.ok:
            raise XRayBenchError(f"explaining run {record.run_id} failed: {outcome.reason}")
        maps, used = outcome.value
        return SaliencyMaps(np.asarray(maps), str(used))

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None

    def __exit__(self, *exc: Any) -> None:  # (AbstractContextManager's __enter__ gives self)
        self.close()


# --- the record ------------------------------------------------------------------------------------------


def rewritable_path(store: ResultStore, run_id: str) -> Path:
    """The file ``run_id``'s record was read from, where xraybench may rewrite it: written by
    xraybench (``ResultStore.rewritable``) in a folder this process can write. A one-line
    ``XRayBenchError`` otherwise (a read-only or foreign record is never touched)."""
    for path, record in store.rewritable():
        if record.run_id == run_id:
            if not (os.access(path.parent, os.W_OK | os.X_OK) and os.access(path, os.W_OK)):
                raise XRayBenchError(f"run {run_id}'s record {path} is in a folder this process cannot write; its "
                                     "shortcut check is not recorded (copy the results folder somewhere writable)")
            return path
    raise XRayBenchError(f"run {run_id}'s record in {store.runs} was not written by xraybench (or is a link); its "
                         "shortcut check is not recorded")


def record_shortcut(store: ResultStore, run_id: str, entry: dict[str, Any]) -> Path:
    """Store ``entry`` (:func:`shortcut_entry`) as ``run_id``'s ``shortcut_check`` for its method,
    in the file its record was read from, atomically (the way ``runs --backfill`` rewrites
    records: the record re-read, changed through ``RunRecord``, validated, written to a temporary
    name and renamed); other methods' entries are kept. Returns the file."""
    from xraybench.records import for_saving
    from xraybench.results import _atomic_write

    path = rewritable_path(store, run_id)
    record = store.read(path)
    record.shortcut_check = {**(record.shortcut_check or {}), str(entry["method"]): entry}
    try:
        _atomic_write(path, for_saving(record))
    except OSError as exc:
        raise XRayBenchError(f"cannot update {path} ({exc.strerror or type(exc).__name__}); the shortcut check was "
                             "not recorded") from None
    return path
