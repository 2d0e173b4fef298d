"""The study loop: ask (sampling here, never training a parameter set twice), run each trial in a
child killed at its time limit, tell the outcome with its reason; heartbeats give a dead process's
trial back. Shared with the Dask loop (``distributed.trials``), which asks and tells the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xraybench.errors import XRayBenchError, first_line
from xraybench.records import RunStatus
from xraybench.specs import ImageSet, ModelSpec
from xraybench.tuning.storage import make_pruner, make_sampler, make_storage, sampler_seed
from xraybench.tuning.trial import METRICS, FixedParamsTrial, TrialTask, call_trial, run_trial


MAX_DUPLICATES_IN_A_ROW = 50


def require_tunable(spec: ModelSpec) -> None:
    if spec.search_space is None:
        raise XRayBenchError(f"{spec.name} declares no search space, so it cannot be tuned; "
                             f"`xraybench models` shows which models are tunable")


@dataclass
class Session:
    """What one ``run_study`` call did (the study itself holds the trials)."""

    epochs_trained: list[int] = field(default_factory=list)
    trials_run: int = 0
    duplicates: int = 0
    worker: str = ""


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


class Heartbeat:
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

    def __enter__(self) -> Heartbeat:
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


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
            limit, limit_text = trial_limit(trial_timeout, timeout, time.perf_counter() - start)
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


def trial_limit(trial_timeout: float | None, timeout: float | None, elapsed: float) -> tuple[float | None, str]:
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
        with Heartbeat(storage, trial._trial_id):
            if child is not None:
                outcome = call_trial(child, args, task, trial_timeout)
            else:
                try:
                    outcome = isolation.Outcome(RunStatus.DONE, value=run_trial(*args, task))
                except PluginFailure as exc:
                    outcome = isolation.Outcome(RunStatus.ERROR, reason=first_line(exc),
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
