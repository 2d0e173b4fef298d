"""Runs models one after another, each in its own child process.

The child process (``xraybench.isolation``) is the isolation boundary: a plugin that hangs is killed at
``--timeout``, one that crashes the interpreter or is killed for memory is seen
to die, one that raises or returns garbage reports it; each becomes a recorded
run with status ``timeout`` or ``error`` and a one-line reason, and the next
model runs. The parent alone writes records, so Ctrl-C leaves no half-written
record: the run in flight is recorded as ``interrupted``. A plugin failure keeps
its full traceback in the record (``traceback``), printed by ``run --traceback``.
"""

from __future__ import annotations

import time
import traceback
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


def _run_request(request_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the child process runs: one model, with its epochs printed as they end."""
    request = RunRequest(**request_dict)
    return execute(request, _epoch_printer(request.model, request.quiet))


def run_isolated(prepared: Prepared, cancel: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one prepared request in a child process; always returns a record (status set).

    ``cancel`` (a ``threading.Event``) stops the run as Ctrl-C does, from another thread: how a
    Dask worker's task is interrupted when its client is (xraybench.distributed)."""
    from xraybench import isolation
    from xraybench.harness import PluginFailure

    record = base_record(prepared)
    request = prepared.request
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    try:
        outcome = isolation.run_once(_run_request, (asdict(request),), request.timeout,
                                     expected=(PluginFailure, XRayBenchError), on_tick=_cancel_check(cancel))
    except KeyboardInterrupt:  # the child is already stopped
        record.update(status="interrupted", reason="stopped by Ctrl-C", wall_seconds=time.perf_counter() - start)
        raise Interrupted(record) from None
    record["wall_seconds"] = time.perf_counter() - start
    cpu_after = _children_cpu_seconds()
    record["cpu_seconds"] = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if outcome.status == "done":
        fields, scores = outcome.value
        record.update(fields)
        record["status"], record["reason"] = "done", ""
        return record, scores
    if outcome.status == "timeout":
        record["status"], record["reason"] = "timeout", f"no result within --timeout {request.timeout:g}s; the process was killed"
    else:
        record["status"], record["reason"] = "error", outcome.reason
    if outcome.traceback:
        record["traceback"] = outcome.traceback
    return record, None


def _cancel_check(cancel: Any) -> Callable[[], None] | None:
    """An ``on_tick`` that turns a set ``cancel`` event into Ctrl-C (the child is stopped, the
    run recorded as interrupted)."""
    if cancel is None:
        return None

    def check() -> None:
        if cancel.is_set():
            raise KeyboardInterrupt

    return check


def _children_cpu_seconds() -> float | None:
    """User + system CPU seconds of this process's finished children (all their threads):
    what a run cost the machine, beside its wall time. None where ``resource`` is missing."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        text = str(exc).strip()
        record.update(status="error", reason=text.splitlines()[0] if text else type(exc).__name__,
                      traceback=traceback.format_exc(), wall_seconds=time.perf_counter() - start)
        return record, None
    backend = None
    if prepared.spec.kind == "keras":
        import keras

        backend = keras.backend.backend()
    record.update(fields)
    record.update(status="done", environment=environment.capture(backend), wall_seconds=time.perf_counter() - start,
                  cpu_seconds=time.process_time() - cpu_start)
    return record, scores
