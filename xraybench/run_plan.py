"""From what ``run`` (and ``tune``) were asked for to checked, prepared runs, before anything trains.

The CLI parses; this decides which models × seeds run with which parameters, which flags apply
to which model, and which run a ``--resume`` continues; ``runner.py`` then runs each one.
Every model, parameter and data set is checked here, so a typo fails in one line before the
first model trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.records import RunRecord, RunStatus
from xraybench.runner import Prepared, RunRequest, prepare
from xraybench.training import trains_in_epochs


def training_flags(epochs: int | None, batch_size: int | None = None, recipe: str | None = None) -> dict[str, Any]:
    """``--epochs`` / ``--batch-size`` / ``--recipe`` as parameter overrides, checked (each at least 1)."""
    flags: dict[str, Any] = {"recipe": recipe} if recipe else {}
    if epochs is not None:
        if epochs < 1:
            raise XRayBenchError(f"--epochs must be at least 1, got {epochs}")
        flags["epochs"] = epochs
    if batch_size is not None:
        if batch_size < 1:
            raise XRayBenchError(f"--batch-size must be at least 1, got {batch_size}")
        flags["batch_size"] = batch_size
    return flags


def flag_overrides(spec, params: dict[str, Any], flags: dict[str, Any], console=None) -> dict[str, Any]:
    """``--param`` overrides plus the ``--epochs`` / ``--batch-size`` flags that apply to ``spec``.

    The flags set Keras training parameters; a model without such a parameter (scikit-learn)
    ignores them with a note, in ``run`` and ``tune`` alike (several models share one command
    line), while an explicit ``--param`` it does not know stays an error."""
    own = dict(params)
    ignored = []
    for key, value in flags.items():
        if key in spec.all_defaults():
            own[key] = value
        else:
            ignored.append(f"--{key.replace('_', '-')}")
    if ignored and console is not None:
        from rich.markup import escape

        console.print(escape(f"note: {spec.name} has no {' or '.join(ignored)} parameter; ignored for it"))
    return own


@dataclass
class RunPlan:
    """What ``run`` was asked for: each of ``models`` once per seed, or the one run ``resume`` names.

    ``settings`` holds what every run shares (data, size, precision, timeout, the command...);
    each run gets its own model, seed and parameters (``overrides`` plus the flags it has)."""

    settings: RunRequest
    models: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    resume: str | None = None
    save_model: bool = True  # each done run keeps its model beside its record (``--no-save-model``: not)

    def check(self) -> None:
        """What can be checked before any plugin or data is loaded."""
        sensitivity = self.settings.target_sensitivity
        if sensitivity is not None and not 0.0 < sensitivity <= 1.0:
            raise XRayBenchError(f"--target-sensitivity must be in (0, 1], got {sensitivity}")
        if bool(self.models) == bool(self.resume):
            raise XRayBenchError("run needs --model NAME, or --resume RUN_ID (which takes the run's own model and settings)")

    def prepare(self, registry, store, console=None) -> list[Prepared]:
        """Every run resolved and its data loaded (once per distinct data set), in the order they run."""
        datasets: dict = {}
        prepared = []
        if self.resume:
            request, resumed = resume_request(store, self.resume, self.settings.command, self.settings.data,
                                              self.save_model)
            started_with = request.timeout
            request.timeout = self.settings.timeout  # this command's --timeout (or its default), never the old one
            prepared.append(prepare(request, registry, datasets))
            check_resumed(prepared[0], resumed)
            if console is not None:
                from rich.markup import escape

                console.print(escape(resume_line(request, started_with)), highlight=False)
        for model in self.models:
            own = flag_overrides(registry.model(model), self.overrides, self.flags, console)
            for seed in self.seeds:
                request = dataclasses.replace(
                    self.settings, model=model, seed=seed, params=own, disabled=list(self.settings.disabled),
                    tags={"overrides": own} if own else {}, checkpoints=str(store.root),
                    models=str(store.root) if self.save_model else None,
                )
                prepared.append(prepare(request, registry, datasets))
        return prepared


def resume_request(store, run_id: str, command: str = "", data: str | None = None,
                   save_model: bool = True) -> tuple[RunRequest, RunRecord]:
    """The request that continues run ``run_id`` from its last checkpoint, and its record.

    ``data`` replaces the stored data location (whose secrets are masked). One-line
    XRayBenchErrors: an unknown id, a run that cannot be resumed (done, a model without
    epochs, no checkpoint) and a damaged checkpoint. The data is checked later (``check_resumed``).
    """
    from pathlib import Path

    from xraybench import checkpoints

    record = store.find(run_id)
    run_id = record.run_id
    if record.status is RunStatus.DONE:
        raise XRayBenchError(f"run {run_id} finished (done); only an interrupted, timed-out or failed run can be resumed")
    if not trains_in_epochs(record.kind):
        raise XRayBenchError(f"run {run_id} is a {record.kind} model, which has no epochs to resume; run it again")
    where = record.checkpoint
    if not where:
        raise XRayBenchError(f"run {run_id} has no checkpoint (no epoch had finished); run it again")
    path = Path(where)
    if not path.is_absolute():
        path = store.root / path
    inside = (store.root / "checkpoints").resolve()
    if path.resolve().parent != inside:  # a record is data: it never points resume (or removal) elsewhere
        raise XRayBenchError(f"run {run_id}'s checkpoint {where} is not a folder of {store.root / 'checkpoints'}; "
                             "run it again")
    saved = checkpoints.manifest(path)
    if checkpoints.state(path) is None:
        raise checkpoints.CheckpointError(f"checkpoint {path} holds no finished epoch; run {run_id} cannot be resumed")
    try:
        request = RunRequest(**saved["request"])
    except TypeError as exc:
        raise checkpoints.CheckpointError(f"checkpoint {path} is damaged ({checkpoints.MANIFEST}: {exc})") from None
    if data:
        request.data = data  # checked against the run's data fingerprint (check_resumed)
    elif isinstance(request.data, str) and "***" in request.data:
        raise XRayBenchError(f"run {run_id} read its data from {request.data}, whose secret is not stored; "
                             "pass --data again")
    request.resume_from, request.resumed_from = str(path), run_id
    request.checkpoints = str(store.root)
    request.models = str(store.root) if save_model else None  # as this command asks, like --timeout
    request.command = command or request.command
    return request, record


def resume_line(request: RunRequest, started_with: float) -> str:
    """What a resume says before it trains: the epoch it goes on from, and which ``--timeout``
    applies. Why: the request comes back from the checkpoint, and a timeout that killed the run
    once would kill it again if it were inherited without a word; the resume takes this command's
    ``--timeout`` (its default when none is given) and names the old one when it differs."""
    from pathlib import Path

    from xraybench import checkpoints
    from xraybench.progress import format_seconds, plural

    saved = checkpoints.state(Path(request.resume_from or ".")) or {}
    done = int(saved.get("epoch") or 0)
    now = request.timeout
    was = "as when the run started" if started_with == now else f"the run started with --timeout {started_with:g}s"
    return (f"resuming run {request.resumed_from} from epoch {done + 1} ({plural(done, 'epoch')} done); this "
            f"command's --timeout applies, {now:g}s ({format_seconds(now)}); {was}")


def check_resumed(prepared: Prepared, record: RunRecord) -> None:
    """The data a resume trains on must be the data the run started on."""
    was = record.fingerprint
    now = prepared.dataset.fingerprint
    if was and was != now:
        raise XRayBenchError(f"the data at {prepared.dataset.source} changed since run {record.run_id} "
                             f"(fingerprint {now}, was {was}); a resume needs the same data")
