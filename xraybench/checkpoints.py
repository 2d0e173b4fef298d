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
keras objects are passed in by ``keras_training``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from xraybench.errors import XRayBenchError

MANIFEST = "xraybench-checkpoint.json"
STATE = "state.json"
FORMAT = 1


class CheckpointError(XRayBenchError):
    """A checkpoint folder that cannot be used; the message is one line naming it."""


def folder(results_root: str | os.PathLike, run_id: str) -> Path:
    return Path(results_root) / "checkpoints" / run_id


def _write_json(path: Path, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create(path: Path, run_id: str, request: dict[str, Any]) -> None:
    """Make the folder and its manifest (the parent, before the child starts)."""
    path.mkdir(parents=True, exist_ok=True)
    _write_json(path / MANIFEST, {"format": FORMAT, "run_id": run_id, "request": request})


def is_ours(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def manifest(path: Path) -> dict[str, Any]:
    """The manifest, or a one-line CheckpointError naming the folder."""
    try:
        data = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {path} (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged ({MANIFEST}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("request"), dict):
        raise CheckpointError(f"checkpoint {path} is damaged ({MANIFEST} has no request)")
    return data


def state(path: Path) -> dict[str, Any] | None:
    """The last saved epoch's state (epoch, history, ...), None when no epoch finished yet."""
    try:
        data = json.loads((path / STATE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged ({STATE}: {exc})") from None
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


def remove(path: Path | None) -> None:
    """Delete a checkpoint folder, only if xraybench made it (it holds the manifest)."""
    if path is not None and path.is_dir() and is_ours(path):
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):  # RESULTS/checkpoints itself, once empty
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
         stopper: dict[str, Any], best_weights: list | None) -> None:
    """Save epoch ``epoch`` (1-based count of epochs done): arrays first, then the state naming them."""
    name = f"epoch-{epoch}.npz"
    arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(model_vars)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(optimizer_vars)})
    for i, v in enumerate(best_weights or []):
        arrays[f"best_{i}"] = np.asarray(v)
    tmp = path / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / name)
    previous = state(path)
    _write_json(path / STATE, {
        "format": FORMAT, "epoch": epoch, "history": history, "arrays": name,
        "counts": {"model": len(model_vars), "optimizer": len(optimizer_vars),
                   "best": None if best_weights is None else len(best_weights)},
        "stopper": stopper,
    })
    if previous and previous.get("arrays") not in (None, name):
        with contextlib.suppress(OSError):
            (path / str(previous["arrays"])).unlink()


def load(path: Path) -> dict[str, Any]:
    """The last saved epoch with its arrays: keys of ``state`` plus model, optimizer, best (lists)."""
    saved = state(path)
    if saved is None:
        raise CheckpointError(f"checkpoint {path} holds no finished epoch; nothing to resume")
    counts = saved.get("counts") or {}
    try:
        with np.load(path / str(saved.get("arrays")), allow_pickle=False) as npz:
            saved["model"] = [npz[f"model_{i}"] for i in range(int(counts["model"]))]
            saved["optimizer"] = [npz[f"optimizer_{i}"] for i in range(int(counts["optimizer"]))]
            best = counts.get("best")
            saved["best"] = None if best is None else [npz[f"best_{i}"] for i in range(int(best))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged ({saved.get('arrays')}: {exc})") from None
    return saved
