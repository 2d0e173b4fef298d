"""Per-epoch checkpoints of a Keras run, so that an interrupted or timed-out run loses nothing.

Layout: ``RESULTS/checkpoints/RUN_ID/`` holds

- ``xraybench-checkpoint.json``, the manifest, written by the parent before training starts:
  the run's id and the request that started it (what ``run --resume`` rebuilds). Its presence
  is what marks the folder as xraybench's: ``remove`` deletes nothing without it.
- ``state.json``, rewritten atomically by the training process after every epoch: the number
  of epochs done, the per-epoch history so far, the early-stopping state and the name of the arrays file;
- ``epoch-N.npz``: every model variable (weights and the random layers' seed states), every
  optimizer variable and the early-stopping best weights after epoch N. Written before the
  ``state.json`` that names it, so the pair is always consistent; the previous one is removed.

The parent reads ``state.json`` for the history of an ``interrupted`` / ``timeout`` record. A
finished (``done``) run's folder is removed: it has served its purpose. Numpy and json only here;
keras objects are passed in by ``training/keras.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.results import _atomic_write

MANIFEST = "xraybench-checkpoint.json"
STATE = "state.json"
FORMAT = 1


class CheckpointError(XRayBenchError):
    """A checkpoint folder that cannot be used; the message is one line naming it."""


def folder(results_root: str | os.PathLike, run_id: str) -> Path:
    return Path(results_root) / "checkpoints" / run_id


_ARRAYS = re.compile(r"epoch-\d+\.npz")
_TEMP = re.compile(r"\.(?:xraybench-checkpoint\.json|state\.json)\..+\.tmp|\.epoch-\d+\.npz\.tmp")


def _arrays_name(path: Path, saved: dict[str, Any]) -> str:
    """The arrays file a state names: only an ``epoch-N.npz`` of this folder (never a path elsewhere)."""
    name = saved.get("arrays")
    if not isinstance(name, str) or not _ARRAYS.fullmatch(name):
        raise CheckpointError(f"checkpoint {path} is damaged ({STATE} names arrays {name!r}, not epoch-N.npz)")
    return name


def create(path: Path, run_id: str, request: dict[str, Any]) -> None:
    """Make the folder and its manifest (the parent, before the child starts)."""
    path.mkdir(parents=True, exist_ok=True)
    _atomic_write(path / MANIFEST, {"format": FORMAT, "run_id": run_id, "request": request})


def is_ours(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _read(path: Path, name: str) -> Any:
    """The JSON of the folder's file ``name``; None when it is not there; a CheckpointError when damaged."""
    try:
        return json.loads((path / name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged ({name}: {exc})") from None


def manifest(path: Path) -> dict[str, Any]:
    """The manifest, or a one-line CheckpointError naming the folder."""
    data = _read(path, MANIFEST)
    if data is None:
        raise CheckpointError(f"no checkpoint in {path} (no {MANIFEST})")
    if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
        raise CheckpointError(f"checkpoint {path} is damaged ({MANIFEST} has no request)")
    return data


def state(path: Path) -> dict[str, Any] | None:
    """The last saved epoch's state (epoch, history, ...), None when no epoch finished yet."""
    data = _read(path, STATE)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("epoch"), int) or not isinstance(data.get("history"), dict):
        raise CheckpointError(f"checkpoint {path} is damaged ({STATE} lacks epoch or history)")
    return data


def history_of(path: Path | None) -> tuple[dict[str, list[float]], int]:
    """(per-epoch history, epochs done) saved so far; empty when nothing was saved or it cannot be read
    (an interrupted run is recorded either way)."""
    if path is None:
        return {}, 0
    try:
        saved = state(path)
    except CheckpointError:
        return {}, 0
    return (saved["history"], saved["epoch"]) if saved else ({}, 0)


def remove(path: Path | None, results_root: str | os.PathLike | None = None) -> None:
    """Delete a checkpoint folder's own files, only if xraybench made it (it holds the manifest):
    the manifest, the state, ``epoch-N.npz`` and their temporary files. The folder goes only once
    empty, and ``RESULTS/checkpoints`` (with ``results_root`` given) only once empty too; anything
    else a user put there stays."""
    if path is None or not path.is_dir() or not is_ours(path):
        return
    for entry in os.listdir(path):
        if entry == MANIFEST:
            continue  # last: while it is there the folder is still marked as ours
        if entry == STATE or _ARRAYS.fullmatch(entry) or _TEMP.fullmatch(entry):
            with contextlib.suppress(OSError):
                os.unlink(path / entry)
    with contextlib.suppress(OSError):
        os.unlink(path / MANIFEST)
    with contextlib.suppress(OSError):  # only if empty
        path.rmdir()
    if results_root is not None and path.parent == Path(results_root) / "checkpoints":
        with contextlib.suppress(OSError):
            path.parent.rmdir()


# --- the training process's side -----------------------------------------------------------

_ACTIVE: dict[str, Path | None] = {"save_to": None, "resume_from": None}


@contextlib.contextmanager
def active(save_to: str | None, resume_from: str | None = None) -> Iterator[None]:
    """While the block runs, ``fit_keras`` saves each epoch to ``save_to`` and starts from
    ``resume_from``'s last epoch (a module setting, so the harness between them stays unchanged)."""
    before = dict(_ACTIVE)
    _ACTIVE.update(save_to=Path(save_to) if save_to else None, resume_from=Path(resume_from) if resume_from else None)
    try:
        yield
    finally:
        _ACTIVE.update(before)


def current() -> tuple[Path | None, Path | None]:
    return _ACTIVE["save_to"], _ACTIVE["resume_from"]


def save(path: Path, epoch: int, history: dict[str, list[float]], model_vars: list, optimizer_vars: list,
         stopper: dict[str, Any], best_weights: list | None, average: list | None = None) -> None:
    """Save epoch ``epoch`` (1-based count of epochs done): arrays first, then the state naming them.
    ``average``: the weight average of a run that averages its weights (training/keras.py)."""
    name = f"epoch-{epoch}.npz"
    groups = {"model": model_vars, "optimizer": optimizer_vars, "best": best_weights, "average": average}
    arrays = {f"{group}_{i}": np.asarray(v) for group, values in groups.items() for i, v in enumerate(values or [])}
    tmp = path / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # mypy matches **arrays against allow_pickle: bool
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / name)
    previous = state(path)
    _atomic_write(path / STATE, {
        "format": FORMAT, "epoch": epoch, "history": history, "arrays": name,
        "counts": {group: None if values is None else len(values) for group, values in groups.items()},
        "stopper": stopper,
    })
    old = previous.get("arrays") if previous else None
    if isinstance(old, str) and old != name and _ARRAYS.fullmatch(old):
        with contextlib.suppress(OSError):
            (path / old).unlink()


def load(path: Path) -> dict[str, Any]:
    """The last saved epoch with its arrays: keys of ``state`` plus model, optimizer, best (lists)."""
    saved = state(path)
    if saved is None:
        raise CheckpointError(f"checkpoint {path} holds no finished epoch; nothing to resume")
    counts = saved.get("counts") or {}
    arrays = _arrays_name(path, saved)
    try:
        with np.load(path / arrays, allow_pickle=False) as npz:
            for group in ("model", "optimizer", "best", "average"):  # the first two always saved
                n = counts[group] if group in ("model", "optimizer") else counts.get(group)
                saved[group] = None if n is None else [npz[f"{group}_{i}"] for i in range(int(n))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged ({arrays}: {exc})") from None
    return saved
