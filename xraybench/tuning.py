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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xraybench.errors import XRayBenchError
from xraybench.metric_registry import BY_KEY
from xraybench.redaction import mask_url as masked  # noqa: F401  (the storage URL with its secrets hidden)
from xraybench.specs import ImageSet, ModelSpec

# Each objective is a metric_registry entry on the validation split; its direction comes from there.
OBJECTIVES = {"val_auc": "roc_auc", "val_loss": "log_loss", "val_balanced_accuracy": "balanced_accuracy"}
METRICS = {name: "maximize" if BY_KEY[key].higher_is_better else "minimize" for name, key in OBJECTIVES.items()}
# The per-epoch key Keras logs for each objective, used for pruning; balanced accuracy is not
# logged per epoch, so its trials are pruned on validation AUC (same direction).
EPOCH_KEYS = {"val_auc": "val_auc", "val_loss": "val_loss", "val_balanced_accuracy": "val_auc"}


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
                        engine_kwargs={"pool_pre_ping": True} if url.startswith("postgresql") else None,
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


def pruning_callback(trial, monitor: str):
    """A Keras callback: report ``monitor`` each epoch, raise TrialPruned when the pruner says so.

    Fails loudly when ``monitor`` is not among the logged keys: a silent mismatch
    would mean pruning never happens.
    """
    import keras
    import optuna

    class OptunaPruning(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if monitor not in logs:
                raise KeyError(f"pruning monitors {monitor!r} but Keras logged only {sorted(logs)}")
            value = float(logs[monitor])
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} with {monitor}={value:.4f}")

    return OptunaPruning()


def score(metric: str, labels, scores) -> float:
    from xraybench.metrics import evaluate

    m = evaluate(labels, scores, 0.5)
    return BY_KEY[OBJECTIVES[metric]].value(m)


@dataclass
class Objective:
    """Trains on ``train``, scores on ``val``. It holds no test split: there is none to read."""

    spec: ModelSpec
    train: ImageSet
    val: ImageSet
    base_params: dict[str, Any]
    fixed: dict[str, Any]
    metric: str
    seed: int
    precision: str = "auto"
    epochs_trained: list[int] = field(default_factory=list)

    def __call__(self, trial) -> float:
        from xraybench import harness
        from xraybench import params as params_mod

        sampled = self.spec.search_space(FixedParamsTrial(trial, self.fixed))
        params = params_mod.resolve(self.base_params, {**sampled, **self.fixed}, self.spec.name)
        callbacks = []
        if self.spec.kind == "keras":
            counter = _EpochCounter()  # first, so an epoch that gets pruned is still counted
            callbacks = [counter.callback(), pruning_callback(trial, EPOCH_KEYS[self.metric])]
        try:
            fitted = harness.fit(self.spec, self.train, self.val, params, self.seed, self.precision, callbacks=callbacks)
        finally:
            if self.spec.kind == "keras":
                self.epochs_trained.append(counter.epochs)
                trial.set_user_attr("epochs", counter.epochs)
        val_scores = harness.predict(fitted, self.val.images, "validation", self.spec.name)
        value = score(self.metric, self.val.labels, val_scores)
        if not math.isfinite(value):
            raise harness.PluginFailure(f"{self.metric} is not finite ({value})")
        return value


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

    def callback(self):
        import keras

        outer = self

        class Count(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer.epochs = epoch + 1

        return Count()


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
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        from rich.markup import escape

        console.print(escape(f"  trial {trial.number}: {metric} {value}  [{params}]  best {best}  pruned {pruned}  failed {failed}"))
        done[0] += 1
        console.print(escape(f"  {trial_eta(done[0], trials, time.perf_counter() - start)}"), style="dim")

    return show


def require_tunable(spec: ModelSpec) -> None:
    if spec.search_space is None:
        raise XRayBenchError(f"{spec.name} declares no search space, so it cannot be tuned; "
                             f"`xraybench models` shows which models are tunable")


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
) -> tuple[Any, Objective, float]:
    """Optimise; returns (study, objective, seconds). Resumes a study of the same name."""
    import optuna

    from xraybench import params as params_mod
    from xraybench.harness import PluginFailure

    require_tunable(spec)
    if metric not in METRICS:
        raise XRayBenchError(f"unknown metric {metric!r}; choose {', '.join(METRICS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=make_storage(storage_url), direction=METRICS[metric],
        sampler=make_sampler(sampler, seed), pruner=make_pruner(pruner), load_if_exists=True,
    )
    study.set_user_attr("model", spec.name)
    study.set_user_attr("metric", metric)
    typed = params_mod.resolve(spec.all_defaults(), fixed, spec.name)  # checks keys and types once
    fixed = {key: typed[key] for key in fixed}
    objective = Objective(spec, train, val, spec.all_defaults(), fixed, metric, seed, precision)
    callbacks = [progress_callback(console, metric, trials)] if console is not None else []
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(PluginFailure,), callbacks=callbacks,
                   gc_after_trial=True)
    return study, objective, time.perf_counter() - start
