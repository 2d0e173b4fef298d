"""Optuna tuning on the patient-grouped validation split; the test split never reaches the objective.

Storage is any Optuna RDB URL: a SQLite file in the results folder by default, or
a shared PostgreSQL URL so that many ``xraybench tune`` processes on many machines
work one study (Optuna's own distributed mode). Heartbeats plus
``RetryFailedTrialCallback`` give a crashed worker's trial back to the study.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from xraybench.errors import XRayBenchError
from xraybench.metric_registry import BY_KEY
from xraybench.records import RunStatus
from xraybench.redaction import mask_url as masked  # the storage URL with its secrets hidden
from xraybench.specs import ImageSet, ModelSpec

# Each objective is a metric_registry entry on the validation split; its direction comes from there.
OBJECTIVES = {"val_auc": "roc_auc", "val_loss": "log_loss", "val_balanced_accuracy": "balanced_accuracy"}
METRICS = {name: "maximize" if BY_KEY[key].higher_is_better else "minimize" for name, key in OBJECTIVES.items()}


def default_storage(results: Path) -> str:
    results.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(results / 'tuning.sqlite3').resolve()}"


def _storage_error(url: str, exc: BaseException, with_type: bool) -> XRayBenchError:
    """A one-line error that names the storage without its secrets, even where the driver's own
    message echoes part of the URL (a password holding '@' ends up in the host name it reports)."""
    from xraybench.redaction import mask_text, url_secrets

    secrets = url_secrets(url)
    pieces = [p for s in secrets for p in re.split(r"[@:/?#&=]", s) if len(p) >= 2]
    first = (str(exc).splitlines() or [""])[0]
    detail = mask_text(f"{type(exc).__name__}: {first}" if with_type else first, secrets + pieces)
    return XRayBenchError(f"cannot open storage {masked(url)}: {detail}")


def _engine_kwargs(url: str) -> dict[str, Any] | None:
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # several workers (or a worker and its heartbeat) write one file: wait for the lock, don't fail
        return {"connect_args": {"timeout": 60}}
    return None


def make_storage(url: str):
    import warnings

    import optuna
    from optuna.storages import RDBStorage

    # Optuna 4.9 renamed RetryFailedTrialCallback to RetryHeartbeatStaleTrialCallback; use what exists.
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

        retry = {"heartbeat_stale_trial_callback": None}
    except ImportError:
        from optuna.storages import RetryFailedTrialCallback as Retry

        retry = {"failed_trial_callback": None}
    import random

    key = next(iter(retry))
    try:
        for attempt in range(6):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(
                        url,
                        heartbeat_interval=30,
                        grace_period=90,
                        engine_kwargs=_engine_kwargs(url),
                        **{key: Retry(max_retry=2)},
                    )
            except Exception as exc:
                # Workers started together race to create Optuna's tables; the loser retries.
                racing = any(word in str(exc) for word in ("UniqueViolation", "already exists", "IntegrityError"))
                if not racing or attempt == 5:
                    raise
                time.sleep(0.5 + random.random())
    except (optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        raise _storage_error(url, exc, with_type=False) from None
    except Exception as exc:  # SQLAlchemy connection errors and friends
        raise _storage_error(url, exc, with_type=True) from None


def make_sampler(name: str, seed: int):
    import optuna

    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }
    if name not in samplers:
        raise XRayBenchError(f"unknown sampler {name!r}; choose {', '.join(samplers)}")
    return samplers[name]()


def make_pruner(name: str):
    import optuna

    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    if name not in pruners:
        raise XRayBenchError(f"unknown pruner {name!r}; choose {', '.join(pruners)}")
    return pruners[name]()


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


def progress_callback(console, metric: str, trials: int | None = None) -> Callable:
    import optuna

    from xraybench.progress import trial_eta

    start, done = time.perf_counter(), [0]

    def show(study, trial) -> None:
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
        try:
            best = f"{study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "-"
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        if trial.state != optuna.trial.TrialState.COMPLETE:
            value += f" ({trial.state.name.lower()})"
        if trial.user_attrs.get("fail_reason"):
            value += f" ({trial.user_attrs['fail_reason']})"
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        from rich.markup import escape

        console.print(escape(f"  trial {trial.number}: {metric} {value}  [{params}]  "
                             f"best {best}  pruned {pruned}  failed {failed}"))
        done[0] += 1
        console.print(escape(f"  {trial_eta(done[0], trials, time.perf_counter() - start)}"), style="dim")

    return show


def require_tunable(spec: ModelSpec) -> None:
    if spec.search_space is None:
        raise XRayBenchError(f"{spec.name} declares no search space, so it cannot be tuned; "
                             f"`xraybench models` shows which models are tunable")


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


@dataclass
class Session:
    """What one ``run_study`` call did (the study itself holds the trials)."""

    epochs_trained: list[int] = field(default_factory=list)
    trials_run: int = 0
    duplicates: int = 0
    worker: str = ""


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


def sampler_seed(seed: int, trial_number: int) -> int:
    """The sampler's seed for one trial: the user's seed and the trial's number in the study.

    Seeding every resume and every worker with the bare seed made them draw the same parameter
    sets (issue 13.8). The storage hands out each trial number once, so resumes and concurrent
    workers sample from different streams, while one process on a fresh study stays
    reproducible from ``--seed``."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _duplicate_of(study, trial):
    """A finished or running trial of the study with exactly these parameters, if any."""
    import optuna

    running = optuna.trial.TrialState.RUNNING
    states = (optuna.trial.TrialState.COMPLETE, running)
    mine = trial.params
    for other in study.get_trials(deepcopy=False, states=states):
        # Of two running twins, the older one trains: two workers that sampled the same set at
        # the same moment must not both step aside.
        if other.number != trial.number and other.params == mine and not (other.state == running and other.number > trial.number):
            return other
    return None


class _Heartbeat:
    """Records the trial's heartbeat while it runs, so a dead worker's trial is failed and retried."""

    def __init__(self, storage, trial_id: int) -> None:
        import threading

        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.thread = None
        if interval:
            self.interval = interval
            self.thread = threading.Thread(target=self._beat, name="xraybench-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:
                pass  # a missed beat is retried; a dead storage fails the tell that follows
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


MAX_DUPLICATES_IN_A_ROW = 50


def run_study(
    spec: ModelSpec,
    train: ImageSet,
    val: ImageSet,
    storage_url: str,
    study_name: str,
    trials: int | None,
    timeout: float | None,
    metric: str,
    sampler: str,
    pruner: str,
    fixed: dict[str, Any],
    seed: int,
    precision: str = "auto",
    console=None,
    *,
    trial_timeout: float | None = None,
    isolate: bool = True,
    disabled: list[str] | None = None,
) -> tuple[Any, Session, float]:
    """Optimise with Optuna's ask/tell; returns (study, session, seconds). Resumes a study of the same name.

    The parent asks for a trial and samples its parameters; :func:`run_trial` trains it, in a
    child process when ``isolate`` (a hung trial is killed at ``trial_timeout`` and recorded as
    failed, a crashed one too, and the study goes on). A sampled parameter set that a complete or
    running trial already has is not trained again: it is told the known value (Optuna's FAQ
    recipe) or failed as a duplicate, and does not count toward ``trials``.
    """
    from xraybench import isolation
    from xraybench.errors import XRayBenchError as _Err
    from xraybench.harness import PluginFailure

    study, storage, session, fixed, task = open_study(spec, train, val, storage_url, study_name, metric, sampler,
                                                      pruner, fixed, seed, precision, disabled)
    show = progress_callback(console, metric, trials) if console is not None else None
    child = isolation.Child(expected=(PluginFailure, _Err)) if isolate else None
    start = time.perf_counter()
    try:
        while trials is None or session.trials_run < trials:
            if timeout is not None and time.perf_counter() - start > timeout:
                break
            asked = ask_trial(study, spec, fixed, session, sampler, seed, console)
            if asked is None:
                break
            trial, params = asked
            session.trials_run += 1
            limit, limit_text = _trial_limit(trial_timeout, timeout, time.perf_counter() - start)
            frozen = _run_one(study, storage, storage_url, study_name, trial, params, task, child, limit, session,
                              limit_text)
            if show is not None:
                show(study, frozen)
    finally:
        if child is not None:
            child.close()
    return study, session, time.perf_counter() - start


def open_study(spec: ModelSpec, train: ImageSet, val: ImageSet, storage_url: str, study_name: str, metric: str,
               sampler: str, pruner: str, fixed: dict[str, Any], seed: int, precision: str = "auto",
               disabled: list[str] | None = None):
    """Create or resume the study (ask_trial seeds its sampler per trial); returns
    ``(study, storage, session, fixed (typed), task)``. Shared by the sequential loop and the
    Dask one (xraybench.distributed)."""
    import uuid

    import optuna

    from xraybench import params as params_mod
    from xraybench.runner import ship_spec

    require_tunable(spec)
    if metric not in METRICS:
        raise XRayBenchError(f"unknown metric {metric!r}; choose {', '.join(METRICS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction=METRICS[metric],
        sampler=make_sampler(sampler, seed), pruner=make_pruner(pruner), load_if_exists=True,
    )
    session = Session(worker=uuid.uuid4().hex[:12])
    study.set_user_attr("model", spec.name)
    study.set_user_attr("metric", metric)
    typed = params_mod.resolve(spec.all_defaults(fixed.get("recipe")), fixed, spec.name)  # checks keys and types once
    fixed = {key: typed[key] for key in fixed}
    task = TrialTask(spec.name, list(disabled or []), train, val, metric, seed, precision, pruner,
                     ship_spec(spec), uuid.uuid4().hex)
    return study, storage, session, fixed, task


def ask_trial(study, spec: ModelSpec, fixed: dict[str, Any], session: Session, sampler: str, seed: int, console=None):
    """Ask the study for a trial and sample its parameters here, in the asking process, until the
    set is one no complete or running trial has. A repeat is not trained again: it is told the
    known value (Optuna's FAQ recipe) or failed as a duplicate, and counted in ``session``.
    Returns ``(trial, params)``, or None when MAX_DUPLICATES_IN_A_ROW draws in a row were repeats
    (the search space looks exhausted). Shared by the sequential loop and the Dask one
    (xraybench.distributed), so both ask the same way."""
    import warnings

    import optuna

    from xraybench import params as params_mod

    in_a_row = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental API; heartbeats outside optimize()
            optuna.storages.fail_stale_trials(study)
            # A sampler seeded for the number ask() is about to assign, set before it: relative
            # samplers (CMA-ES, multivariate TPE) sample inside ask(). A concurrent worker may take
            # that number first: then the trial re-seeds for its own number below (as independent
            # samplers suggest after ask()), and the duplicate check covers the rest.
            expected = len(study.get_trials(deepcopy=False))
            study.sampler = make_sampler(sampler, sampler_seed(seed, expected))
            trial = study.ask()
        if trial.number != expected:  # another worker took that number: the suggests after ask()
            study.sampler = make_sampler(sampler, sampler_seed(seed, trial.number))  # draw its own stream
        trial.set_user_attr("worker", session.worker)  # which process ran it, for the record
        try:
            assert spec.search_space is not None  # require_tunable() let it in
            sampled = spec.search_space(FixedParamsTrial(trial, fixed))
            params = params_mod.resolve(spec.all_defaults(fixed.get("recipe")), {**sampled, **fixed}, spec.name)
        except Exception as exc:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise XRayBenchError(f"{spec.name}'s search space failed: {type(exc).__name__}: {exc}") from None
        same = _duplicate_of(study, trial)
        if same is None:
            return trial, params
        trial.set_user_attr("duplicate_of", same.number)
        if same.state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, same.value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        session.duplicates += 1
        in_a_row += 1
        if in_a_row >= MAX_DUPLICATES_IN_A_ROW:
            if console is not None:
                console.print(f"  {in_a_row} sampled parameter sets in a row were already tried: "
                              f"the search space looks exhausted; stopping")
            return None


def _trial_limit(trial_timeout: float | None, timeout: float | None, elapsed: float) -> tuple[float | None, str]:
    """How long the next trial may run, and how its timeout is worded: ``--trial-timeout``, or
    what is left of the study's ``--timeout`` when that is sooner. Why: ``--timeout`` only stopped
    *starting* trials, so one hanging trial ran on for the 6 h default of ``--trial-timeout``."""
    if timeout is None:
        return trial_timeout, f"--trial-timeout {trial_timeout:g}s" if trial_timeout is not None else ""
    left = max(timeout - elapsed, 1.0)  # a trial that starts is given a moment, never a limit of 0
    if trial_timeout is not None and trial_timeout <= left:
        return trial_timeout, f"--trial-timeout {trial_timeout:g}s"
    return left, f"the {left:.0f}s left of --timeout {timeout:g}s"


def _run_one(study, storage, storage_url, study_name, trial, params, task, child, trial_timeout, session,
             limit_text: str = ""):
    """Run one trial (here or in ``child``, killed after ``trial_timeout`` seconds, which
    ``limit_text`` words) and tell the study; returns the told FrozenTrial. A failed trial keeps
    its one-line reason and its traceback (user attributes ``fail_reason``, ``fail_traceback``)."""
    import traceback

    import optuna

    from xraybench import isolation
    from xraybench.harness import PluginFailure
    from xraybench.redaction import mask_text, url_secrets

    args = (storage_url, study_name, trial._trial_id, params)
    try:
        with _Heartbeat(storage, trial._trial_id):
            if child is not None:
                outcome = call_trial(child, args, task, trial_timeout)
            else:
                try:
                    outcome = isolation.Outcome(RunStatus.DONE, value=run_trial(*args, task))
                except PluginFailure as exc:
                    outcome = isolation.Outcome(RunStatus.ERROR, reason=str(exc).splitlines()[0] if str(exc) else "PluginFailure",
                                                traceback=traceback.format_exc())
    except BaseException as exc:  # Ctrl-C, or an unexpected error in this process: never leave it RUNNING
        reason = (("interrupted by SIGTERM" if isinstance(exc, isolation.Terminated) else "interrupted by Ctrl-C")
                  if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        trial.set_user_attr("fail_reason", mask_text(reason.splitlines()[0], url_secrets(storage_url)))
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    return tell_outcome(study, storage, storage_url, trial, outcome, session, trial_timeout, limit_text)


def tell_outcome(study, storage, storage_url: str, trial, outcome, session: Session, trial_timeout: float | None,
                 limit_text: str = ""):
    """Tell the study how a trial ended (an ``isolation.Outcome`` of ``run_trial``), wherever it
    ran (here, a child, a Dask worker); returns the told FrozenTrial. A failed trial keeps its
    one-line reason and its traceback, masked: the study may be shared."""
    import optuna

    from xraybench.redaction import mask_text, url_secrets

    epochs = storage.get_trial(trial._trial_id).user_attrs.get("epochs")
    if epochs is not None:
        session.epochs_trained.append(int(epochs))
    if outcome.ok:
        result = outcome.value
        if result["state"] == "pruned":
            return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return study.tell(trial, result["value"])
    reason = outcome.reason
    if outcome.status is RunStatus.TIMEOUT:
        reason = f"no result within {limit_text or f'{trial_timeout:g}s'}; the process was killed"
    trial.set_user_attr("fail_reason", mask_text(reason, url_secrets(storage_url)))
    if outcome.traceback:  # for `tune --traceback`; the plugin's author needs more than the line
        trial.set_user_attr("fail_traceback", mask_text(outcome.traceback, url_secrets(storage_url)))
    return study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
