"""What runs ON A WORKER for one run: the code and data checked to be the client's (``refusal_of``,
``_data_here``), the worker's share of threads (``thread_limit``), the stop a client's Ctrl-C or
departure sends (``_Stop``), and the run itself, in the runner's isolation, as the client prepared it
(``run_task``). The client records; the worker writes only in a temporary folder of its own."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from xraybench.distributed.cluster import CALL_SECONDS, THREAD_VARS, TOPIC, adopt_env, bounded
from xraybench.records import RunRecord, RunStatus


STOP_SECONDS = 1.0  # how often a running task asks the scheduler whether its client pressed Ctrl-C


@functools.cache
def _files_of(package: str) -> tuple[tuple[str, str], ...]:
    """(path in the package, sha256 prefix) of every Python file of an installed top-level package
    or module; read once per process."""
    import hashlib
    import importlib.util

    found = importlib.util.find_spec(package)
    if found is None or not found.origin or not os.path.isfile(found.origin):
        return ()
    roots = [Path(p) for p in (found.submodule_search_locations or [])]
    files = [(p.relative_to(root).as_posix(), p) for root in roots for p in root.rglob("*.py")] if roots else \
        [(Path(found.origin).name, Path(found.origin))]
    return tuple(sorted((name, hashlib.sha256(path.read_bytes()).hexdigest()[:16]) for name, path in files))


def code_files(spec: Any) -> dict[str, dict[str, str]]:
    """{package: {file: hash}} of xraybench and the top-level package of each module the spec's
    callables come from (the plugin's files). A worker whose files differ from its client's under
    the same version strings refuses the task instead of returning other numbers as ``done``."""
    import sys

    modules = {getattr(value, "__module__", None) for value in vars(spec).values() if callable(value)}
    packages = {m.split(".")[0] for m in modules if isinstance(m, str)} - set(sys.stdlib_module_names) - {"xraybench"}
    return {name: dict(_files_of(name)) for name in ["xraybench", *sorted(packages)]}


def code_digests(files: dict[str, dict[str, str]]) -> dict[str, str]:
    """One sha256 per package of ``code_files``: what a record's environment keeps (``code``)."""
    import hashlib

    return {name: hashlib.sha256("".join(f"{k} {v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()
            for name, hashes in files.items()}


def code_difference(mine: dict[str, dict[str, str]], theirs: dict[str, dict[str, str]]) -> str | None:
    """The first package whose files differ, naming up to three of them; None when all agree."""
    for package in sorted(set(mine) | set(theirs)):
        a, b = mine.get(package, {}), theirs.get(package, {})
        if differ := sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name)):
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            return f"{package} ({', '.join(differ[:3])}{more})"
    return None


def expected_code(spec: Any) -> dict[str, Any]:
    """What a worker must run for ``spec``: this client's versions and files (``refusal``)."""
    from xraybench import __version__

    return {"xraybench": __version__, "plugin": f"{spec.distribution} {spec.version}", "code": code_files(spec)}


def refusal_of(worker: Any, spec: Any, expected: dict[str, Any]) -> str | None:
    """Why this worker must not run ``spec`` for this client, in one line; None when it may."""
    mine, where = expected_code(spec), f"worker {worker.address}"
    if mine["xraybench"] != expected["xraybench"] or mine["plugin"] != expected["plugin"]:
        return (f"{where} has xraybench {mine['xraybench']} and {spec.name} from {mine['plugin']}, the client "
                f"xraybench {expected['xraybench']} and {expected['plugin']}; install the same versions on every worker")
    differ = code_difference(mine["code"], expected["code"])
    return differ and (f"{where} runs other code than the client: {differ} differ; install the same xraybench "
                       f"and plugin files on every worker (docs/distributed.md)")


def thread_limit(worker: Any) -> int:
    """BLAS/OpenMP threads for one run on ``worker``: its machine's cores (as Dask counts them:
    affinity, cgroup quota) over the threads of every worker there, each thread one run at a time.
    Without the scheduler's answer, the worker's own threads alone count."""
    from dask.system import CPU_COUNT
    from distributed.comm import get_address_host
    from distributed.utils import sync

    host = get_address_host(worker.address)
    everyone = bounded(lambda: sync(worker.loop, worker.scheduler.ncores, callback_timeout=CALL_SECONDS), default={})
    here = sum(n for address, n in everyone.items() if get_address_host(address) == host)
    return max(1, CPU_COUNT // max(here, worker.state.nthreads, 1))


class _Stop:
    """Stops a task's run (polled by ``runner.run_isolated``; ``isolation.Child.call``'s ``on_tick``) once
    Dask cancelled or released its key (its client left: Dask only marks the task, whose thread ran on
    until ``--timeout``), or the client's Ctrl-C set ``stop_event`` (asked every ``STOP_SECONDS``; the
    task is not cancelled then, so that it returns the run's own record: epochs, checkpoint)."""

    def __init__(self, worker: Any, key: Any, stop_event: str | None = None) -> None:
        self.worker, self.key, self.stop_event, self.asked = worker, key, stop_event, time.monotonic()

    def is_set(self) -> bool:
        state = self.worker.state.tasks.get(self.key)  # read only, from the task's thread
        if state is None or state.state == "cancelled":
            return True
        if self.stop_event is None or time.monotonic() - self.asked < STOP_SECONDS:
            return False
        from distributed import Event

        self.asked = time.monotonic()
        try:
            return bool(Event(self.stop_event).is_set())  # the worker's client
        except Exception:  # no answer this time: ask again (a lost client cancels the key anyway)
            return False


def begin_task(env: dict[str, str | None], stop_event: str | None = None) -> tuple[Any, _Stop, int, dict[str, Any]]:
    """A task's start: tell the client, allow child processes (Dask's workers are daemons, which may have
    none; the run's child dies with its parent), with the client's hash seed and ``thread_limit``."""
    import multiprocessing as mp
    import socket

    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    mp.current_process()._config["daemon"] = False  # type: ignore[attr-defined]  # (private, no public switch)
    worker.log_event(TOPIC, {"key": str(key), "worker": worker.address})
    threads = thread_limit(worker)
    adopt_env({**env, **dict.fromkeys(THREAD_VARS, str(threads))})
    where = {"worker": worker.address, "worker_name": str(worker.name), "host": socket.gethostname(),
             "resources": dict(getattr(worker.state, "total_resources", {}) or {}),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return worker, _Stop(worker, key, stop_event), threads, where


def run_task(shipped: Any, expected: dict[str, Any], env: dict[str, str | None],
             stop_event: str | None = None) -> tuple[Any, ...]:
    """Runs ON A WORKER: check the code and the data are the client's, run the model isolated as the
    client prepared it (``runner.Shipped``: no registry load, no parameter resolution here). Returns (record,
    scores, the staged model's bytes, where it ran); the record is a one-line refusal (a str) when the
    run could not start here. Writes only in a temporary folder of its own: the client records."""
    from xraybench.runner import Interrupted, Prepared, run_isolated, unship_spec
    from xraybench.training import one_line

    worker, stop, threads, where = begin_task(env, stop_event)
    staging = tempfile.mkdtemp(prefix="xraybench-model-") if shipped.request.models else None
    try:
        if staging:
            os.mkdir(os.path.join(staging, "runs"))
        run = replace(shipped.request, models=staging)
        spec = unship_spec(shipped.spec, run.model, run.disabled)
        if refusal := refusal_of(worker, spec, expected):
            return refusal, None, None, where
        theirs = shipped.dataset
        if (data := _data_here(theirs, run)).fingerprint != theirs.fingerprint:
            return (f"data fingerprint {data.fingerprint[:12]} on worker {worker.address} ({data.source}) differs "
                    f"from the client's {theirs.fingerprint[:12]} ({theirs.source}); stage the same data "
                    "set on every worker (docs/distributed.md)"), None, None, where
        try:
            record, scores = run_isolated(Prepared(run, spec, shipped.params, data), cancel=stop)
        except Interrupted as stopped:  # its client's Ctrl-C (the client saves this), or the client gone
            return stopped.record, None, None, where
        code = code_digests(expected["code"])  # the worker's own files: refusal found them equal
        record = replace(record, environment={**record.environment, "thread_limit": threads, "code": code})
        return record, scores, _staged_bytes(record, staging), where
    except Exception as exc:  # anything else: one line back to the client, the worker goes on
        return f"on worker {worker.address}: {one_line(exc)}", None, None, where
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)


def _data_here(theirs: Any, request: Any) -> Any:
    """The client's data set (``theirs``, without images) on this worker: the cache entry the client
    loaded when the request's data path names the same folder here and this machine's cache holds that
    entry with the client's fingerprint (``loading.open_cached``: no reader, no registry); otherwise
    this worker's own copy, decoded from the request's data path with the client's reader (found in the
    worker's registry: a reader is a plugin), size, channels and split, whose fingerprint ``run_task``
    compares. No parameter is resolved again on either path."""
    from xraybench.data import load_dataset
    from xraybench.data.loading import locate_data, open_cached

    if locate_data(request.data) == theirs.source and (opened := open_cached(theirs)) is not None:
        return opened
    return load_dataset(request.data, image_size=theirs.image_size, channels=theirs.channels, seed=theirs.seed,
                        val_fraction=theirs.val_fraction, skip_bad=request.skip_bad, reader=theirs.reader)


def _staged_bytes(record: RunRecord, staging: str | None) -> bytes | None:
    """The model file a done run staged in the worker's temporary folder, to send to the client."""
    from xraybench.saved_model import staged_path

    if staging and record.status is RunStatus.DONE and record.saved_model is not None:
        with contextlib.suppress(OSError):  # missing: the client's store records why (saved_model.take_staged)
            return staged_path(Path(staging) / "runs", record.run_id, record.saved_model.format).read_bytes()
    return None
