import json

import pytest

from recordfactory import make_record
from xraybench import leaderboard as lb
from xraybench.errors import XRayBenchError


def _records():
    out = []
    for seed in (1, 2, 3):
        out.append(make_record("baseline_cnn", seed)[0])
        out.append(make_record("better", seed, accuracy_shift=0.1)[0])
    out.append(make_record("broken", 1, status="error")[0])
    out.append(make_record("better", 9, tuned=True)[0])
    return out


def test_rows_aggregate_over_seeds_and_skip_failed():
    rows = lb.build_rows(_records())
    names = [(r["model"], r["variant"], r["runs"]) for r in rows]
    assert ("baseline_cnn", "default", 3) in names and ("better", "default", 3) in names
    assert ("better", "tuned", 1) in names
    assert all(r["model"] != "broken" for r in rows)
    base = next(r for r in rows if r["model"] == "baseline_cnn")
    assert base["accuracy_sd"] is not None and base["delta_accuracy_vs_baseline"] == 0.0
    accs = [make_record("baseline_cnn", s)[0]["metrics"]["accuracy"] for s in (1, 2, 3)]
    assert base["accuracy"] == pytest.approx(sum(accs) / 3)


def test_all_runs_and_sort():
    rows = lb.build_rows(_records(), all_runs=True, sort="roc_auc")
    assert len(rows) == 7
    aucs = [r["roc_auc"] for r in rows]
    assert aucs == sorted(aucs, reverse=True)
    with pytest.raises(XRayBenchError, match="cannot sort by"):
        lb.build_rows(_records(), sort="nonsense")


def test_different_fingerprints_are_not_compared():
    records = [make_record("baseline_cnn", 1)[0], make_record("other", 1, fingerprint="e" * 64)[0]]
    rows = {r["model"]: r for r in lb.build_rows(records)}
    assert rows["other"]["delta_accuracy_vs_baseline"] is None


def test_renderers_include_references():
    rows = lb.build_rows(_records())
    refs = lb.reference_rows()
    md = lb.render_markdown(rows, refs, "t")
    assert "| baseline_cnn | default | 3 |" in md and "*seed CNN (published)*" in md and "0.860" in md
    data = json.loads(lb.render_json(rows, refs))
    assert {r["model"] for r in data["rows"]} >= {"baseline_cnn", "better"}
    assert data["published_references"][0]["accuracy"] == 0.86
    csv_text = lb.render_csv(rows)
    assert csv_text.splitlines()[0].startswith("model,variant,runs")
