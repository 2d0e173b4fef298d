"""Where a study lives and how it draws: the Optuna storage (SQLite by default, a shared PostgreSQL URL
for many machines; one-line errors with the URL's secrets masked), the sampler (seeded per trial
number) and the pruner."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.redaction import mask_url as masked  # the storage URL with its secrets hidden


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


# Name -> how Optuna makes it (optuna passed in: imported only when a study opens); `tune`'s choices.
SAMPLERS = {
    "tpe": lambda optuna, seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda optuna, seed: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": lambda optuna, seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
}
PRUNERS = {
    "median": lambda optuna: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    "hyperband": lambda optuna: optuna.pruners.HyperbandPruner(min_resource=1),
    "none": lambda optuna: optuna.pruners.NopPruner(),
}


def make_sampler(name: str, seed: int):
    import optuna

    if name not in SAMPLERS:
        raise XRayBenchError(f"unknown sampler {name!r}; choose {', '.join(SAMPLERS)}")
    return SAMPLERS[name](optuna, seed)


def make_pruner(name: str):
    import optuna

    if name not in PRUNERS:
        raise XRayBenchError(f"unknown pruner {name!r}; choose {', '.join(PRUNERS)}")
    return PRUNERS[name](optuna)


def sampler_seed(seed: int, trial_number: int) -> int:
    """The sampler's seed for one trial: the user's seed and the trial's number in the study.

    Seeding every resume and every worker with the bare seed made them draw the same parameter
    sets (issue 13.8). The storage hands out each trial number once, so resumes and concurrent
    workers sample from different streams, while one process on a fresh study stays
    reproducible from ``--seed``."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
