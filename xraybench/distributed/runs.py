"""``run --workers N`` / ``--scheduler ADDR``: each prepared run a Dask task (``run_batch``), each
record saved once on the client as its task comes back, with where it ran (``placed``) and the model
file a worker sent; a live view of who runs what; Ctrl-C records every unfinished task."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from xraybench.distributed.cluster import CALL_SECONDS, GPU_RESOURCE, CtrlC, Watch, bounded, client_env, connect, failure_reason
from xraybench.distributed.worker import expected_code, run_task
from xraybench.records import RunRecord, RunStatus


def stage_returned_model(runs: Path, record: RunRecord, model: bytes | None) -> None:
    """On the client: the bytes a worker sent, where ``ResultStore.save`` takes a staged model from
    (and checks its hash), so a cluster run keeps its model as a local one does."""
    from xraybench.saved_model import staged_path

    if model is not None and record.saved_model is not None:
        with contextlib.suppress(OSError):  # unwritable: take_staged notes the missing model in the record
            runs.mkdir(parents=True, exist_ok=True)
            staged_path(runs, record.run_id, record.saved_model.format).write_bytes(model)


def placed(record: RunRecord, where: dict[str, Any], scheduler: str, attempts: int) -> RunRecord:
    """The record with which worker and device ran it (``executor``) and how many times a worker
    started it (``attempts``: 2 or more, a worker was lost mid-run and Dask ran it again)."""
    executor = {"engine": "dask", "scheduler": scheduler, "worker": None, "worker_name": None, "host": None,
                "resources": {}, "cuda_visible_devices": None, **where,
                "device": record.environment.get("accelerator") or "cpu"}
    return replace(record, attempts=attempts, extra={**record.extra, "executor": executor})


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
        code = {key: expected_code(spec) for key, spec in specs.items()}  # hashed once per spec, not per run
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
