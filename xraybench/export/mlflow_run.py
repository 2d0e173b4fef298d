"""``export --to mlflow``: the run as one MLflow run (parameters, metrics, tags, the record, scores
and model as artifacts), never logged twice to one experiment; the tracking URI masked."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xraybench.errors import XRayBenchError
from xraybench.export.common import OWNER_KEY, held_back, require, short_line
from xraybench.records import RunRecord

if TYPE_CHECKING:  # pragma: no cover
    from xraybench.results import ResultStore

MLFLOW_EXPERIMENT = "xraybench"


@dataclass(frozen=True)
class MlflowExport:
    """Where ``to_mlflow`` logged the run (the URI masked) and what."""

    uri: str
    experiment: str
    experiment_id: str
    mlflow_run_id: str
    params: int
    metrics: int
    artifacts: tuple[str, ...]
    already: bool = False


def default_tracking_uri(store: ResultStore) -> str:
    """A SQLite store in ``RESULTS/mlflow/`` (MLflow 3 keeps its file store in maintenance mode and
    refuses it unless asked; SQLite needs only SQLAlchemy, which Optuna already brings); a new
    experiment's artifacts go to ``RESULTS/mlflow/artifacts/``."""
    return f"sqlite:///{(store.root / 'mlflow' / 'mlflow.db').resolve()}"


def run_params(record: RunRecord) -> dict[str, str]:
    """The run's parameters as MLflow takes them: flat ``a.b`` names, text values, secrets masked;
    the run-level facts a parameter of the model could clash with under ``run.``."""
    from xraybench.redaction import MASK, is_secret_name, mask_text

    flat: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                put(f"{name}.{k}" if name else str(k), v)
        else:
            flat[name] = value

    put("", dict(record.params or {}))
    d = record.data or {}
    for key, value in (("seed", record.seed), ("image_size", record.image_size), ("channels", record.channels),
                       ("precision", record.precision), ("split_seed", d.get("split_seed")),
                       ("val_fraction", d.get("val_fraction")), ("data_reader", d.get("reader"))):
        if value is not None:
            flat[f"run.{key}"] = value
    out: dict[str, str] = {}
    for name, value in flat.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        shown = MASK if is_secret_name(name.rsplit(".", 1)[-1]) else mask_text(text)
        out[_mlflow_name(name)] = shown[:6000]  # MLflow's limit on a parameter value
    return out


def _mlflow_name(name: str) -> str:
    """A parameter or metric name MLflow accepts (letters, digits, ``_ - . / `` and space)."""
    import re

    return re.sub(r"[^\w\-./ ]", "_", name)[:250] or "_"


def run_metrics(record: RunRecord) -> list[tuple[str, float, int]]:
    """(name, value, step) for every registry metric at each of the run's operating points, the
    validation-chosen threshold, and the training history per epoch (step = epoch index)."""
    from xraybench.metric_registry import REGISTRY

    out: list[tuple[str, Any, int]] = []
    for prefix, metrics in (("test_at_val_threshold", record.metrics_at_val_threshold), ("test_at_0.5", record.metrics),
                            ("val_at_0.5", record.val_metrics)):
        for metric in REGISTRY:
            out.append((f"{prefix}/{metric.key}", metric.value(metrics or {}), 0))
    out.append(("val_threshold", (record.val_threshold or {}).get("value"), 0))
    for name, values in (record.history or {}).items():
        if isinstance(values, list):
            out += [(_mlflow_name(f"history/{name}"), v, step) for step, v in enumerate(values)]
    return [(name, float(v), step) for name, v, step in out  # numbers only: no None, NaN or bool
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def run_tags(record: RunRecord) -> dict[str, str]:
    """What identifies the run: model, plugin and its version, seed, data, xraybench."""
    from xraybench import __version__
    from xraybench.specs import trained_on

    env = record.environment or {}
    tags = {
        OWNER_KEY: record.run_id,
        "xraybench.model": record.model,
        "xraybench.plugin": record.distribution,
        "xraybench.plugin_version": record.version,
        "xraybench.kind": record.kind,
        "xraybench.seed": "" if record.seed is None else str(record.seed),
        "xraybench.data_fingerprint": str((record.data or {}).get("fingerprint", "")),
        "xraybench.version": str(env.get("xraybench") or __version__),
        "xraybench.backend": trained_on(record) or "",  # Keras only; an ensemble's: its members'
        "xraybench.model_sha256": record.saved_model.sha256 if record.saved_model else "",
        "mlflow.note.content": record.description,
    }
    return {k: v for k, v in tags.items() if v}


@contextlib.contextmanager
def _mlflow_quiet() -> Iterator[None]:
    """MLflow's and Alembic's INFO lines (creating tables...) and deprecation warnings held back;
    MLflow's retries of an unreachable server kept short unless the user set them."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    with held_back():
        import mlflow.tracking  # noqa: F401 (MLflow sets its loggers' levels when imported: first, so ours hold)
    with held_back("mlflow", "alembic"):
        yield


def to_mlflow(store: ResultStore, record: RunRecord, uri: str | None = None,
              experiment: str = MLFLOW_EXPERIMENT) -> MlflowExport:
    """Log ``record`` as one MLflow run in ``experiment`` at ``uri`` (default ``default_tracking_uri``).
    A run already logged there (finished, tagged with its id) is not logged again. One-line errors,
    with the URI's secrets masked."""
    from xraybench import saved_model
    from xraybench.redaction import mask_text, mask_url, url_secrets

    model_path, _ = saved_model.verified_path(store, record)
    require("mlflow")
    local_default = uri is None
    uri = uri or default_tracking_uri(store)
    shown, secrets = mask_url(uri), url_secrets(uri)
    if not experiment.strip():
        raise XRayBenchError("--experiment is empty; name an MLflow experiment")
    runs = store.root / "runs"
    files = [(runs / f"{record.run_id}.json", "record"), (model_path, "model")]
    scores = runs / f"{record.run_id}.scores.json"
    if scores.is_file():
        files.append((scores, "scores"))
    if _is_file_store(uri):  # the user asked for a folder store: MLflow 3 refuses it unless told it is wanted
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if local_default:
        (store.root / "mlflow").mkdir(parents=True, exist_ok=True)
    try:
        with _mlflow_quiet():
            return _log(uri, shown, experiment, record, files, _artifact_root(uri))
    except XRayBenchError:
        raise
    except Exception as exc:
        raise XRayBenchError(f"logging run {record.run_id} to MLflow at {shown} failed: "
                             f"{mask_text(short_line(exc), secrets)}") from None


def _artifact_root(uri: str) -> Path | None:
    """Where a new experiment in a local SQLite store keeps its artifacts: ``artifacts/`` beside the
    database (MLflow's own default is ``./mlruns`` under the current folder). None elsewhere: a
    server or a file store decides."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0]).parent / "artifacts"
    return None


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri and not uri.startswith(("sqlite:", "databricks"))


def _log(uri: str, shown: str, experiment: str, record: RunRecord, files: list[tuple[Path, str]],
         artifacts: Path | None) -> MlflowExport:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        experiment_id = client.create_experiment(experiment, artifact_location=artifacts.resolve().as_uri()
                                                 if artifacts is not None else None)
    elif found.lifecycle_stage != "active":
        raise XRayBenchError(f"MLflow experiment {experiment!r} at {shown} is deleted; restore it or pass another "
                             "--experiment")
    else:
        experiment_id = found.experiment_id
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`{OWNER_KEY}` = '{record.run_id}' "
                                 "and attributes.status = 'FINISHED'", max_results=1)
    params, metrics, tags = run_params(record), run_metrics(record), run_tags(record)
    names = tuple(f"{folder}/{path.name}" for path, folder in files)
    if earlier:
        return MlflowExport(shown, experiment, experiment_id, earlier[0].info.run_id, len(params), len(metrics), names,
                            already=True)
    run = client.create_run(experiment_id, run_name=record.run_id, tags=tags)
    mlflow_id = run.info.run_id
    try:
        stamp = int(time.time() * 1000)
        param_items = [Param(k, v) for k, v in params.items()]
        metric_items = [Metric(k, v, stamp, step) for k, v, step in metrics]
        for start in range(0, max(len(param_items), len(metric_items)), 100):  # MLflow's batch limit is 100 params
            client.log_batch(mlflow_id, params=param_items[start:start + 100], metrics=metric_items[start:start + 100],
                             tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [])
        for path, folder in files:
            client.log_artifact(mlflow_id, str(path), folder)
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(mlflow_id, status="FAILED")
        raise
    client.set_terminated(mlflow_id, status="FINISHED")
    return MlflowExport(shown, experiment, experiment_id, mlflow_id, len(params), len(metrics), names)
