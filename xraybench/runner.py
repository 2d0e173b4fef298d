"""Runs one prepared run (``run_plan`` decides which) in its own child process and records how it ended.

The child process (``xraybench.isolation``) is the isolation boundary: a plugin that hangs is killed at
``--timeout``, one that crashes the interpreter or is killed for memory is seen
to die, one that raises or returns garbage reports it; each becomes a recorded
run with status ``timeout`` or ``error`` and a one-line reason, and the next
model runs. The parent alone writes records, so Ctrl-C leaves no half-written
record: the run in flight is recorded as ``interrupted``. A plugin failure keeps
its full traceback in the record (``traceback``), printed by ``run --traceback``.
A Keras run saves every epoch (``xraybench.checkpoints``): an unfinished run's record keeps
its epochs and names its checkpoint, which ``run --resume`` continues from.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from xraybench.errors import XRayBenchError
from xraybench.records import DEFAULT_SEED, DEFAULT_VAL_FRACTION, RunStatus

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_TIMEOUT = 6 * 3600.0  # generous: a full CPU run of the deepest zoo model stays well inside it


@dataclass
class RunRequest:
    model: str
    seed: int = DEFAULT_SEED
    data: str | None = None
    image_size: int | None = None
    channels: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    val_fraction: float = DEFAULT_VAL_FRACTION
    skip_bad: bool = False
    disabled: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    command: str = ""
    quiet: bool = False
    target_sensitivity: float | None = None
    checkpoints: str | None = None  # results folder whose checkpoints/RUN_ID/ gets each epoch (Keras models)
    resume_from: str | None = None  # checkpoint folder to continue from (``run --resume``)
    resumed_from: str | None = None  # the run id it belongs to
    models: str | None = None  # results folder whose runs/ gets the trained model (saved_model.py); None: --no-save-model


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
    resolved = params_mod.resolve(spec.all_defaults(request.params.get("recipe")), request.params, spec.name)
    if "recipe" in resolved:  # a family with training recipes: their values checked before anything trains
        from xraybench.training import recipes

        recipes.check(resolved)
        resolved["augment"] = recipes.augment_policy(resolved.get("augment", "seed"))  # "false" and False: one row
    from xraybench.data.builtin import native_size

    # 0 is an error (checked by the data layer), not "default"; the built-in copy has its own 28 px
    size = request.image_size if request.image_size is not None else (native_size(request.data) or spec.image_size)
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
        "status": RunStatus.ERROR.label,
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
        "spec_image_size": spec.image_size,  # records.RunRecord: the size at which it serves as a reference
        "reference": bool(getattr(spec, "reference", False)),
        "data": prepared.dataset.describe(),
        "tags": tags,
        "command": request.command,
        "environment": environment.capture(),
    }


def execute(request: RunRequest, on_epoch: Callable | None = None,
            model_to: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prepare and run in this process; returns (record fields, scores). ``model_to``: where the
    trained model is staged (``saved_model.staged_stem``)."""
    from xraybench import environment, harness

    prepared = prepare(request)
    fields, scores = harness.run(prepared.spec, prepared.dataset, prepared.params, request.seed, request.precision,
                                 on_epoch, request.target_sensitivity, model_to)
    fields["environment"] = environment.capture(_backend(prepared))
    return fields, scores


def _backend(prepared: Prepared) -> str | None:
    """The backend the run's trainer used (recorded in its environment); None for a family without one."""
    from xraybench.training import trainer_for

    trainer = trainer_for(prepared.spec.kind)
    return trainer.backend() if trainer is not None else None


def _epoch_printer(model: str, quiet: bool) -> Callable:
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    started = time.perf_counter()

    def show(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        if quiet:
            return
        from xraybench.progress import epoch_line  # the wording and the ETA (early-stopping aware) live there

        console.print(epoch_line(model, epoch, epochs, logs, time.perf_counter() - started), markup=False)

    return show


def _run_request(request_dict: dict[str, Any], save_to: str | None = None,
                 model_to: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the child process runs: one model, with its epochs printed as they end and saved to
    ``save_to``, and the trained model staged at ``model_to`` (it exists only here)."""
    from xraybench import checkpoints

    request = RunRequest(**request_dict)
    with checkpoints.active(save_to, request.resume_from):
        return execute(request, _epoch_printer(request.model, request.quiet), model_to)


def _model_to(request: RunRequest, run_id: str) -> str | None:
    """Where the run's child stages its model, when the run keeps one."""
    from xraybench.saved_model import staged_stem

    return str(staged_stem(request.models, run_id)) if request.models else None


def _start_checkpoints(prepared: Prepared, record: dict[str, Any]) -> Path | None:
    """The run's checkpoint folder with its manifest (Keras models, when the request asks for
    checkpoints); names the run it resumes in the record."""
    from xraybench import checkpoints
    from xraybench.redaction import mask_command, mask_url
    from xraybench.training import trains_in_epochs

    request = prepared.request
    if request.resumed_from:
        record["resumed_from"] = request.resumed_from
    if not trains_in_epochs(prepared.spec.kind) or not request.checkpoints:
        return None
    path = checkpoints.folder(request.checkpoints, record["run_id"])
    kept = {k: v for k, v in asdict(request).items() if k not in ("resume_from", "resumed_from", "checkpoints", "models")}
    kept["command"] = mask_command(request.command)  # never a secret on disk: a resume asks for --data again
    kept["data"] = mask_url(request.data) if isinstance(request.data, str) else request.data
    checkpoints.create(path, record["run_id"], kept)
    return path


def _finish_checkpoints(prepared: Prepared, record: dict[str, Any], save_to: Path | None) -> None:
    """A done run's checkpoints have served their purpose (its own, and the one it resumed);
    any other keeps the epochs it finished: their history in the record, and the checkpoint
    that ``run --resume`` continues from."""
    from pathlib import Path

    from xraybench import checkpoints

    resumed = Path(prepared.request.resume_from) if prepared.request.resume_from else None
    root = prepared.request.checkpoints
    if record["status"] == RunStatus.DONE.label:
        checkpoints.remove(save_to, root)
        checkpoints.remove(resumed, root)
        return
    history, epochs = checkpoints.history_of(save_to)
    where = save_to
    if not epochs:  # nothing saved by this run: the resumed checkpoint is still the last one
        checkpoints.remove(save_to, root)
        history, epochs = checkpoints.history_of(resumed)
        where = resumed
    if epochs and where is not None:  # (epochs only come from a saved checkpoint: `where` is set)
        # The checkpoint's path relative to the results folder, when it is inside (records get published).
        results = Path(prepared.request.checkpoints or ".")
        where = where.relative_to(results) if where.is_relative_to(results) else where
        record.update(history=history, epochs_run=epochs, checkpoint=str(where))


def run_isolated(prepared: Prepared, cancel: Any = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one prepared request in a child process; always returns a record (status set).

    ``cancel`` (a ``threading.Event``) stops the run as Ctrl-C does, from another thread: how a
    Dask worker's task is interrupted when its client is (xraybench.distributed)."""
    from xraybench import isolation
    from xraybench.harness import PluginFailure
    from xraybench.saved_model import discard_staged

    record = base_record(prepared)
    request = prepared.request
    save_to = _start_checkpoints(prepared, record)
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    try:
        outcome = isolation.run_once(_run_request, (asdict(request), str(save_to) if save_to else None,
                                                    _model_to(request, record["run_id"])),
                                     request.timeout, expected=(PluginFailure, XRayBenchError),
                                     on_tick=_cancel_check(cancel))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (isolation.Terminated); the child is already stopped
        record.update(status=RunStatus.INTERRUPTED.label, reason=isolation.stop_reason(exc),
                      wall_seconds=time.perf_counter() - start)
        _finish_checkpoints(prepared, record, save_to)
        discard_staged(request.models, record["run_id"])
        raise Interrupted(record, isolation.stop_exit_code(exc)) from None
    try:
        return _outcome_record(prepared, record, outcome, start, cpu_before)
    finally:
        _finish_checkpoints(prepared, record, save_to)
        if record["status"] != RunStatus.DONE.label:  # a run that did not finish keeps no model
            discard_staged(request.models, record["run_id"])


def _outcome_record(prepared: Prepared, record: dict[str, Any], outcome, start: float,
                    cpu_before: float | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    request = prepared.request
    record["wall_seconds"] = time.perf_counter() - start
    cpu_after = _children_cpu_seconds()
    record["cpu_seconds"] = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if outcome.status == "done":
        from xraybench.saved_model import finish_fields

        fields, scores = outcome.value
        record.update(fields)
        record["status"], record["reason"] = RunStatus.DONE.label, ""
        finish_fields(record, request.models)
        return record, scores
    if outcome.status == "timeout":
        record["status"] = RunStatus.TIMEOUT.label
        record["reason"] = f"no result within --timeout {request.timeout:g}s; the process was killed"
    else:
        record["status"], record["reason"] = RunStatus.ERROR.label, outcome.reason
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
    """Ctrl-C or SIGTERM during a run; carries the ``interrupted`` record to save and the exit
    status to end with (130 for Ctrl-C, 143 for SIGTERM, as a shell reports them)."""

    def __init__(self, record: dict[str, Any], exit_code: int = 130) -> None:
        super().__init__("interrupted")
        self.record = record
        self.exit_code = exit_code


def run_in_process(prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Same contract as run_isolated, without a child process (debugging, `--no-isolation`)."""
    from xraybench import checkpoints, environment, harness
    from xraybench.saved_model import discard_staged, finish_fields

    record = base_record(prepared)
    models = prepared.request.models
    save_to = _start_checkpoints(prepared, record)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        with checkpoints.active(str(save_to) if save_to else None, prepared.request.resume_from):
            fields, scores = harness.run(
                prepared.spec, prepared.dataset, prepared.params, prepared.request.seed,
                prepared.request.precision, _epoch_printer(prepared.spec.name, prepared.request.quiet),
                prepared.request.target_sensitivity, _model_to(prepared.request, record["run_id"]),
            )
    except KeyboardInterrupt as exc:
        from xraybench.isolation import stop_exit_code, stop_reason

        record.update(status=RunStatus.INTERRUPTED.label, reason=stop_reason(exc), wall_seconds=time.perf_counter() - start)
        _finish_checkpoints(prepared, record, save_to)
        discard_staged(models, record["run_id"])
        raise Interrupted(record, stop_exit_code(exc)) from None
    except (harness.PluginFailure, XRayBenchError) as exc:
        text = str(exc).strip()
        record.update(status=RunStatus.ERROR.label, reason=text.splitlines()[0] if text else type(exc).__name__,
                      traceback=traceback.format_exc(), wall_seconds=time.perf_counter() - start)
        _finish_checkpoints(prepared, record, save_to)
        discard_staged(models, record["run_id"])
        return record, None
    record.update(fields)
    record.update(status=RunStatus.DONE.label, environment=environment.capture(_backend(prepared)),
                  wall_seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start)
    finish_fields(record, models)
    _finish_checkpoints(prepared, record, save_to)
    return record, scores
