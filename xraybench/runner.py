"""Runs models one after another, each in its own child process.

The child process is the isolation boundary: a plugin that hangs is killed at
``--timeout``, one that crashes the interpreter or is killed for memory is seen
to die, one that raises or returns garbage reports it; each becomes a recorded
run with status ``timeout`` or ``error`` and a one-line reason, and the next
model runs. The parent alone writes records, so Ctrl-C leaves no half-written
record: the run in flight is recorded as ``interrupted``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from xraybench.errors import XRayBenchError

DEFAULT_TIMEOUT = 6 * 3600.0  # generous: a full CPU run of the deepest zoo model stays well inside it


@dataclass
class RunRequest:
    model: str
    seed: int = 42
    data: str | None = None
    image_size: int | None = None
    channels: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    val_fraction: float = 0.15
    skip_bad: bool = False
    disabled: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    command: str = ""
    quiet: bool = False
    target_sensitivity: float | None = None


@dataclass
class Prepared:
    """Everything the parent checks before any training starts."""

    request: RunRequest
    spec: Any
    params: dict[str, Any]
    dataset: Any


def prepare(request: RunRequest, registry=None, dataset_cache: dict | None = None) -> Prepared:
    """Resolve the model, its parameters and its data; raises XRayBenchError with one line."""
    from xraybench import params as params_mod
    from xraybench.data import load_dataset
    from xraybench.plugins import load_registry

    registry = registry or load_registry(request.disabled)
    spec = registry.model(request.model)
    resolved = params_mod.resolve(spec.all_defaults(), request.params, spec.name)
    size = request.image_size or spec.image_size
    channels = request.channels or spec.channels
    key = (request.data, size, channels, request.seed, request.val_fraction, request.skip_bad)
    cache = dataset_cache if dataset_cache is not None else {}
    if key not in cache:
        cache[key] = load_dataset(
            request.data, image_size=size, channels=channels, seed=request.seed,
            val_fraction=request.val_fraction, skip_bad=request.skip_bad, registry=registry,
        )
    return Prepared(request, spec, resolved, cache[key])


def base_record(prepared: Prepared) -> dict[str, Any]:
    from xraybench import environment
    from xraybench.results import new_run_id, now_iso

    spec, request = prepared.spec, prepared.request
    tags = dict(request.tags)
    if tags.get("overrides"):  # as resolved (typed), so "true" and "True" name the same row
        tags["overrides"] = {k: prepared.params.get(k, v) for k, v in tags["overrides"].items()}
    return {
        "run_id": new_run_id(spec.name),
        "created_at": now_iso(),
        "status": "error",
        "reason": "",
        "model": spec.name,
        "description": spec.description,
        "distribution": spec.distribution,
        "version": spec.version,
        "kind": spec.kind,
        "params": prepared.params,
        "seed": request.seed,
        "image_size": prepared.dataset.image_size,
        "channels": prepared.dataset.channels,
        "data": prepared.dataset.describe(),
        "tags": tags,
        "command": request.command,
        "environment": environment.capture(),
    }


def execute(request: RunRequest, on_epoch: Callable | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prepare and run in this process; returns (record fields, scores)."""
    from xraybench import environment, harness

    prepared = prepare(request)
    fields, scores = harness.run(prepared.spec, prepared.dataset, prepared.params, request.seed, request.precision,
                                 on_epoch, request.target_sensitivity)
    backend = None
    if prepared.spec.kind == "keras":
        import keras

        backend = keras.backend.backend()
    fields["environment"] = environment.capture(backend)
    return fields, scores


def _epoch_printer(model: str, quiet: bool) -> Callable:
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    started = time.perf_counter()

    def show(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        if quiet:
            return
        elapsed = time.perf_counter() - started
        left = elapsed / epoch * (epochs - epoch)
        parts = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "val_loss", "val_auc", "val_accuracy"))
        console.print(
            f"  [cyan]{model}[/] epoch {epoch}/{epochs}  {parts}  {elapsed:.0f}s elapsed, "
            f"at most ~{left:.0f}s left (early stopping may end sooner)"
        )

    return show


def _exit_with_parent() -> None:
    """End this child when its parent dies (SIGKILL, out of memory, a Dask worker lost): an
    orphaned run would keep training, unseen, with nobody left to record or stop it."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="xraybench-parent-watch", daemon=True).start()


def _child_main(conn, request_dict: dict[str, Any]) -> None:
    """Entry point of the child process: run one model and send back the outcome."""
    from xraybench.harness import PluginFailure
    from xraybench.plugins import one_line

    _exit_with_parent()
    request = RunRequest(**request_dict)
    try:
        fields, scores = execute(request, _epoch_printer(request.model, request.quiet))
        conn.send(("done", fields, scores))
    except (PluginFailure, XRayBenchError) as exc:
        conn.send(("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__, None))
    except BaseException as exc:  # anything a plugin throws, even SystemExit
        conn.send(("error", f"unexpected {one_line(exc)}", None))
    finally:
        conn.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the model's process ended without a result"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"the model's process died with {name}{hint}"
    return f"the model's process exited with code {code} without a result"


def run_isolated(prepared: Prepared, cancel: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one prepared request in a child process; always returns a record (status set).

    ``cancel`` (a ``threading.Event``) stops the run as Ctrl-C does, from another thread: how a
    Dask worker's task is interrupted when its client is (xraybench.distributed)."""
    record = base_record(prepared)
    request = prepared.request
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child_conn, asdict(request)), daemon=True)
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    outcome: tuple | None = None
    try:  # start inside the try: a Ctrl-C at any moment still stops the child and is recorded
        proc.start()
        child_conn.close()
        deadline = start + request.timeout
        while outcome is None:
            if parent_conn.poll(0.2):
                try:
                    outcome = parent_conn.recv()
                except EOFError:  # the child closed the pipe by dying
                    proc.join(timeout=10)
                    outcome = ("error", _describe_exit(proc.exitcode), None)
                break
            if not proc.is_alive():
                if parent_conn.poll(0.5):
                    continue
                proc.join()
                outcome = ("error", _describe_exit(proc.exitcode), None)
                break
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt  # the same path as Ctrl-C: stop the child, record interrupted
            if time.perf_counter() > deadline:
                _stop(proc)
                outcome = ("timeout", f"no result within --timeout {request.timeout:g}s; the process was killed", None)
    except KeyboardInterrupt:
        _stop(proc)
        record.update(status="interrupted", reason="stopped by Ctrl-C", wall_seconds=time.perf_counter() - start)
        raise Interrupted(record) from None
    finally:
        if proc.pid is not None:  # started
            proc.join(timeout=10)
            if proc.is_alive():
                _stop(proc)
    status, payload, scores = outcome
    record["wall_seconds"] = time.perf_counter() - start
    cpu_after = _children_cpu_seconds()
    record["cpu_seconds"] = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if status == "done":
        record.update(payload)
        record["status"], record["reason"] = "done", ""
        return record, scores
    record["status"], record["reason"] = status, payload
    return record, None


def _children_cpu_seconds() -> float | None:
    """User + system CPU seconds of this process's finished children (all their threads):
    what a run cost the machine, beside its wall time. None where ``resource`` is missing."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stop(proc) -> None:
    if proc.pid is None:  # never started
        return
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=5)


class Interrupted(Exception):
    """Ctrl-C during a run; carries the ``interrupted`` record to save."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("interrupted")
        self.record = record


def run_in_process(prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Same contract as run_isolated, without a child process (debugging, `--no-isolation`)."""
    from xraybench import environment, harness

    record = base_record(prepared)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        fields, scores = harness.run(
            prepared.spec, prepared.dataset, prepared.params, prepared.request.seed,
            prepared.request.precision, _epoch_printer(prepared.spec.name, prepared.request.quiet),
            prepared.request.target_sensitivity,
        )
    except KeyboardInterrupt:
        record.update(status="interrupted", reason="stopped by Ctrl-C", wall_seconds=time.perf_counter() - start)
        raise Interrupted(record) from None
    except (harness.PluginFailure, XRayBenchError) as exc:
        record.update(status="error", reason=str(exc), wall_seconds=time.perf_counter() - start)
        return record, None
    backend = None
    if prepared.spec.kind == "keras":
        import keras

        backend = keras.backend.backend()
    record.update(fields)
    record.update(status="done", environment=environment.capture(backend), wall_seconds=time.perf_counter() - start,
                  cpu_seconds=time.process_time() - cpu_start)
    return record, scores
