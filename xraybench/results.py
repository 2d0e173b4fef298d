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
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

RESULTS_ENV = "XRAYBENCH_RESULTS"
STATUSES = ("done", "error", "timeout", "interrupted")
SCHEMA = 1
_BULKY = ("history", "val_metrics", "params", "description")
FALLBACK_ENV = "XRAYBENCH_FALLBACK_RESULTS"  # where a run goes when its results folder cannot be written


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--results DIR``, else ``$XRAYBENCH_RESULTS``, else ``./leaderboards``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser() if env else Path("leaderboards")


def fallback_dir() -> Path:
    """Where a finished run is written when its results folder cannot be: ``$XRAYBENCH_FALLBACK_RESULTS``,
    else the user's state folder (``platformdirs``), so that hours of training are never thrown away."""
    env = os.environ.get(FALLBACK_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir("xraybench")) / "unsaved-runs"


def _masked(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the secrets of its command line and storage URL masked (records get published)."""
    from xraybench.redaction import mask_command, mask_url

    out = dict(record)
    if isinstance(out.get("command"), str):
        out["command"] = mask_command(out["command"])
    tags = out.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get("storage"), str):
        out["tags"] = {**tags, "storage": mask_url(tags["storage"])}
    return out


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

    def check_writable(self) -> None:
        """Raise a one-line XRayBenchError unless runs can be written here; called before any training,
        so that a results path that is a file or a read-only folder costs seconds, not a run."""
        from xraybench.errors import XRayBenchError

        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=self.runs)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise XRayBenchError(
                f"results folder {self.root} cannot be written ({why}: {exc.filename or self.runs}); "
                f"pass --results DIR or set ${RESULTS_ENV} to a writable folder"
            ) from None

    def save(self, record: dict[str, Any], scores: dict[str, Any] | None = None) -> Path:
        """Write the scores sidecar, then the summary (the commit point); returns the summary's path.

        When the results folder cannot be written (removed, made read-only or replaced by a file
        while the run trained), the run goes to ``fallback_dir()`` instead and one line on stderr
        says where: a finished run is never dropped.
        """
        if record.get("status") not in STATUSES:
            raise ValueError(f"run status must be one of {STATUSES}, got {record.get('status')!r}")
        record = _masked({"schema": SCHEMA, **record})
        try:
            return self._write(self.runs, record, scores)
        except OSError as exc:
            failure = f"{exc.strerror or type(exc).__name__}: {exc.filename or self.runs}"
        for target in (fallback_dir(), Path(tempfile.gettempdir()) / "xraybench-unsaved-runs"):
            try:
                path = self._write(target, record, scores)
            except OSError:
                continue
            print(f"warning: results folder {self.runs} could not be written ({failure}); run {record['run_id']} "
                  f"was saved to {path} instead: move {target}/{record['run_id']}.* into a results folder's runs/",
                  file=sys.stderr)
            return path
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"run {record['run_id']} could not be written to {self.runs} ({failure}) "
                             f"nor to {fallback_dir()} or the temporary folder")

    @staticmethod
    def _write(runs: Path, record: dict[str, Any], scores: dict[str, Any] | None) -> Path:
        record = dict(record)
        run_id = record["run_id"]
        if scores is not None:
            _atomic_write(runs / f"{run_id}.scores.json", scores)
            record["has_scores"] = True
        path = runs / f"{run_id}.json"
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
            fresh[name] = [stamp, _masked({k: v for k, v in record.items() if k not in _BULKY})]
            changed = True
        if changed or len(fresh) != len(cached):
            try:
                _atomic_write(index_path, {"schema": SCHEMA, "records": fresh}, indent=None)
            except OSError:
                pass
        return iter([_masked(entry[1]) for entry in fresh.values()])  # an index from before masking, too

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
