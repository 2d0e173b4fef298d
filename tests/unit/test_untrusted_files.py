"""Run records and scores files of any shape and size: each damaged one is named in one line and
skipped (or, for scores, treated as missing), never a traceback, never hiding the good ones.

The results folder is shared, copied and edited by hand, so every file in it is input nobody
vouched for: nested past the JSON parser's recursion limit, nested less than that but past what a
record can be, arrays shorter than their ids, scores that are not numbers. The property tests
feed the loaders any JSON value at any nesting (``jsonsafe``, ``ResultStore``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recordfactory import make_record

from xraybench import jsonsafe
from xraybench.errors import XRayBenchError
from xraybench.records import InvalidRecord, RunRecord
from xraybench.results import DamagedScores, ResultStore, scores_problem


def _store_with_two_good_runs(root: Path) -> tuple[ResultStore, list[dict]]:
    store = ResultStore(root)
    records = []
    for model, seed in (("baseline_cnn", 1), ("logreg", 2)):
        record, scores = make_record(model, seed=seed)
        store.save(record, scores)
        records.append(record)
    return store, records


def _nested(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


# --- i: a record nested past the parser's recursion -----------------------------------------

def test_a_record_nested_past_the_parser_s_recursion_is_named_and_skipped(tmp_path, xb):
    store, good = _store_with_two_good_runs(tmp_path)
    runs = tmp_path / "runs"
    (runs / "deep.json").write_text(_nested(100_000))  # RecursionError inside json.load, before
    shallow_but_deep, _ = make_record("deep_field", seed=3)  # parses, then breaks whatever walks it
    text = json.dumps(shallow_but_deep)
    (runs / "deep_field.json").write_text(text[:-1] + ', "extra": ' + _nested(500) + "}")

    for full in (False, True):
        loaded = store.load(full=full)
        assert sorted(r.run_id for r in loaded.records) == sorted(r["run_id"] for r in good)
        assert {(s.path.name, s.reason) for s in loaded.skipped} == {
            ("deep.json", "nested more than 64 levels deep"), ("deep_field.json", "nested more than 64 levels deep")}
    with pytest.raises(XRayBenchError, match="deep.json is not a readable run record .nested more than 64") as err:
        store.read(runs / "deep.json")
    assert "\n" not in str(err.value)

    for command in (["leaderboard"], ["leaderboard", "--format", "markdown"], ["runs"]):
        code, out, errors = xb(*command, "--results", str(tmp_path))
        assert code == 0, errors
        lines = errors.strip().splitlines()
        assert "Traceback" not in out + errors
        assert all(r["model"] in out for r in good), command
        if command != ["runs"]:  # `runs` lists them in its table instead
            assert len(lines) == 1 and lines[0].startswith("2 records skipped:"), errors
            assert "deep.json (nested more than 64 levels deep)" in lines[0]
        else:
            assert "deep.json" in out and "2 invalid" in out


def test_jsonsafe_bounds_depth_and_size(tmp_path):
    assert jsonsafe.loads(_nested(64)) == json.loads(_nested(64))
    for depth in (65, 900, 5000, 200_000):
        with pytest.raises(jsonsafe.UnsafeJSON, match="nested more than 64 levels deep"):
            jsonsafe.loads(_nested(depth))
    assert jsonsafe.loads(json.dumps({"a": "[" * 100})) == {"a": "[" * 100}  # brackets in a string are no nesting
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(jsonsafe.UnsafeJSON, match="too large"):
        jsonsafe.load(big, max_bytes=1000)


# --- j: scores files shorter than their ids, or otherwise malformed ---------------------------

_DAMAGE = {
    "scores shorter than ids": (lambda s: s.update(test_scores=s["test_scores"][:10]), "differ in length: 60, 60, 10"),
    "labels and scores shorter": (lambda s: s.update(test_scores=s["test_scores"][:5], test_labels=s["test_labels"][:5]),
                                  "differ in length: 60, 5, 5"),
    "val shorter": (lambda s: s.update(val_ids=["v1", "v2"], val_labels=[0, 1], val_scores=[0.5]),
                    "val ids, labels and scores differ in length"),
    "null scores": (lambda s: s.update(test_scores=[None] * 60), "a test score is not a number in [0, 1]"),
    "string scores": (lambda s: s.update(test_scores=["0.5"] * 60), "a test score is not a number in [0, 1]"),
    "nested scores": (lambda s: s.update(test_scores=[[0.5]] * 60), "a test score is not a number in [0, 1]"),
    "scores out of range": (lambda s: s.update(test_scores=[1e309] * 60), "a test score is not a number in [0, 1]"),
    "labels not 0/1": (lambda s: s.update(test_labels=[7] * 60), "a test label is not 0 or 1"),
    "unhashable ids": (lambda s: s.update(test_ids=[{"a": 1}] * 60), "a test id is not a string"),
    "repeated ids": (lambda s: s.update(test_ids=["x"] * 60), "test ids repeat"),
    "no scores list": (lambda s: s.pop("test_scores"), "no 'test_scores' list"),
}


@pytest.mark.parametrize("case", list(_DAMAGE))
def test_a_damaged_scores_file_is_named_and_treated_as_missing(case, tmp_path, xb):
    store, (reference, other) = _store_with_two_good_runs(tmp_path)
    damage, reason = _DAMAGE[case]
    path = tmp_path / "runs" / f"{other['run_id']}.scores.json"
    scores = json.loads(path.read_text())
    damage(scores)
    path.write_text(json.dumps(scores))

    with pytest.raises(DamagedScores) as err:
        store.scores(other["run_id"])
    assert str(err.value).startswith(f"{path} is damaged (") and reason in str(err.value) and "\n" not in str(err.value)
    damaged: list = []
    load = store.scores_loader(damaged)
    assert load(other["run_id"]) is None and load(other["run_id"]) is None and load(reference["run_id"])
    assert [(s.path, s.reason) for s in damaged] == [(path, err.value.reason)]  # named once

    # the leaderboard still ranks both runs, and names the file in one line
    code, out, errors = xb("leaderboard", "--format", "json", "--baseline", "baseline_cnn", "--results", str(tmp_path))
    assert code == 0, errors
    assert {row["model"] for row in json.loads(out)["rows"]} == {"baseline_cnn", "logreg"}
    assert errors.strip().splitlines() == [f"1 scores file damaged, treated as missing: {path} ({err.value.reason})"]
    # compare needs the scores: one line, exit 2
    code, out, errors = xb("compare", reference["run_id"], other["run_id"], "--results", str(tmp_path))
    assert code == 2
    assert errors.strip().splitlines() == [f"error: {path} is damaged ({err.value.reason})"], errors
    # backfill computes nothing from it, and says so
    code, out, errors = xb("runs", "--backfill", "--results", str(tmp_path))
    assert code == 0
    assert str(path) in errors and "Traceback" not in out + errors


# --- n: any JSON value, any nesting ------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                           max_size=4), max_leaves=10)
_record_keys = st.sampled_from(["model", "run_id", "status", "seed", "metrics", "metrics_at_val_threshold", "schema",
                                "schema_version", "tags", "data", "params", "members", "history", "image_size"])
_score_keys = st.sampled_from(["test_ids", "test_labels", "test_scores", "val_ids", "val_labels", "val_scores"])


def _as_text(value, depth: int, wrap: str) -> str:
    """``value`` as JSON text, inside ``depth`` levels of lists or objects (json.dumps itself would
    overflow the stack on the deep ones)."""
    text = json.dumps(value)  # NaN and Infinity included: Python's json reads them back
    opening, closing = ('{"k": ', "}") if wrap == "object" else ("[", "]")
    return opening * depth + text + closing * depth


_nesting = st.one_of(st.just(0), st.integers(1, 80), st.sampled_from([500, 990, 1100, 20_000]))


def _one_line(text: str) -> bool:
    return bool(text) and "\n" not in text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(_json, st.dictionaries(_record_keys, _json), st.builds(lambda r, d: {**r, **d},
       st.just(make_record("m", 1)[0]), st.dictionaries(_record_keys, _json, max_size=2))),
       depth=_nesting, wrap=st.sampled_from(["list", "object"]))
def test_any_json_in_a_run_file_is_a_record_or_a_one_line_reason(value, depth, wrap):
    with tempfile.TemporaryDirectory() as folder:
        store = ResultStore(folder)
        store.runs.mkdir(parents=True)
        path = store.runs / "anything.json"
        path.write_text(_as_text(value, depth, wrap))
        for full in (False, True, False):  # the summaries' index, written then read back, too
            loaded = store.load(full=full)
            assert len(loaded.records) + len(loaded.skipped) == 1
            if loaded.skipped:
                assert loaded.skipped[0].path == path and _one_line(loaded.skipped[0].reason)
            else:
                assert isinstance(loaded.records[0], RunRecord)
        try:
            record = store.read(path)
        except XRayBenchError as exc:
            assert _one_line(str(exc)) and str(path) in str(exc)
        else:
            assert isinstance(record, RunRecord)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(_json, st.dictionaries(_score_keys, _json), st.dictionaries(_score_keys, st.lists(_scalars, max_size=4))),
       depth=_nesting, wrap=st.sampled_from(["list", "object"]))
def test_any_json_in_a_scores_file_is_scores_or_a_one_line_reason(value, depth, wrap):
    with tempfile.TemporaryDirectory() as folder:
        store = ResultStore(folder)
        store.runs.mkdir(parents=True)
        run_id = "20260101T000000-m-abcdef"
        (store.runs / f"{run_id}.scores.json").write_text(_as_text(value, depth, wrap))
        try:
            scores = store.scores(run_id)
        except InvalidRecord as exc:
            assert _one_line(str(exc)) and f"{run_id}.scores.json is damaged (" in str(exc)
        else:
            assert scores is not None and scores_problem(scores) is None
            assert len(scores["test_ids"]) == len(scores["test_labels"]) == len(scores["test_scores"])
        damaged: list = []
        loaded = store.scores_loader(damaged)(run_id)
        assert (loaded is None) == bool(damaged)
