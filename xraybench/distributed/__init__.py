"""Many runs on a Dask cluster: each (model, seed, size, params) is a Dask task, and so is each tuning trial.

The client reaches the scheduler before any data is loaded (``check``), submits the tasks, and alone records
and tells the study. A task carries the run as the client prepared it (``Prepared.ship``), refuses code or data
other than the client's (``worker.refusal_of``, ``worker._data_here``), and runs the model in the runner's
isolation with the worker's share of threads (``worker.thread_limit``). Dask does the rest: ``as_completed``
returns finished (or cancelled) futures; on Ctrl-C (a flag while a batch runs: ``cluster.CtrlC``) the batch's
``distributed.Event`` stops the running runs (``worker._Stop``), which send their own records, and
``Client.cancel`` the queued ones; the scheduler retries a dead worker's task, which its event log tells the
client (``cluster.Watch``); a worker plugin (``trials.TrialProcesses``) keeps tune's trial processes. Dask is
an optional extra, imported inside functions.

One job per module: ``cluster`` (the client's side: reaching, connecting, Ctrl-C, the event log),
``worker`` (what runs on a worker), ``runs`` (``run`` on a cluster), ``trials`` (``tune`` on a cluster).
"""

from xraybench.distributed.cluster import check
from xraybench.distributed.runs import run_batch
from xraybench.distributed.trials import run_study

__all__ = ["check", "run_batch", "run_study"]
