"""``xraybench ensemble``: the mean of recorded runs' per-image scores, recorded and ranked as a run."""

import json

import jsonschema
import numpy as np
import pytest
from proctools import one_line_error
from recordfactory import make_record

from xraybench import ensemble, records
from xraybench import leaderboard as lb
from xraybench.harness import choose_threshold
from xraybench.metrics import evaluate
from xraybench.results import ResultStore
from xraybench.stats import bootstrap_intervals

N_VAL = 30


def _member(store: ResultStore, model: str = "m", seed: int = 1, shift: float = 0.0, fingerprint: str = "f" * 64,
            val_ids: list[str] | None = None, shuffle: bool = False) -> str:
    """A done run with test and validation scores (tiny, generated), saved; its run id."""
    record, scores = make_record(model, seed, accuracy_shift=shift, fingerprint=fingerprint)
    rng = np.random.default_rng(seed + 100)
    labels = (np.arange(N_VAL) % 2).astype(int)
    scores.update(val_ids=val_ids or [f"v{i}" for i in range(N_VAL)], val_labels=labels.tolist(),
                  val_scores=np.clip(labels * 0.5 + rng.random(N_VAL) * 0.5, 0, 1).tolist())
    if shuffle:  # the same images in another order: aligned by id
        for split in ("val", "test"):
            order = rng.permutation(len(scores[f"{split}_ids"]))
            for what in ("ids", "labels", "scores"):
                scores[f"{split}_{what}"] = [scores[f"{split}_{what}"][i] for i in order]
    store.save(record, scores)
    return record["run_id"]


def _ensembles(store: ResultStore) -> list[dict]:
    return [r for r in store.records() if r["kind"] == ensemble.ENSEMBLE]


def _files(store: ResultStore) -> list[str]:
    return sorted(p.name for p in store.runs.iterdir())


def test_scores_are_the_mean_and_the_threshold_comes_from_its_own_validation(tmp_path, xb):
    store = ResultStore(tmp_path)
    ids = [_member(store, model, 7, shift) for model, shift in (("a", 0.0), ("b", 0.05), ("c", -0.05))]
    assert xb("ensemble", *ids, "--results", str(tmp_path)).code == 0
    [record] = _ensembles(store)
    scores = store.scores(record["run_id"])
    members = [store.scores(i) for i in ids]
    for split in ("val", "test"):
        expected = np.mean([m[f"{split}_scores"] for m in members], axis=0)
        assert scores[f"{split}_scores"] == pytest.approx(expected.tolist(), abs=1e-12)
        assert scores[f"{split}_ids"] == members[0][f"{split}_ids"]
    y_val, s_val = np.array(scores["val_labels"]), np.array(scores["val_scores"])
    y, s = np.array(scores["test_labels"]), np.array(scores["test_scores"])
    chosen = choose_threshold(y_val, s_val, None)
    assert record["val_threshold"] == chosen
    assert record["metrics"] == evaluate(y, s, 0.5)
    assert record["metrics_at_val_threshold"] == evaluate(y, s, chosen["value"])
    assert record["val_metrics"] == evaluate(y_val, s_val, 0.5)
    assert record["intervals"] == bootstrap_intervals(y, s, 0.5, seed=7)
    assert record["intervals_at_val_threshold"] == bootstrap_intervals(y, s, chosen["value"], seed=7)
    assert [m["run_id"] for m in record["members"]] == ids
    assert [(m["model"], m["variant"], m["seed"]) for m in record["members"]] == [("a", "default", 7),
                                                                                  ("b", "default", 7), ("c", "default", 7)]
    assert record["model"] == "ensemble" and record["seed"] == 7 and record["status"] == "done"
    assert record["data"]["fingerprint"] == "f" * 64 and record["environment"]["python"]
    assert record["command"].startswith("xraybench ") and record["has_scores"]
    jsonschema.validate(record, records.json_schema())


def test_members_are_aligned_by_id_and_their_order_does_not_matter(tmp_path):
    store = ResultStore(tmp_path)
    a, b = _member(store, "a", 1), _member(store, "b", 2, shuffle=True)
    one, s1 = ensemble.build(store, [a, b])
    two, s2 = ensemble.build(store, [b, a])
    assert s1["test_ids"] == store.scores(a)["test_ids"]  # the first member's order
    by_id = {i: v for i, v in zip(store.scores(b)["test_ids"], store.scores(b)["test_scores"])}
    expected = [(v + by_id[i]) / 2 for i, v in zip(store.scores(a)["test_ids"], store.scores(a)["test_scores"])]
    assert s1["test_scores"] == pytest.approx(expected, abs=1e-12)
    assert one.seed is None  # members of different seeds: the ensemble has none
    assert lb.variant(one) == lb.variant(two) == "a default + b default"
    assert dict(zip(s1["test_ids"], s1["test_scores"])) == dict(zip(s2["test_ids"], s2["test_scores"]))
    assert one.metrics["accuracy"] == two.metrics["accuracy"]


@pytest.mark.parametrize("case, words", [
    ("fingerprint", ["other data", "data fingerprint"]),
    ("val_ids", ["other validation ids", "1 missing, 1 extra"]),
    ("not_done", ["is error, not done"]),
    ("single", ["at least 2 distinct runs; got 1"]),
    ("unknown", ["no single run matches"]),
    ("no_scores", ["no per-image scores file"]),
    ("damaged_scores", ["is damaged"]),
    ("damaged_record", ["is not a readable run record"]),
    ("nested", ["is itself an ensemble"]),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, xb, case, words):
    store = ResultStore(tmp_path)
    good = _member(store, "a", 1)
    offender = {
        "fingerprint": lambda: _member(store, "b", 1, fingerprint="e" * 64),
        "val_ids": lambda: _member(store, "b", 1, val_ids=[f"v{i}" for i in range(N_VAL - 1)] + ["elsewhere"]),
        "single": lambda: good,
        "unknown": lambda: "20990101T000000-nothing-000000",
        "nested": lambda: ensemble_id(store, _member(store, "b", 1), _member(store, "c", 1)),
    }
    if case == "not_done":
        record, _ = make_record("b", 1, status="error")
        store.save(record)
        bad = record["run_id"]
    elif case in ("no_scores", "damaged_scores", "damaged_record"):
        bad = _member(store, "b", 1)
        if case == "no_scores":
            (store.runs / f"{bad}.scores.json").unlink()
        elif case == "damaged_scores":
            (store.runs / f"{bad}.scores.json").write_text('{"test_ids": [')
        else:
            (store.runs / f"{bad}.json").write_text(json.dumps({"run_id": bad, "model": "b", "status": "done"}))
    else:
        bad = offender[case]()
    before = _files(store)
    err = one_line_error(*xb("ensemble", good, bad, "--results", str(tmp_path)))
    assert bad in err
    for word in words:
        assert word in err
    assert _files(store) == before


def ensemble_id(store: ResultStore, *ids: str) -> str:
    record, scores = ensemble.build(store, ids)
    store.save(record, scores)
    return record.run_id


def _seed_set(store: ResultStore, seed: int, models=("a", "b", "c")) -> list[str]:
    return [_member(store, model, seed, shift) for model, shift in zip(models, (0.0, 0.05, -0.05))]


def test_three_disjoint_seed_sets_pool_into_one_row_with_sd(tmp_path):
    store = ResultStore(tmp_path)
    for seed in (1, 2, 3):
        ensemble_record, scores = ensemble.build(store, _seed_set(store, seed))
        store.save(ensemble_record, scores)
    rows = [r for r in lb.build_rows(store.load().records) if r.model == "ensemble"]
    assert len(rows) == 1
    row = rows[0]
    assert row.runs == 3 and row.seeds == [1, 2, 3] and row.sds["accuracy"] is not None
    assert row.variant == "a default + b default + c default"
    assert len(row.members) == 3 and all(len(m) == 3 for m in row.members)
    singles = [r for r in lb.build_rows(store.load().records) if r.model != "ensemble"]
    assert {r.model for r in singles} == {"a", "b", "c"} and all(r.runs == 3 for r in singles)


def test_two_seed_sets_stay_separate_rows_and_so_does_a_repeat(tmp_path):
    store = ResultStore(tmp_path)
    sets = [_seed_set(store, seed) for seed in (1, 2)]
    for ids in sets + [sets[0]]:  # the seed-1 ensemble built twice: its member runs are shared
        store.save(*ensemble.build(store, ids))
    rows = [r for r in lb.build_rows(store.load().records) if r.model == "ensemble"]
    assert len(rows) == 3 and all(r.runs == 1 and r.sds["accuracy"] is None for r in rows)
    assert all("±" not in lb.cells(r)[3] for r in rows)
    store.save(*ensemble.build(store, _seed_set(store, 3)))  # three disjoint sets now; the repeat stays apart
    rows = [r for r in lb.build_rows(store.load().records) if r.model == "ensemble"]
    assert sorted((r.runs, r.sds["accuracy"] is None) for r in rows) == [(1, True), (3, False)]
    assert lb.footnote(rows).endswith(lb.ENSEMBLE_NOTE)


def test_an_ensemble_never_joins_a_single_models_row(tmp_path):
    """Even a plugin model named "ensemble" with the same key keeps its own row."""
    store = ResultStore(tmp_path)
    store.save(*ensemble.build(store, _seed_set(store, 1)))
    record, scores = make_record("ensemble", 1)
    store.save(record, scores)
    rows = [r for r in lb.build_rows(store.load().records) if r.model == "ensemble"]
    assert sorted(r.members is None for r in rows) == [False, True]


def test_variant_counts_repeats_and_names_sizes_only_where_they_differ():
    members = [{"run_id": "x", "model": "resnet18", "variant": "modern", "image_size": 64},
               {"run_id": "y", "model": "baseline_cnn", "variant": "modern", "image_size": 64},
               {"run_id": "z", "model": "baseline_cnn", "variant": "modern", "image_size": 64}]
    assert lb.ensemble_variant(members) == "baseline_cnn modern x2 + resnet18 modern"
    members[0]["image_size"] = 224
    assert lb.ensemble_variant(members) == "baseline_cnn modern 64px x2 + resnet18 modern 224px"


def test_a_damaged_members_entry_is_an_invalid_record():
    record, _ = make_record("ensemble", 1)
    record["members"] = [{"model": "a"}, {"run_id": "b", "model": "b"}]
    with pytest.raises(records.InvalidRecord, match="'members' entry 1 has no 'run_id'"):
        records.parse(record)
    record["members"] = "a, b"
    with pytest.raises(records.InvalidRecord, match="'members' is \"a, b\", not a list"):
        records.parse(record)


def test_the_command_imports_no_backend(tmp_path, xb):
    store = ResultStore(tmp_path)
    ids = [_member(store, "a", 1), _member(store, "b", 1)]
    out = xb.process("ensemble", *ids, "--results", str(tmp_path), env={"COLUMNS": "200"}, timeout=120,
                     python_args=("-X", "importtime"))
    assert out.code == 0, out.err[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.err.splitlines() if line.startswith("import time:")}
    # scikit-learn computes the metrics (metrics.evaluate), as for every run; no Keras backend is imported
    assert not imported & {"keras", "tensorflow", "torch", "jax", "optuna", "matplotlib"}
    assert "a default + b default" in out.out and len(_ensembles(store)) == 1


def test_target_sensitivity_sets_the_second_operating_point(tmp_path, xb):
    store = ResultStore(tmp_path)
    ids = [_member(store, "a", 1), _member(store, "b", 1)]
    record, scores = ensemble.build(store, ids, target_sensitivity=0.9)
    assert record.val_threshold == choose_threshold(np.array(scores["val_labels"]), np.array(scores["val_scores"]), 0.9)
    out = xb("ensemble", *ids, "--target-sensitivity", "1.5", "--results", str(tmp_path))
    assert out.code == 2 and "not a sensitivity in (0, 1]" in out.err
