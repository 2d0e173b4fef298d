"""The run record: its typed form, its vocabulary, its validation and its migrations.

Every producer (harness, runner, the results store) and every consumer (leaderboard,
report, compare, ``runs``, export) builds and reads records through this module, so the
shape of a run file is stated once. ``docs/run-record.schema.json`` is generated from it
(``python -m xraybench.records > docs/run-record.schema.json``; a test keeps them equal)
for other tools that read run files.

Reading never hides good runs: ``parse`` turns one decoded JSON value into a ``RunRecord``
or raises ``InvalidRecord`` with a short reason ("no 'model'", "partial 'metrics' (missing
accuracy)", ...) that the commands print beside the file name. Records written by older
versions are migrated on read (``migrate``). The checks and the schema are pydantic's, from
one declaration (``_shapes``), imported on the first ``parse``: importing this module stays cheap.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from xraybench.errors import XRayBenchError, first_line
from xraybench.metric_registry import FIXED_THRESHOLD, LABELS, REGISTRY, fill_from_counts

SCHEMA_VERSION = 2  # 1: "schema" key, no reference/spec_image_size; 2: "schema_version"
# A new optional field (``members``) needs no new version: older records simply lack it (None).

# The defaults every command and the runner share (LABELS and FIXED_THRESHOLD, imported above, are the
# metric registry's: what it measures, so that it need not import the records it describes).
DEFAULT_SEED = 42
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_IMAGE_SIZE = 150  # a spec's image size when its plugin names none
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
    def words(self) -> str:
        """The operating point in a heading: "threshold 0.5", "the threshold chosen on validation"."""
        if self is Threshold.PRIOR:
            return f"the prior-shift threshold ({PRIOR_SHIFT_DESCRIPTION})"
        return "the threshold chosen on validation" if self is Threshold.VAL else f"threshold {self.value}"

    @property
    def transductive(self) -> bool:
        """Whether the threshold was set with the (unlabeled) test scores: never ranked with the others."""
        return self is Threshold.PRIOR


_THRESHOLD_KEYS = {Threshold.FIXED: ("metrics", "intervals"),
                   Threshold.VAL: ("metrics_at_val_threshold", "intervals_at_val_threshold"),
                   Threshold.PRIOR: ("metrics_at_prior_shift", "intervals_at_prior_shift")}
INDUCTIVE_THRESHOLDS = (Threshold.FIXED, Threshold.VAL)  # set without the test set: what `compare` and `report` offer
PRIOR_SHIFT_DESCRIPTION = "transductive: EM on unlabeled test scores"  # how tables name Threshold.PRIOR


class InvalidRecord(XRayBenchError, ValueError):
    """A run file that cannot be read as a run record; the message is the short reason (one line,
    as any ``XRayBenchError``: a record that fails its check before it is written never ends a
    command in a traceback)."""


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

    @property
    def traceback(self) -> str | None:
        """A failed plugin's full traceback (kept beside the one-line reason; ``run --traceback``)."""
        return self.extra.get("traceback")

    def finish(self, status: RunStatus, reason: str = "", results: dict[str, Any] | None = None,
               traceback: str | None = None, **measured: Any) -> RunRecord:
        """The record of how the run ended, made once from the one it started as: its status, the
        reason, the fields its stage produced (``results``: the harness's, keyed by field name) and
        what the runner measured. An unknown field name is a ``TypeError`` here, not a stray key."""
        extra = {**self.extra, "traceback": traceback} if traceback else self.extra
        return dataclasses.replace(self, **{**(results or {}), **measured}, status=status, reason=reason, extra=extra)

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


SHORTCUT_METHODS = ("occlusion", "gradcam")  # the saliency methods (xraybench/explain) a shortcut check is keyed by
EXPLAIN_METHODS = ("auto", *SHORTCUT_METHODS)  # `explain --method`: auto takes Grad-CAM where it runs, else occlusion
EXPLAIN_SAMPLE_SEED = 0  # the seed of the fixed sample `explain --limit N` takes from the test images
EXPLAIN_RUNS = 4  # runs `report` explains unless `--explain-runs N` says otherwise
SHORTCUT_SHARES = ("border_share", "corner_share", "lung_share", "uniform_border_share", "uniform_corner_share",
                   "uniform_lung_share")


_FIELDS = frozenset(f.name for f in dataclasses.fields(RunRecord)) - {"extra"}
_METRICS_FIELDS = (*(t.metrics_key for t in Threshold), "val_metrics")


def migrate(obj: dict[str, Any]) -> dict[str, Any]:
    """A decoded record of any known schema version, brought to ``SCHEMA_VERSION`` (a new dict).

    Version 1 (the published runs of 2026-11) named its version ``schema`` and had no
    ``reference`` / ``spec_image_size`` (they default to "not declared"). Any version gains
    the count-based metrics added to the registry after it was written, computed exactly
    from its confusion matrix; their intervals need the scores (``xraybench runs --backfill``).
    """
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
    for key in _METRICS_FIELDS:
        if (filled := _with_counted_metrics(out.get(key))) is not None:
            out[key] = filled
    out["schema_version"] = SCHEMA_VERSION
    return out


def _with_counted_metrics(metrics: Any) -> dict[str, Any] | None:
    """A copy of a metrics dict with the count-based metrics it predates, from its confusion
    matrix; None when it lacks none or is too damaged to fill (validation then names what)."""
    try:
        if all(m.has(metrics) for m in REGISTRY if m.counts):
            return None
        filled = copy.deepcopy(metrics)
        return filled if fill_from_counts(filled) else None
    except (TypeError, AttributeError, ValueError):
        return None


def parse(obj: Any) -> RunRecord:
    """A decoded run file as a ``RunRecord``, migrated; ``InvalidRecord(reason)`` if it is not one.
    A damaged record that trips an unforeseen check is still named and skipped, never a traceback."""
    try:
        return _parse(obj)
    except InvalidRecord:
        raise
    except (TypeError, AttributeError, ValueError) as exc:
        raise InvalidRecord(f"malformed ({type(exc).__name__}: {first_line(exc)})") from None


def _parse(obj: Any) -> RunRecord:
    from pydantic import ValidationError

    if not isinstance(obj, dict):
        raise InvalidRecord(f"not a run record ({_type_name(obj)}, not an object)")
    obj = migrate(obj)
    try:
        fields = _adapter().validate_python({k: v for k, v in obj.items() if k in _FIELDS})
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc.errors(include_url=False))) from None
    status = RunStatus.parse(fields.pop("status"))
    if status is RunStatus.DONE:  # the rules across fields, which a JSON Schema states as "if" / "then"
        for key in _DONE_NEEDS:
            if not fields.get(key):
                raise InvalidRecord(f"status done but no {key!r}")
    own = model_file_name(fields["run_id"], fields["model_file"]["format"]) if fields.get("model_file") else None
    if own and fields["model_file"]["path"] != own:  # never a file elsewhere: a record is data
        raise InvalidRecord(f"'model_file' path {fields['model_file']['path']!r} is not {own!r}")
    return RunRecord(status=status, **fields, extra={k: v for k, v in obj.items() if k not in _FIELDS})


_DONE_NEEDS = (Threshold.FIXED.metrics_key, Threshold.VAL.metrics_key)


def _reason(errors: list[Any]) -> str:
    """pydantic's errors as one short line naming the field: the first wrong value ("'seed' is
    "42", expected a valid integer"), else what is missing; a metrics dict's missing metrics together."""
    first = min(errors, key=lambda e: e["type"] == "missing")
    loc, (*parent, last) = first["loc"], first["loc"]
    if first["type"] == "missing" and loc[0] in _METRICS_FIELDS:
        keys = [_METRIC_AT.get(tuple(e["loc"][-2:]), e["loc"][-1]) for e in errors if e["loc"][0] == loc[0]]
        return f"partial {loc[0]!r} (missing {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
    if first["type"] == "missing":
        return f"{_where(parent)} has no {last!r}" if parent else f"no {last!r}"
    if first["type"] in _SAID:
        return f"{_where(loc)} {_SAID[first['type']].format(shown=_shown(first['input']), **first.get('ctx', {}))}"
    message = first["msg"].replace("Input should be", "expected").replace("a valid dictionary", "an object")
    return f"{_where(loc)} is {_shown(first['input'])}, {message[0].lower()}{message[1:]}"


# pydantic's error types whose own wording reads badly in one line, said as a person would
_SAID = {"string_too_short": "is empty", "too_short": "needs at least {min_length} entries",
         "string_pattern_mismatch": "does not match {pattern}", "list_type": "is {shown}, not a list"}


_METRIC_AT = {(m.per_class, m.stat): m.key for m in REGISTRY if m.per_class}  # where in per_class -> metric key


def _where(loc: Any) -> str:
    return " ".join("key" if part == "[key]" else f"entry {part + 1}" if isinstance(part, int) else repr(part)
                    for part in loc)


def _shown(value: Any) -> str:
    """A wrong value in its JSON spelling ("42" is a string, 42 a number), cut short."""
    if isinstance(value, (dict, list, tuple)):
        return _type_name(value)
    text = json.dumps(value) if isinstance(value, str | int | float | None) else repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", tuple: "a tuple", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


@functools.cache
def _adapter() -> Any:
    """pydantic's validator of a run file: ``RunRecord``'s fields, each nested part with its
    declared shape (``_shapes``), strictly ("42" is no seed, true no number). Built on first
    use: a command that reads no record never imports pydantic."""
    from typing import Required

    from pydantic import TypeAdapter

    hints, shapes = typing.get_type_hints(RunRecord), _shapes()
    fields = {name: shapes.get(name, hints[name]) for name in hints if name in _FIELDS}
    for name in ("run_id", "model", "status", "schema_version"):
        fields[name] = Required[fields[name]]
    return TypeAdapter(_typed_dict("RunRecord", fields, total=False))


def _typed_dict(name: str, fields: dict[str, Any], doc: str | None = None, total: bool = True) -> Any:
    """A ``TypedDict`` pydantic checks strictly and that keeps keys it does not name."""
    import typing_extensions  # pydantic reads typing.TypedDict only from Python 3.12

    make: Any = typing_extensions.TypedDict  # called, not declared: its fields come from the registry
    shape = make(name, fields, total=total)
    shape.__doc__, shape.__pydantic_config__ = doc, {"strict": True, "extra": "allow"}
    return shape


def _described(text: str, hint: Any = float | None) -> Any:
    from pydantic import Field

    return Annotated[hint, Field(description=text)]


def _metric_shapes() -> tuple[Any, Any]:
    """(a metrics dict, an intervals dict): every registry metric, where the registry puts it."""
    from typing import NotRequired

    per_class = {label: _typed_dict(label, {**{m.stat: _described(m.name) for m in REGISTRY if m.per_class == label},
                                            "support": NotRequired[int]}) for label in LABELS}
    metrics = _typed_dict("Metrics", {
        "threshold": NotRequired[float], "confusion_matrix": NotRequired[_described("[[TN, FP], [FN, TP]]", list)],
        **{m.key: _described(m.name) for m in REGISTRY if not m.per_class}, "per_class": _typed_dict("PerClass", per_class)},
        "metrics on the test set at one threshold; per-class metrics under per_class")
    interval = _typed_dict("Interval", dict.fromkeys(("estimate", "low", "high"), float | None))
    intervals = _typed_dict("Intervals", {"_meta": dict, **{m.key: interval for m in REGISTRY if m.bootstrapped}},
                            "95% percentile-bootstrap intervals of the test metrics", total=False)
    return metrics, intervals


def _shapes() -> dict[str, Any]:
    """The shape of each part of a run file that is more than its ``RunRecord`` annotation says:
    what ``parse`` checks and ``docs/run-record.schema.json`` publishes."""
    from typing import NotRequired

    from pydantic import Field

    share, count, name = (Annotated[float, Field(ge=0, le=1)], Annotated[int, Field(ge=0)],
                          Annotated[str, Field(min_length=1)])
    metrics, intervals = _metric_shapes()
    member = _typed_dict("Member", {"run_id": name, "model": name, "variant": NotRequired[str],
                                    **dict.fromkeys(("seed", "image_size"), NotRequired[int | None]),
                                    "backend": NotRequired[str | None]})
    model_file = _typed_dict("ModelFile", {
        "path": _described("relative to the results folder: runs/RUN_ID.keras", str),
        "sha256": Annotated[str, Field(pattern="^[0-9a-f]{64}$")], "bytes": count,
        "format": Literal[tuple(MODEL_FORMATS)], "types": NotRequired[list[str]]},
        "the trained model beside the record (not published: leaderboards/ keep the hash only)")
    shares = _typed_dict("ShortcutShares", {
        **dict.fromkeys(SHORTCUT_SHARES, share), "n_images": count, "test_images": count,
        "method": NotRequired[Literal[SHORTCUT_METHODS]], "n_without_saliency": NotRequired[count],
        "sample_seed": NotRequired[int | None]})
    prior_shift = _typed_dict("PriorShift", {
        "estimated_prior": share, "threshold": share, "method": str, "iterations": NotRequired[count],
        "converged": NotRequired[bool], **dict.fromkeys(("bbse_prior", "validation_prior", "true_prior"),
                                                        NotRequired[share | None])},
        "transductive operating point: test prior P(PNEUMONIA) estimated by EM on the unlabeled test scores "
        "after Platt calibration on validation; true_prior is shown, never used")
    return {
        "run_id": name, "model": name, "status": Literal[tuple(s.label for s in STORED_STATUSES)],
        "schema_version": Annotated[int, Field(ge=1, le=SCHEMA_VERSION)],
        **dict.fromkeys(_METRICS_FIELDS, metrics | None),
        **dict.fromkeys((t.intervals_key for t in Threshold), intervals | None),
        "val_threshold": _typed_dict("ValThreshold", {"value": float, "method": str}) | None,
        "prior_shift": prior_shift | None, "model_file": model_file | None,
        "members": _described("an ensemble's member runs, whose per-image scores it averages",
                              Annotated[list[member], Field(min_length=2)] | None),  # type: ignore[valid-type]
        "model_note": _described("why a done run has no model file", str | None),
        "shortcut_check": _described("share of saliency on the image border, its corners and the lung field, per "
                                     "saliency method, averaged over the test images (xraybench explain RUN_ID)",
                                     dict[Literal[SHORTCUT_METHODS], shares] | None),  # type: ignore[valid-type]
    }


def coerce(record: RunRecord | dict[str, Any]) -> RunRecord:
    """A ``RunRecord`` from either form (a record read as JSON, or a test's dict)."""
    return record if isinstance(record, RunRecord) else parse(record)


def validated(record: RunRecord | dict[str, Any]) -> RunRecord:
    """``record`` checked as its file will be read back (``parse`` of its ``to_dict``), so that a
    ``ValueError`` (``InvalidRecord``) says what is wrong before anything is written."""
    return parse(record.to_dict() if isinstance(record, RunRecord) else record)


def for_saving(record: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """The dict a run file holds: ``validated``, stamped with ``schema_version``."""
    return validated(record).to_dict()


# --- JSON Schema --------------------------------------------------------------------------

def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run file, written to docs/run-record.schema.json:
    ``_adapter``'s, with what a done run must hold."""
    from pydantic.json_schema import GenerateJsonSchema

    class Untitled(GenerateJsonSchema):  # a field's title would only repeat its name
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_adapter().json_schema(schema_generator=Untitled),
        "title": "xraybench run record",
        "description": "One run of one model (RESULTS/runs/RUN_ID.json); per-image scores are in RUN_ID.scores.json. "
                       "Generated from xraybench/records.py; do not edit.",
        "if": {"properties": {"status": {"const": RunStatus.DONE.label}}},
        "then": {"required": list(_DONE_NEEDS), "properties": dict.fromkeys(_DONE_NEEDS, {"$ref": "#/$defs/Metrics"})},
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1) + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(schema_text())
