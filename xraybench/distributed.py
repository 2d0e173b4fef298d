"""Many runs on a Dask cluster: each (model, seed, size, params) is a Dask task, and so is each tuning trial.

The client reaches the scheduler before any data is loaded (``check``), submits the tasks, and alone records
and tells the study. A task carries the run as the client prepared it (``Prepared.ship``), refuses code or data
other than the client's (``_refusal``, ``_data_here``), and runs the model in the runner's isolation with the
worker's share of threads (``thread_limit``). Dask does the rest: ``as_completed`` returns finished (or
cancelled) futures; on Ctrl-C (a flag while a batch runs: ``CtrlC``) the batch's ``distributed.Event`` stops
the running runs (``_Stop``), which send their own records, and ``Client.cancel`` the queued ones; the
scheduler retries a dead worker's task, which its event log tells the client (``Watch``); a worker plugin
(``TrialProcesses``) keeps tune's trial processes. Dask is an optional extra, imported inside functions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import RunRecord, RunStatus

TOPIC = "xraybench-tasks"  # worker -> client: a task started (the Dask event log)
GPU_RESOURCE = "GPU"
# A run's child gets the worker's share of its machine (``thread_limit``) in these, so that N runs side
# by side never ask for more threads than there are cores (uncapped, two scikit-learn runs on
# --workers 2 took 7x their sequential time); the record's environment keeps the limit.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS")
RUN_ENV = (*THREAD_VARS, "PYTHONHASHSEED")  # what a task's child is given, and this process keeps
POLL_SECONDS = 0.2  # the client's wait for finished tasks between looks at Ctrl-C
CALL_SECONDS = 15.0  # the longest a status or clean-up call to the cluster may hold the client
STOP_SECONDS = 1.0  # how often a running task asks the scheduler whether its client pressed Ctrl-C
CHECK_SECONDS = 5.0  # how often a waiting client checks that some worker can run its tasks
PROBE_SECONDS = 5.0  # how long the scheduler may take to answer the first contact
SCATTER_SECONDS = 120.0  # tune: how long the training images may wait for a worker to take them
NO_WORKER_NOTICE_SECONDS = 60.0  # no worker able to run the tasks for this long: said once
LEASE_SECONDS = 2.0  # how often a worker asks whether its idle trial processes' clients are still there


# --- the client: reaching the cluster ------------------------------------------------------


def check(workers: int | None, scheduler: str | None, gpu: bool = False) -> str | None:
    """The cluster flags, checked before any data is loaded, and again by ``connect`` (the data may take
    minutes; a scheduler file is read anew): the scheduler's address, None for a local cluster. A bad
    or unreachable address is one line within seconds, and no ``Client`` is built for it (a failed
    one stalls 40 s and prints a traceback at exit)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise XRayBenchError('Dask is not installed; pip install "xraybench[dask]"') from None
    if workers is not None and scheduler:
        raise XRayBenchError("give --workers N (a local cluster) or --scheduler ADDR (an existing one), not both")
    if workers is not None and workers < 1:
        raise XRayBenchError(f"--workers must be at least 1, got {workers}")
    if workers is not None and gpu:
        raise XRayBenchError("--gpu needs workers started with `dask worker --resources GPU=1`; "
                             "--workers starts CPU workers, so use --scheduler ADDR (docs/distributed.md)")
    return None if workers is not None else _reach(str(scheduler))


def _reach(value: str) -> str:
    """``--scheduler``'s value (Dask's config, a scheduler file, or an address) as an address where
    someone listens and greets as Dask does (Dask's own connect), each within ``PROBE_SECONDS``."""
    import asyncio
    import json
    import socket

    import dask
    from distributed.comm import connect as dask_connect, get_address_host_port
    from distributed.security import Security

    from xraybench.redaction import mask_url
    from xraybench.training import one_line

    if value == "dask-config" and not (value := dask.config.get("scheduler-address", None) or ""):
        raise XRayBenchError("--scheduler without an address needs Dask's config: set $DASK_SCHEDULER_ADDRESS "
                             "or scheduler-address in ~/.config/dask, or pass --scheduler tcp://host:8786")
    address = value
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as fh:
                address = str(json.loads(fh.read(1 << 20))["address"])
        except (OSError, ValueError, KeyError, TypeError):
            raise XRayBenchError(f"--scheduler {value}: not a Dask scheduler file (JSON with an \"address\"); "
                                 "give the file `dask scheduler --scheduler-file` wrote, or tcp://HOST:PORT") from None
    shown = mask_url(address)
    try:
        host, port = get_address_host_port(address)
    except NotImplementedError:  # a transport without host:port (inproc, ucx): Client itself will tell
        return address
    except (ValueError, TypeError) as exc:
        raise XRayBenchError(f"--scheduler {shown!r} is not a Dask scheduler address ({exc}); give tcp://HOST:PORT, "
                             "a scheduler file, or no value for Dask's config") from None
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise XRayBenchError(f"cannot reach the Dask scheduler {shown}: {why}; is `dask scheduler` running there "
                             "and the address right?") from None

    async def greet() -> None:
        (await dask_connect(address, timeout=PROBE_SECONDS, **Security().get_connection_args("client"))).abort()

    try:
        asyncio.run(asyncio.wait_for(greet(), PROBE_SECONDS))
    except Exception as exc:
        why = f"no Dask greeting within {PROBE_SECONDS:g}s" if isinstance(exc, TimeoutError) else one_line(exc)
        raise XRayBenchError(f"{shown} answers, but not as a Dask scheduler ({why}); give the scheduler's "
                             "address (port 8786 by default, not the dashboard's)") from None
    return address


def _local_cluster(factory: Any, workers: int) -> Any:
    """A LocalCluster whose workers ignore SIGINT (inherited at spawn): Ctrl-C in a terminal reaches the
    process group, and it is the client's to handle. Dask's nanny writes its caps into our environment."""
    main, env = threading.current_thread() is threading.main_thread(), client_env()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        return factory(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address="127.0.0.1:0", silence_logs=40)  # logging.ERROR
    finally:
        _adopt_env(env)
        if main:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def connect(workers: int | None, scheduler: str | None, gpu: bool, console: Any,
            slots: Callable[[Any], str]) -> Iterator[tuple[Any, str]]:
    """(client, what it reached) for ``--workers N`` (a LocalCluster of processes, ended with the block)
    or ``--scheduler ADDR``, announced on ``console`` (``slots``: how much it runs at once). This
    process's ``RUN_ENV`` comes back at the end (a local nanny rewrites it); closing is bounded."""
    address = check(workers, scheduler, gpu)
    from distributed import Client, LocalCluster
    from rich.markup import escape

    env, cluster = client_env(), None
    if workers is not None:
        cluster = _local_cluster(LocalCluster, workers)
        client = Client(cluster, set_as_default=False)
        what = f"local Dask cluster of {workers} worker process{'es' if workers != 1 else ''} at {cluster.scheduler_address}"
    else:
        try:
            client = Client(address, timeout="20s", set_as_default=False)
        except Exception as exc:  # it answered the probe a moment ago: gone since, or refusing us
            from xraybench.redaction import mask_url
            from xraybench.training import one_line

            raise XRayBenchError(f"cannot connect to the Dask scheduler {mask_url(str(address))}: {one_line(exc)}") from None
        what = f"Dask scheduler at {client.scheduler.address}"
    def scheduler_has_bokeh() -> bool:  # nested, so it travels by value: the scheduler needs no xraybench
        import importlib.util

        return importlib.util.find_spec("bokeh") is not None

    try:
        console.print(escape(f"engine: {what}; {slots(client)}"))
        if bounded(lambda: client.run_on_scheduler(scheduler_has_bokeh)):  # the dashboard needs bokeh there
            console.print(f"dashboard: {escape(client.dashboard_link)}")
        if gpu and _able(client, gpu) is False:
            console.print("[yellow]no connected worker offers GPU yet[/]: the tasks wait until one started with "
                          "`dask worker --resources GPU=1` joins")
        yield client, what
    finally:
        for topic in (TOPIC, "all"):  # else the scheduler logs, as CRITICAL, that it could not tell us we left
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
        for closer in filter(None, (client.close, getattr(cluster, "close", None))):  # gone or stuck: no error now
            bounded(lambda close=closer: close(timeout=10))
        _adopt_env(env)


def _able(client: Any, gpu: bool) -> bool | None:
    """Whether a connected worker can run the tasks (one with a GPU for ``--gpu``); None: no answer."""
    workers = bounded(lambda: client.scheduler_info(n_workers=-1)["workers"])  # newer Dask lists 5 unless asked
    return None if workers is None else any(not gpu or GPU_RESOURCE in (w.get("resources") or {})
                                            for w in workers.values())


def bounded(call: Any, seconds: float = CALL_SECONDS, default: Any = None) -> Any:
    """``call()`` waited for at most ``seconds`` (in a daemon thread); ``default`` when it raises or
    takes longer. For cluster calls without a timeout of their own: a lost scheduler must not hang us."""
    box: dict[str, Any] = {}

    def target() -> None:
        with contextlib.suppress(BaseException):
            box["value"] = call()

    thread = threading.Thread(target=target, name="xraybench-dask-call", daemon=True)
    thread.start()
    thread.join(seconds)
    return box.get("value", default)


class CtrlC:
    """Until the cluster is closed, SIGINT only sets ``pressed``; the client looks at it between waits.

    A KeyboardInterrupt raised inside Dask's waiting code can land between a lock's release and its
    ``try`` and leave the lock unowned, skipping our clean-up. Installed explicitly, so a client started
    with SIGINT ignored still reacts; on exit the previous handler comes back, unless Ctrl-C was pressed:
    the process then winds down (exit 130) and ignores further presses. Main thread only."""

    def __init__(self) -> None:
        self.pressed, self._installed = False, False
        self._previous: Any = None

    def is_set(self) -> bool:
        return self.pressed

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._installed = True
            self._previous = signal.signal(signal.SIGINT, lambda *_: setattr(self, "pressed", True))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:  # a previous None was set from C, which Python cannot reinstall
            back = signal.SIG_IGN if self.pressed else self._previous
            signal.signal(signal.SIGINT, back if back is not None else signal.default_int_handler)


class Watch:
    """What the client learns of its tasks from Dask's events (its event thread): each start on a
    worker (``TOPIC``) counts an attempt and names the worker; a worker the scheduler removes while
    running one (``remove-worker``) is said in one line. ``wait`` hands out finished futures."""

    def __init__(self, client: Any, labels: dict[str, str], console: Any, gpu: bool, on_start: Any = None) -> None:
        self.client, self.labels, self.console, self.gpu, self.on_start = client, labels, console, gpu, on_start
        self.attempts: dict[str, int] = {}
        self.worker: dict[str, str] = {}  # task key -> the worker of its latest start
        self.notices: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.checked = self.served = time.monotonic()
        self.noticed = False
        client.subscribe_topic(TOPIC, self._started)
        client.subscribe_topic("all", self._removed)

    def _started(self, event: Any) -> None:
        key = event[1].get("key")
        if key in self.labels:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self.worker[key] = str(event[1].get("worker", ""))
            if self.on_start is not None:
                self.on_start(key)

    def _removed(self, event: Any) -> None:
        msg = event[1]
        if isinstance(msg, dict) and msg.get("action") == "remove-worker":
            lost, how = str(msg.get("worker", "")), "left" if msg.get("expected") else "was lost"
            for key in msg.get("processing-tasks") or ():
                if key in self.labels and self.worker.get(key) == lost:
                    self.notices.put(f"worker {lost} {how} while running {self.labels[key]} (attempt "
                                     f"{self.attempts.get(key, 1)}): Dask runs it again on another worker")

    def wait(self, ac: Any, ctrl_c: CtrlC) -> list[Any] | None:
        """The next finished futures of ``ac`` (Dask's ``as_completed``); [] when none is left, None on
        Ctrl-C. Waits in short steps, saying the notices, and once, when no worker able to run the
        tasks was connected for ``NO_WORKER_NOTICE_SECONDS``, that they wait."""
        from rich.markup import escape

        while True:
            while not self.notices.empty():
                self.console.print(f"[yellow]lost worker[/]: {escape(self.notices.get())}")
            if ctrl_c.is_set():
                return None
            if (done := ac.next_batch(block=False)) or ac.is_empty():
                return done
            time.sleep(POLL_SECONDS)  # a SIGINT in here only sets the flag
            if time.monotonic() - self.checked >= CHECK_SECONDS:
                self.checked = time.monotonic()
                if _able(self.client, self.gpu) is not False:  # (a busy scheduler that did not say: no notice)
                    self.served = self.checked
                elif self.checked - self.served > NO_WORKER_NOTICE_SECONDS and not self.noticed:
                    self.noticed = True
                    self.console.print(f"[yellow]no worker {'with GPU ' if self.gpu else ''}connected for "
                                       f"{NO_WORKER_NOTICE_SECONDS:.0f}s[/]: {ac.count()} unfinished task(s) wait "
                                       "until one joins; Ctrl-C records them as interrupted")


# --- the worker ------------------------------------------------------------------------


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


def _expected(spec: Any) -> dict[str, Any]:
    """What a worker must run for ``spec``: this client's versions and files (``_refusal``)."""
    from xraybench import __version__

    return {"xraybench": __version__, "plugin": f"{spec.distribution} {spec.version}", "code": code_files(spec)}


def _refusal(worker: Any, spec: Any, expected: dict[str, Any]) -> str | None:
    """Why this worker must not run ``spec`` for this client, in one line; None when it may."""
    mine, where = _expected(spec), f"worker {worker.address}"
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


def _begin(env: dict[str, str | None], stop_event: str | None = None) -> tuple[Any, _Stop, int, dict[str, Any]]:
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
    _adopt_env({**env, **dict.fromkeys(THREAD_VARS, str(threads))})
    where = {"worker": worker.address, "worker_name": str(worker.name), "host": socket.gethostname(),
             "resources": dict(getattr(worker.state, "total_resources", {}) or {}),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return worker, _Stop(worker, key, stop_event), threads, where


def _adopt_env(env: dict[str, str | None]) -> None:
    """Set these environment variables in this process, for the children it starts (None: unset)."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def client_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in RUN_ENV}


def run_task(shipped: Any, expected: dict[str, Any], env: dict[str, str | None],
             stop_event: str | None = None) -> tuple[Any, ...]:
    """Runs ON A WORKER: check the code and the data are the client's, run the model isolated as the
    client prepared it (``runner.Shipped``: no registry load, no parameter resolution here). Returns (record,
    scores, the staged model's bytes, where it ran); the record is a one-line refusal (a str) when the
    run could not start here. Writes only in a temporary folder of its own: the client records."""
    from xraybench.runner import Interrupted, Prepared, run_isolated, unship_spec
    from xraybench.training import one_line

    worker, stop, threads, where = _begin(env, stop_event)
    staging = tempfile.mkdtemp(prefix="xraybench-model-") if shipped.request.models else None
    try:
        if staging:
            os.mkdir(os.path.join(staging, "runs"))
        run = replace(shipped.request, models=staging)
        spec = unship_spec(shipped.spec, run.model, run.disabled)
        if refusal := _refusal(worker, spec, expected):
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
        code = code_digests(expected["code"])  # the worker's own files: _refusal found them equal
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


def stage_returned_model(runs: Path, record: RunRecord, model: bytes | None) -> None:
    """On the client: the bytes a worker sent, where ``ResultStore.save`` takes a staged model from
    (and checks its hash), so a cluster run keeps its model as a local one does."""
    from xraybench.saved_model import staged_path

    if model is not None and record.saved_model is not None:
        with contextlib.suppress(OSError):  # unwritable: take_staged notes the missing model in the record
            runs.mkdir(parents=True, exist_ok=True)
            staged_path(runs, record.run_id, record.saved_model.format).write_bytes(model)


# --- the client: runs -------------------------------------------------------------------


def placed(record: RunRecord, where: dict[str, Any], scheduler: str, attempts: int) -> RunRecord:
    """The record with which worker and device ran it (``executor``) and how many times a worker
    started it (``attempts``: 2 or more, a worker was lost mid-run and Dask ran it again)."""
    executor = {"engine": "dask", "scheduler": scheduler, "worker": None, "worker_name": None, "host": None,
                "resources": {}, "cuda_visible_devices": None, **where,
                "device": record.environment.get("accelerator") or "cpu"}
    return replace(record, attempts=attempts, extra={**record.extra, "executor": executor})


def failure_reason(exc: BaseException) -> str:
    """Why a task never returned: its workers died too often (KilledWorker), or the cluster went away."""
    from xraybench.training import one_line

    if type(exc).__name__ == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", "?")
        allowed = exc.args[2] if len(exc.args) > 2 else "?"
        return (f"the workers running it died {allowed} times (last {last}); Dask gave up "
                f"(distributed.scheduler.allowed-failures)")
    return f"the Dask task failed: {one_line(exc)}"


class _Runs:
    """One batch of runs on the client: their task keys, the live view (finished, and who runs what),
    and each record saved once, as its task comes back."""

    def __init__(self, prepared: list, store: Any, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        batch = uuid.uuid4().hex[:8]
        self.store, self.console, self.scheduler = store, console, ""
        self.stop_event = f"xraybench-stop-{batch}"  # a distributed.Event, set on Ctrl-C (``interrupt``)
        self.runs = {f"xraybench-{p.spec.name}-seed{p.request.seed}-{i}-{batch}": p for i, p in enumerate(prepared)}
        self.labels = {key: f"{p.spec.name} seed {p.request.seed}" for key, p in self.runs.items()}
        self.saved: dict[str, RunRecord] = {}
        self.rows: dict[str, Any] = {}  # task key -> its row in the live view while it runs
        self.view = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=console, disable=not console.is_terminal)
        self.overall = self.view.add_task(f"{len(self.runs)} runs", total=len(self.runs))
        self.watch: Any = None

    def started(self, key: str) -> None:  # Dask's event thread
        from rich.markup import escape

        with contextlib.suppress(KeyError):
            self.view.remove_task(self.rows.pop(key))
        self.rows[key] = self.view.add_task(escape(f"  {self.labels[key]} on {self.watch.worker[key]}"), total=None)

    def save(self, key: str, record: RunRecord, where: dict[str, Any], attempts: int, scores: Any = None,
             model: bytes | None = None) -> None:
        from rich.markup import escape

        from xraybench.terminal_report import trained_with

        self.saved[key] = record = placed(record, where, self.scheduler, attempts)
        stage_returned_model(self.store.runs, record, model)
        path = self.store.save(record, scores)
        self.view.advance(self.overall)
        with contextlib.suppress(KeyError):
            self.view.remove_task(self.rows.pop(key))
        m = record.metrics or {}
        result = (f"accuracy {m.get('accuracy', 0):.4f}  AUC {m.get('roc_auc', 0):.4f}; {trained_with(record)}, "
                  f"precision {record.precision}") if record.status is RunStatus.DONE else record.reason
        self.console.print(escape(f"{record.status.label:<11} {self.labels[key]} on {where.get('worker') or '-'}: "
                                  f"{result}  ({record.wall_seconds or 0:.1f}s; recorded {path.name})"))

    def failed(self, key: str, status: RunStatus, reason: str) -> None:
        """A task that returned no record (KilledWorker, a lost scheduler, Ctrl-C): recorded, never dropped."""
        from xraybench.runner import start_record

        record = start_record(self.runs[key]).finish(status, reason)
        self.save(key, record, {"worker": self.watch.worker.get(key)}, self.watch.attempts.get(key, 0))

    def collect(self, future: Any, key: str) -> None:
        from asyncio import CancelledError

        from xraybench.runner import start_record

        try:
            record, scores, model, where = future.result(timeout=CALL_SECONDS)  # finished: at once
        except (Exception, CancelledError) as exc:
            return self.failed(key, RunStatus.ERROR, failure_reason(exc))
        if isinstance(record, str):  # refused on that worker
            record = start_record(self.runs[key]).finish(RunStatus.ERROR, record)
        self.save(key, record, where, max(1, self.watch.attempts.get(key, 0)), scores, model)

    def interrupt(self, client: Any, futures: dict[Any, str], ac: Any) -> None:
        """Ctrl-C: the batch's ``Event`` tells the running tasks to stop their runs, and each sends its
        own record (an interrupted Keras run keeps its epochs and its checkpoint, under its own run_id;
        one that finished meanwhile, its result), waited for ``CALL_SECONDS`` in all; the queued tasks
        are cancelled at once. What did not come back is recorded here as interrupted."""
        from asyncio import CancelledError

        from distributed import Event

        from xraybench.isolation import stop_reason

        for future in ac.next_batch(block=False):  # finished before the Ctrl-C
            self.collect(future, futures[future])
        stop = Event(self.stop_event, client=client)
        bounded(stop.set)
        pending = {future: key for future, key in futures.items() if key not in self.saved}
        running = [future for future, key in pending.items() if key in self.watch.worker or future.done()]
        bounded(lambda: client.cancel([f for f in pending if f not in running], force=True))  # none starts now
        deadline = time.monotonic() + CALL_SECONDS
        for future in running:
            with contextlib.suppress(Exception, CancelledError):  # gone with its worker, or too late: recorded below
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            if future.status == "finished":
                self.collect(future, pending[future])
        bounded(lambda: client.cancel([f for f, key in pending.items() if key not in self.saved], force=True))
        bounded(stop.clear)  # the scheduler keeps a set event until cleared
        for key in pending.values():
            if key not in self.saved:
                self.failed(key, RunStatus.INTERRUPTED, stop_reason(KeyboardInterrupt()) if key in self.watch.worker
                            else "cancelled by Ctrl-C before it started")
        stopped = sum(self.saved[key].status is RunStatus.INTERRUPTED for key in pending.values())
        self.console.print(f"[yellow]interrupted[/]: {stopped} unfinished task(s) recorded as interrupted")


def run_batch(prepared: list, store: Any, console: Any, workers: int | None, scheduler: str | None,
              gpu: bool = False) -> int:
    """Run every prepared request as a Dask task; save each record once, as it comes back. Returns
    the exit status: 0 all done, 1 some failed, 130 interrupted."""
    from distributed import as_completed
    from rich.markup import escape

    from xraybench.terminal_report import print_run_summary

    env, runs = client_env(), _Runs(prepared, store, console)

    def connected(client: Any) -> str:
        return f"{len(bounded(client.nthreads) or {})} worker(s) connected now"

    with CtrlC() as ctrl_c, connect(workers, scheduler, gpu, console, connected) as (client, what):
        runs.scheduler, runs.watch = client.scheduler.address, Watch(client, runs.labels, console, gpu, runs.started)
        specs = {id(p.spec): p.spec for p in runs.runs.values()}
        code = {key: _expected(spec) for key, spec in specs.items()}  # hashed once per spec, not per run
        futures = {client.submit(run_task, p.ship(replace(p.dataset, splits=None)),  # the images: found there (_data_here)
                                 code[id(p.spec)], env, runs.stop_event, key=key,
                                 resources={GPU_RESOURCE: 1} if gpu else None): key for key, p in runs.runs.items()}
        ac = as_completed(futures, loop=client.loop)
        runs.view.update(runs.overall, description=escape(f"{len(futures)} runs on {what}"))
        with runs.view:
            while finished := runs.watch.wait(ac, ctrl_c):
                for future in finished:
                    runs.collect(future, futures[future])
            if ctrl_c.is_set():  # the running runs stop and send their records (_Stop); the queued are cancelled
                runs.interrupt(client, futures, ac)
    print_run_summary(list(runs.saved.values()), console)
    return 130 if ctrl_c.is_set() else 0 if all(r.status is RunStatus.DONE for r in runs.saved.values()) else 1


# --- the client: tuning -----------------------------------------------------------------


class TrialProcesses:
    """A worker plugin (``run_study`` mixes in Dask's ``WorkerPlugin``): each tune session's idle trial
    processes on this worker, reused from trial to trial (their imports stay warm). Dask runs nothing on a
    worker when a client leaves, so every ``LEASE_SECONDS`` it asks the scheduler who holds each session's
    lease (its client's scattered training data, forgotten when the client leaves) and ends the idle
    processes of sessions whose lease is gone (a busy one, stopped by ``_Stop``, when it is handed back)."""

    name = "xraybench-trial-processes"
    idempotent = True  # a second client keeps the first one's processes

    def setup(self, worker: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        self.worker, self.lock = worker, threading.Lock()
        self.idle: dict[str, list[Any]] = {}  # session -> its idle trial processes
        self.leases: dict[str, str] = {}  # session -> the key its client holds while it is there
        worker.periodic_callbacks[self.name] = reaper = PeriodicCallback(self._reap, LEASE_SECONDS * 1000)
        reaper.start()

    def take(self, session: str, lease: str) -> Any:
        from xraybench import isolation
        from xraybench.harness import PluginFailure

        with self.lock:
            self.leases[session] = lease
            pool = self.idle.get(session)
            return pool.pop() if pool else isolation.Child(expected=(PluginFailure, XRayBenchError))

    def give_back(self, session: str, child: Any) -> None:
        with self.lock:
            if session in self.leases:
                return self.idle.setdefault(session, []).append(child)
        child.close()

    async def _reap(self) -> None:
        import asyncio

        if not (leases := dict(self.leases)):
            return
        with contextlib.suppress(Exception):  # no answer this round: ask again
            holders = await asyncio.wait_for(self.worker.scheduler.who_has(keys=list(set(leases.values()))),
                                             CALL_SECONDS)
            with self.lock:
                gone = [session for session, key in leases.items() if not holders.get(key)]
                ended = [c for session in gone if self.leases.pop(session, None) for c in self.idle.pop(session, [])]
            for child in ended:
                await asyncio.to_thread(child.close)


def run_trial_task(storage_url: str, study_name: str, trial_id: int, params: dict[str, Any], task: Any,
                   trial_timeout: float | None, env: dict[str, str | None], expected: dict[str, Any],
                   session: str, lease: str) -> tuple[Any, dict[str, Any]]:
    """Runs ON A WORKER: one asked trial through ``tuning.run_trial`` (which reports each epoch to the
    shared storage, so the pruner works across workers) in a trial process of this worker, killed at
    ``trial_timeout``; the training images cross into that process once (``tuning.NEED_TASK``).
    Returns (the ``isolation.Outcome``, where it ran); the client tells the study."""
    from xraybench import isolation, tuning
    from xraybench.runner import cancel_check
    from xraybench.training import one_line

    worker, stop, _threads, where = _begin(env)
    try:
        spec = tuning.task_spec(task)
        if refusal := _refusal(worker, spec, expected):
            return isolation.Outcome(RunStatus.ERROR, reason=refusal), where
        child = (processes := worker.plugins[TrialProcesses.name]).take(session, lease)
        try:
            return tuning.call_trial(child, (storage_url, study_name, trial_id, params), task, trial_timeout,
                                     cancel_check(stop)), where
        finally:
            processes.give_back(session, child)
    except KeyboardInterrupt:  # stopped (_Stop): so is the child, and nobody reads this
        return isolation.Outcome(RunStatus.INTERRUPTED, reason="interrupted by Ctrl-C"), where
    except Exception as exc:
        return isolation.Outcome(RunStatus.ERROR, reason=f"on worker {worker.address}: {one_line(exc)}"), where


def run_study(spec: Any, train: Any, val: Any, storage_url: str, study_name: str, trials: int | None,
              timeout: float | None, metric: str, sampler: str, pruner: str, fixed: dict[str, Any], seed: int,
              precision: str = "auto", console: Any = None, *, trial_timeout: float | None = None,
              disabled: list[str] | None = None, workers: int | None = None,
              scheduler: str | None = None, gpu: bool = False) -> tuple[Any, Any, float]:
    """``tuning.run_study`` with the trials as Dask tasks: same arguments, same return value.

    This process alone asks (``tuning.ask_trial``) and tells (``tuning.tell_outcome``), one trial in
    flight per worker thread; the workers train and report epochs to the same storage, which they
    must reach. Train and validation images travel to each worker once (``Client.scatter``). This
    process keeps each running trial's heartbeat, so if it dies the next resume retries them."""
    from distributed import WorkerPlugin, as_completed
    from rich.console import Console

    from xraybench import isolation, tuning

    study, storage, session, fixed, task = tuning.open_study(spec, train, val, storage_url, study_name, metric,
                                                             sampler, pruner, fixed, seed, precision, disabled)
    show = tuning.progress_callback(console, metric, trials) if console is not None else None
    env, expected, batch = client_env(), _expected(spec), uuid.uuid4().hex
    in_flight: dict[Any, tuple[Any, Any, str]] = {}  # future -> (trial, its heartbeat, its time limit in words)
    start, slots = time.perf_counter(), 1
    say = console or Console(quiet=True)

    def counted(client: Any) -> str:
        nonlocal slots
        slots = max(1, sum((bounded(client.nthreads) or {}).values()))
        return f"{slots} trial(s) at a time"

    def submit() -> bool:
        elapsed = time.perf_counter() - start
        if ctrl_c.is_set() or len(in_flight) >= slots or (trials is not None and session.trials_run >= trials) \
                or (timeout is not None and elapsed > timeout):
            return False
        if (asked := tuning.ask_trial(study, spec, fixed, session, sampler, seed, console)) is None:
            return False
        trial, params = asked
        session.trials_run += 1
        limit, words = tuning._trial_limit(trial_timeout, timeout, elapsed)
        watch.labels[key := f"xraybench-trial-{study_name}-{trial.number}-{batch[:8]}"] = f"trial {trial.number}"
        future = client.submit(run_trial_task, storage_url, study_name, trial._trial_id, params, shipped, limit, env,
                               expected, batch, shipped.key, key=key, resources={GPU_RESOURCE: 1} if gpu else None)
        in_flight[future] = (trial, tuning._Heartbeat(storage, trial._trial_id).__enter__(), words)
        ac.add(future)
        return True

    with CtrlC() as ctrl_c, connect(workers, scheduler, gpu, say, counted) as (client, what):
        try:
            plugin = type("TrialProcessesPlugin", (TrialProcesses, WorkerPlugin), {})  # Dask accepts subclasses only
            bounded(lambda: client.register_plugin(plugin()))
            shipped, ac, watch = _ship(client, task, what), as_completed(loop=client.loop), Watch(client, {}, say, gpu)
            while submit():
                pass
            while finished := watch.wait(ac, ctrl_c):
                for future in finished:
                    trial, beat, words = in_flight.pop(future)
                    beat.__exit__(None, None, None)
                    frozen = tuning.tell_outcome(study, storage, storage_url, trial, _outcome(future, trial), session,
                                                 trial_timeout, words)
                    if show is not None:
                        show(study, frozen)
                    isolation.checkpoint("dask-told")  # tests: a client known to be between trials
                while submit():
                    pass
            if ctrl_c.is_set():  # Dask cancels the running trials (their workers stop them); the study fails them
                bounded(lambda: client.cancel(list(in_flight), force=True))
                stopped = isolation.Outcome(RunStatus.INTERRUPTED, reason="interrupted by Ctrl-C")
                for trial, _beat, _words in in_flight.values():
                    tuning.tell_outcome(study, storage, storage_url, trial, stopped, session, trial_timeout)
                raise KeyboardInterrupt  # the caller's Ctrl-C path, outside Dask: exit 130, how to resume
        finally:
            for _trial, beat, _words in in_flight.values():
                beat.__exit__(None, None, None)
    return study, session, time.perf_counter() - start


def _ship(client: Any, task: Any, what: str) -> Any:
    """The trials' training data on every worker (``Client.scatter``), waiting for a worker to take
    it, but not forever. Its key is the session's lease (``TrialProcesses``)."""
    from asyncio import CancelledError

    try:
        return client.scatter(task, broadcast=True, timeout=SCATTER_SECONDS)
    except (Exception, CancelledError) as exc:
        from xraybench.training import one_line

        raise XRayBenchError(f"no Dask worker took the training data within {SCATTER_SECONDS:.0f}s "
                             f"({one_line(exc)}); start workers for the {what}") from None


def _outcome(future: Any, trial: Any) -> Any:
    """What a finished trial task returned (the worker that ran it noted on the trial), or why it
    returned nothing (KilledWorker after too many deaths, a lost scheduler)."""
    from asyncio import CancelledError

    from xraybench import isolation

    try:
        outcome, where = future.result(timeout=CALL_SECONDS)  # finished: at once
    except (Exception, CancelledError) as exc:
        return isolation.Outcome(RunStatus.ERROR, reason=failure_reason(exc))
    if where.get("worker"):
        trial.set_user_attr("dask_worker", where["worker"])
    return outcome
