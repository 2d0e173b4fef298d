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

from xraybench.errors import XRayBenchError, first_line
from xraybench.records import DEFAULT_SEED, DEFAULT_VAL_FRACTION, RunRecord, RunStatus

if TYPE_CHECKING:
    from pathlib import Path

    from xraybench.specs import ModelSpec

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
    spec: ModelSpec
    params: dict[str, Any]
    dataset: Any

    def ship(self, dataset: Any) -> Shipped:
        """This run as it travels to another process (a run's child, a Dask worker), with ``dataset`` (without images)."""
        return Shipped(self.request, ship_spec(self.spec), self.params, dataset)


@dataclass
class Shipped:
    """A prepared run on its way to another process: its spec pickled (``ship_spec``; ``unship_spec`` there)."""

    request: RunRequest
    spec: bytes | None
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


def start_record(prepared: Prepared) -> RunRecord:
    """The run's record as it starts (status ``error`` until ``RunRecord.finish`` says how it
    ended): what the prepared run is, made once here for every runner (sequential, Dask)."""
    from xraybench import environment
    from xraybench.results import new_run_id, now_iso

    spec, request = prepared.spec, prepared.request
    tags = dict(request.tags)
    if tags.get("overrides"):  # as resolved (typed), so "true" and "True" name the same row
        tags["overrides"] = {k: prepared.params.get(k, v) for k, v in tags["overrides"].items()}
    return RunRecord(
        run_id=new_run_id(spec.name), created_at=now_iso(), status=RunStatus.ERROR, model=spec.name,
        description=spec.description, distribution=spec.distribution, version=spec.version, kind=spec.kind,
        params=prepared.params, seed=request.seed, image_size=prepared.dataset.image_size,
        channels=prepared.dataset.channels, spec_image_size=spec.image_size,  # the size it serves as a reference at
        reference=bool(getattr(spec, "reference", False)), data=prepared.dataset.describe(), tags=tags,
        command=request.command, environment=environment.capture(), resumed_from=request.resumed_from,
    )


def execute(prepared: Prepared, on_epoch: Callable | None = None,
            model_to: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the prepared run in this process; returns (the record fields the harness produced, with
    the environment the run trained in, scores). ``model_to``: where the trained model is staged
    (``saved_model.staged_stem``)."""
    from xraybench import environment, harness

    request = prepared.request
    results, scores = harness.run(prepared.spec, prepared.dataset, prepared.params, request.seed, request.precision,
                                  on_epoch, request.target_sensitivity, model_to)
    return {**results, "environment": environment.capture(_backend(prepared))}, scores


def _backend(prepared: Prepared) -> str | None:
    """The backend the run's trainer used (recorded in its environment); None for a family without one."""
    from xraybench.training import trainer_for

    trainer = trainer_for(prepared.spec)
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


def ship_spec(spec: ModelSpec) -> bytes | None:
    """A spec pickled by reference for a child process, where unpickling it imports its plugin's
    module alone (not every plugin, as a registry load does); None for one that does not pickle (a
    lambda): the child then finds it in its own registry (``unship_spec``)."""
    import pickle

    try:
        return pickle.dumps(spec)
    except Exception:  # a lambda or a local function: pickle refuses to name it
        return None


def unship_spec(shipped: bytes | None, model: str, disabled: list[str]) -> ModelSpec:
    """The spec ``ship_spec`` sent, in the child (``model`` from its registry where it sent None)."""
    import pickle

    from xraybench.training.backend import ensure_keras_backend

    ensure_keras_backend()  # before the plugin's module is imported, as load_registry does
    if shipped is not None:
        return pickle.loads(shipped)
    from xraybench.plugins import load_registry

    return load_registry(disabled).model(model)


def _run_request(shipped: Shipped, save_to: str | None = None,
                 model_to: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the child process runs: the run the parent prepared, so nothing is prepared again: its
    spec (``ship_spec``), resolved parameters and data without images (its cache entry is mapped
    here: ``loading.reopen``); its epochs printed as they end and saved to ``save_to``, and the
    trained model staged at ``model_to`` (it exists only here)."""
    from xraybench import checkpoints
    from xraybench.data.loading import reopen

    request = shipped.request
    spec = unship_spec(shipped.spec, request.model, request.disabled)
    prepared = Prepared(request, spec, shipped.params, reopen(shipped.dataset))
    with checkpoints.active(save_to, request.resume_from):
        return execute(prepared, _epoch_printer(request.model, request.quiet), model_to)


def _model_to(request: RunRequest, run_id: str) -> str | None:
    """Where the run's child stages its model, when the run keeps one."""
    from xraybench.saved_model import staged_stem

    return str(staged_stem(request.models, run_id)) if request.models else None


def _start_checkpoints(prepared: Prepared, run_id: str) -> Path | None:
    """The run's checkpoint folder with its manifest (Keras models, when the request asks for
    checkpoints)."""
    from xraybench import checkpoints
    from xraybench.redaction import mask_command, mask_url
    from xraybench.training import trains_in_epochs

    request = prepared.request
    if not trains_in_epochs(prepared.spec) or not request.checkpoints:
        return None
    path = checkpoints.folder(request.checkpoints, run_id)
    kept = {k: v for k, v in asdict(request).items() if k not in ("resume_from", "resumed_from", "checkpoints", "models")}
    kept["command"] = mask_command(request.command)  # never a secret on disk: a resume asks for --data again
    kept["data"] = mask_url(request.data) if isinstance(request.data, str) else request.data
    checkpoints.create(path, run_id, kept)
    return path


def _finish_checkpoints(prepared: Prepared, status: RunStatus, save_to: Path | None) -> dict[str, Any]:
    """A done run's checkpoints have served their purpose (its own, and the one it resumed);
    any other keeps the epochs it finished: the record fields of their history, and of the
    checkpoint that ``run --resume`` continues from."""
    from pathlib import Path

    from xraybench import checkpoints

    resumed = Path(prepared.request.resume_from) if prepared.request.resume_from else None
    root = prepared.request.checkpoints
    if status is RunStatus.DONE:
        checkpoints.remove(save_to, root)
        checkpoints.remove(resumed, root)
        return {}
    history, epochs = checkpoints.history_of(save_to)
    where = save_to
    if not epochs:  # nothing saved by this run: the resumed checkpoint is still the last one
        checkpoints.remove(save_to, root)
        history, epochs = checkpoints.history_of(resumed)
        where = resumed
    if not epochs or where is None:  # (epochs only come from a saved checkpoint: `where` is set)
        return {}
    # The checkpoint's path relative to the results folder, when it is inside (records get published).
    results = Path(prepared.request.checkpoints or ".")
    where = where.relative_to(results) if where.is_relative_to(results) else where
    return {"history": history, "epochs_run": epochs, "checkpoint": str(where)}


def _finish(prepared: Prepared, record: RunRecord, save_to: Path | None, status: RunStatus, reason: str = "",
            results: dict[str, Any] | None = None, **measured: Any) -> RunRecord:
    """The one place a run's record is finished, whichever runner ran it: its checkpoints kept or
    removed, and its staged model named (done) or removed (a run that did not finish keeps none)."""
    from xraybench import saved_model

    fields = {**(results or {}), **_finish_checkpoints(prepared, status, save_to)}
    if status is RunStatus.DONE:
        fields.update(saved_model.stored_fields(fields, record.run_id, prepared.request.models))
    else:
        saved_model.discard_staged(prepared.request.models, record.run_id)
    return record.finish(status, reason, fields, **measured)


def run_isolated(prepared: Prepared, cancel: Any = None) -> tuple[RunRecord, dict[str, Any] | None]:
    """Run one prepared request in a child process; always returns a finished record.

    ``cancel`` (a ``threading.Event``) stops the run as Ctrl-C does, from another thread: how a
    Dask worker's task is interrupted when its client is (xraybench.distributed)."""
    from xraybench import isolation
    from xraybench.harness import PluginFailure

    record = start_record(prepared)
    request = prepared.request
    save_to = _start_checkpoints(prepared, record.run_id)
    shipped = prepared.ship(prepared.dataset.without_images())
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    try:
        outcome = isolation.run_once(_run_request, (shipped, str(save_to) if save_to else None,
                                                    _model_to(request, record.run_id)),
                                     request.timeout, expected=(PluginFailure, XRayBenchError),
                                     on_tick=cancel_check(cancel))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (isolation.Terminated); the child is already stopped
        record = _finish(prepared, record, save_to, RunStatus.INTERRUPTED, isolation.stop_reason(exc),
                         wall_seconds=time.perf_counter() - start)
        raise Interrupted(record, isolation.stop_exit_code(exc)) from None
    wall = time.perf_counter() - start
    cpu_after = _children_cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    status = outcome.status
    if status is RunStatus.DONE:
        results, scores = outcome.value
        return _finish(prepared, record, save_to, status, "", results, wall_seconds=wall, cpu_seconds=cpu), scores
    timeout = status is RunStatus.TIMEOUT
    reason = f"no result within --timeout {request.timeout:g}s; the process was killed" if timeout else outcome.reason
    return _finish(prepared, record, save_to, status, reason, traceback=outcome.traceback, wall_seconds=wall,
                   cpu_seconds=cpu), None


def cancel_check(cancel: Any) -> Callable[[], None] | None:
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

    def __init__(self, record: RunRecord, exit_code: int = 130) -> None:
        super().__init__("interrupted")
        self.record = record
        self.exit_code = exit_code


def run_in_process(prepared: Prepared) -> tuple[RunRecord, dict[str, Any] | None]:
    """Same contract as run_isolated, without a child process (debugging, `--no-isolation`)."""
    from xraybench import checkpoints, harness

    record = start_record(prepared)
    request = prepared.request
    save_to = _start_checkpoints(prepared, record.run_id)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        with checkpoints.active(str(save_to) if save_to else None, request.resume_from):
            results, scores = execute(prepared, _epoch_printer(prepared.spec.name, request.quiet),
                                      _model_to(request, record.run_id))
    except KeyboardInterrupt as exc:
        from xraybench.isolation import stop_exit_code, stop_reason

        record = _finish(prepared, record, save_to, RunStatus.INTERRUPTED, stop_reason(exc),
                         wall_seconds=time.perf_counter() - start)
        raise Interrupted(record, stop_exit_code(exc)) from None
    except (harness.PluginFailure, XRayBenchError) as exc:
        return _finish(prepared, record, save_to, RunStatus.ERROR, first_line(exc),
                       traceback=traceback.format_exc(), wall_seconds=time.perf_counter() - start), None
    return _finish(prepared, record, save_to, RunStatus.DONE, "", results, wall_seconds=time.perf_counter() - start,
                   cpu_seconds=time.process_time() - cpu_start), scores
