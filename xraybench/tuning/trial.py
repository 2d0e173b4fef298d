"""One trial, in whatever process runs it (a child here, a Dask worker elsewhere): the objective on
the validation split (``evaluate_params``; each epoch reported to the storage, so the pruner works
across processes) and the task it needs, sent to a process once (``TrialTask``, ``call_trial``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from xraybench.metric_registry import BY_KEY
from xraybench.specs import ImageSet, ModelSpec
from xraybench.tuning.storage import make_pruner, make_storage


# Each objective is a metric_registry entry on the validation split; its direction comes from there.
OBJECTIVES = {"val_auc": "roc_auc", "val_loss": "log_loss", "val_balanced_accuracy": "balanced_accuracy"}

METRICS = {name: "maximize" if BY_KEY[key].higher_is_better else "minimize" for name, key in OBJECTIVES.items()}


def score(metric: str, labels, scores) -> float:
    from xraybench.metrics import evaluate
    from xraybench.records import FIXED_THRESHOLD

    m = evaluate(labels, scores, FIXED_THRESHOLD)
    return BY_KEY[OBJECTIVES[metric]].value(m)


def evaluate_params(spec: ModelSpec, train: ImageSet, val: ImageSet, params: dict[str, Any], metric: str,
                    seed: int, precision: str, trial=None) -> tuple[float, int | None]:
    """Train with ``params`` on train, score on val; returns (value, epochs trained).

    With ``trial``, a model that trains in epochs (Keras) reports its trainer's ``epoch_keys[metric]`` each epoch and raises
    ``optuna.TrialPruned`` when the pruner says so; the epochs are kept as the trial's
    ``epochs`` user attribute even when the fit is pruned or fails.
    """
    from xraybench import harness
    from xraybench.training import trainer_for

    callbacks, counter = [], None
    trainer = trainer_for(spec)
    if trainer is not None and trainer.epochs:
        counter = _EpochCounter()  # first, so an epoch that gets pruned is still counted
        callbacks = [counter.callback(trainer)] + ([pruning_callback(trial, trainer.epoch_keys[metric], trainer)]
                                                   if trial is not None else [])
    try:
        fitted = harness.fit(spec, train, val, params, seed, precision, callbacks=callbacks)
    finally:
        if counter is not None and trial is not None:
            trial.set_user_attr("epochs", counter.epochs)
    val_scores = harness.predict(fitted, val.images, "validation", spec.name)
    value = score(metric, val.labels, val_scores)
    if not math.isfinite(value):
        raise harness.PluginFailure(f"{metric} is not finite ({value})")
    return value, None if counter is None else counter.epochs


def pruning_callback(trial, monitor: str, trainer):
    """A ``trainer`` epoch callback: report ``monitor`` each epoch, raise TrialPruned when the pruner says so.

    Fails loudly when ``monitor`` is not among the logged keys: a silent mismatch
    would mean pruning never happens.
    """
    import optuna

    def prune(epoch: int, logs: dict[str, float]) -> None:
        if monitor not in logs:
            raise KeyError(f"pruning monitors {monitor!r} but Keras logged only {sorted(logs)}")
        value = float(logs[monitor])
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} with {monitor}={value:.4f}")

    return trainer.epoch_callback(prune)


class FixedParamsTrial:
    """Hands a search space the user's ``--param`` values for those names instead of sampling them."""

    def __init__(self, trial, fixed: dict[str, Any]) -> None:
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            if param in self._fixed:
                self._trial.set_user_attr(f"fixed:{param}", str(self._fixed[param]))
                return self._fixed[param]
            return attr(param, *args, **kwargs)

        return suggest


class _EpochCounter:
    def __init__(self) -> None:
        self.epochs = 0

    def callback(self, trainer):
        def count(epoch: int, logs: dict[str, float]) -> None:
            self.epochs = epoch + 1

        return trainer.epoch_callback(count)


@dataclass
class TrialTask:
    """Everything one trial needs besides its parameters; picklable, so a trial can run in any
    process (a child here, a remote worker elsewhere). It carries train and val only: there is
    no test split to leak. The model is ``spec`` (``runner.ship_spec``), or found by name in the
    worker's own registry. A process keeps the task it got by ``key``: the trials after the first
    send the key alone (``call_trial``), so the arrays cross to a child once."""

    model: str
    disabled: list[str]
    train: ImageSet
    val: ImageSet
    metric: str
    seed: int
    precision: str
    pruner: str
    spec: bytes | None = None
    key: str = ""


_worker_cache: dict[Any, Any] = {}


def _cached(key: Any, make: Callable[[], Any]) -> Any:
    """Storage connections, specs and trial tasks are reused by the trials one worker process runs."""
    if key not in _worker_cache:
        _worker_cache[key] = make()
    return _worker_cache[key]


NEED_TASK = {"state": "need task"}  # run_trial's answer to a task key this process does not hold


def run_trial(storage_url: str, study_name: str, trial_id: int, params: dict[str, Any],
              task: TrialTask | str) -> dict[str, Any]:
    """Run one asked trial: train with ``params``, report each epoch to the trial in the storage
    (so the pruner sees it across processes), return ``{"state": "complete"|"pruned", "value",
    "epochs", "reason"}``. A plugin failure raises. The caller tells the study the result.
    ``task``: the task, or the key of the one this process holds (else ``NEED_TASK``)."""
    import optuna

    from xraybench.training import trainer_for

    if isinstance(task, str):
        held = _worker_cache.get("task")
        if held is None or held.key != task:
            return NEED_TASK
        task = cast(TrialTask, held)
    _worker_cache["task"] = task  # the last task only: its arrays are held while its trials come
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _cached(("storage", storage_url), lambda: make_storage(storage_url))
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=make_pruner(task.pruner))
    trial = optuna.trial.Trial(study, trial_id)
    spec = task_spec(task)
    trainer = trainer_for(spec)  # before the pruning callback imports the backend: its start-up noise held back
    if trainer is not None:
        _cached(("quiet import", spec.kind), trainer.prepare)
    try:
        value, epochs = evaluate_params(spec, task.train, task.val, params, task.metric, task.seed, task.precision, trial)
    except optuna.TrialPruned as exc:
        return {"state": "pruned", "value": None, "epochs": trial.user_attrs.get("epochs"), "reason": str(exc)}
    return {"state": "complete", "value": value, "epochs": epochs, "reason": ""}


def task_spec(task: TrialTask) -> Any:
    """The task's model spec, unpickled (or found in this process's registry) once per process."""
    from xraybench.runner import unship_spec

    return _cached(("spec", task.model, task.spec, tuple(task.disabled)),
                   lambda: unship_spec(task.spec, task.model, task.disabled))


def call_trial(child: Any, args: tuple, task: TrialTask, timeout: float | None,
               on_tick: Callable[[], None] | None = None) -> Any:
    """``run_trial(*args, task)`` in ``child`` (an ``isolation.Child``, here or on a Dask worker):
    the task's key alone, and the task itself (its arrays) only when the child answers ``NEED_TASK``."""
    outcome = child.call(run_trial, (*args, task.key or task), timeout, on_tick=on_tick)
    if outcome.ok and outcome.value == NEED_TASK:
        outcome = child.call(run_trial, (*args, task), timeout, on_tick=on_tick)
    return outcome
