"""Run records and the store that keeps them.

One JSON file per run under ``RESULTS/runs/`` (summary, metrics, environment) and
a sidecar ``.scores.json`` with the per-image test scores. Each file is written
to a temporary name and renamed into place, and run ids are unique, so any
number of processes can record at once without losing or tearing a record. The
summary is written last: a run exists once its summary does.

Reading never hides good runs: ``load`` returns the records that pass
``records.parse`` (migrated to the current schema) and, beside them, every file it
skipped with the reason, which each command prints in one line (``skipped_line``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from xraybench import jsonsafe
from xraybench.records import InvalidRecord, RunRecord, parse, validated

RESULTS_ENV = "XRAYBENCH_RESULTS"
# of the summary index (runs/.index.json; 2: summaries keep params' recipe); a record's own is records.SCHEMA_VERSION
SCHEMA = 2
_BULKY = ("history", "val_metrics", "params", "description")
FALLBACK_ENV = "XRAYBENCH_FALLBACK_RESULTS"  # where a run goes when its results folder cannot be written


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its bulky fields, but with its training recipe (the leaderboard's variant
    names it, and a plugin's default recipe is only in ``params``)."""
    summary = {k: v for k, v in record.items() if k not in _BULKY}
    params = record.get("params")
    if isinstance(params, dict) and "recipe" in params:
        summary["params"] = {"recipe": params["recipe"]}
    return summary


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
    """The record with the secrets of its command line, storage URL, data source and free text
    (reason, traceback) masked (records get published)."""
    from xraybench.redaction import mask_command, mask_text, mask_url

    out = dict(record)
    if isinstance(out.get("command"), str):
        out["command"] = mask_command(out["command"])
    for key in ("reason", "traceback"):
        if isinstance(out.get(key), str):
            out[key] = mask_text(out[key])
    tags = out.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get("storage"), str):
        out["tags"] = {**tags, "storage": mask_url(tags["storage"])}
    data = out.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        out["data"] = {**data, "source": mask_text(data["source"])}
    return out


_RUN_ID = re.compile(r"[A-Za-z0-9_.-]+")


def _is_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) is not None and ".." not in run_id


def check_run_id(run_id: str) -> None:
    """A one-line XRayBenchError unless ``run_id`` could name a run (as ``new_run_id`` makes them):
    ids are joined into paths and matched as prefixes, so no separators, wildcards or ``..``."""
    if not _is_run_id(run_id):
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"{run_id!r} is not a run id (letters, digits, '_', '-', '.'; "
                             "`xraybench runs` lists them)")


def new_run_id(model: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in model)[:40]
    return f"{stamp}-{safe}-{secrets.token_hex(3)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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

    def save(self, record: RunRecord | dict[str, Any], scores: dict[str, Any] | None = None) -> Path:
        """Move the run's model into place (``saved_model``: staged by the run's child), write the
        scores sidecar, then the summary (the commit point); returns the summary's path.

        When the results folder cannot be written (removed, made read-only or replaced by a file
        while the run trained), the run goes to ``fallback_dir()`` instead and one line on stderr
        says where: a finished run is never dropped.
        """
        from xraybench.saved_model import take_staged

        try:
            record = validated(record)
        except InvalidRecord as exc:  # a producer's bug: one line that says what is wrong, never a traceback
            run_id = record.run_id if isinstance(record, RunRecord) else record.get("run_id")
            raise InvalidRecord(f"run {run_id} not recorded: its record is invalid ({exc}); please report this") from None
        check_run_id(record.run_id)  # it names the files: never a path elsewhere
        model, record = take_staged(record, self.runs)  # a staged model that is not there: no model_file, a note
        if scores is not None:
            record = replace(record, has_scores=True)
        payload = _masked(record.to_dict())  # secrets hidden
        name = Path(record.saved_model.path).name if model is not None and record.saved_model else ""
        try:
            return self._write(self.runs, payload, scores, model, name)
        except OSError as exc:
            failure = f"{exc.strerror or type(exc).__name__}: {exc.filename or self.runs}"
        if model is not None and not model.exists():  # already moved into runs/ before the failure
            model = self.runs / name
        for target in (fallback_dir(), Path(tempfile.gettempdir()) / "xraybench-unsaved-runs"):
            try:
                path = self._write(target, payload, scores, model, name)
            except OSError:
                continue
            print(f"warning: results folder {self.runs} could not be written ({failure}); run {record.run_id} "
                  f"was saved to {path} instead: move {target}/{record.run_id}.* into a results folder's runs/",
                  file=sys.stderr)
            return path
        from xraybench.errors import XRayBenchError

        raise XRayBenchError(f"run {record.run_id} could not be written to {self.runs} ({failure}) "
                             f"nor to {fallback_dir()} or the temporary folder")

    @staticmethod
    def _write(runs: Path, payload: dict[str, Any], scores: dict[str, Any] | None, model: Path | None = None,
               model_name: str = "") -> Path:
        """Write the (serialised) record's files under ``runs``: its model (``model`` moved to
        ``model_name``), scores, then the record."""
        run_id = payload["run_id"]
        if model is not None:
            from xraybench.saved_model import place

            place(model, runs / model_name)
        if scores is not None:
            _atomic_write(runs / f"{run_id}.scores.json", scores)
        path = runs / f"{run_id}.json"
        _atomic_write(path, payload)
        return path

    def iter_records(self, failed: list[tuple[str, str]] | None = None) -> Iterator[dict[str, Any]]:
        """Every run file's JSON in full (per-epoch history included), straight from the files;
        files that cannot be read are skipped and, with ``failed``, listed there as (name, reason)."""
        return (obj for _, obj in self._named_records(failed))

    def _named_records(self, failed: list[tuple[str, str]] | None) -> Iterator[tuple[str, Any]]:
        if not self.runs.is_dir():
            return
        for path in sorted(self.runs.glob("*.json")):
            if path.name.endswith(".scores.json") or path.name.startswith("."):
                continue  # scores sidecars and the summary index are not records
            try:
                obj = jsonsafe.load(path)  # too deep or too large: named and skipped like any damaged file
            except (OSError, ValueError) as exc:
                if failed is not None:  # a foreign or damaged file never hides the others
                    failed.append((path.name, _unreadable(exc)))
                continue
            yield path.name, obj

    def summaries(self, failed: list[tuple[str, str]] | None = None) -> Iterator[dict[str, Any]]:
        """Every run record without its bulky parts (history, validation metrics, params),
        read through a cache index so that 1,000 runs list fast.

        The index (``runs/.index.json``) maps file name -> ((mtime_ns, size), summary). It is
        only a cache: files are the truth, new or changed ones are parsed and the index is
        rewritten atomically (best effort; a read-only folder just skips that). An index file
        without our ``schema`` key is not ours: it is left as it is and nothing is cached. Unreadable
        files are skipped and, with ``failed``, listed there as (name, reason).
        """
        return iter([summary for _, summary in self._named_summaries(failed)])

    def _named_summaries(self, failed: list[tuple[str, str]] | None) -> list[tuple[str, dict[str, Any]]]:
        if not self.runs.is_dir():
            return []
        index_path = self.runs / ".index.json"
        cached, ours = _read_index(index_path)
        fresh: dict[str, Any] = {}
        changed = False
        names = []
        with os.scandir(self.runs) as entries:
            for e in entries:
                if not e.name.endswith(".json") or e.name.endswith(".scores.json") or e.name.startswith("."):
                    continue
                try:  # a dangling link, a link loop or a file deleted since the listing
                    names.append((e.name, e.stat()))
                except OSError as exc:
                    if failed is not None:
                        failed.append((e.name, _unreadable(exc)))
        names.sort(key=lambda item: item[0])
        for name, st in names:
            stamp = [st.st_mtime_ns, st.st_size]
            hit = cached.get(name)
            if isinstance(hit, list) and len(hit) == 2 and hit[0] == stamp and isinstance(hit[1], dict):
                fresh[name] = hit
                continue
            try:
                record = jsonsafe.load(self.runs / name)
            except (OSError, ValueError) as exc:
                if failed is not None:  # a foreign or damaged file never hides the others
                    failed.append((name, _unreadable(exc)))
                continue
            if not isinstance(record, dict):
                if failed is not None:
                    try:
                        parse(record)
                    except InvalidRecord as exc:  # its reason, worded as everywhere else
                        failed.append((name, str(exc)))
                continue
            fresh[name] = [stamp, _masked(_summary(record))]
            changed = True
        if ours and (changed or len(fresh) != len(cached)):
            try:
                _atomic_write(index_path, {"schema": SCHEMA, "records": fresh}, indent=None)
            except OSError:
                pass
        return [(name, _masked(entry[1])) for name, entry in fresh.items()]  # an index from before masking, too

    def load(self, full: bool = False) -> Loaded:
        """Every valid run record (migrated) and every skipped file with its reason.
        ``full``: whole records from the files; else summaries (no history) via the index."""
        failed: list[tuple[str, str]] = []
        out, skipped = [], []
        named = self._named_records(failed) if full else self._named_summaries(failed)
        for name, obj in named:
            try:
                out.append(parse(obj))
            except InvalidRecord as exc:
                skipped.append(Skipped(self.runs / name, str(exc)))
        skipped += [Skipped(self.runs / name, reason) for name, reason in failed]
        skipped.sort(key=lambda s: s.path.name)
        return Loaded(out, skipped)

    def rewritable(self) -> Iterator[tuple[Path, RunRecord]]:
        """Every valid run record (in full, migrated) that xraybench may rewrite, with the file it
        was read from, so a rewrite updates that file whatever its name. Only files xraybench made
        qualify: plain files (a link leads to someone else's file) whose JSON carries the version key
        that ``save`` stamps on every record (``schema_version``; ``schema`` before version 2)."""
        for name, obj in self._named_records(None):
            path = self.runs / name
            if path.is_symlink() or not isinstance(obj, dict) or not {"schema_version", "schema"} & obj.keys():
                continue
            try:
                yield path, parse(obj)
            except InvalidRecord:
                continue  # damaged: `load` names it; nothing to rewrite

    def records(self) -> list[dict[str, Any]]:
        """Every valid run record in full, as dicts in the current schema (damaged files skipped)."""
        return [r.to_dict() for r in self.load(full=True).records]

    def get(self, run_id: str) -> dict[str, Any]:
        """``find``'s record, serialised (as the file holds it, migrated)."""
        return self.find(run_id).to_dict()

    def find(self, run_id: str) -> RunRecord:
        """The run whose id is ``run_id`` or, uniquely, starts with it (one-line errors otherwise)."""
        check_run_id(run_id)
        path = self.runs / f"{run_id}.json"
        if not path.is_file():
            names = sorted(os.listdir(self.runs)) if self.runs.is_dir() else []
            matches = [self.runs / n for n in names
                       if n.startswith(run_id) and n.endswith(".json")
                       and not n.endswith(".scores.json") and not n.startswith(".")]
            if len(matches) != 1:
                from xraybench.errors import XRayBenchError

                if matches:
                    ids = sorted(p.name[:-len(".json")] for p in matches)
                    listed = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
                    raise XRayBenchError(f"ambiguous: {run_id!r} matches {listed} (give more characters)")
                raise XRayBenchError(f"no single run matches {run_id!r} in {self.runs}; `xraybench runs` lists them")
            path = matches[0]
        return self.read(path)

    def read(self, path: Path) -> RunRecord:
        """One run file as a RunRecord; an XRayBenchError naming the file if it is not one."""
        from xraybench.errors import XRayBenchError

        try:
            return parse(jsonsafe.load(path))
        except (OSError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, InvalidRecord) else _unreadable(exc)
            raise XRayBenchError(f"{path} is not a readable run record ({reason})") from None

    def scores(self, run_id: str) -> dict[str, Any] | None:
        """The run's per-image scores; None if it has none; an ``InvalidRecord`` (a ValueError)
        naming the file and the first thing wrong when it is damaged (``scores_problem``), so
        that no caller computes a metric from a file that only looks like scores."""
        if not _is_run_id(run_id):  # a record's id that cannot name a file never names one elsewhere
            return None
        path = self.runs / f"{run_id}.scores.json"
        if not path.is_file():
            return None
        try:
            scores = jsonsafe.load(path)
        except (OSError, ValueError) as exc:
            raise DamagedScores(path, _unreadable(exc)) from None
        problem = scores_problem(scores)
        if problem:
            raise DamagedScores(path, problem)
        return scores

    def scores_loader(self, damaged: list[Skipped]) -> Callable[[str], dict[str, Any] | None]:
        """``scores`` for a command that can do without some: a damaged file is treated as missing
        (None) and noted once in ``damaged``, for ``damaged_scores_line`` to name."""
        seen: set[Path] = set()

        def load(run_id: str) -> dict[str, Any] | None:
            try:
                return ResultStore.scores(self, run_id)  # the method, even where the loader stands in for it
            except DamagedScores as exc:
                if exc.path not in seen:
                    seen.add(exc.path)
                    damaged.append(Skipped(exc.path, exc.reason))
                return None

        return load


SCORE_SPLITS = ("test", "val")  # test is required; val is absent from runs recorded before it was stored


def scores_problem(scores: Any) -> str | None:
    """What is wrong with a decoded scores file, in a few words, or None when every split it holds
    is usable: ids, labels and scores lists of one length, unique ids (strings or integers),
    labels 0 or 1, scores finite numbers in [0, 1].

    Why all of it, here: every reader (leaderboard, compare, report, backfill, ensemble) feeds
    these lists to metrics that fail far away (a ``None`` score was a ``TypeError`` in McNemar's
    test) or, worse, quietly (arrays shorter than the ids were zipped to fewer images).
    """
    if not isinstance(scores, dict):
        return "not an object"
    for split in SCORE_SPLITS:
        keys = [f"{split}_{what}" for what in ("ids", "labels", "scores")]
        if split != "test" and not any(k in scores for k in keys):
            continue
        for key in keys:
            if not isinstance(scores.get(key), list):
                return f"no {key!r} list"
        ids, labels, values = (scores[k] for k in keys)
        if not len(ids) == len(labels) == len(values):
            return f"{split} ids, labels and scores differ in length: {len(ids)}, {len(labels)}, {len(values)}"
        if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            return f"a {split} id is not a string"
        if len(set(ids)) != len(ids):
            return f"{split} ids repeat"
        if not all(type(v) is int and v in (0, 1) for v in labels):
            return f"a {split} label is not 0 or 1"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values):
            return f"a {split} score is not a number in [0, 1]"  # nan fails both comparisons
    return None


class DamagedScores(InvalidRecord):
    """A scores file that cannot be used; ``path`` and ``reason`` for the line that names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason})")
        self.path, self.reason = path, reason


class Skipped(NamedTuple):
    path: Path
    reason: str


class Loaded(NamedTuple):
    records: list[RunRecord]
    skipped: list[Skipped]


def _read_index(path: Path) -> tuple[dict[str, Any], bool]:
    """The summary index's cached entries, and whether the index is ours to rewrite: none yet, or
    one that carries our ``schema`` key (someone else's file is left alone, and nothing is cached)."""
    try:
        index = jsonsafe.load(path)
    except FileNotFoundError:
        return {}, not path.is_symlink()
    except (OSError, ValueError):
        return {}, False
    if not isinstance(index, dict) or "schema" not in index:
        return {}, False
    cached = index.get("records") if index.get("schema") == SCHEMA else {}  # an older version's: ours to rewrite
    return (cached if isinstance(cached, dict) else {}), True  # a damaged index is only a cache: rebuilt


def _unreadable(exc: BaseException) -> str:
    if isinstance(exc, jsonsafe.UnsafeJSON):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not text"
    if isinstance(exc, ValueError):
        return "not JSON"
    return f"unreadable: {exc.strerror or type(exc).__name__}" if isinstance(exc, OSError) else str(exc)


def damaged_scores_line(damaged: list[Skipped]) -> str | None:
    """One line naming every scores file a command treated as missing because it is damaged, or None."""
    if not damaged:
        return None
    parts = "; ".join(f"{s.path} ({s.reason})" for s in damaged)
    return f"{len(damaged)} scores file{'s' if len(damaged) != 1 else ''} damaged, treated as missing: {parts}"


def skipped_line(skipped: list[Skipped]) -> str | None:
    """One line naming every skipped file and why, or None when nothing was skipped."""
    if not skipped:
        return None
    parts = "; ".join(f"{s.path} ({s.reason})" for s in skipped)
    return f"{len(skipped)} record{'s' if len(skipped) != 1 else ''} skipped: {parts}"
