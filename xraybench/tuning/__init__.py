"""Optuna tuning on the patient-grouped validation split; the test split never reaches the objective.

Storage is any Optuna RDB URL: a SQLite file in the results folder by default, or
a shared PostgreSQL URL so that many ``xraybench tune`` processes on many machines
work one study (Optuna's own distributed mode). Heartbeats plus
``RetryFailedTrialCallback`` give a crashed worker's trial back to the study.

One job per module: ``storage`` (where the study lives, its sampler and pruner), ``trial`` (one trial
in whatever process runs it), ``study`` (the ask, run, tell loop).
"""

from xraybench.redaction import mask_url as masked  # the storage URL with its secrets hidden
from xraybench.tuning.storage import PRUNERS, SAMPLERS, default_storage, make_storage, sampler_seed
from xraybench.tuning.study import (Heartbeat, Session, ask_trial, open_study, progress_callback, require_tunable,
                                    run_study, tell_outcome, trial_limit)
from xraybench.tuning.trial import NEED_TASK, OBJECTIVES, TrialTask, call_trial, evaluate_params, run_trial, task_spec

__all__ = ["NEED_TASK", "OBJECTIVES", "PRUNERS", "SAMPLERS", "Heartbeat", "Session", "TrialTask", "ask_trial",
           "call_trial", "default_storage", "evaluate_params", "make_storage", "masked", "open_study",
           "progress_callback", "require_tunable", "run_study", "run_trial", "sampler_seed", "task_spec", "tell_outcome",
           "trial_limit"]
