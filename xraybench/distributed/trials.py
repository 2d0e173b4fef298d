"""``tune --workers N`` / ``--scheduler ADDR``: each asked trial a Dask task (``run_study``), told by
this process alone; a worker plugin keeps each session's trial processes warm (``TrialProcesses``),
and the training images reach every worker once (``_ship``)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

from xraybench.distributed.cluster import CALL_SECONDS, GPU_RESOURCE, CtrlC, Watch, bounded, client_env, connect, failure_reason
from xraybench.distributed.worker import begin_task, expected_code, refusal_of
from xraybench.errors import XRayBenchError
from xraybench.records import RunStatus


SCATTER_SECONDS = 120.0  # tune: how long the training images may wait for a worker to take them
LEASE_SECONDS = 2.0  # how often a worker asks whether its idle trial processes' clients are still there


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

    worker, stop, _threads, where = begin_task(env)
    try:
        spec = tuning.task_spec(task)
        if refusal := refusal_of(worker, spec, expected):
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
    env, expected, batch = client_env(), expected_code(spec), uuid.uuid4().hex
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
        limit, words = tuning.trial_limit(trial_timeout, timeout, elapsed)
        watch.labels[key := f"xraybench-trial-{study_name}-{trial.number}-{batch[:8]}"] = f"trial {trial.number}"
        future = client.submit(run_trial_task, storage_url, study_name, trial._trial_id, params, shipped, limit, env,
                               expected, batch, shipped.key, key=key, resources={GPU_RESOURCE: 1} if gpu else None)
        in_flight[future] = (trial, tuning.Heartbeat(storage, trial._trial_id).__enter__(), words)
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
