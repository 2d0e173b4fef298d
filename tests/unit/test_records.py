"""The run record (records.py), its JSON Schema, migration, and reading that never hides good runs."""

import copy
import json
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recordfactory import make_record
from xraybench import leaderboard as lb
from xraybench import records
from xraybench.metric_registry import REGISTRY, bootstrapped
from xraybench.records import InvalidRecord, RunRecord, RunStatus, Threshold, parse
from xraybench.results import ResultStore

ROOT = Path(__file__).resolve().parents[2]
V1 = json.loads((Path(__file__).parents[1] / "data" / "run-v1.json").read_text())


def test_schema_in_docs_is_the_generated_one():
    assert (ROOT / "docs" / "run-record.schema.json").read_text() == records.schema_text(), \
        "run `python -m xraybench.records > docs/run-record.schema.json`"


def test_records_validate_against_the_published_schema():
    schema = records.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for record in (make_record("a", 1)[0], make_record("b", 2, status="error")[0], V1):
        jsonschema.validate(parse(record).to_dict(), schema)
    published = [p for p in sorted((ROOT / "leaderboards" / "runs").glob("*.json"))
                 if not p.name.endswith(".scores.json") and not p.name.startswith(".")]
    for path in published:  # the committed run files, as stored
        jsonschema.validate(json.loads(path.read_text()), schema)
    partial = parse(make_record("a", 1)[0]).to_dict()
    partial["metrics"] = {"roc_auc": 0.9}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(partial, schema)


def test_roundtrip_keeps_unknown_keys():
    record, _ = make_record("m", 3)
    record["from_the_future"] = {"x": 1}
    parsed = parse(record)
    assert isinstance(parsed, RunRecord) and parsed.status is RunStatus.DONE and parsed.seed == 3
    assert parsed.to_dict()["from_the_future"] == {"x": 1}
    assert parse(parsed.to_dict()) == parsed


def test_version_1_record_migrates():
    assert V1["schema"] == 1 and "schema_version" not in V1
    old = copy.deepcopy(V1)
    del old["metrics"]["balanced_accuracy"], old["metrics"]["per_class"]["NORMAL"]["precision"]
    record = parse(old)
    assert record.schema_version == records.SCHEMA_VERSION and "schema" not in record.to_dict()
    assert record.reference is False and record.spec_image_size is None
    # metrics a record predates are computed from its confusion matrix, exactly
    assert record.metrics["balanced_accuracy"] == pytest.approx(V1["metrics"]["balanced_accuracy"], abs=1e-12)
    assert record.metrics["per_class"]["NORMAL"]["precision"] == pytest.approx(
        V1["metrics"]["per_class"]["NORMAL"]["precision"], abs=1e-12)
    assert V1 == json.loads((Path(__file__).parents[1] / "data" / "run-v1.json").read_text())  # input untouched


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: [1, 2], "not a run record (a list, not an object)"),
    (lambda r: {k: v for k, v in r.items() if k != "model"}, "no 'model'"),
    (lambda r: {**r, "status": "finished"}, "'status' is \"finished\", expected 'done', 'error', 'timeout' or 'interrupted'"),
    (lambda r: {**r, "seed": "42"}, "'seed' is \"42\", expected a valid integer"),
    (lambda r: {**r, "metrics": {"roc_auc": 0.9}}, "partial 'metrics' (missing accuracy"),
    (lambda r: {**r, "metrics_at_val_threshold": None}, "status done but no 'metrics_at_val_threshold'"),
    (lambda r: {**r, "schema_version": 99}, "schema version 99 is newer than this xraybench reads"),
])
def test_invalid_records_say_why(mutate, reason):
    record, _ = make_record("m", 1)
    with pytest.raises(InvalidRecord) as err:
        parse(mutate(record))
    assert reason in str(err.value)


def test_status_carries_label_and_colour():
    assert RunStatus.parse("timeout") is RunStatus.TIMEOUT and RunStatus.TIMEOUT.colour == "yellow"
    assert RunStatus.DONE.markup() == "[green]done[/]"
    with pytest.raises(ValueError):
        RunStatus.parse("invalid")  # shown by `runs`, never stored
    assert Threshold.parse("val").metrics_key == "metrics_at_val_threshold"


def test_store_refuses_to_save_an_invalid_record(tmp_path):
    record, _ = make_record("m", 1)
    record["metrics"] = {"accuracy": 0.5}
    with pytest.raises(ValueError, match="partial 'metrics'"):
        ResultStore(tmp_path).save(record)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_typed_record_is_finished_once_and_validated_before_it_is_written(tmp_path):
    """The one write path: a record starts typed, ``finish`` makes the ended one (unknown field names
    refused, the traceback kept beside the reason), and the store validates a ``RunRecord`` too."""
    done_dict, scores = make_record("m", 1)
    started = RunRecord(run_id=done_dict["run_id"], model="m", status=RunStatus.ERROR, seed=1)
    results = {k: done_dict[k] for k in ("metrics", "metrics_at_val_threshold")}
    done = started.finish(RunStatus.DONE, "", results, wall_seconds=2.5)
    assert started.status is RunStatus.ERROR and started.metrics is None  # a new record; the start is unchanged
    assert done.status is RunStatus.DONE and done.metrics == done_dict["metrics"] and done.wall_seconds == 2.5
    failed = started.finish(RunStatus.ERROR, "boom", traceback="Traceback: boom")
    assert failed.traceback == "Traceback: boom" and failed.to_dict()["traceback"] == "Traceback: boom"
    with pytest.raises(TypeError):
        started.finish(RunStatus.DONE, "", {"accuracy": 0.5})  # not a field: never a stray key
    store = ResultStore(tmp_path)
    saved = json.loads(store.save(done, scores).read_text())
    assert saved["status"] == "done" and saved["has_scores"] and saved["wall_seconds"] == 2.5
    with pytest.raises(ValueError, match="status done but no 'metrics'"):
        store.save(started.finish(RunStatus.DONE), scores)
    assert sorted(p.name for p in store.runs.iterdir()) == sorted([f"{done.run_id}.json", f"{done.run_id}.scores.json"])


def _damaged_folder(root: Path) -> tuple[ResultStore, list[str]]:
    """Good runs of two models plus six damaged records of different kinds."""
    store = ResultStore(root)
    for seed in (1, 2):
        for model in ("baseline_cnn", "other"):
            store.save(*make_record(model, seed))
    runs = root / "runs"
    (runs / "torn.json").write_text('{"run_id": "torn", "model"')
    (runs / "list.json").write_text("[1, 2, 3]")
    nomodel, _ = make_record("x", 1)
    del nomodel["model"]
    (runs / "nomodel.json").write_text(json.dumps(nomodel))
    partial, _ = make_record("partial", 1)
    partial["metrics"] = {"roc_auc": 0.99}
    (runs / "partial.json").write_text(json.dumps(partial))
    future, _ = make_record("future", 1)
    future["schema_version"] = 7
    (runs / "future.json").write_text(json.dumps(future))
    badclass, _ = make_record("badclass", 1)
    badclass["metrics"] = {"roc_auc": 0.99, "per_class": 5}
    (runs / "badclass.json").write_text(json.dumps(badclass))
    return store, ["torn.json", "list.json", "nomodel.json", "partial.json", "future.json", "badclass.json"]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_leaderboard_shows_every_good_run_and_names_each_damaged_file_once(tmp_path, fmt, xb):
    _, damaged = _damaged_folder(tmp_path)
    out = xb("leaderboard", "--format", fmt, "--results", str(tmp_path))
    assert out.code == 0, out.err
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("6 records skipped: "), out.err
    for name in damaged:
        assert lines[0].count(name) == 1, name
    assert "(no 'model')" in lines[0] and "(not JSON)" in lines[0] and "newer than" in lines[0]
    if fmt == "json":
        assert {r["model"] for r in json.loads(out.out)["rows"]} == {"baseline_cnn", "other"}
    else:
        assert "baseline_cnn" in out.out and "other" in out.out and "partial" not in out.out


def test_runs_lists_failures_and_invalid_files(tmp_path, xb):
    store, damaged = _damaged_folder(tmp_path)
    failed, _ = make_record("crashy", 1, status="error")
    failed["reason"] = "training crashy failed: RuntimeError: boom"
    store.save(failed)
    out = xb("runs", "--results", str(tmp_path))
    assert out.code == 0, out.err
    assert "RuntimeError: boom" in out.out and "crashy" in out.out
    for name in damaged:
        assert name in out.out
    assert "4 done, 1 error, 6 invalid" in out.out
    only = xb("runs", "--status", "error", "--results", str(tmp_path))
    assert "crashy" in only.out and "baseline_cnn" not in only.out


def test_repeated_seeds_are_not_a_spread():
    same = [make_record("m", 42, accuracy_shift=s)[0] for s in (0.0, 0.05, 0.1)]
    for record, version in zip(same, ("0.1.0", "0.2.0", "0.3.0")):
        record["environment"] = {"xraybench": version}  # one seed, three versions: not identical repeats
    row = lb.build_rows(same)[0]
    assert row.runs == 3 and row.seeds == [42] and row.runs_text == "3 (1 seed)"
    assert row.sds["accuracy"] is None and "±" not in lb.cells(row)[3]
    mixed = same + [make_record("m", 7)[0]]
    row = lb.build_rows(mixed)[0]
    assert row.runs_text == "4 (2 seeds)"
    seed42 = np.mean([r["metrics"]["accuracy"] for r in same])
    assert row.estimates["accuracy"] == pytest.approx((seed42 + mixed[-1]["metrics"]["accuracy"]) / 2)  # seeds weigh equally


def test_reference_is_declared_on_the_spec_or_chosen():
    records_ = [make_record("ref_model", s, reference=True)[0] for s in (1, 2)]
    records_ += [make_record("other", s, accuracy_shift=0.1, reference=False)[0] for s in (1, 2)]
    for r in records_:
        r["spec_image_size"] = 32
    bigger = make_record("ref_model", 1, reference=True)[0]
    bigger["image_size"] = 64  # the reference run at another size is not the reference row
    rows = {(r.model, r.image_size): r for r in lb.build_rows(records_ + [bigger])}
    other = rows[("other", 32)]
    assert other.delta_accuracy == pytest.approx(other.estimates["accuracy"] - rows[("ref_model", 32)].estimates["accuracy"])
    assert "ref_model" in lb.footnote(list(rows.values())) and "its own 32 px" in lb.footnote(list(rows.values()))
    chosen = {r.model: r for r in lb.build_rows(records_, baseline="other")}
    assert chosen["other"].delta_accuracy == 0.0
    assert chosen["ref_model"].delta_accuracy == pytest.approx(-other.delta_accuracy)
    undeclared = [make_record("a", 1, reference=False)[0], make_record("b", 1, reference=False)[0]]
    rows = lb.build_rows(undeclared)
    assert all(r.delta_accuracy is None for r in rows)
    assert "no run of a model that declares itself the reference" in lb.footnote(rows)
    assert not any(r.p_note for r in rows)  # said once, in the footnote


def test_no_first_party_model_name_in_the_core():
    names = ("baseline_cnn", "deep_cnn", "resnet_small", "logreg_pixels", "mobilenet")
    for path in (ROOT / "xraybench").rglob("*.py"):
        text = path.read_text()
        assert not [n for n in names if n in text], path


@pytest.mark.parametrize("key", ["created_at", "log_loss", "accuracy", "train_seconds"])
def test_every_sortable_key_sorts(key):
    recs = [make_record(m, 1, accuracy_shift=s)[0] for m, s in (("a", 0.0), ("b", 0.1), ("c", -0.1))]
    for i, r in enumerate(recs):
        r["created_at"] = f"2026-01-0{i + 1}T00:00:00+00:00"
        r["train_seconds"] = float(3 - i)
    rows = lb.build_rows(recs, sort=key)
    values = [r.value(key) for r in rows]
    ascending = key in ("log_loss", "train_seconds")
    assert values == sorted(values, reverse=not ascending)


def test_val_threshold_rows_name_how_the_threshold_was_chosen():
    record, _ = make_record("m", 1)
    record["val_threshold"] = {"value": 0.3, "method": records.target_sensitivity_method(0.95)}
    row = lb.build_rows([record], threshold="val")[0]
    assert row.threshold == "val (sensitivity >= 0.95 on validation)" and "Youden" not in row.threshold


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=4, max_size=60))
def test_registry_count_metrics_match_scikit_learn_and_the_bootstrap(pairs):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    from xraybench.metrics import evaluate
    from xraybench.stats import bootstrap_intervals

    y = np.array([int(a) for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    m = evaluate(y, p, 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for i, label in enumerate(("NORMAL", "PNEUMONIA")):
        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            assert m["per_class"][label][name] == pytest.approx(fn(y, pred, pos_label=i, zero_division=0)), (label, name)
    iv = bootstrap_intervals(y, p, 0.5, resamples=20)
    for metric in bootstrapped():
        if metric.counts is not None and np.isfinite(iv[metric.key]["estimate"]):
            assert iv[metric.key]["estimate"] == pytest.approx(metric.value(m), abs=1e-12), metric.key


def test_backfill_adds_missing_intervals_and_keeps_the_stored_ones(tmp_path):
    store = ResultStore(tmp_path)
    record, scores = make_record("m", 5)
    full = copy.deepcopy(record["intervals"])
    record["intervals_at_val_threshold"] = copy.deepcopy(full)
    for key in ("normal_precision", "balanced_accuracy"):
        del record["intervals"][key], record["intervals_at_val_threshold"][key]
    record["intervals"]["accuracy"] = {"estimate": 0.5, "low": 0.4, "high": 0.6}  # stored values are never recomputed
    store.save(record, scores)
    from xraybench.backfill import backfill

    changed = backfill(store)
    assert [name for name, _ in changed] == [f"{record['run_id']}.json"]
    after = store.get(record["run_id"])["intervals"]
    assert after["normal_precision"] == full["normal_precision"] and after["balanced_accuracy"] == full["balanced_accuracy"]
    assert after["accuracy"] == {"estimate": 0.5, "low": 0.4, "high": 0.6}
    assert backfill(store) == []  # once


def _record_lacking_an_interval(store):
    record, scores = make_record("m", 5)
    del record["intervals"]["balanced_accuracy"]
    return record, store.save(record, scores)


def test_backfill_updates_the_file_it_read_whatever_its_name(tmp_path):
    """A record whose file name is not its run id is rewritten in place, not copied to RUN_ID.json."""
    from xraybench.backfill import backfill

    store = ResultStore(tmp_path)
    record, path = _record_lacking_an_interval(store)
    renamed = path.rename(store.runs / "kept-under-another-name.json")
    assert [name for name, _ in backfill(store)] == ["kept-under-another-name.json"]
    assert sorted(p.name for p in store.runs.glob("*.json") if not p.name.endswith(".scores.json")) == [renamed.name]
    assert "balanced_accuracy" in json.loads(renamed.read_text())["intervals"]
    assert backfill(store) == []


def test_backfill_never_rewrites_a_file_xraybench_did_not_make(tmp_path):
    """A link (to a file elsewhere) and a file without the version key every saved record has are left
    byte for byte; records xraybench made beside them are still backfilled."""
    from xraybench.backfill import backfill

    store = ResultStore(tmp_path / "results")
    mine, _ = _record_lacking_an_interval(store)
    linked, link_path = _record_lacking_an_interval(store)
    elsewhere = tmp_path / "elsewhere.json"
    link_path.rename(elsewhere)
    link_path.symlink_to(elsewhere)
    foreign, foreign_path = _record_lacking_an_interval(store)
    obj = json.loads(foreign_path.read_text())
    del obj["schema_version"]
    foreign_path.write_text(json.dumps(obj))
    before = {p: p.read_bytes() for p in (elsewhere, foreign_path)}
    assert [name for name, _ in backfill(store)] == [f"{mine['run_id']}.json"]
    assert link_path.is_symlink() and {p: p.read_bytes() for p in before} == before


def test_every_registry_metric_reaches_every_output():
    rows = lb.build_rows([make_record("m", s)[0] for s in (1, 2)])
    md = lb.render_markdown(rows, [], "t")
    csv_head = lb.render_csv(rows).splitlines()[0].split(",")
    data = json.loads(lb.render_json(rows, []))
    for metric in REGISTRY:
        assert metric.key in csv_head and metric.key in data["rows"][0]
        if metric.column is not None:
            assert f" {metric.label} |" in md
        if metric.interval_column is not None:
            assert f" {metric.label} 95% CI |" in md and f"{metric.key}_ci_low" in csv_head


def test_check_runs_without_pytest(tmp_path, test_plugins, xb):
    block = tmp_path / "nopytest"
    block.mkdir()
    (block / "pytest.py").write_text("raise ImportError('pytest is not installed (simulated)')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")]),
           "XRAYBENCH_CACHE": str(tmp_path / "cache")}
    out = xb.process("check", "xb_good", "--image-size", "16", env=env, timeout=300)  # a fresh interpreter: no pytest
    assert out.code == 0, out.out[-2000:] + out.err[-2000:]
    assert "0 failed" in out.out


def test_epochs_flag_is_ignored_alike_by_run_and_tune_for_models_without_epochs():
    import io

    from rich.console import Console

    from xraybench.run_plan import flag_overrides
    from xraybench.specs import GenericModel, KerasModel

    out = io.StringIO()
    console = Console(file=out, width=200)
    generic = GenericModel(name="g", description="", defaults={"c": 1.0})
    assert flag_overrides(generic, {"c": "2"}, {"epochs": 3}, console) == {"c": "2"}
    assert "g has no --epochs parameter; ignored for it" in out.getvalue()
    keras_model = KerasModel(name="k", description="")
    assert flag_overrides(keras_model, {}, {"epochs": 3}, None) == {"epochs": 3}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_json, st.dictionaries(st.sampled_from(["model", "run_id", "status", "seed", "metrics", "schema",
                                                         "schema_version", "tags", "image_size"]), _json)))
def test_any_json_is_a_record_or_a_named_reason(value):
    try:
        record = parse(value)
    except InvalidRecord as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(record, RunRecord) and parse(record.to_dict()) == record


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["model", "run_id", "status", "seed", "metrics", "metrics_at_val_threshold", "data", "reference"]),
       _json)
def test_a_done_record_with_one_field_damaged_is_valid_or_named(key, value):
    record, _ = make_record("m", 1)
    record[key] = value
    try:
        parse(record)
    except InvalidRecord as exc:
        assert str(exc)


def test_store_names_damaged_and_missing_scores(tmp_path, xb):
    store = ResultStore(tmp_path)
    record, scores = make_record("m", 1)
    store.save(record, scores)
    path = tmp_path / "runs" / f"{record['run_id']}.scores.json"
    path.write_text('{"test_ids": [1]}')
    with pytest.raises(InvalidRecord, match=f"{path} is damaged"):
        store.scores(record["run_id"])
    path.unlink()
    assert store.scores(record["run_id"]) is None
    out = xb("runs", "--results", str(tmp_path))
    assert "per-image scores file missing" in out.out


@pytest.mark.parametrize("per_class", [5, [1], "x"])
def test_a_non_object_per_class_is_named(per_class):
    record, _ = make_record("m", 1)
    record["metrics"] = {"roc_auc": 0.9, "per_class": per_class}
    with pytest.raises(InvalidRecord, match="per_class"):
        parse(record)


def test_an_unforeseen_error_in_validation_is_an_invalid_record(monkeypatch):
    import xraybench.records as records

    def broken(obj):
        raise AttributeError("'int' object has no attribute 'items'")

    monkeypatch.setattr(records, "migrate", broken)
    record, _ = make_record("m", 1)
    with pytest.raises(InvalidRecord, match="malformed"):
        parse(record)
