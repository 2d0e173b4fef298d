"""Run records and the store that keeps them.

One JSON file per run under ``RESULTS/runs/`` (summary, metrics, environment) and
a sidecar ``.scores.json`` with the per-image test scores. Each file is written
to a temporary name and renamed into place, and run ids are unique, so any
number of processes can record at once without losing or tearing a record. The
summary is written last: a run exists once its summary does.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

RESULTS_ENV = "XRAYBENCH_RESULTS"
STATUSES = ("done", "error", "timeout", "interrupted")
SCHEMA = 1
_BULKY = ("history", "val_metrics", "params", "description")


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--results DIR``, else ``$XRAYBENCH_RESULTS``, else ``./leaderboards``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser() if env else Path("leaderboards")


def new_run_id(model: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in model)[:40]
    return f"{stamp}-{safe}-{secrets.token_hex(3)}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, payload: Any, indent: int | None = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=indent, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class ResultStore:
    """Reads and writes run records under one results folder."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = results_dir(root)
        self.runs = self.root / "runs"

    def save(self, record: dict[str, Any], scores: dict[str, Any] | None = None) -> Path:
        """Write the scores sidecar, then the summary (the commit point)."""
        if record.get("status") not in STATUSES:
            raise ValueError(f"run status must be one of {STATUSES}, got {record.get('status')!r}")
        record = {"schema": SCHEMA, **record}
        run_id = record["run_id"]
        if scores is not None:
            _atomic_write(self.runs / f"{run_id}.scores.json", scores)
            record["has_scores"] = True
        path = self.runs / f"{run_id}.json"
        _atomic_write(path, record)
        return path

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every run record in full (per-epoch history included), straight from the files."""
        if not self.runs.is_dir():
            return
        for path in sorted(self.runs.glob("*.json")):
            if path.name.endswith(".scores.json") or path.name.startswith("."):
                continue  # scores sidecars and the summary index are not records
            try:
                with open(path) as fh:
                    yield json.load(fh)
            except (OSError, ValueError):
                continue  # a foreign or damaged file never hides the others

    def summaries(self) -> Iterator[dict[str, Any]]:
        """Every run record without its bulky parts (history, validation metrics, params),
        read through a cache index so that 1,000 runs list fast.

        The index (``runs/.index.json``) maps file name -> ((mtime_ns, size), summary). It is
        only a cache: files are the truth, new or changed ones are parsed and the index is
        rewritten atomically (best effort; a read-only folder just skips that).
        """
        if not self.runs.is_dir():
            return iter(())
        index_path = self.runs / ".index.json"
        try:
            index = json.loads(index_path.read_text())
            if index.get("schema") != SCHEMA:
                index = {}
        except (OSError, ValueError):
            index = {}
        cached = index.get("records", {})
        fresh: dict[str, Any] = {}
        changed = False
        with os.scandir(self.runs) as entries:
            names = sorted(
                (e.name, e.stat()) for e in entries
                if e.name.endswith(".json") and not e.name.endswith(".scores.json") and not e.name.startswith(".")
            )
        for name, st in names:
            stamp = [st.st_mtime_ns, st.st_size]
            hit = cached.get(name)
            if hit is not None and hit[0] == stamp:
                fresh[name] = hit
                continue
            try:
                with open(self.runs / name) as fh:
                    record = json.load(fh)
            except (OSError, ValueError):
                continue  # a foreign or damaged file never hides the others
            fresh[name] = [stamp, {k: v for k, v in record.items() if k not in _BULKY}]
            changed = True
        if changed or len(fresh) != len(cached):
            try:
                _atomic_write(index_path, {"schema": SCHEMA, "records": fresh}, indent=None)
            except OSError:
                pass
        return iter([entry[1] for entry in fresh.values()])

    def records(self, status: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.iter_records() if status is None or r.get("status") == status]

    def get(self, run_id: str) -> dict[str, Any]:
        path = self.runs / f"{run_id}.json"
        if not path.is_file():
            matches = [p for p in self.runs.glob(f"{run_id}*.json")
                       if not p.name.endswith(".scores.json") and not p.name.startswith(".")]
            if len(matches) != 1:
                from xraybench.errors import XRayBenchError

                raise XRayBenchError(f"no single run matches {run_id!r} in {self.runs}")
            path = matches[0]
        return json.loads(path.read_text())

    def scores(self, run_id: str) -> dict[str, Any] | None:
        path = self.runs / f"{run_id}.scores.json"
        return json.loads(path.read_text()) if path.is_file() else None
