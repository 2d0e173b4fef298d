"""What a leaderboard row is: ``Row`` (one configuration's runs, mean ± SD over distinct seeds),
``PublishedRow`` (a published figure shown beside them, never a run) and ``Reference`` (the
reference model rows are compared with); and which row a run joins (``variant``; its backend: ``specs.trained_on``).

Renderers read rows only through these types; ``Row.to_dict`` is the one place their JSON keys
are named (older names kept: ``delta_accuracy_vs_baseline``, ``p_vs_baseline``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from xraybench.metric_registry import REGISTRY
from xraybench.records import FIXED_THRESHOLD, PRIOR_SHIFT_DESCRIPTION, RunRecord, Threshold, coerce

METRICS = {m.key: m.label for m in REGISTRY}
SORTABLE = tuple(METRICS) + ("train_seconds", "created_at")


@dataclass(frozen=True)
class Reference:
    """The reference model (``ModelSpec.reference``, or ``--baseline MODEL``): every row's ΔAcc
    and p compare it with this model's default runs, at its own image size where it ran at it."""

    model: str
    image_size: int | None  # its own size: the one its plugin declares now
    chosen: str  # "declared by its plugin" or "--baseline"


# The JSON keys whose field is named otherwise here, and the fields written only when set.
_JSON_KEYS = {"delta_accuracy": "delta_accuracy_vs_baseline", "p_value": "p_vs_baseline", "p_test": "p_vs_baseline_test",
              "p_note": "p_vs_baseline_note"}
_ONLY_IF_SET = {"reference_note", "p_note"}
_NOT_IN_JSON = {"sds", "reference_size", "records", "data_mark"}  # written otherwise, or not at all (data_name says it)


@dataclass(kw_only=True)
class Row:
    """One leaderboard row: a (model, variant, image size, data, backend) configuration's done
    runs, or one run with ``--all-runs``. Fields are in the order of the row's JSON."""

    model: str
    variant: str
    runs: int  # distinct runs: identical repeats count once (``repeats`` says how many)
    repeats: int = 0
    run_ids: list[str] = field(default_factory=list)  # lowest seed first
    seeds: list[Any] = field(default_factory=list)
    distinct_seeds: int = 0
    runs_text: str  # "3", or "3 (1 seed)" when seeds repeat
    image_size: int | None
    data_name: str = ""
    data_source: str = ""
    precision: list[str] = field(default_factory=list)
    param_count: int | None = None
    fingerprint: str = ""
    threshold: str = ""  # the operating point in words (``threshold_label``)
    transductive: bool = False
    distribution: str = ""
    created_at: str | None = None  # the newest run's
    study: Any = None
    representative_run: str | None = None  # the lowest-seed run (``compare`` takes its id; a one-run row's p is its)
    representative_threshold: float = FIXED_THRESHOLD
    intervals: dict[str, Any] | None = None  # metric key -> {"estimate", "low", "high"}, plus "_meta"
    wall_seconds_per_run: list[float | None] = field(default_factory=list)
    cpu_seconds_per_run: list[float | None] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    hardware: list[str] = field(default_factory=list)
    backend: str | None = None
    reference: Reference | None = None
    reference_size: int | None = None  # the reference's size on this row's data (None: no reference run there)
    estimates: dict[str, float | None]  # metric key -> mean over distinct seeds, in registry order
    sds: dict[str, float | None]  # metric key -> SD over distinct seeds (None: one seed)
    train_seconds: float | None = None
    train_seconds_sd: float | None = None
    epochs: float | None = None
    members: list[list[str]] | None = None  # an ensemble row: each ensemble's member run ids
    backend_shown: bool = False  # rows told apart only by their backend name it
    data_mark: str = ""  # rows of several data sets: "" on the one with most rows, else the mark after px
    delta_accuracy: float | None = None  # accuracy minus the reference row's
    p_value: float | None = None  # the paired test of ΔAcc against the reference row (``reference.paired_test``)
    p_test: str | None = None  # which test gave p (``reference.PAIRED_TESTS``)
    is_reference: bool = False
    reference_note: str | None = None  # no reference, or several declared
    p_note: str | None = None  # why p is "-"
    interval_method: str = "run"  # "run", "hierarchical" or "lowest-seed run"
    interval_note: str | None = None  # why a row of several seeds has its lowest-seed run's intervals
    records: list[RunRecord] = field(default_factory=list, repr=False)  # its runs (not in the JSON)

    def value(self, key: str) -> Any:
        """A metric's estimate, or ``train_seconds`` / ``created_at``: what ``--sort`` ranks by."""
        return self.estimates[key] if key in self.estimates else getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The row as ``--format json`` writes it (each metric key followed by its ``_sd``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "estimates":
                out |= self._with_sds()
            elif f.name == "reference":
                out["reference"] = None if value is None else {
                    "model": value.model, "image_size": self.reference_size, "chosen": value.chosen,
                    "own_image_size": value.image_size}
            elif f.name not in _NOT_IN_JSON and not (f.name in _ONLY_IF_SET and value is None):
                out[_JSON_KEYS.get(f.name, f.name)] = value
        return out

    def _with_sds(self) -> dict[str, float | None]:
        """Each metric's estimate followed by its SD (``KEY_sd``), as the JSON has them."""
        return {k: v for key, estimate in self.estimates.items() for k, v in ((key, estimate), (f"{key}_sd", self.sds[key]))}


@dataclass(kw_only=True)
class PublishedRow(Row):
    """A published figure (``xraybench.published``), shown beside the runs and always marked as
    published: it is never ranked, pooled or compared."""

    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant, "runs": self.runs, "runs_text": self.runs_text,
                "source": self.source, "image_size": self.image_size} | self._with_sds()


def published_rows() -> list[PublishedRow]:
    """Every published figure as a row ("published", "pub.")."""
    from xraybench.published import FIGURES

    return [PublishedRow(model=fig["model"], variant="published", runs=0, runs_text="pub.", source=fig["source"],
                         image_size=fig.get("image_size"), estimates={m.key: m.value(fig) for m in REGISTRY},
                         sds=dict.fromkeys(METRICS)) for fig in FIGURES]



def variant(record: RunRecord | dict[str, Any]) -> str:
    """"default", "tuned", or the ``--param``/``--epochs`` overrides a run was given, led by its
    training recipe unless that is the seed's and was not asked for (``modern label_smoothing=0.0``;
    tags hold the overrides, params the recipe a plugin defaults to: the results index keeps it
    in summaries), plus "bf16" for runs under mixed_bfloat16: another configuration gets its own
    row instead of joining the mean of the defaults, and rows of different recipes are never
    pooled. An ensemble's variant names its members' configurations (``ensemble_variant``)."""
    record = coerce(record)
    if record.members is not None:
        return ensemble_variant(record.members)
    tags = record.tags or {}
    overrides = dict(tags.get("overrides") or {})
    asked = overrides.pop("recipe", None)  # --recipe NAME: always named, the seed's too
    recipe = asked or (record.params or {}).get("recipe")  # none stored: before recipes, the seed's
    parts = [str(recipe)] if recipe and (asked or recipe != "seed") else []
    if tags.get("tuned"):
        name = " ".join(["tuned", *parts])
    else:
        name = " ".join([*parts, *(f"{k}={v}" for k, v in sorted(overrides.items()))]) or "default"
    return f"{name} bf16" if record.precision == "mixed_bfloat16" else name


def ensemble_variant(members: list[dict[str, Any]]) -> str:
    """An ensemble's member configurations, sorted so that the same members in any order name the
    same row: "cnn modern + resnet modern", a repeated one counted ("cnn default x2"), each
    member's image size added only where the members differ in it."""
    sizes = {m.get("image_size") for m in members}
    names = Counter(f"{m.get('model')} {m.get('variant') or 'default'}"
                    + (f" {m.get('image_size')}px" if len(sizes) > 1 else "") for m in members)
    return " + ".join(name + (f" x{n}" if n > 1 else "") for name, n in sorted(names.items()))


def threshold_label(t: Threshold, methods: Iterable[str] = ()) -> str:
    """How a row (and the table title) names its operating point; the transductive one says so."""
    if t is Threshold.FIXED:
        return t.value
    if t is Threshold.PRIOR:
        return f"prior ({PRIOR_SHIFT_DESCRIPTION})"
    methods = list(methods)
    return f"val ({'; '.join(methods)})" if methods else t.value
