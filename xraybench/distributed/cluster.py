"""The client's side of the cluster: the flags checked and the scheduler reached before any data is
loaded (``check``), the connection (a local cluster or an existing scheduler, ``connect``), cluster
calls that cannot hang the client (``bounded``), Ctrl-C as a flag while a batch runs (``CtrlC``),
and what Dask's event log tells of the tasks (``Watch``: each start, each lost worker)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from xraybench.errors import XRayBenchError


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
CHECK_SECONDS = 5.0  # how often a waiting client checks that some worker can run its tasks
PROBE_SECONDS = 5.0  # how long the scheduler may take to answer the first contact
NO_WORKER_NOTICE_SECONDS = 60.0  # no worker able to run the tasks for this long: said once


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
        adopt_env(env)
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
        adopt_env(env)


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


def adopt_env(env: dict[str, str | None]) -> None:
    """Set these environment variables in this process, for the children it starts (None: unset)."""
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def client_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in RUN_ENV}


def failure_reason(exc: BaseException) -> str:
    """Why a task never returned: its workers died too often (KilledWorker), or the cluster went away."""
    from xraybench.training import one_line

    if type(exc).__name__ == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", "?")
        allowed = exc.args[2] if len(exc.args) > 2 else "?"
        return (f"the workers running it died {allowed} times (last {last}); Dask gave up "
                f"(distributed.scheduler.allowed-failures)")
    return f"the Dask task failed: {one_line(exc)}"
