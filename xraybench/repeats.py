"""Same command, same run: what makes two runs the same, and the recorded done run a new one repeats.

Why: running the main job twice trained twice and the leaderboard counted the repeat as another
run ("3 (1 seed)"), as if it were evidence. A run is decided by its model (plugin distribution
and version), its resolved parameters (the training recipe among them), its seed, its data (the
content fingerprint, the image size and channels it was decoded to, the validation fraction),
the operating-point rule (Youden's J or ``--target-sensitivity``), the Keras backend and
precision it trains with, and the xraybench version. Where all of these equal a recorded
``done`` run in the same results folder, ``run`` prints that run instead of training again
(``--force`` trains anew), and the leaderboard counts identical runs once.

Tuned runs and ensembles are never matched by ``run`` (they come from ``tune`` and ``ensemble``).
Dask runs (``--workers``/``--scheduler``) always train: this module is asked only by the
in-process loop of ``xraybench run``. Nothing here imports a backend: which one a run would
use comes from ``training/backend.py``, which only looks for the installed packages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import (
    YOUDEN,
    RunRecord,
    RunStatus,
    coerce,
    target_sensitivity_method,
)
from xraybench.specs import spec_type, trained_on

Identity = tuple


def _canonical(params: dict[str, Any] | None) -> str:
    """Parameters as one string that ignores key order and JSON's round trip (tuples become lists)."""
    return json.dumps(params or {}, sort_keys=True, default=str)


def _identity(*, model: str, distribution: str, version: str, params: dict[str, Any] | None, seed: Any,
              fingerprint: str, image_size: Any, channels: Any, val_fraction: Any, method: str, backend: str | None,
              precision: str | None, xraybench_version: str | None, tuned: bool, ensemble: bool) -> Identity:
    """The fields two runs must share to be the same run, in one fixed order (see the module docstring)."""
    return (model, distribution, version, None if params is None else _canonical(params), seed, fingerprint, image_size, channels,
            None if val_fraction is None else float(val_fraction), method, backend, precision, xraybench_version,
            tuned, ensemble)


def identity(record: RunRecord | dict[str, Any], params: bool = True) -> Identity:
    """A recorded run's identity; ``params=False`` leaves the parameters out (a summary record,
    as the results folder's index holds them, has none: it narrows the candidates cheaply)."""
    r = coerce(record)
    keras = spec_type(r.kind).on_keras_backend
    return _identity(
        model=r.model, distribution=r.distribution, version=r.version, params=r.params if params else None,
        seed=r.seed, fingerprint=r.fingerprint, image_size=r.image_size, channels=r.channels,
        val_fraction=(r.data or {}).get("val_fraction"), method=(r.val_threshold or {}).get("method") or YOUDEN,
        backend=(r.environment or {}).get("backend") if keras else None, precision=r.precision if keras else None,
        xraybench_version=(r.environment or {}).get("xraybench"), tuned=bool((r.tags or {}).get("tuned")),
        ensemble=r.members is not None,
    )


def planned_identity(prepared: Any, params: bool = True) -> Identity:
    """The identity a prepared run (``runner.Prepared``) will have, known before it trains and
    without importing its backend: the backend is the one ``training/backend.py`` would choose
    (``load_registry`` pinned it in ``KERAS_BACKEND``), and ``--precision auto`` the one the
    trainer picks on this machine (``auto_precision``)."""
    import xraybench
    from xraybench.training.backend import keras_backend

    spec, request, data = prepared.spec, prepared.request, prepared.dataset
    keras = spec_type(spec.kind).on_keras_backend
    target = request.target_sensitivity
    return _identity(
        model=spec.name, distribution=spec.distribution, version=spec.version, params=prepared.params if params else None,
        seed=request.seed, fingerprint=data.fingerprint, image_size=data.image_size, channels=data.channels,
        val_fraction=data.val_fraction, method=YOUDEN if target is None else target_sensitivity_method(target),
        backend=keras_backend() if keras else None,
        precision=(request.precision if request.precision != "auto" else auto_precision()) if keras else None,
        xraybench_version=xraybench.__version__, tuned=bool(request.tags.get("tuned")), ensemble=False,
    )


def auto_precision() -> str:
    """What ``--precision auto`` will be here, told without importing a backend: mixed_bfloat16
    where an NVIDIA GPU is visible (its driver lists one and ``CUDA_VISIBLE_DEVICES`` does not
    hide it), else float32 (``training/keras.resolve_precision`` asks the backend itself). A wrong
    guess only trains a run again, or shows a recorded run marked as such."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "float32"
    try:
        gpus = any(Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        gpus = False
    return "mixed_bfloat16" if gpus else "float32"


def find_recorded(prepared: Any, records: Iterable[RunRecord],
                  full: Callable[[str], RunRecord] | None = None) -> RunRecord | None:
    """The newest ``done`` run among ``records`` with the identity ``prepared`` will have, or None.
    ``records`` may be summaries whose parameters are cut down to the recipe (``ResultStore.load``):
    with ``full`` given, a candidate's whole record is read with ``full(run_id)`` (``ResultStore.find``)
    to compare its parameters, and the whole record is what is returned (the report needs its
    validation metrics)."""
    wanted = planned_identity(prepared)
    loose = planned_identity(prepared, params=False)
    candidates = [r for r in records if r.status is RunStatus.DONE and r.model == prepared.spec.name
                  and identity(r, params=False) == loose]
    for r in sorted(candidates, key=lambda r: (r.created_at, r.run_id), reverse=True):
        if full is not None:  # a summary's params are partial: compare the whole record's
            try:
                r = full(r.run_id)
            except (OSError, ValueError, XRayBenchError):  # unreadable since it was listed: not a match
                continue
        if identity(r) == wanted:
            return r
    return None


def recorded_line(record: RunRecord) -> str:
    """What ``run`` says instead of training (plain text; the caller escapes it)."""
    backend = trained_on(record)
    what = f"backend {backend}, " if backend else ""
    return (f"recorded result: run {record.run_id} ({record.created_at[:16].replace('T', ' ')}) had this model, these "
            f"parameters, seed {record.seed}, this data, {what}xraybench {(record.environment or {}).get('xraybench')}; "
            "shown, not trained again (--force trains anew)")


def distinct_runs(runs: Iterable[RunRecord]) -> int:
    """How many runs of a leaderboard row are not identical repeats of another (``--force``, or
    records of older versions that trained the same command again): a repeat is not evidence.
    The leaderboard reads summaries (no parameters), so the tags (overrides, a tuned run's study
    and trial) stand in for them beside whatever parameters a record carries."""
    return len({identity(r) + (_canonical(r.tags),) for r in runs})
