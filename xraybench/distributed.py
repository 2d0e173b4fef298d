"""Many runs on a Dask cluster: each (model, seed, size, params) is one Dask task.

What runs where:

- The client (``xraybench run --workers N`` or ``--scheduler ADDR``) checks every model,
  parameter and the data set as the sequential runner does, then submits one task per run.
  It alone writes run records, so workers need no shared results folder.
- A task runs on a worker (``run_task``): it loads the data set from the worker's own path
  (``--data`` as given, else the worker's ``$XRAYBENCH_DATA``), refuses to train on data whose
  fingerprint differs from the client's, and runs the model with the sequential runner's own
  isolation (``runner.run_isolated``: a child process of the worker, killed at ``--timeout``, a
  crash becomes an ``error`` record). It returns the record and the test scores.
- A worker that dies mid-task: the scheduler gives the task to another worker, up to
  ``distributed.scheduler.allowed-failures`` times, then the client records it as an ``error``
  naming the last worker. Ctrl-C on the client stops the runs in flight on every worker,
  cancels the queued ones, and records all of them as ``interrupted``.

Dask is an optional extra (``pip install "xraybench[dask]"``): this module imports it only
inside the functions that need it, so the fast commands never pay for it.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from xraybench.errors import XRayBenchError

TOPIC = "xraybench-tasks"  # worker -> client progress events (the Dask event log)
INSTALL_HINT = 'Dask is not installed; pip install "xraybench[dask]"'
GPU_RESOURCE = "GPU"
# What Dask's nanny sets in a worker's environment (distributed.nanny.pre-spawn-environ: one BLAS
# and OpenMP thread, a fixed hash seed) to keep its own threads from oversubscribing the machine.
# A run's child process is not a Dask thread: it gets the client's values (unset = the libraries'
# defaults), as a sequential run would, so that both give the same numbers (BLAS thread counts
# change floating-point sums: logistic regression and SVM scores moved in the 5th decimal).
RUN_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "PYTHONHASHSEED")

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


# --- connecting ------------------------------------------------------------------------


@dataclass
class Engine:
    """A connected client, and the local cluster it owns (None for a remote scheduler)."""

    client: Any
    cluster: Any
    description: str
    env: dict[str, str | None] | None = None  # this process's RUN_ENV before a local cluster started

    def close(self) -> None:
        for closer in (self.client.close, getattr(self.cluster, "close", None)):
            if closer is None:
                continue
            try:
                closer(timeout=10)
            except Exception:
                pass  # shutting down: a cluster already gone is not an error
        if self.env is not None:  # a local nanny that restarted a worker rewrote it again
            _adopt_env(self.env)


def connect(workers: int | None, scheduler: str | None, gpu: bool = False) -> Engine:
    """A client for ``--workers N`` (a LocalCluster of processes) or ``--scheduler ADDR``."""
    try:
        import dask
        from distributed import Client, LocalCluster
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
        env = client_env()
        cluster = _start_local_cluster(LocalCluster, workers)
        client = Client(cluster, set_as_default=False)
        return Engine(client, cluster, f"local Dask cluster of {workers} worker process{'es' if workers > 1 else ''} "
                                       f"at {cluster.scheduler_address}", env)
    if scheduler == "dask-config":
        address = dask.config.get("scheduler-address", None)
        if not address:
            raise XRayBenchError("--scheduler without an address needs Dask's config: set $DASK_SCHEDULER_ADDRESS "
                                 "or scheduler-address in ~/.config/dask, or pass --scheduler tcp://host:8786")
        scheduler = address
    kwargs = {"scheduler_file": scheduler} if os.path.isfile(str(scheduler)) else {"address": scheduler}
    try:
        client = Client(**kwargs, timeout="20s", set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise XRayBenchError(f"cannot reach the Dask scheduler {scheduler}: {first}") from None
    return Engine(client, None, f"Dask scheduler at {client.scheduler.address}")


def _start_local_cluster(factory: Any, workers: int) -> Any:
    """A LocalCluster of processes whose workers ignore SIGINT: Ctrl-C in a terminal reaches the
    whole process group, and it is the client's to handle (stop the runs, record them), not
    something to kill the workers with mid-task. The disposition is inherited at spawn."""
    import logging
    import signal

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


# --- on the worker ---------------------------------------------------------------------


def run_task(request: dict[str, Any], expected: dict[str, Any], batch: str) -> dict[str, Any]:
    """Runs ON A WORKER: load the data here, check it is the client's, run the model isolated.

    Returns ``{"record", "scores", "worker"}`` for a run that reached the runner (done, error,
    timeout or interrupted), or ``{"error", "worker"}`` when it could not start here (other
    data, another xraybench or plugin version, a model this worker does not have). Never
    writes a file: the client records.
    """
    from distributed import get_worker

    from xraybench import __version__
    from xraybench.plugins import one_line
    from xraybench.runner import Interrupted, RunRequest, prepare, run_isolated

    worker = get_worker()
    key = str(worker.get_current_task())
    info = worker_info(worker)
    cancel = _register(batch, key)
    if cancel is None:  # its client was interrupted while this task waited here
        return {"error": "cancelled by Ctrl-C before it started", "interrupted": True, "worker": info}
    worker.log_event(TOPIC, {"batch": batch, "key": key, "event": "started", "worker": info["address"]})
    try:
        if __version__ != expected["xraybench"]:
            return {"error": f"worker {info['address']} has xraybench {__version__}, the client "
                             f"{expected['xraybench']}; install the same version on every worker", "worker": info}
        run = RunRequest(**request)
        try:
            prepared = prepare(run)
        except XRayBenchError as exc:
            return {"error": f"on worker {info['address']}: {str(exc).splitlines()[0]}", "worker": info}
        got = prepared.dataset.fingerprint
        if got != expected["fingerprint"]:
            return {"error": (
                f"data fingerprint {got[:12]} on worker {info['address']} ({prepared.dataset.source}) differs from "
                f"the client's {expected['fingerprint'][:12]} ({expected['source']}); stage the same data set on "
                f"every worker (docs/distributed.md)"), "worker": info}
        plugin = f"{prepared.spec.distribution} {prepared.spec.version}"
        if plugin != expected["plugin"]:
            return {"error": f"worker {info['address']} has {run.model} from {plugin}, the client from "
                             f"{expected['plugin']}; install the same plugin version on every worker", "worker": info}
        _adopt_env(expected["env"])
        try:
            record, scores = run_isolated(prepared, cancel=cancel)
        except Interrupted as stop:
            record, scores = stop.record, None
        return {"record": record, "scores": scores, "worker": info}
    except Exception as exc:  # anything else: one line back to the client, the worker goes on
        return {"error": f"on worker {info['address']}: {one_line(exc)}", "worker": info}
    finally:
        _unregister(batch, key)


def _register(batch: str, key: str) -> threading.Event | None:
    """Note a task running in this worker process, with the event that cancels it; None when its
    batch was already interrupted. Also lets the task start child processes (see below)."""
    import multiprocessing as mp

    # Dask starts worker processes as daemons, which multiprocessing forbids to have children;
    # the run's child is ours to stop (timeout, Ctrl-C) and it dies with its parent, so allow it.
    mp.current_process()._config["daemon"] = False
    cancel = threading.Event()
    with _LOCK:
        if batch in _CANCELLED:
            return None
        _ACTIVE.setdefault(batch, {})[key] = cancel
    return cancel


def _adopt_env(env: dict[str, str | None]) -> None:
    """Give the children this worker starts the client's RUN_ENV values (None: unset)."""
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


def record_from_outcome(task: Task, outcome: dict[str, Any], scheduler: str) -> tuple[dict[str, Any], dict | None]:
    """The run record the client saves for what a task returned."""
    from xraybench.runner import base_record

    if "record" in outcome:
        record, scores = outcome["record"], outcome.get("scores")
    else:
        record, scores = base_record(task.prepared), None
        status = "interrupted" if outcome.get("interrupted") else "error"
        record.update(status=status, reason=outcome["error"])
    record["executor"] = _executor(outcome.get("worker"), scheduler, record)
    return record, scores


def record_for_failure(task: Task, exc: BaseException, scheduler: str) -> dict[str, Any]:
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
    record.update(status="error", reason=reason)
    record["executor"] = _executor({"address": task.worker or None}, scheduler, record)
    return record


class Progress:
    """One live view of the batch: counts, then running and failed tasks with their workers."""

    def __init__(self, tasks: list[Task], header: str) -> None:
        self.tasks = tasks
        self.header = header
        self.by_key = {t.key: t for t in tasks}

    def on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Dask event handler (client's event-loop thread)."""
        msg = event[1] if isinstance(event, tuple) else event
        task = self.by_key.get(msg.get("key")) if isinstance(msg, dict) else None
        if task is not None and not task.recorded and msg.get("event") == "started":
            task.state, task.worker = "running", msg.get("worker", "")

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

    Returns the exit status: 0 all done, 1 some failed, 130 interrupted.
    """
    from rich.live import Live
    from rich.markup import escape

    from xraybench import __version__
    from xraybench.terminal_report import print_run_summary

    env = client_env()  # before any local cluster exists: its nanny rewrites this process's environment
    engine = connect(workers, scheduler, gpu)
    batch = uuid.uuid4().hex
    tasks: list[Task] = []
    records: list[dict[str, Any]] = []
    futures: dict[Any, Task] = {}
    scheduler_address = engine.client.scheduler.address

    def save(task: Task, record: dict[str, Any], scores: dict | None) -> None:
        path = store.save(record, scores)
        task.recorded = True
        task.state = "done" if record["status"] == "done" else "failed"
        task.detail = "" if task.state == "done" else str(record.get("reason", ""))
        task.worker = (record.get("executor") or {}).get("worker") or task.worker
        records.append(record)
        m = record.get("metrics") or {}
        result = (f"accuracy {m['accuracy']:.4f}  AUC {m['roc_auc']:.4f}" if record["status"] == "done"
                  else str(record.get("reason", "")))
        console.print(escape(f"{record['status']:<11} {record['model']} seed {record['seed']} on {task.worker or '-'}: "
                             f"{result}  ({record.get('wall_seconds') or 0:.1f}s; recorded {path.name})"))

    try:
        from distributed import as_completed

        client = engine.client
        console.print(escape(f"engine: {engine.description}; {len(client.nthreads())} worker(s) connected now"))
        link = dashboard_link(engine)
        if link:
            console.print(f"dashboard: {escape(link)}")
        if gpu and not any(GPU_RESOURCE in (w.get("resources") or {}) for w in all_workers(client).values()):
            console.print("[yellow]no connected worker offers GPU yet[/]: the tasks wait until one started with "
                          "`dask worker --resources GPU=1` joins")
        for i, p in enumerate(prepared):
            key = f"xraybench-{p.spec.name}-seed{p.request.seed}-{i}-{batch[:8]}"
            tasks.append(Task(p, key))
        progress = Progress(tasks, f"{len(tasks)} runs on {engine.description}")
        client.subscribe_topic(TOPIC, progress.on_event)
        for task in tasks:
            p = task.prepared
            expected = {"fingerprint": p.dataset.fingerprint, "source": str(p.dataset.source),
                        "xraybench": __version__, "plugin": f"{p.spec.distribution} {p.spec.version}",
                        "env": env}
            future = client.submit(run_task, asdict(p.request), expected, batch, key=task.key, pure=False,
                                   resources={GPU_RESOURCE: 1} if gpu else None)
            futures[future] = task
        with Live(progress, console=console, refresh_per_second=2, transient=False):
            for future in as_completed(list(futures), loop=client.loop):
                task = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # KilledWorker, a lost scheduler: recorded, never dropped
                    save(task, record_for_failure(task, exc, scheduler_address), None)
                    continue
                record, scores = record_from_outcome(task, outcome, scheduler_address)
                save(task, record, scores)
        if not console.is_terminal:
            console.print()  # rich leaves the final view without its line end off a terminal
    except KeyboardInterrupt:
        _interrupt(engine, batch, futures, save, scheduler_address, console)
        print_run_summary(records, console)
        engine.close()
        return 130
    except BaseException:
        engine.close()
        raise
    engine.close()
    print_run_summary(records, console)
    return 0 if all(r["status"] == "done" for r in records) else 1


def _interrupt(engine: Engine, batch: str, futures: dict, save, scheduler: str, console) -> None:
    """Ctrl-C: stop the running tasks on every worker, cancel the queued ones, and record every
    task not yet recorded as ``interrupted`` (with the worker's own record where it came back)."""
    from xraybench.runner import base_record

    client = engine.client
    try:
        client.run(interrupt_batch, batch)  # every worker, at once
    except Exception:
        pass  # a worker gone or the scheduler lost: the runs there are gone too
    pending = {f: t for f, t in futures.items() if not t.recorded}
    try:  # the queued ones first, so that none starts now
        client.cancel([f for f, t in pending.items() if t.state != "running"], force=True)
    except Exception:
        pass
    deadline = time.monotonic() + 15.0  # the running ones stop their child and return at once
    for future, task in pending.items():
        if task.state != "running":
            continue
        try:
            outcome = future.result(timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            continue
        record, scores = record_from_outcome(task, outcome, scheduler)  # interrupted, or done just in time
        save(task, record, scores)
    try:
        client.cancel(list(pending), force=True)
    except Exception:
        pass
    for future, task in pending.items():
        if task.recorded:
            continue
        record = base_record(task.prepared)
        was_running = task.state == "running"
        record.update(status="interrupted",
                      reason="stopped by Ctrl-C" if was_running else "cancelled by Ctrl-C before it started")
        record["executor"] = _executor({"address": task.worker or None}, scheduler, record)
        save(task, record, None)
    console.print(f"[yellow]interrupted[/]: {len(pending)} unfinished task(s) recorded as interrupted")


# --- tuning on the cluster ---------------------------------------------------------------


def run_trial_task(storage_url: str, study_name: str, trial_id: int, params: dict[str, Any], task: Any,
                   trial_timeout: float | None, isolate: bool, batch: str, env: dict[str, str | None]) -> dict[str, Any]:
    """Runs ON A WORKER: one asked trial, through ``tuning.run_trial`` (which reports each epoch to
    the trial in the shared storage, so the pruner works across workers), in a child process of
    the worker killed at ``trial_timeout``. Returns the outcome; the client tells the study."""
    from distributed import get_worker

    from xraybench import isolation, tuning
    from xraybench.harness import PluginFailure
    from xraybench.runner import _cancel_check

    worker = get_worker()
    key = str(worker.get_current_task())
    info = worker_info(worker)
    cancel = _register(batch, key)
    if cancel is None:
        return {"status": "interrupted", "reason": "cancelled by Ctrl-C before it started", "worker": info}
    worker.log_event(TOPIC, {"batch": batch, "key": key, "event": "started", "worker": info["address"]})
    args = (storage_url, study_name, trial_id, params, task)
    _adopt_env(env)
    try:
        if isolate:
            child = _trial_child(lambda: isolation.Child(expected=(PluginFailure, XRayBenchError)))
            outcome = child.call(tuning.run_trial, args, trial_timeout, on_tick=_cancel_check(cancel))
        else:
            try:
                outcome = isolation.Outcome("done", value=tuning.run_trial(*args))
            except (PluginFailure, XRayBenchError) as exc:
                outcome = isolation.Outcome("error", reason=(str(exc).splitlines() or [type(exc).__name__])[0])
    except KeyboardInterrupt:  # our cancel event: the child is already stopped
        return {"status": "interrupted", "reason": "interrupted by Ctrl-C", "worker": info}
    except Exception as exc:
        from xraybench.plugins import one_line

        return {"status": "error", "reason": f"on worker {info['address']}: {one_line(exc)}", "worker": info}
    finally:
        _unregister(batch, key)
    return {"status": outcome.status, "value": outcome.value, "reason": outcome.reason, "worker": info}


_TRIAL_CHILDREN: dict[int, Any] = {}  # worker thread -> its isolation.Child


def _trial_child(make: Any) -> Any:
    """One trial child process per worker thread, reused across trials (its imports stay warm,
    as in the sequential loop); isolation.Child replaces it after a timeout, a crash or a cancel."""
    ident = threading.get_ident()
    with _LOCK:
        if ident not in _TRIAL_CHILDREN:
            _TRIAL_CHILDREN[ident] = make()
        return _TRIAL_CHILDREN[ident]


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

    from xraybench import tuning

    study, storage, session, fixed, task = tuning.open_study(spec, train, val, storage_url, study_name, metric,
                                                             sampler, pruner, fixed, seed, precision, disabled)
    show = tuning.progress_callback(console, metric, trials) if console is not None else None
    env = client_env()  # before any local cluster exists: its nanny rewrites this process's environment
    engine = connect(workers, scheduler, gpu)
    batch = uuid.uuid4().hex
    in_flight: dict[Any, tuple[Any, Any]] = {}  # future -> (trial, heartbeat)
    start = time.perf_counter()
    fail = optuna.trial.TrialState.FAIL
    try:
        from distributed import as_completed

        client = engine.client
        slots = max(1, sum(client.nthreads().values()))
        if console is not None:
            console.print(f"engine: {engine.description}; {slots} trial(s) at a time")
        shipped = client.scatter(task, broadcast=True)
        pending = as_completed([], loop=client.loop)
        exhausted = False

        def submit_one() -> bool:
            nonlocal exhausted
            if exhausted or (trials is not None and session.trials_run >= trials):
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
                                   trial_timeout, isolate, batch, env, key=f"xraybench-trial-{study_name}-{trial.number}-"
                                   f"{batch[:8]}", pure=False, resources={GPU_RESOURCE: 1} if gpu else None)
            in_flight[future] = (trial, beat)
            pending.add(future)
            return True

        while len(in_flight) < slots and submit_one():
            pass
        for future in pending:
            trial, beat = in_flight.pop(future)
            beat.__exit__(None, None, None)
            try:
                outcome = future.result()
            except Exception as exc:  # KilledWorker after too many deaths, a lost scheduler
                outcome = {"status": "error", "reason": f"the Dask task failed: {type(exc).__name__}: {exc}"}
            frozen = _tell(study, storage, trial, outcome, trial_timeout, session, fail)
            if show is not None:
                show(study, frozen)
            while len(in_flight) < slots and submit_one():
                pass
    except KeyboardInterrupt:
        try:
            engine.client.run(interrupt_batch, batch)
            engine.client.cancel(list(in_flight), force=True)
        except Exception:
            pass
        for trial, beat in in_flight.values():
            beat.__exit__(None, None, None)
            trial.set_user_attr("fail_reason", "interrupted by Ctrl-C")
            study.tell(trial, state=fail, skip_if_finished=True)
        raise
    finally:
        for trial, beat in in_flight.values():
            beat.__exit__(None, None, None)
        engine.close()
    return study, session, time.perf_counter() - start


def _tell(study: Any, storage: Any, trial: Any, outcome: dict[str, Any], trial_timeout: float | None,
          session: Any, fail: Any) -> Any:
    """Tell the study what a trial's task returned; returns the frozen trial."""
    import optuna

    worker = (outcome.get("worker") or {}).get("address")
    if worker:
        trial.set_user_attr("dask_worker", worker)
    epochs = storage.get_trial(trial._trial_id).user_attrs.get("epochs")
    if epochs is not None:
        session.epochs_trained.append(int(epochs))
    if outcome["status"] == "done":
        result = outcome["value"]
        if result["state"] == "pruned":
            return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return study.tell(trial, result["value"])
    reason = outcome.get("reason") or outcome["status"]
    if outcome["status"] == "timeout":
        reason = f"no result within --trial-timeout {trial_timeout:g}s; the process was killed"
    trial.set_user_attr("fail_reason", reason)
    return study.tell(trial, state=fail)
