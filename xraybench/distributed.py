"""Many runs on a Dask cluster: each (model, seed, size, params) is one Dask task.

What runs where:

- The client (``xraybench run --workers N`` or ``--scheduler ADDR``) checks the cluster flags
  and reaches the scheduler first (``check``: a malformed or unreachable address is one line
  before any data is loaded), then checks every model, parameter and the data set as the
  sequential runner does, and submits one task per run. It alone writes run records, so
  workers need no shared results folder.
- A task runs on a worker (``run_task``): it refuses to run code other than the client's (the
  hashes of xraybench's files and the plugin's, ``code_files``), loads the data set from the
  worker's own path (``--data`` as given, else the worker's ``$XRAYBENCH_DATA``), refuses data
  whose fingerprint differs from the client's, and runs the model with the sequential runner's
  own isolation (``runner.run_isolated``: a child process of the worker, killed at ``--timeout``,
  a crash becomes an ``error`` record), its BLAS/OpenMP threads limited to the worker's share
  of its machine (``thread_limit``). It returns the record and the test scores.
- A worker that dies mid-task: the client says so in one line, the scheduler gives the task to
  another worker, up to ``distributed.scheduler.allowed-failures`` times, and the record counts
  the attempts (then an ``error`` naming the last worker). Ctrl-C on the client stops the runs in
  flight on every worker, cancels the queued ones, and records all of them as ``interrupted``.
- The client never blocks without a bound inside Dask: while a batch runs, SIGINT only sets an
  event (``CtrlC``), and the client waits for finished tasks in short steps (``Completions``)
  that look at that event, so Ctrl-C is handled between steps, never raised inside Dask's,
  tornado's or asyncio's own lock handling. A task whose client is gone (killed, crashed) is
  stopped on its worker (``_Stop``) instead of holding the worker's thread until ``--timeout``,
  and a tuning client's idle trial processes end with it (``_reap``).

Dask is an optional extra (``pip install "xraybench[dask]"``): this module imports it only
inside the functions that need it, so the fast commands never pay for it.
"""

from __future__ import annotations

import argparse
import functools
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import RunStatus

TOPIC = "xraybench-tasks"  # worker -> client progress events (the Dask event log)
INSTALL_HINT = 'Dask is not installed; pip install "xraybench[dask]"'
GPU_RESOURCE = "GPU"
# The thread pools of BLAS, OpenMP and TensorFlow. Dask's nanny caps its worker processes at one
# (distributed.nanny.pre-spawn-environ); a run's child process gets the worker's share of its
# machine instead (``thread_limit``), so that N runs side by side never ask for more threads than
# there are cores: uncapped, two scikit-learn runs on --workers 2 took 7x their sequential time.
# The price: thread counts change floating-point sums, so a Dask run may differ from a sequential
# one in the 5th decimal (logistic regression, SVM); the record's environment keeps the limit.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS")
RUN_ENV = (*THREAD_VARS, "PYTHONHASHSEED")  # what a task's child is given, and this process keeps

POLL_SECONDS = 0.2  # how long the client waits for a finished task before it looks at Ctrl-C again
CALL_SECONDS = 15.0  # the longest a status or clean-up call to the cluster may hold the client
CHECK_SECONDS = 5.0  # how often a waiting client checks that its scheduler and some worker are there
PROBE_SECONDS = 5.0  # how long the scheduler may take to answer the first contact
SCATTER_SECONDS = 120.0  # tune: how long the train and validation images may wait for a worker to take them
NO_WORKER_NOTICE_SECONDS = 60.0  # no worker that can run the tasks for this long: say so, once
LEASE_SECONDS = 2.0  # how often a worker asks whether the clients of its idle trial processes are still there

# Worker-side registry of the tasks running in this worker process, so that a client's
# Ctrl-C (sent through ``Client.run``) can stop them: batch id -> {task key: Event}.
_ACTIVE: dict[str, dict[str, threading.Event]] = {}
_CANCELLED: set[str] = set()
_LOCK = threading.Lock()


def add_options(parser: argparse.ArgumentParser) -> None:
    """The cluster flags, shared by ``run`` and ``tune``."""
    group = parser.add_argument_group("cluster (Dask; pip install \"xraybench[dask]\"; see docs/distributed.md)")
    group.add_argument("--workers", type=int, metavar="N",
                       help="run the tasks on a local Dask cluster of N worker processes")
    group.add_argument("--scheduler", nargs="?", const="dask-config", metavar="ADDR",
                       help="run the tasks on an existing Dask scheduler: tcp://host:8786, a scheduler file, "
                            "or no value for Dask's own config ($DASK_SCHEDULER_ADDRESS)")
    group.add_argument("--gpu", action="store_true",
                       help="each task asks Dask for one GPU: only workers started with `--resources GPU=N` run it")


def wanted(args: argparse.Namespace) -> bool:
    """True when the command line asks for a cluster."""
    return getattr(args, "workers", None) is not None or bool(getattr(args, "scheduler", None))


# --- checking and connecting -------------------------------------------------------------


def check(workers: int | None, scheduler: str | None, gpu: bool = False) -> str | None:
    """The cluster flags, checked before any data is loaded; returns the scheduler's address
    (None for a local cluster). A malformed address, one nobody listens at, or something other
    than a Dask scheduler answering there is a one-line ``XRayBenchError`` within seconds, and no
    ``Client`` is ever built for it (a failed one stalls 40 s and prints a traceback at exit)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise XRayBenchError(INSTALL_HINT) from None
    if workers is not None and scheduler:
        raise XRayBenchError("give --workers N (a local cluster) or --scheduler ADDR (an existing one), not both")
    if workers is not None:
        if workers < 1:
            raise XRayBenchError(f"--workers must be at least 1, got {workers}")
        if gpu:
            raise XRayBenchError("--gpu needs workers started with `dask worker --resources GPU=1`; "
                                 "--workers starts CPU workers, so use --scheduler ADDR (docs/distributed.md)")
        return None
    address = _address(str(scheduler))
    _probe(address)
    return address


def _address(value: str) -> str:
    """``--scheduler``'s value as an address: Dask's config, a scheduler file, or the address itself."""
    import json

    import dask
    from distributed.comm import get_address_host_port

    from xraybench.redaction import mask_url

    if value == "dask-config":
        value = dask.config.get("scheduler-address", None) or ""
        if not value:
            raise XRayBenchError("--scheduler without an address needs Dask's config: set $DASK_SCHEDULER_ADDRESS "
                                 "or scheduler-address in ~/.config/dask, or pass --scheduler tcp://host:8786")
    address = value
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as fh:
                address = json.loads(fh.read(1 << 20))["address"]
        except (OSError, ValueError, KeyError, TypeError):
            raise XRayBenchError(f"--scheduler {value}: not a Dask scheduler file (JSON with an \"address\"); "
                                 "give the file `dask scheduler --scheduler-file` wrote, or tcp://HOST:PORT") from None
    try:
        get_address_host_port(str(address))
    except NotImplementedError:  # a transport without host:port (inproc, ucx): Client itself will tell
        pass
    except (ValueError, TypeError) as exc:
        raise XRayBenchError(f"--scheduler {mask_url(str(address))!r} is not a Dask scheduler address ({exc}); "
                             "give tcp://HOST:PORT, a scheduler file, or no value for Dask's config") from None
    return str(address)


def _probe(address: str) -> None:
    """Someone listens at ``address`` (refused and unknown hosts fail at once), and it greets as
    Dask does (Dask's own connect and handshake), each within ``PROBE_SECONDS``."""
    import asyncio
    import socket

    from distributed.comm import connect, get_address_host_port
    from distributed.security import Security

    from xraybench.plugins import one_line
    from xraybench.redaction import mask_url

    shown = mask_url(address)
    try:
        host, port = get_address_host_port(address)
    except NotImplementedError:
        return
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise XRayBenchError(f"cannot reach the Dask scheduler {shown}: {why}; is `dask scheduler` running there "
                             "and the address right?") from None

    async def greet() -> None:
        comm = await connect(address, timeout=PROBE_SECONDS, **Security().get_connection_args("client"))
        comm.abort()

    try:
        asyncio.run(asyncio.wait_for(greet(), PROBE_SECONDS))
    except Exception as exc:
        why = f"no Dask greeting within {PROBE_SECONDS:g}s" if isinstance(exc, TimeoutError) else one_line(exc)
        raise XRayBenchError(f"{shown} answers, but not as a Dask scheduler ({why}); give the scheduler's "
                             "address (port 8786 by default, not the dashboard's)") from None


@dataclass
class Engine:
    """A connected client, and the local cluster it owns (None for a remote scheduler)."""

    client: Any
    cluster: Any
    description: str
    env: dict[str, str | None] | None = None  # this process's RUN_ENV before a local cluster started

    def close(self) -> None:
        for closer in (self.client.close, getattr(self.cluster, "close", None)):
            if closer is not None:  # shutting down: a cluster already gone (or stuck) is not an error
                bounded(lambda close=closer: close(timeout=10), CALL_SECONDS)
        if self.env is not None:  # a local nanny that restarted a worker rewrote it again
            _adopt_env(self.env)


def connect(workers: int | None, scheduler: str | None, gpu: bool = False) -> Engine:
    """A client for ``--workers N`` (a LocalCluster of processes) or ``--scheduler ADDR``."""
    address = check(workers, scheduler, gpu)
    from distributed import Client, LocalCluster

    if address is None:
        assert workers is not None  # check: --workers N or an address
        env = client_env()
        cluster = _start_local_cluster(LocalCluster, workers)
        client = Client(cluster, set_as_default=False)
        return Engine(client, cluster, f"local Dask cluster of {workers} worker process{'es' if workers > 1 else ''} "
                                       f"at {cluster.scheduler_address}", env)
    try:
        client = Client(address, timeout="20s", set_as_default=False)
    except Exception as exc:  # it answered the probe a moment ago: gone since, or refusing us
        from xraybench.plugins import one_line
        from xraybench.redaction import mask_url

        raise XRayBenchError(f"cannot connect to the Dask scheduler {mask_url(address)}: {one_line(exc)}") from None
    return Engine(client, None, f"Dask scheduler at {client.scheduler.address}")


def _start_local_cluster(factory: Any, workers: int) -> Any:
    """A LocalCluster of processes whose workers ignore SIGINT: Ctrl-C in a terminal reaches the
    whole process group, and it is the client's to handle (stop the runs, record them), not
    something to kill the workers with mid-task. The disposition is inherited at spawn."""
    import logging

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    saved = client_env()  # Dask's nanny, here in this process, writes its worker caps into os.environ
    try:
        return factory(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    finally:
        _adopt_env(saved)
        if main:
            signal.signal(signal.SIGINT, previous)


def dashboard_link(engine: Engine) -> str | None:
    """The dashboard's URL, when the scheduler can serve one (it needs bokeh there)."""

    def scheduler_has_bokeh() -> bool:  # nested, so it travels by value: the scheduler needs no xraybench
        import importlib.util

        return importlib.util.find_spec("bokeh") is not None

    try:
        return engine.client.dashboard_link if engine.client.run_on_scheduler(scheduler_has_bokeh) else None
    except Exception:
        return None


def all_workers(client: Any) -> dict[str, dict[str, Any]]:
    """Every connected worker's info (newer Dask lists only the first five unless asked)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # Dask before n_workers existed lists them all
        info = client.scheduler_info()
    return info.get("workers", {})


# --- waiting on the client --------------------------------------------------------------


def failed() -> tuple[type[BaseException], ...]:
    """What a finished future's ``result()`` may raise: a task's own error, a KilledWorker, a
    timeout, or a future cancelled by a lost scheduler (Dask's CancelledError is asyncio's, a
    BaseException, not an Exception). A function, so that commands without Dask skip asyncio."""
    import asyncio

    return (Exception, asyncio.CancelledError)


class CtrlC:
    """While a batch runs on Dask, SIGINT only sets ``event``; the client's loop looks at it.

    Python raises KeyboardInterrupt at whatever bytecode the main thread is running, and a
    Dask client's main thread is mostly inside Dask's own waiting code: an interrupt that
    lands between a lock's release and its ``try`` there leaves the lock unowned, and the
    ``with`` around it then fails with ``RuntimeError: cannot release un-acquired lock``
    instead of the KeyboardInterrupt, skipping our clean-up (the runs on the workers went on).
    A handler that only sets an event cannot break anything it interrupts.

    The handler is installed explicitly (as ``isolation.interruptible`` does), so a client
    started with SIGINT ignored still reacts to it; the previous handler is restored on exit,
    unless Ctrl-C was pressed: the process is then winding down (summary, exit status 130), and
    SIGINT is ignored from then on. A further press would otherwise be raised into that, or,
    once Python has begun to exit (it resets its handlers to the default then), kill the process
    by the signal instead of its exit status 130. Only the main thread can install handlers;
    elsewhere SIGINT does not reach us anyway.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self._tripped = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        # A second SIGINT can run this handler again inside the first one's event.set(); the
        # flag, stored before set() takes the event's lock, keeps the second from deadlocking on it.
        if self._tripped:
            return
        self._tripped = True
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._installed:
            return
        self._installed = False
        if self._tripped:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:  # None: a handler set from C, which Python cannot reinstall
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)


def bounded(call: Any, seconds: float = CALL_SECONDS, default: Any = None) -> Any:
    """``call()``, waited for at most ``seconds`` (in a daemon thread); ``default`` when it raises
    or takes longer. For the cluster calls that have no timeout of their own (``Client.run``,
    ``cancel``, ``scheduler_info``): a lost scheduler or a stuck worker must not hang the client."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException:  # the call failed: the caller gets its default
            pass

    thread = threading.Thread(target=target, name="xraybench-dask-call", daemon=True)
    thread.start()
    thread.join(seconds)
    return box.get("value", default)


class Completions:
    """The futures of a batch in the order they finish, for a client that must stay responsive.

    Each future's done-callback (Dask's callback thread) queues it; ``next()`` waits for one in
    steps of ``POLL_SECONDS`` and returns None as soon as Ctrl-C was pressed. Every few seconds
    it also checks the cluster: a closed client (its scheduler lost for good) hands back every
    future still waited on, so that each is recorded as failed; no worker able to run the tasks
    for ``NO_WORKER_NOTICE_SECONDS`` is said once. Nothing is waited on without a bound.

    It also follows the tasks: each start on a worker (the task's own event, ``TOPIC``) counts an
    attempt, and a worker the scheduler removes while running one of them (its ``remove-worker``
    event) is said in one line, printed between steps: which worker, which run, retried.
    """

    def __init__(self, client: Any, ctrl_c: CtrlC, console: Any = None, gpu: bool = False,
                 on_start: Any = None) -> None:
        self.client, self.ctrl_c, self.console, self.gpu, self.on_start = client, ctrl_c, console, gpu, on_start
        self.finished: queue.Queue = queue.Queue()
        self.pending: set[Any] = set()
        self.labels: dict[str, str] = {}  # task key -> what the user calls it ("xb_good seed 1", "trial 3")
        self.attempts: dict[str, int] = {}  # task key -> how many times a worker started it
        self.running_on: dict[str, str] = {}  # task key -> the worker of its latest start
        self.notices: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.checked = self.served_since = time.monotonic()
        self.noticed = False
        client.subscribe_topic(TOPIC, self._on_task_event)
        client.subscribe_topic("all", self._on_scheduler_event)

    def watch(self, future: Any, label: str) -> None:
        self.labels[str(future.key)] = label
        self.pending.add(future)
        future.add_done_callback(self.finished.put)

    def __len__(self) -> int:
        return len(self.pending)

    def _on_task_event(self, event: Any) -> None:
        """A task started on a worker (Dask's event thread)."""
        msg = event[1] if isinstance(event, tuple) else event
        key = msg.get("key") if isinstance(msg, dict) else None
        if key in self.labels and msg.get("event") == "started":
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self.running_on[key] = str(msg.get("worker", ""))
            if self.on_start is not None:
                self.on_start(key, self.running_on[key])

    def _on_scheduler_event(self, event: Any) -> None:
        """The scheduler removed a worker (Dask's event thread): name the runs it took with it."""
        msg = event[1] if isinstance(event, tuple) else event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        worker = str(msg.get("worker", ""))
        pending = {str(f.key) for f in list(self.pending) if not f.done()}
        for key in msg.get("processing-tasks") or ():
            if key in pending and self.running_on.get(key) == worker:
                how = "left" if msg.get("expected") else "was lost"
                self.notices.put(f"worker {worker} {how} while running {self.labels[key]} (attempt "
                                 f"{self.attempts.get(key, 1)}): Dask runs it again on another worker")

    def tell(self) -> None:
        """Print the notices gathered since the last step (from the main thread)."""
        from rich.markup import escape

        while not self.notices.empty():
            line = self.notices.get()
            if self.console is not None:
                self.console.print(f"[yellow]lost worker[/]: {escape(line)}")

    def next(self) -> Any:
        """The next finished future (its ``result()`` returns at once, or raises); None on Ctrl-C."""
        while self.pending:
            self.tell()
            if self.ctrl_c.is_set():
                return None
            try:
                future = self.finished.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._check()
                continue
            if future in self.pending:  # a future handed back by _check may still call back later
                self.pending.discard(future)
                return future
        return None

    def _check(self) -> None:
        now = time.monotonic()
        if now - self.checked < CHECK_SECONDS:
            return
        self.checked = now
        if self.client.status in ("closing", "closed"):  # no callback will come: each one fails on result()
            for future in list(self.pending):
                self.finished.put(future)
            return
        workers = bounded(lambda: all_workers(self.client))
        able = [w for w in (workers or {}).values() if not self.gpu or GPU_RESOURCE in (w.get("resources") or {})]
        if able or workers is None:  # workers there (or the scheduler too busy to say): nothing to tell
            self.served_since = now
        elif now - self.served_since > NO_WORKER_NOTICE_SECONDS and not self.noticed and self.console is not None:
            self.noticed = True
            kind = "with GPU " if self.gpu else ""
            self.console.print(f"[yellow]no worker {kind}connected for {NO_WORKER_NOTICE_SECONDS:.0f}s[/]: "
                               f"{len(self.pending)} unfinished task(s) wait until one joins; "
                               f"Ctrl-C records them as interrupted")


# --- on the worker ---------------------------------------------------------------------


@functools.cache
def _files_of(package: str) -> tuple[tuple[str, str], ...]:
    """(path in the package, sha256 prefix) of every Python file of a top-level package or
    module, as installed in this process's environment; read once per process."""
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
    """What code a run of ``spec`` executes here: {package: {file: hash}} for xraybench and the
    top-level package of each module the spec's callables come from (the plugin's files). A
    worker compares its own with its client's, so that a worker whose files differ under the
    same version strings refuses the task instead of returning other numbers as ``done``."""
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
        differ = sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))
        if differ:
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            return f"{package} ({', '.join(differ[:3])}{more})"
    return None


def _refuse_other_code(worker: Any, spec: Any, client_files: dict[str, dict[str, str]]) -> str | None:
    """The one-line refusal of a worker whose code differs from the client's, else None."""
    differ = code_difference(code_files(spec), client_files)
    if differ is None:
        return None
    return (f"worker {worker.address} runs other code than the client: {differ} differ; install the same "
            f"xraybench and plugin files on every worker (docs/distributed.md)")


def thread_limit(worker: Any) -> int:
    """BLAS/OpenMP threads for one run on ``worker``: its machine's cores (as Dask counts them:
    affinity and cgroup quota) shared among the threads of every worker on that machine, each
    thread being one run at a time. Alone with one thread on 16 cores: 16; ``--workers 2`` on 2
    cores: 1 each. When the scheduler does not answer, the worker's own threads alone count."""
    from dask.system import CPU_COUNT
    from distributed.comm import get_address_host
    from distributed.utils import sync

    host = get_address_host(worker.address)
    everyone = bounded(lambda: sync(worker.loop, worker.scheduler.ncores), CALL_SECONDS) or {}
    here = sum(n for address, n in everyone.items() if get_address_host(address) == host)
    return max(1, CPU_COUNT // max(here, worker.state.nthreads, 1))


def _limit_threads(worker: Any, env: dict[str, str | None]) -> int:
    """The environment a task's child starts with: the client's hash seed, ``thread_limit`` threads."""
    threads = thread_limit(worker)
    _adopt_env({**env, **{name: str(threads) for name in THREAD_VARS}})
    return threads


def run_task(request: dict[str, Any], expected: dict[str, Any], batch: str) -> dict[str, Any]:
    """Runs ON A WORKER: check the code and the data are the client's, run the model isolated.

    Returns ``{"record", "scores", "worker"}`` for a run that reached the runner (done, error,
    timeout or interrupted), or ``{"error", "worker"}`` when it could not start here (other
    code, data, xraybench or plugin version, a model this worker does not have). Writes only in
    a temporary folder of its own (the run's staged model, returned as bytes under ``"model"``
    and removed): the client records, and the client's store keeps the model.
    """
    from distributed import get_worker

    from xraybench import __version__
    from xraybench.plugins import load_registry, one_line
    from xraybench.runner import Interrupted, RunRequest, prepare, run_isolated

    worker = get_worker()
    current = worker.get_current_task()
    key = str(current)
    info = worker_info(worker)
    event = _register(batch, key)
    if event is None:  # its client was interrupted while this task waited here
        return {"error": "cancelled by Ctrl-C before it started", "interrupted": True, "worker": info}
    cancel = _Stop(event, worker, current)
    staging: str | None = None  # the worker's own folder where the run's child stages its model
    worker.log_event(TOPIC, {"batch": batch, "key": key, "event": "started", "worker": info["address"]})
    try:
        if __version__ != expected["xraybench"]:
            return {"error": f"worker {info['address']} has xraybench {__version__}, the client "
                             f"{expected['xraybench']}; install the same version on every worker", "worker": info}
        run = RunRequest(**request)
        if run.models:  # the model is staged on the worker's own disk and travels back as bytes
            staging = tempfile.mkdtemp(prefix="xraybench-model-")
            run.models = staging
            os.mkdir(os.path.join(staging, "runs"))
        try:
            registry = load_registry(run.disabled)
            spec = registry.model(run.model)
            plugin = f"{spec.distribution} {spec.version}"
            if plugin != expected["plugin"]:
                return {"error": f"worker {info['address']} has {run.model} from {plugin}, the client from "
                                 f"{expected['plugin']}; install the same plugin version on every worker", "worker": info}
            refusal = _refuse_other_code(worker, spec, expected["code"])
            if refusal:
                return {"error": refusal, "worker": info}
            prepared = prepare(run, registry)
        except XRayBenchError as exc:
            return {"error": f"on worker {info['address']}: {str(exc).splitlines()[0]}", "worker": info}
        got = prepared.dataset.fingerprint
        if got != expected["fingerprint"]:
            return {"error": (
                f"data fingerprint {got[:12]} on worker {info['address']} ({prepared.dataset.source}) differs from "
                f"the client's {expected['fingerprint'][:12]} ({expected['source']}); stage the same data set on "
                f"every worker (docs/distributed.md)"), "worker": info}
        threads = _limit_threads(worker, expected["env"])
        try:
            record, scores = run_isolated(prepared, cancel=cancel)
        except Interrupted as stop:
            record, scores = stop.record, None
        environment = record.setdefault("environment", {})
        environment.update(thread_limit=threads, code=code_digests(code_files(spec)))
        return {"record": record, "scores": scores, "worker": info, "model": _staged_bytes(record, staging)}
    except Exception as exc:  # anything else: one line back to the client, the worker goes on
        return {"error": f"on worker {info['address']}: {one_line(exc)}", "worker": info}
    finally:
        _unregister(batch, key)
        if staging:
            shutil.rmtree(staging, ignore_errors=True)


def _staged_bytes(record: dict[str, Any], staging: str | None) -> bytes | None:
    """The model file a done run staged in the worker's temporary folder, to send to the client."""
    from xraybench.saved_model import staged_path

    info = record.get("model_file")
    if not staging or record.get("status") != RunStatus.DONE.label or not isinstance(info, dict):
        return None
    try:
        return staged_path(Path(staging) / "runs", record["run_id"], info["format"]).read_bytes()
    except (OSError, KeyError):
        return None  # the client's store then records why there is no model (saved_model.take_staged)


def stage_returned_model(runs: Path, record: dict[str, Any], model: bytes | None) -> None:
    """On the client: write the bytes a worker sent where ``ResultStore.save`` takes a staged model
    from, so a cluster run keeps its model as a local one does (its hash is checked there)."""
    from xraybench.saved_model import staged_path

    info = record.get("model_file")
    if model is None or not isinstance(info, dict):
        return
    try:
        runs.mkdir(parents=True, exist_ok=True)
        staged_path(runs, record["run_id"], info["format"]).write_bytes(model)
    except (OSError, KeyError):
        pass  # unwritable: take_staged notes the missing model in the record


def _register(batch: str, key: str) -> threading.Event | None:
    """Note a task running in this worker process, with the event that cancels it; None when its
    batch was already interrupted. Also lets the task start child processes (see below)."""
    import multiprocessing as mp

    # Dask starts worker processes as daemons, which multiprocessing forbids to have children;
    # the run's child is ours to stop (timeout, Ctrl-C) and it dies with its parent, so allow it.
    mp.current_process()._config["daemon"] = False  # type: ignore[attr-defined]  # (private, no public switch)
    cancel = threading.Event()
    with _LOCK:
        if batch in _CANCELLED:
            return None
        _ACTIVE.setdefault(batch, {})[key] = cancel
    return cancel


class _Stop:
    """What stops a task's run on a worker (duck-types the ``threading.Event`` that
    ``runner.run_isolated`` and ``isolation.Child.call`` poll): its client's Ctrl-C (the event
    ``interrupt_batch`` sets), or its client gone. A client that dies or disconnects releases
    its keys, and Dask cannot stop a running task: it only marks it ``cancelled`` and lets the
    thread run on. The run would then hold the worker's thread until ``--timeout`` (the next
    client's tasks queued behind it: a tune session hung that way), so it is stopped here."""

    def __init__(self, event: threading.Event, worker: Any, key: Any) -> None:
        self.event, self.worker, self.key = event, worker, key

    def is_set(self) -> bool:
        if not self.event.is_set():
            state = self.worker.state.tasks.get(self.key)  # read only, from the task's thread
            if state is None or state.state == "cancelled":
                self.event.set()
        return self.event.is_set()


def _adopt_env(env: dict[str, str | None]) -> None:
    """Set these environment variables in this process, for the children it starts (None: unset)."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def client_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in RUN_ENV}


def _unregister(batch: str, key: str) -> None:
    with _LOCK:
        _ACTIVE.get(batch, {}).pop(key, None)
        if not _ACTIVE.get(batch):
            _ACTIVE.pop(batch, None)


def worker_info(worker: Any) -> dict[str, Any]:
    import socket

    resources = dict(getattr(worker.state, "total_resources", {}) or {})
    return {
        "address": worker.address,
        "name": str(worker.name),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "resources": resources,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def interrupt_batch(batch: str) -> int:
    """Runs on every worker (``Client.run``) at Ctrl-C: stop this batch's runs here, refuse
    its tasks that start later. Returns how many runs it stopped."""
    with _LOCK:
        _CANCELLED.add(batch)
        events = list(_ACTIVE.get(batch, {}).values())
    for event in events:
        event.set()
    return len(events)


# --- on the client ---------------------------------------------------------------------


@dataclass
class Task:
    prepared: Any
    key: str
    state: str = "queued"  # queued, running, done, failed
    worker: str = ""
    detail: str = ""
    recorded: bool = False

    @property
    def label(self) -> str:
        return f"{self.prepared.spec.name} seed {self.prepared.request.seed}"


def _executor(outcome_worker: dict[str, Any] | None, scheduler: str, record: dict[str, Any]) -> dict[str, Any]:
    """Which worker and device ran a run: recorded with it."""
    env = record.get("environment") or {}
    w = outcome_worker or {}
    return {
        "engine": "dask",
        "scheduler": scheduler,
        "worker": w.get("address"),
        "worker_name": w.get("name"),
        "host": w.get("host"),
        "resources": w.get("resources") or {},
        "device": env.get("accelerator") or "cpu",
        "cuda_visible_devices": w.get("cuda_visible_devices"),
    }


def record_from_outcome(task: Task, outcome: dict[str, Any], scheduler: str,
                        attempts: int = 1) -> tuple[dict[str, Any], dict | None]:
    """The run record the client saves for what a task returned (it started at least once)."""
    from xraybench.runner import base_record

    if "record" in outcome:
        record, scores = outcome["record"], outcome.get("scores")
    else:
        record, scores = base_record(task.prepared), None
        status = RunStatus.INTERRUPTED if outcome.get("interrupted") else RunStatus.ERROR
        record.update(status=status.label, reason=outcome["error"])
    record["executor"] = _executor(outcome.get("worker"), scheduler, record)
    record["attempts"] = max(1, attempts)
    return record, scores


def record_for_failure(task: Task, exc: BaseException, scheduler: str, attempts: int = 0) -> dict[str, Any]:
    """A task that never returned: its worker died too often, or the cluster went away."""
    from xraybench.plugins import one_line
    from xraybench.runner import base_record

    record = base_record(task.prepared)
    if type(exc).__name__ == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", "?")
        allowed = exc.args[2] if len(exc.args) > 2 else "?"
        reason = (f"the workers running it died {allowed} times (last {last}); Dask gave up "
                  f"(distributed.scheduler.allowed-failures)")
    else:
        reason = f"the Dask task failed: {one_line(exc)}"
    record.update(status=RunStatus.ERROR.label, reason=reason, attempts=attempts)
    record["executor"] = _executor({"address": task.worker or None}, scheduler, record)
    return record


class Progress:
    """One live view of the batch: counts, then running and failed tasks with their workers."""

    def __init__(self, tasks: list[Task], header: str) -> None:
        self.tasks = tasks
        self.header = header
        self.by_key = {t.key: t for t in tasks}

    def started(self, key: str, worker: str) -> None:
        """A task started on a worker (Dask's event thread)."""
        task = self.by_key.get(key)
        if task is not None and not task.recorded:
            task.state, task.worker = "running", worker

    def counts(self) -> dict[str, int]:
        counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        for t in list(self.tasks):
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def __rich__(self):
        from rich.markup import escape
        from rich.table import Table

        c = self.counts()
        table = Table(title=escape(self.header) + f"\nqueued {c['queued']}  running {c['running']}  "
                      f"done {c['done']}  failed {c['failed']}", title_justify="left", header_style="bold")
        for col in ("Model", "Seed", "State", "Worker", "Detail"):
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60 if col == "Detail" else None)
        shown = [t for t in self.tasks if t.state in ("running", "failed")]
        for t in shown[:30]:
            colour = {"running": "cyan", "failed": "red"}[t.state]
            table.add_row(escape(t.prepared.spec.name), str(t.prepared.request.seed), f"[{colour}]{t.state}[/]",
                          escape(t.worker), escape(t.detail[:100]))
        if len(shown) > 30:
            table.add_row("…", "", "", "", f"{len(shown) - 30} more")
        return table


def run_batch(prepared: list, store, console, workers: int | None, scheduler: str | None, gpu: bool = False) -> int:
    """Run every prepared request as a Dask task; save each record once, as it comes back.

    Returns the exit status: 0 all done, 1 some failed, 130 interrupted. From connecting to
    closing, SIGINT only sets an event (``CtrlC``) that the waiting loop looks at between steps.
    """
    from rich.live import Live
    from rich.markup import escape

    from xraybench import __version__
    from xraybench.terminal_report import print_run_summary, trained_with

    env = client_env()  # before any local cluster exists: its nanny rewrites this process's environment
    batch = uuid.uuid4().hex
    tasks: list[Task] = []
    records: list[dict[str, Any]] = []
    futures: dict[Any, Task] = {}
    interrupted = False
    done = RunStatus.DONE.label

    def save(task: Task, record: dict[str, Any], scores: dict | None, model: bytes | None = None) -> None:
        stage_returned_model(store.runs, record, model)
        path = store.save(record, scores)
        task.recorded = True
        task.state = "done" if record["status"] == done else "failed"
        task.detail = "" if task.state == "done" else str(record.get("reason", ""))
        task.worker = (record.get("executor") or {}).get("worker") or task.worker
        records.append(record)
        m = record.get("metrics") or {}
        result = (f"accuracy {m['accuracy']:.4f}  AUC {m['roc_auc']:.4f}; {trained_with(record)}, precision "
                  f"{record.get('precision')}" if record["status"] == done else str(record.get("reason", "")))
        console.print(escape(f"{record['status']:<11} {record['model']} seed {record['seed']} on {task.worker or '-'}: "
                             f"{result}  ({record.get('wall_seconds') or 0:.1f}s; recorded {path.name})"))

    with CtrlC() as ctrl_c:
        engine = connect(workers, scheduler, gpu)
        try:
            client = engine.client
            scheduler_address = client.scheduler.address
            connected = len(bounded(client.nthreads, default={}) or {})
            console.print(escape(f"engine: {engine.description}; {connected} worker(s) connected now"))
            link = bounded(lambda: dashboard_link(engine))
            if link:
                console.print(f"dashboard: {escape(link)}")
            if gpu and not any(GPU_RESOURCE in (w.get("resources") or {})
                               for w in (bounded(lambda: all_workers(client)) or {}).values()):
                console.print("[yellow]no connected worker offers GPU yet[/]: the tasks wait until one started with "
                              "`dask worker --resources GPU=1` joins")
            for i, p in enumerate(prepared):
                key = f"xraybench-{p.spec.name}-seed{p.request.seed}-{i}-{batch[:8]}"
                tasks.append(Task(p, key))
            progress = Progress(tasks, f"{len(tasks)} runs on {engine.description}")
            finished = Completions(client, ctrl_c, console, gpu, on_start=progress.started)
            code: dict[int, dict[str, dict[str, str]]] = {}  # one hashing per spec
            for task in tasks:
                p = task.prepared
                expected = {"fingerprint": p.dataset.fingerprint, "source": str(p.dataset.source),
                            "xraybench": __version__, "plugin": f"{p.spec.distribution} {p.spec.version}",
                            "code": code.setdefault(id(p.spec), code_files(p.spec)), "env": env}
                future = client.submit(run_task, asdict(p.request), expected, batch, key=task.key, pure=False,
                                       resources={GPU_RESOURCE: 1} if gpu else None)
                futures[future] = task
                finished.watch(future, task.label)
            with Live(progress, console=console, refresh_per_second=2, transient=False):
                while len(finished):
                    future = finished.next()
                    if future is None:  # Ctrl-C
                        interrupted = True
                        break
                    task = futures[future]
                    attempts = finished.attempts.get(task.key, 0)
                    try:
                        outcome = future.result(timeout=CALL_SECONDS)  # finished: at once
                    except failed() as exc:  # KilledWorker, a lost scheduler: recorded, never dropped
                        save(task, record_for_failure(task, exc, scheduler_address, attempts), None)
                        continue
                    record, scores = record_from_outcome(task, outcome, scheduler_address, attempts)
                    save(task, record, scores, outcome.get("model"))
                finished.tell()
            if not console.is_terminal:
                console.print()  # rich leaves the final view without its line end off a terminal
            if interrupted:
                _interrupt(engine, batch, futures, save, scheduler_address, console, finished.attempts)
        finally:
            engine.close()
    print_run_summary(records, console)
    if interrupted:
        return 130
    return 0 if all(r["status"] == done for r in records) else 1


def _interrupt(engine: Engine, batch: str, futures: dict, save, scheduler: str, console,
               attempts: dict[str, int]) -> None:
    """Ctrl-C: stop the running tasks on every worker, cancel the queued ones, and record every
    task not yet recorded as ``interrupted`` (with the worker's own record where it came back).
    Every call to the cluster here is bounded: a lost worker or scheduler cannot hold it."""
    from xraybench.runner import base_record

    client = engine.client
    pending = {f: t for f, t in futures.items() if not t.recorded}
    # Every worker at once: the running runs stop their child and return; queued ones refuse to start.
    bounded(lambda: client.run(interrupt_batch, batch))
    answering = {f for f, t in pending.items() if t.state == "running" or f.done()}
    bounded(lambda: client.cancel([f for f in pending if f not in answering], force=True))  # none starts now
    deadline = time.monotonic() + CALL_SECONDS
    for future, task in pending.items():
        if future not in answering:
            continue
        try:
            outcome = future.result(timeout=max(0.1, deadline - time.monotonic()))
        except failed():
            continue  # gone with its worker, or no answer in time: recorded below
        # interrupted, or done just in time
        record, scores = record_from_outcome(task, outcome, scheduler, attempts.get(task.key, 0))
        save(task, record, scores, outcome.get("model"))
    bounded(lambda: client.cancel([f for f, t in pending.items() if not t.recorded], force=True))
    for task in pending.values():
        if task.recorded:
            continue
        record = base_record(task.prepared)
        was_running = task.state == "running"
        record.update(status=RunStatus.INTERRUPTED.label, attempts=attempts.get(task.key, 0),
                      reason="stopped by Ctrl-C" if was_running else "cancelled by Ctrl-C before it started")
        record["executor"] = _executor({"address": task.worker or None}, scheduler, record)
        save(task, record, None)
    console.print(f"[yellow]interrupted[/]: {len(pending)} unfinished task(s) recorded as interrupted")


# --- tuning on the cluster ---------------------------------------------------------------


def run_trial_task(storage_url: str, study_name: str, trial_id: int, params: dict[str, Any], task: Any,
                   trial_timeout: float | None, isolate: bool, batch: str, env: dict[str, str | None],
                   code: dict[str, dict[str, str]], lease: str) -> dict[str, Any]:
    """Runs ON A WORKER: one asked trial, through ``tuning.run_trial`` (which reports each epoch to
    the trial in the shared storage, so the pruner works across workers), in a child process of
    the worker killed at ``trial_timeout``, once the worker's code is found to be the client's
    (``code``). ``lease``: the key of the client's scattered data, which the scheduler forgets
    when the client leaves (see ``_reap``). Returns the outcome; the client tells the study."""
    from distributed import get_worker

    from xraybench import isolation, tuning
    from xraybench.harness import PluginFailure
    from xraybench.plugins import load_registry, one_line
    from xraybench.runner import _cancel_check

    worker = get_worker()
    current = worker.get_current_task()
    key = str(current)
    info = worker_info(worker)
    event = _register(batch, key)
    if event is None:
        return {"status": RunStatus.INTERRUPTED.label, "reason": "cancelled by Ctrl-C before it started",
                "worker": info}
    cancel = _Stop(event, worker, current)
    worker.log_event(TOPIC, {"batch": batch, "key": key, "event": "started", "worker": info["address"]})
    args = (storage_url, study_name, trial_id, params, task)
    try:
        registry = tuning._cached(("registry", tuple(task.disabled)), lambda: load_registry(task.disabled))
        refusal = _refuse_other_code(worker, registry.model(task.model), code)
        if refusal:
            return {"status": RunStatus.ERROR.label, "reason": refusal, "worker": info}
        _limit_threads(worker, env)
        if isolate:
            child = _trial_child(worker, batch, lease, lambda: isolation.Child(expected=(PluginFailure, XRayBenchError)))
            outcome = child.call(tuning.run_trial, args, trial_timeout, on_tick=_cancel_check(cancel))
        else:
            try:
                outcome = isolation.Outcome("done", value=tuning.run_trial(*args))
            except (PluginFailure, XRayBenchError) as exc:
                outcome = isolation.Outcome("error", reason=(str(exc).splitlines() or [type(exc).__name__])[0])
    except KeyboardInterrupt:  # our cancel event: the child is already stopped
        return {"status": RunStatus.INTERRUPTED.label, "reason": "interrupted by Ctrl-C", "worker": info}
    except Exception as exc:
        return {"status": RunStatus.ERROR.label, "reason": f"on worker {info['address']}: {one_line(exc)}",
                "worker": info}
    finally:
        _unregister(batch, key)
    return {"status": outcome.status, "value": outcome.value, "reason": outcome.reason,
            "traceback": outcome.traceback, "worker": info}


_TRIAL_CHILDREN: dict[tuple[str, int], Any] = {}  # (batch, worker thread) -> its isolation.Child
_LEASES: dict[str, str] = {}  # batch -> the key its client holds while it is there (see _reap)
_REAPER: list[threading.Thread] = []


def _trial_child(worker: Any, batch: str, lease: str, make: Any) -> Any:
    """One trial child process per client session and worker thread, reused across that session's
    trials (its imports stay warm, as in the sequential loop); isolation.Child replaces it after a
    timeout, a crash or a cancel. ``_reap`` ends it when the session's client has gone."""
    with _LOCK:
        _LEASES[batch] = lease
        if not _REAPER:
            _REAPER.append(threading.Thread(target=_reap, args=(worker,), name="xraybench-trial-reaper", daemon=True))
            _REAPER[0].start()
        return _TRIAL_CHILDREN.setdefault((batch, threading.get_ident()), make())


def _reap(worker: Any) -> None:
    """Runs in a worker process that keeps trial children, for as long as it lives: every
    ``LEASE_SECONDS`` it asks the scheduler who holds each session's lease (the client's scattered
    training data, which the scheduler forgets once that client has closed, died or been cut off),
    and ends the idle children of every session whose lease is gone; a child busy with a trial is
    stopped by its task (``_Stop``) and ended here on a later round. Dask runs no code on a worker
    when a client leaves, and an idle child would otherwise hold its memory until the worker ends."""
    from distributed.utils import sync

    while True:
        time.sleep(LEASE_SECONDS)
        with _LOCK:
            leases = dict(_LEASES)
        if not leases:
            continue
        keys = list(leases.values())
        holders = bounded(lambda keys=keys: sync(worker.loop, worker.scheduler.who_has, keys=keys))
        if holders is None:  # no answer from the scheduler this round: ask again
            continue
        with _LOCK:
            gone = {b for b, key in leases.items() if not holders.get(key) and b not in _ACTIVE}
            ended = [_TRIAL_CHILDREN.pop(k) for k in list(_TRIAL_CHILDREN) if k[0] in gone]
            for batch in gone:
                _LEASES.pop(batch, None)
                _CANCELLED.add(batch)
        for child in ended:
            child.close()


def run_study(spec: Any, train: Any, val: Any, storage_url: str, study_name: str, trials: int | None,
              timeout: float | None, metric: str, sampler: str, pruner: str, fixed: dict[str, Any], seed: int,
              precision: str = "auto", console: Any = None, *, trial_timeout: float | None = None,
              isolate: bool = True, disabled: list[str] | None = None, workers: int | None = None,
              scheduler: str | None = None, gpu: bool = False) -> tuple[Any, Any, float]:
    """``tuning.run_study`` with the trials as Dask tasks: same arguments, same return value.

    This process alone asks and tells (``tuning.ask_trial``: its sampler, and no parameter set a
    complete or running trial of the study already has), keeping one trial in flight per worker
    thread; the workers train and report epochs to the same storage, which they must reach (a
    PostgreSQL URL, or a SQLite file on a path every worker shares). Train and validation images
    travel to each worker once (``Client.scatter``). A worker lost mid-trial: Dask runs the trial
    elsewhere; this process keeps each running trial's heartbeat, so if it dies itself the next
    resume fails and retries them.
    """
    import optuna

    from xraybench import isolation, tuning

    study, storage, session, fixed, task = tuning.open_study(spec, train, val, storage_url, study_name, metric,
                                                             sampler, pruner, fixed, seed, precision, disabled)
    show = tuning.progress_callback(console, metric, trials) if console is not None else None
    env = client_env()  # before any local cluster exists: its nanny rewrites this process's environment
    code = code_files(spec)
    batch = uuid.uuid4().hex
    in_flight: dict[Any, tuple[Any, Any]] = {}  # future -> (trial, heartbeat)
    start = time.perf_counter()
    fail = optuna.trial.TrialState.FAIL
    with CtrlC() as ctrl_c:  # SIGINT sets an event from here until the cluster is closed
        engine = connect(workers, scheduler, gpu)
        try:
            client = engine.client
            slots = max(1, sum((bounded(client.nthreads, default={}) or {}).values()))
            if console is not None:
                console.print(f"engine: {engine.description}; {slots} trial(s) at a time")
            try:  # waits for a worker to take it, but not forever
                shipped = client.scatter(task, broadcast=True, timeout=SCATTER_SECONDS)
            except failed() as exc:
                from xraybench.plugins import one_line

                raise XRayBenchError(f"no Dask worker took the training data within {SCATTER_SECONDS:.0f}s "
                                     f"({one_line(exc)}); start workers for the {engine.description}") from None
            finished = Completions(client, ctrl_c, console, gpu)
            exhausted = stopped = False

            def submit_one() -> bool:
                nonlocal exhausted, stopped
                if ctrl_c.is_set():
                    stopped = True
                if stopped or exhausted or (trials is not None and session.trials_run >= trials):
                    return False
                if timeout is not None and time.perf_counter() - start > timeout:
                    return False
                asked = tuning.ask_trial(study, spec, fixed, session, sampler, seed, console)
                if asked is None:
                    exhausted = True
                    return False
                trial, params = asked
                session.trials_run += 1
                beat = tuning._Heartbeat(storage, trial._trial_id).__enter__()
                future = client.submit(run_trial_task, storage_url, study_name, trial._trial_id, params, shipped,
                                       trial_timeout, isolate, batch, env, code, shipped.key,
                                       key=f"xraybench-trial-{study_name}-{trial.number}-{batch[:8]}", pure=False,
                                       resources={GPU_RESOURCE: 1} if gpu else None)
                in_flight[future] = (trial, beat)
                finished.watch(future, f"trial {trial.number}")
                return True

            while len(in_flight) < slots and submit_one():
                pass
            while len(finished):
                future = finished.next()
                if future is None:  # Ctrl-C
                    stopped = True
                    break
                trial, beat = in_flight.pop(future)
                beat.__exit__(None, None, None)
                try:
                    outcome = future.result(timeout=CALL_SECONDS)  # finished: at once
                except failed() as exc:  # KilledWorker after too many deaths, a lost scheduler
                    outcome = {"status": RunStatus.ERROR.label,
                               "reason": f"the Dask task failed: {type(exc).__name__}: {exc}"}
                frozen = _tell(study, storage, storage_url, trial, outcome, trial_timeout, session, fail)
                if show is not None:
                    show(study, frozen)
                isolation.checkpoint("dask-told")  # tests: a client known to be between trials
                while len(in_flight) < slots and submit_one():
                    pass
            finished.tell()
            if stopped:  # stop the running trials on every worker and fail them, as the sequential loop does
                bounded(lambda: client.run(interrupt_batch, batch))
                bounded(lambda: client.cancel(list(in_flight), force=True))
                for trial, beat in in_flight.values():
                    beat.__exit__(None, None, None)
                    trial.set_user_attr("fail_reason", "interrupted by Ctrl-C")
                    study.tell(trial, state=fail, skip_if_finished=True)
                in_flight.clear()
                raise KeyboardInterrupt  # the caller's Ctrl-C path, outside Dask: exit 130, how to resume
        finally:
            for _trial, beat in in_flight.values():
                beat.__exit__(None, None, None)
            engine.close()
    return study, session, time.perf_counter() - start


def _tell(study: Any, storage: Any, storage_url: str, trial: Any, outcome: dict[str, Any],
          trial_timeout: float | None, session: Any, fail: Any) -> Any:
    """Tell the study what a trial's task returned, as the sequential loop does (its reason and
    traceback masked: the study may be shared); returns the frozen trial."""
    import optuna

    from xraybench.redaction import mask_text, url_secrets

    worker = (outcome.get("worker") or {}).get("address")
    if worker:
        trial.set_user_attr("dask_worker", worker)
    epochs = storage.get_trial(trial._trial_id).user_attrs.get("epochs")
    if epochs is not None:
        session.epochs_trained.append(int(epochs))
    if outcome["status"] == RunStatus.DONE.label:
        result = outcome["value"]
        if result["state"] == "pruned":
            return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return study.tell(trial, result["value"])
    reason = outcome.get("reason") or outcome["status"]
    if outcome["status"] == RunStatus.TIMEOUT.label:
        reason = f"no result within --trial-timeout {trial_timeout:g}s; the process was killed"
    secrets = url_secrets(storage_url)
    trial.set_user_attr("fail_reason", mask_text(reason, secrets))
    if outcome.get("traceback"):  # for `tune --traceback`
        trial.set_user_attr("fail_traceback", mask_text(outcome["traceback"], secrets))
    return study.tell(trial, state=fail)
