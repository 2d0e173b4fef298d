"""The run record: its typed form, its vocabulary, its validation and its migrations.

Every producer (harness, runner, the results store) and every consumer (leaderboard,
report, compare, ``runs``, export) builds and reads records through this module, so the
shape of a run file is stated once. ``docs/run-record.schema.json`` is generated from it
(``python -m xraybench.records > docs/run-record.schema.json``; a test keeps them equal)
for other tools that read run files.

Reading never hides good runs: ``parse`` turns one decoded JSON value into a ``RunRecord``
or raises ``InvalidRecord`` with a short reason ("no 'model'", "partial metrics (missing
accuracy)", ...) that the commands print beside the file name. Records written by older
versions are migrated on read (``migrate``). Pure Python: nothing heavy is imported.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2  # 1: "schema" key, no reference/spec_image_size; 2: "schema_version"
# A new optional field (``members``) needs no new version: older records simply lack it (None).

LABELS = ("NORMAL", "PNEUMONIA")  # index = label: NORMAL = 0, PNEUMONIA = 1, always.

# The defaults every command and the runner share.
DEFAULT_SEED = 42
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_IMAGE_SIZE = 150  # a spec's image size when its plugin names none
FIXED_THRESHOLD = 0.5
PRECISIONS = ("auto", "float32", "mixed_bfloat16")  # --precision: auto picks per machine (training/keras.py)


class RunStatus(enum.Enum):
    """How a run ended, with the label and colour every table shows it in.

    ``INVALID`` is never stored: it is how ``xraybench runs`` shows a file that fails
    validation."""

    DONE = ("done", "green")
    ERROR = ("error", "red")
    TIMEOUT = ("timeout", "yellow")
    INTERRUPTED = ("interrupted", "yellow")
    INVALID = ("invalid", "magenta")

    def __init__(self, label: str, colour: str) -> None:
        self.label = label
        self.colour = colour

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, value: Any) -> RunStatus:
        for status in STORED_STATUSES:
            if value == status.label or value is status:
                return status
        raise ValueError(f"run status must be one of {', '.join(s.label for s in STORED_STATUSES)}, got {value!r}")

    def markup(self) -> str:
        return f"[{self.colour}]{self.label}[/]"


STORED_STATUSES = (RunStatus.DONE, RunStatus.ERROR, RunStatus.TIMEOUT, RunStatus.INTERRUPTED)

YOUDEN = "youden_j_on_validation"


def target_sensitivity_method(target: float) -> str:
    return f"sensitivity>={target:g}_on_validation"


def describe_method(method: str | None) -> str:
    """A stored threshold method in words: "Youden's J on validation", "sensitivity >= 0.9 on validation"."""
    if not method or method == YOUDEN:
        return "Youden's J on validation"
    if method.startswith("sensitivity>=") and method.endswith("_on_validation"):
        return f"sensitivity >= {method[len('sensitivity>='):-len('_on_validation')]} on validation"
    return method.replace("_", " ")


class Threshold(enum.Enum):
    """Which operating point metrics are read at (``--threshold 0.5|val|prior``): the fixed 0.5,
    the one chosen on validation, or the one moved to the test prior estimated from the unlabeled
    test scores (``prior_shift.py``). ``PRIOR`` is transductive (it reads the test scores, never
    the test labels) and optional: records older than it lack its fields."""

    FIXED = "0.5"
    VAL = "val"
    PRIOR = "prior"

    @classmethod
    def parse(cls, value: str | Threshold) -> Threshold:
        return value if isinstance(value, Threshold) else cls(str(value))

    @property
    def metrics_key(self) -> str:
        return _THRESHOLD_KEYS[self][0]

    @property
    def intervals_key(self) -> str:
        return _THRESHOLD_KEYS[self][1]

    @property
    def transductive(self) -> bool:
        """Whether the threshold was set with the (unlabeled) test scores: never ranked with the others."""
        return self is Threshold.PRIOR


_THRESHOLD_KEYS = {Threshold.FIXED: ("metrics", "intervals"),
                   Threshold.VAL: ("metrics_at_val_threshold", "intervals_at_val_threshold"),
                   Threshold.PRIOR: ("metrics_at_prior_shift", "intervals_at_prior_shift")}
INDUCTIVE_THRESHOLDS = (Threshold.FIXED, Threshold.VAL)  # set without the test set: what `compare` and `report` offer
PRIOR_SHIFT_DESCRIPTION = "transductive: EM on unlabeled test scores"  # how tables name Threshold.PRIOR


class InvalidRecord(ValueError):
    """A run file that cannot be read as a run record; the message is the short reason."""


@dataclass
class RunRecord:
    """One run, as stored in ``RESULTS/runs/RUN_ID.json``.

    Metrics dicts hold every ``metric_registry`` entry (per-class ones under
    ``per_class[LABEL]``) plus ``threshold`` and ``confusion_matrix`` [[TN, FP], [FN, TP]];
    interval dicts map a metric key to ``{"estimate", "low", "high"}`` plus ``_meta``.
    Keys this version does not know are kept in ``extra`` and written back unchanged.
    """

    run_id: str
    model: str
    status: RunStatus
    schema_version: int = SCHEMA_VERSION
    created_at: str = ""
    reason: str = ""
    description: str = ""
    distribution: str = "unknown"
    version: str = "unknown"
    kind: str = "unknown"
    params: dict = field(default_factory=dict)
    seed: int | None = None
    image_size: int | None = None
    channels: int | None = None
    spec_image_size: int | None = None  # the model's own image size, at which it serves as a reference
    reference: bool = False  # its plugin declared it the reference other models are compared with
    data: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    command: str = ""
    environment: dict = field(default_factory=dict)
    precision: str | None = None
    epochs_run: int | None = None
    param_count: int | None = None
    train_seconds: float | None = None
    predict_seconds: float | None = None
    train_images_per_second: float | None = None
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    history: dict = field(default_factory=dict)
    threshold: float = FIXED_THRESHOLD
    val_threshold: dict | None = None  # {"value": float, "method": str}
    metrics: dict | None = None
    metrics_at_val_threshold: dict | None = None
    val_metrics: dict | None = None
    intervals: dict | None = None
    intervals_at_val_threshold: dict | None = None
    # Threshold.PRIOR (prior_shift.py; transductive, records before it lack them): metrics and
    # intervals there, and the estimate {"estimated_prior", "bbse_prior", "validation_prior",
    # "true_prior", "threshold", "method", "iterations", "converged"}
    metrics_at_prior_shift: dict | None = None
    intervals_at_prior_shift: dict | None = None
    prior_shift: dict | None = None
    has_scores: bool = False
    checkpoint: str | None = None  # an unfinished Keras run's last epoch, relative to the results folder (run --resume)
    resumed_from: str | None = None  # the run id this run continued from its checkpoint
    attempts: int | None = None  # Dask: how many times a worker started it (2+: a worker was lost, Dask retried)
    # kind "ensemble" (xraybench/ensemble.py): the runs whose scores it averages, each
    # {"run_id", "model", "variant", "seed", "image_size", "backend"}; None for a run that trained
    members: list | None = None
    # a done run's trained model beside its record (xraybench/saved_model.py): {"path" (relative to the
    # results folder), "sha256", "bytes", "format" ("keras" or "skops"), "types" (skops: the types it needs
    # beyond skops' defaults)}; None with a one-line ``model_note`` saying why there is none
    model_file: dict | None = None
    model_note: str | None = None
    # the shortcut check (xraybench/explain/shortcut.py) that `xraybench explain RUN_ID` measured on the test
    # images: {method ("occlusion" or "gradcam"): ShortcutShares.as_dict() with "test_images" (the test set's
    # size) and "sample_seed" (None: every test image explained)}; None until it was measured
    shortcut_check: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return str(self.data.get("fingerprint") or "")

    def metrics_at(self, threshold: Threshold | str) -> dict | None:
        return getattr(self, Threshold.parse(threshold).metrics_key)

    def intervals_at(self, threshold: Threshold | str) -> dict:
        return getattr(self, Threshold.parse(threshold).intervals_key) or {}

    @property
    def saved_model(self) -> ModelFile | None:
        """The run's model file as a ``ModelFile`` (checked by ``parse``), or None when it has none."""
        return ModelFile.from_dict(self.model_file) if self.model_file else None

    def threshold_method(self) -> str:
        """How the validation-chosen threshold was chosen, in words."""
        return describe_method((self.val_threshold or {}).get("method"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.label if isinstance(value, RunStatus) else value
        out.update(self.extra)
        return out


MODEL_FORMATS = {"keras": ".keras", "skops": ".skops"}  # a saved model's format -> its file's suffix


@dataclass(frozen=True)
class ModelFile:
    """Where a run's model is and what its bytes must hash to (``RunRecord.model_file``).

    ``path`` is relative to the results folder and always ``runs/RUN_ID<suffix>``: a record is data,
    and never points ``predict`` at a file elsewhere. ``types`` are the skops types the file needs
    beyond skops' own trusted set, as listed when it was saved."""

    path: str
    sha256: str
    bytes: int
    format: str
    types: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ModelFile:
        return cls(path=obj["path"], sha256=obj["sha256"], bytes=obj["bytes"], format=obj["format"],
                   types=tuple(obj.get("types") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes, "format": self.format,
                "types": list(self.types)}


def model_file_name(run_id: str, fmt: str) -> str:
    """The model file's path relative to the results folder: ``runs/RUN_ID.keras`` (or ``.skops``)."""
    return f"runs/{run_id}{MODEL_FORMATS[fmt]}"


def _check_model_file(obj: dict | None, run_id: str) -> None:
    """A record's ``model_file`` is a complete object naming this run's own file, so that every
    reader (``predict``, explanations) can rely on its shape and never follows it out of the folder."""
    if obj is None:
        return
    for key, kind in (("path", str), ("sha256", str), ("format", str)):
        if not isinstance(obj.get(key), kind):
            raise InvalidRecord(f"'model_file' has no {key!r} string")
    size = obj.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRecord("'model_file' 'bytes' is not a whole number >= 0")
    if len(obj["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in obj["sha256"]):
        raise InvalidRecord("'model_file' 'sha256' is not 64 lowercase hex digits")
    if obj["format"] not in MODEL_FORMATS:
        raise InvalidRecord(f"'model_file' format {obj['format']!r} is not one of {', '.join(MODEL_FORMATS)}")
    if obj["path"] != model_file_name(run_id, obj["format"]):
        raise InvalidRecord(f"'model_file' path {obj['path']!r} is not {model_file_name(run_id, obj['format'])!r}")
    types = obj.get("types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidRecord("'model_file' 'types' is not a list of strings")


SHORTCUT_METHODS = ("occlusion", "gradcam")  # the saliency methods (xraybench/explain) a shortcut check is keyed by
SHORTCUT_SHARES = ("border_share", "corner_share", "lung_share", "uniform_border_share", "uniform_corner_share",
                   "uniform_lung_share")


def _check_shortcut(obj: dict | None) -> None:
    """A record's ``shortcut_check``: per method, shares in [0, 1] and whole image counts, so that
    the report and ``runs`` can print them without a second guess."""
    for method, shares in (obj or {}).items():
        where = f"'shortcut_check' {method!r}"
        if method not in SHORTCUT_METHODS:
            raise InvalidRecord(f"'shortcut_check' method {method!r} is not one of {', '.join(SHORTCUT_METHODS)}")
        if not isinstance(shares, dict):
            raise InvalidRecord(f"{where} is {_type_name(shares)}, expected an object")
        for key in SHORTCUT_SHARES:
            value = shares.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidRecord(f"{where} {key!r} is not a number from 0 to 1")
        for key in ("n_images", "test_images"):
            value = shares.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRecord(f"{where} {key!r} is not a whole number >= 0")


_FIELDS = {f.name: f for f in dataclasses.fields(RunRecord) if f.name != "extra"}
_HINTS = typing.get_type_hints(RunRecord)


def _checker(hint: Any) -> tuple[tuple[type, ...], bool]:
    """(the JSON value types an annotation accepts, whether null is allowed); worked out once
    per field, because the leaderboard validates a thousand records at start-up."""
    args = typing.get_args(hint)
    nullable = type(None) in args
    if nullable:
        hint = next(a for a in args if a is not type(None))
    types = {float: (int, float), RunStatus: (str,)}.get(hint, (hint,))
    return types, nullable


_CHECKS = {name: _checker(_HINTS[name]) for name in _FIELDS}


def _accepts(name: str, value: Any) -> bool:
    """Whether ``value`` (decoded JSON) fits field ``name``'s annotation (a bool is no number)."""
    types, nullable = _CHECKS[name]
    if value is None:
        return nullable
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


def migrate(obj: dict[str, Any]) -> dict[str, Any]:
    """A decoded record of any known schema version, brought to ``SCHEMA_VERSION`` (a new dict).

    Version 1 (the published runs of 2026-11) named its version ``schema`` and had no
    ``reference`` / ``spec_image_size`` (they default to "not declared"). Any version gains
    the count-based metrics added to the registry after it was written, computed exactly
    from its confusion matrix; their intervals need the scores (``xraybench runs --backfill``).
    """
    return _migrate(obj)[0]


def _migrate(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``migrate``, and the registry metrics each metrics dict still lacks afterwards."""
    from xraybench import metric_registry

    out = dict(obj)
    version = out.pop("schema_version", None)
    if version is None:
        version = out.pop("schema", 1)
    else:
        out.pop("schema", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidRecord(f"schema version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise InvalidRecord(f"schema version {version} is newer than this xraybench reads ({SCHEMA_VERSION}); "
                            "upgrade xraybench")
    still_missing = {}
    for key in ("metrics", "metrics_at_val_threshold", "val_metrics", "metrics_at_prior_shift"):
        metrics = out.get(key)
        missing: list[str] = []
        if isinstance(metrics, dict):
            missing = missing_metrics(metrics)
            if missing and not isinstance(metrics.get("per_class", {}) or {}, dict):
                raise InvalidRecord(f"{key!r} per_class is {_type_name(metrics['per_class'])}, expected an object")
            if missing:  # copy only what gains a value
                out[key] = {**metrics, "per_class": {k: dict(v) for k, v in (metrics.get("per_class") or {}).items()
                                                     if isinstance(v, dict)}}
                if metric_registry.fill_from_counts(out[key]):
                    missing = missing_metrics(out[key])
        still_missing[key] = missing
    out["schema_version"] = SCHEMA_VERSION
    return out, still_missing


def missing_metrics(metrics: dict[str, Any]) -> list[str]:
    """The registry metrics a metrics dict lacks (in registry order)."""
    flat, per_class_stats = _required()
    per_class = metrics.get("per_class")
    per_class = per_class if isinstance(per_class, dict) else {}
    lacking = flat - metrics.keys()
    for label, (stats, keys) in per_class_stats.items():
        inner = per_class.get(label)
        gone = stats - inner.keys() if isinstance(inner, dict) else stats
        lacking |= {keys[stat] for stat in gone}
    if not lacking:
        return []
    from xraybench.metric_registry import REGISTRY

    return [m.key for m in REGISTRY if m.key in lacking]


_REQUIRED: tuple | None = None


def _required() -> tuple[frozenset[str], dict[str, tuple[frozenset[str], dict[str, str]]]]:
    """(flat metric keys, {class label: (per-class stat names, stat -> metric key)}) that every
    metrics dict holds; set arithmetic on these keeps validating a thousand records cheap."""
    global _REQUIRED
    if _REQUIRED is None:
        from xraybench.metric_registry import REGISTRY

        flat = frozenset(m.key for m in REGISTRY if not m.per_class)
        per = {label: (frozenset(m.stat for m in REGISTRY if m.per_class == label),
                       {m.stat: m.key for m in REGISTRY if m.per_class == label}) for label in LABELS}
        _REQUIRED = (flat, per)
    return _REQUIRED


def parse(obj: Any) -> RunRecord:
    """A decoded run file as a ``RunRecord``, migrated; ``InvalidRecord(reason)`` if it is not one.
    A damaged record that trips an unforeseen check is still named and skipped, never a traceback."""
    try:
        return _parse(obj)
    except InvalidRecord:
        raise
    except (TypeError, AttributeError, ValueError) as exc:
        raise InvalidRecord(f"malformed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _parse(obj: Any) -> RunRecord:
    if not isinstance(obj, dict):
        raise InvalidRecord(f"not a run record ({_type_name(obj)}, not an object)")
    for key in ("model", "run_id", "status"):
        if key not in obj:
            raise InvalidRecord(f"no {key!r}")
    obj, missing_after = _migrate(obj)
    try:
        status = RunStatus.parse(obj["status"])
    except ValueError as exc:
        raise InvalidRecord(str(exc)) from None
    kwargs: dict[str, Any] = {"status": status}
    extra = {}
    for key, value in obj.items():
        if key == "status":
            continue
        if key not in _FIELDS:
            extra[key] = value
            continue
        if not _accepts(key, value):
            expected = str(_HINTS[key]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise InvalidRecord(f"{key!r} is {_type_name(value)}, expected {expected}")
        kwargs[key] = value
    for key in ("model", "run_id"):
        if not kwargs[key]:
            raise InvalidRecord(f"empty {key!r}")
    _check_members(kwargs.get("members"))
    _check_model_file(kwargs.get("model_file"), kwargs["run_id"])
    _check_shortcut(kwargs.get("shortcut_check"))
    if status is RunStatus.DONE:
        for key in (Threshold.FIXED.metrics_key, Threshold.VAL.metrics_key):
            metrics = kwargs.get(key)
            if not metrics:
                raise InvalidRecord(f"status done but no {key!r}")
            missing = missing_after.get(key) or []
            if missing:
                raise InvalidRecord(f"partial {key!r} (missing {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    return RunRecord(**kwargs, extra=extra)


def _check_members(members: list | None) -> None:
    """An ensemble's members are objects naming a run: the leaderboard and ``runs`` read their
    ids and configurations, so a damaged entry is named here rather than crashing them."""
    for i, member in enumerate(members or [], 1):
        if not isinstance(member, dict):
            raise InvalidRecord(f"'members' entry {i} is {_type_name(member)}, expected an object")
        for key in ("run_id", "model"):
            if not isinstance(member.get(key), str) or not member[key]:
                raise InvalidRecord(f"'members' entry {i} has no {key!r}")


def coerce(record: RunRecord | dict[str, Any]) -> RunRecord:
    """A ``RunRecord`` from either form (in-memory producers and tests pass dicts)."""
    return record if isinstance(record, RunRecord) else parse(record)


def for_saving(record: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """The dict a run file holds: validated through ``parse``, stamped with ``schema_version``.
    A ``ValueError`` (``InvalidRecord``) says what is wrong before anything is written."""
    return coerce(record).to_dict()


# --- JSON Schema --------------------------------------------------------------------------

def _schema_of(hint: Any) -> dict[str, Any]:
    args = typing.get_args(hint)
    if type(None) in args:
        inner = _schema_of(next(a for a in args if a is not type(None)))
        return {"type": [inner["type"], "null"]} if "type" in inner else {"anyOf": [inner, {"type": "null"}]}
    return {"type": {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object",
                     list: "array", RunStatus: "string"}[hint]}


def _prior_shift_schema() -> dict[str, Any]:
    """The ``prior_shift`` field: the transductive operating point's estimate (prior_shift.py)."""
    prior = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    estimate = {
        "type": "object",
        "description": "transductive operating point: test prior P(PNEUMONIA) estimated by EM on the unlabeled "
                       "test scores after Platt calibration on validation; true_prior is shown, never used",
        "required": ["estimated_prior", "threshold", "method"],
        "properties": {"estimated_prior": {"type": "number", "minimum": 0, "maximum": 1}, "bbse_prior": prior,
                       "validation_prior": prior, "true_prior": prior,
                       "threshold": {"type": "number", "minimum": 0, "maximum": 1}, "method": {"type": "string"},
                       "iterations": {"type": "integer", "minimum": 0}, "converged": {"type": "boolean"}},
    }
    return {"anyOf": [estimate, {"type": "null"}]}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run file, written to docs/run-record.schema.json."""
    from xraybench.metric_registry import REGISTRY

    number = {"type": ["number", "null"]}
    flat = [m for m in REGISTRY if not m.per_class]
    metrics = {
        "type": "object",
        "description": "metrics on the test set at one threshold; per-class metrics under per_class",
        "required": [m.key for m in flat] + ["per_class"],
        "properties": {
            "threshold": {"type": "number"},
            "confusion_matrix": {"type": "array", "description": "[[TN, FP], [FN, TP]]"},
            **{m.key: {**number, "description": m.name} for m in flat},
            "per_class": {
                "type": "object",
                "required": sorted({m.per_class for m in REGISTRY if m.per_class}),
                "properties": {
                    label: {"type": "object",
                            "required": [m.stat for m in REGISTRY if m.per_class == label],
                            "properties": {**{m.stat: {**number, "description": m.name}
                                              for m in REGISTRY if m.per_class == label},
                                           "support": {"type": "integer"}}}
                    for label in LABELS
                },
            },
        },
    }
    interval = {"type": "object", "required": ["estimate", "low", "high"],
                "properties": {k: number for k in ("estimate", "low", "high")}}
    intervals = {"type": "object", "description": "95% percentile-bootstrap intervals of the test metrics",
                 "properties": {"_meta": {"type": "object"},
                                **{m.key: {"$ref": "#/$defs/interval"} for m in REGISTRY if m.bootstrapped}}}
    properties: dict[str, Any] = {}
    for name in _FIELDS:
        properties[name] = _schema_of(_HINTS[name])
    properties["schema_version"] = {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION}
    properties["status"] = {"enum": [s.label for s in STORED_STATUSES]}
    for key in ("metrics", "metrics_at_val_threshold", "val_metrics", "metrics_at_prior_shift"):
        properties[key] = {"anyOf": [{"$ref": "#/$defs/metrics"}, {"type": "null"}]}
    for key in ("intervals", "intervals_at_val_threshold", "intervals_at_prior_shift"):
        properties[key] = {"anyOf": [{"$ref": "#/$defs/intervals"}, {"type": "null"}]}
    properties["prior_shift"] = _prior_shift_schema()
    member = {"type": "object", "required": ["run_id", "model"],
              "properties": {"run_id": {"type": "string"}, "model": {"type": "string"}, "variant": {"type": "string"},
                             "seed": {"type": ["integer", "null"]}, "image_size": {"type": ["integer", "null"]},
                             "backend": {"type": ["string", "null"]}}}
    properties["members"] = {"anyOf": [{"type": "array", "items": member, "minItems": 2}, {"type": "null"}],
                             "description": "an ensemble's member runs, whose per-image scores it averages"}
    properties["model_file"] = {
        "anyOf": [{"type": "object", "required": ["path", "sha256", "bytes", "format"],
                   "properties": {"path": {"type": "string", "description": "relative to the results folder: runs/RUN_ID.keras"},
                                  "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                  "bytes": {"type": "integer", "minimum": 0},
                                  "format": {"enum": sorted(MODEL_FORMATS)},
                                  "types": {"type": "array", "items": {"type": "string"}}}},
                  {"type": "null"}],
        "description": "the trained model beside the record (not published: leaderboards/ keep the hash only)"}
    properties["model_note"] = {"type": ["string", "null"], "description": "why a done run has no model file"}
    share = {"type": "number", "minimum": 0, "maximum": 1}
    count = {"type": "integer", "minimum": 0}
    shortcut = {"type": "object", "required": [*SHORTCUT_SHARES, "n_images", "test_images"],
                "properties": {**{key: share for key in SHORTCUT_SHARES}, "method": {"enum": list(SHORTCUT_METHODS)},
                               "n_images": count, "n_without_saliency": count, "test_images": count,
                               "sample_seed": {"type": ["integer", "null"]}}}
    properties["shortcut_check"] = {
        "anyOf": [{"type": "object", "propertyNames": {"enum": list(SHORTCUT_METHODS)}, "additionalProperties": shortcut},
                  {"type": "null"}],
        "description": "share of saliency on the image border, its corners and the lung field, per saliency method, "
                       "averaged over the test images (xraybench explain RUN_ID)"}
    properties["val_threshold"] = {"anyOf": [{"type": "object", "required": ["value", "method"],
                                              "properties": {"value": {"type": "number"}, "method": {"type": "string"}}},
                                             {"type": "null"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "xraybench run record",
        "description": "One run of one model (RESULTS/runs/RUN_ID.json); per-image scores are in RUN_ID.scores.json. "
                       "Generated from xraybench/records.py; do not edit.",
        "type": "object",
        "required": ["schema_version", "run_id", "model", "status"],
        "properties": properties,
        "additionalProperties": True,
        "if": {"properties": {"status": {"const": "done"}}},
        "then": {"required": ["metrics", "metrics_at_val_threshold"],
                 "properties": {"metrics": {"$ref": "#/$defs/metrics"}, "metrics_at_val_threshold": {"$ref": "#/$defs/metrics"}}},
        "$defs": {"metrics": metrics, "intervals": intervals, "interval": interval},
    }


def schema_text() -> str:
    import json

    return json.dumps(json_schema(), indent=1) + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(schema_text())
