"""Issue 23, items 3, 6 and 7: a row's CI belongs to the mean beside it (a hierarchical bootstrap
over seeds and test images), a leaderboard that reads at 80 columns, and a report that opens with
the results at a glance on the default install."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from recordfactory import make_record

from xraybench import leaderboard as lb
from xraybench import stats
from xraybench.results import ResultStore

ROOT = Path(__file__).resolve().parents[2]


def _pairs(shifts=(0.0, -0.25, -0.3), model="m", n=200, **kw):
    """One run per seed (1, 2, ...), each with its scores; the shifts spread the seeds apart."""
    return [make_record(model, seed, accuracy_shift=shift, n=n, **kw) for seed, shift in enumerate(shifts, 1)]


def _rows(pairs, loader=None, **kw):
    scores = {r["run_id"]: s for r, s in pairs}
    return lb.build_rows([r for r, _ in pairs], scores_loader=scores.get if loader is None else loader, **kw)


# --- 3. intervals that belong to the number beside them ---------------------------------------------


def test_a_row_of_several_seeds_shows_the_interval_of_its_mean():
    pairs = _pairs()
    [row] = _rows(pairs)
    iv = row.intervals["accuracy"]
    assert row.interval_method == "hierarchical" and row.interval_note is None
    assert iv["low"] <= row.estimates["accuracy"] <= iv["high"] and iv["estimate"] == row.estimates["accuracy"]
    lowest = pairs[0][0]["intervals"]["accuracy"]  # what the row showed before: the lowest-seed run's own
    assert not lowest["low"] <= row.estimates["accuracy"] <= lowest["high"]  # ... which left the mean outside it
    assert row.intervals["_meta"]["method"] == "hierarchical" and row.intervals["_meta"]["seeds"] == 3
    assert row.intervals["_meta"]["resamples"] == lb.ROW_RESAMPLES == 1000
    for key in ("roc_auc", "normal_f1", "mcc"):  # every bootstrapped metric, its estimate the row's value
        assert row.intervals[key]["estimate"] == row.estimates[key]
        assert row.intervals[key]["low"] <= row.estimates[key] <= row.intervals[key]["high"]
    assert _rows(pairs)[0].intervals == row.intervals  # seeded: the same on every run of the command


def test_the_estimate_recomputed_from_the_scores_is_the_shown_mean():
    pairs = _pairs()
    y = pairs[0][1]["test_labels"]
    seeds = [[(s["test_scores"], 0.5)] for _, s in pairs]
    iv = stats.hierarchical_intervals(y, seeds, resamples=200)
    [row] = _rows(pairs)
    for key in ("accuracy", "roc_auc", "pneumonia_f1"):
        assert iv[key]["estimate"] == pytest.approx(row.estimates[key], abs=1e-12)


def test_seeds_share_one_image_resample():
    """Two seeds with identical scores: resampling seeds changes nothing, so if every run saw the
    same image resample the interval is exactly that run's own test bootstrap."""
    record, scores = make_record("m", 1, n=150, accuracy_shift=-0.2)
    y, s = scores["test_labels"], scores["test_scores"]
    one = stats.bootstrap_intervals(y, s, 0.5, resamples=300, seed=4)
    two = stats.hierarchical_intervals(y, [[(s, 0.5)], [(s, 0.5)]], resamples=300, seed=4)
    for key in ("accuracy", "roc_auc", "normal_recall"):
        assert (two[key]["low"], two[key]["high"]) == pytest.approx((one[key]["low"], one[key]["high"]))


def test_each_run_is_measured_at_its_own_threshold_and_repeats_average_into_their_seed():
    _, scores = make_record("m", 1, n=150, accuracy_shift=-0.2)
    y, s = scores["test_labels"], np.asarray(scores["test_scores"])
    low = stats.hierarchical_intervals(y, [[(s, 0.3)], [(s, 0.3)]], resamples=100)
    high = stats.hierarchical_intervals(y, [[(s, 0.7)], [(s, 0.7)]], resamples=100)
    mixed = stats.hierarchical_intervals(y, [[(s, 0.3), (s, 0.7)], [(s, 0.3), (s, 0.7)]], resamples=100)
    assert low["accuracy"]["estimate"] != high["accuracy"]["estimate"]
    assert mixed["accuracy"]["estimate"] == pytest.approx((low["accuracy"]["estimate"] + high["accuracy"]["estimate"]) / 2)
    assert mixed["_meta"]["thresholds"] == [[0.3, 0.7], [0.3, 0.7]]


def test_at_the_validation_threshold_each_run_uses_its_own(monkeypatch):
    pairs = _pairs()
    for i, (record, scores) in enumerate(pairs):
        t = 0.4 + 0.1 * i
        from xraybench.metrics import evaluate

        record["metrics_at_val_threshold"] = evaluate(np.array(scores["test_labels"]), np.array(scores["test_scores"]), t)
    seen = []
    real = stats.hierarchical_intervals
    monkeypatch.setattr(stats, "hierarchical_intervals", lambda y, seeds, **kw: seen.append(seeds) or real(y, seeds, **kw))
    [row] = _rows(pairs, threshold="val")
    assert [t for seed in seen[0] for _, t in seed] == pytest.approx([0.4, 0.5, 0.6])
    assert row.intervals["accuracy"]["low"] <= row.estimates["accuracy"] <= row.intervals["accuracy"]["high"]


def test_the_same_images_in_another_order_give_the_same_interval():
    pairs = _pairs()
    record, scores = pairs[1]
    order = list(range(len(scores["test_ids"])))[::-1]
    shuffled = {key: [scores[key][i] for i in order] for key in ("test_ids", "test_labels", "test_scores")}
    [a] = _rows(pairs)
    [b] = _rows([pairs[0], (record, shuffled), pairs[2]])
    assert a.intervals == b.intervals


def test_a_single_run_row_keeps_its_stored_test_bootstrap():
    pairs = [make_record("m", 1, n=200), make_record("m", 1, n=200, accuracy_shift=-0.1, tuned=True)]
    for row in _rows(pairs):
        record = next(r for r, _ in pairs if r["run_id"] == row.representative_run)
        assert row.interval_method == "run" and row.intervals == record["intervals"]
        assert not lb.ci(row, "accuracy").endswith("*")


@pytest.mark.parametrize("case, note", [
    ("missing", "per-image scores missing or damaged"),
    ("no loader", "per-image scores not read"),
    ("other images", "its runs were scored on different test images"),
    ("too many", "more than 2 runs to resample (--model NAME narrows the table)"),
])
def test_without_usable_scores_the_row_falls_back_to_the_lowest_seed_run_and_says_so(case, note):
    pairs = _pairs()
    scores = {r["run_id"]: s for r, s in pairs}
    kw = {}
    if case == "missing":
        del scores[pairs[2][0]["run_id"]]
    elif case == "other images":
        scores[pairs[2][0]["run_id"]] = {**pairs[2][1], "test_ids": [f"x{i}" for i in pairs[2][1]["test_ids"]]}
    elif case == "too many":
        kw["max_resampled_runs"] = 2
    loader = None if case == "no loader" else scores.get
    [row] = lb.build_rows([r for r, _ in pairs], scores_loader=loader, **kw)
    assert row.interval_method == "lowest-seed run" and row.interval_note == note
    assert row.intervals == pairs[0][0]["intervals"]
    assert lb.ci(row, "accuracy").endswith("*")  # in the row ...
    text = " ".join(lb.footnote([row]).split())  # ... and in the footer, with the reason
    assert "CIs marked * (1 row) are the lowest-seed run's test bootstrap, not the mean's" in text and note in text
    assert "* (1 row) are the lowest-seed run's" in lb.short_legend([row], lb.HEADERS)


def test_the_footer_says_which_interval_is_shown():
    [row] = _rows(_pairs())
    text = lb.footnote([row])
    assert "Each 95% CI is that of the value beside it: for a row of several seeds, a hierarchical percentile bootstrap" in text
    assert "lowest-seed run." not in text and "marked *" not in text
    data = json.loads(lb.render_json([row], []))["rows"][0]
    assert data["interval_method"] == "hierarchical" and data["intervals"]["accuracy"] == row.intervals["accuracy"]
    csv_row = lb.render_csv([row]).splitlines()[1]
    assert f"{row.intervals['accuracy']['low']}" in csv_row


def test_the_leaderboard_command_shows_the_mean_s_interval(tmp_path, xb):
    store = ResultStore(tmp_path / "results")
    pairs = _pairs(model="baseline_cnn")
    for record, scores in pairs:
        store.save(record, scores)
    board = xb("leaderboard", "--results", str(store.root), "--format", "json")
    assert board.code == 0, board.err
    [row] = json.loads(board.out)["rows"]
    assert row["interval_method"] == "hierarchical"
    assert row["intervals"]["accuracy"]["low"] <= row["accuracy"] <= row["intervals"]["accuracy"]["high"]


# --- 6. a leaderboard that reads at 80 columns ------------------------------------------------------

LONG = "a_model_whose_name_is_long_enough_to_wrap_at_eighty"


@pytest.fixture
def board(tmp_path):
    store = ResultStore(tmp_path / "results")
    for model, shifts in (("baseline_cnn", (0.0, -0.1)), (LONG, (-0.2, -0.25)), ("short", (-0.05,))):
        for record, scores in _pairs(shifts, model=model, n=120):
            store.save(record, scores)
    return store


def _table(board, xb, *args, columns="80"):
    return xb("leaderboard", "--results", str(board.root), *args, env={"COLUMNS": columns})


def test_the_default_table_fits_80_columns_with_the_compact_set(board, xb):
    code, out, _ = _table(board, xb)
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(i for i, line in enumerate(lines) if line.startswith("Model"))
    heads = " ".join(" ".join(lines[1:header + 1]).split())
    for word in ("Model", "Variant", "px", "Runs", "Acc", "95%", "N F1", "P F1", "AUC", "ΔAcc"):
        assert word in heads, word
    assert "N prec" not in heads and "MCC" not in heads and "Run id" not in heads
    body = lines[header + 1:next(i for i, line in enumerate(lines) if line.startswith(("Not shown", "Dim rows")))]
    long_rows = [line for line in body if line.startswith(LONG[:10])]
    assert len(long_rows) == 1 and "…" in long_rows[0]  # cut with an ellipsis, on one line, never broken
    assert all(line.split()[0] in ("baseline_cnn", "short") or line.startswith(LONG[:10]) or "pub." in line
               for line in body)  # no continuation lines
    base = next(line for line in body if line.startswith("baseline_cnn"))
    assert "–" in base  # the accuracy's CI
    flat = " ".join(out.split())
    assert "N = NORMAL, P = PNEUMONIA; Acc = accuracy; AUC = ROC AUC." in flat and "More: --explain" in flat
    assert "ΔAcc = accuracy minus" not in flat and "hierarchical percentile bootstrap" not in flat  # short by default


def test_explain_gives_the_whole_legend(board, xb):
    code, out, _ = _table(board, xb, "--explain")
    flat = " ".join(out.split())
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    assert "N F1 = NORMAL F1" in flat and "ΔAcc = accuracy minus that of the reference" in flat
    assert "Each 95% CI is that of the value beside it" in flat and "More: --explain" not in flat


def test_columns_chooses_and_an_unknown_name_is_a_one_line_error(board, xb):
    code, out, _ = _table(board, xb, "--columns", "model,runs,mcc,mcc_ci,balanced_accuracy")
    header = next(line for line in out.splitlines() if line.startswith("Model"))
    assert code == 0 and "MCC" in out and "Bal" in out and "AUC" not in header and "Variant" not in header
    code, out, err = _table(board, xb, "--columns", "model,nosuch")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: --columns: unknown column 'nosuch'; choose from model, variant, image_size, runs, ")
    assert "accuracy_ci" in err and "delta_accuracy" in err and "run_id" in err and err.rstrip().endswith("or all")
    code, _, err = _table(board, xb, "--columns", "model", "--format", "json")
    assert code == 2 and "--format json holds every column" in err
    code, out, _ = _table(board, xb, "--columns", "all", columns="400")
    assert code == 0 and all(h in out for h in lb.HEADERS)


def test_every_column_stays_in_markdown_csv_json_and_files(board, xb, tmp_path):
    code, md, _ = _table(board, xb, "--format", "markdown")
    assert code == 0 and "| " + " | ".join(lb.HEADERS) + " |" in md
    target = tmp_path / "board.txt"
    assert _table(board, xb, "--output", str(target))[0] == 0
    assert all(h in target.read_text() for h in lb.HEADERS) and LONG in target.read_text()
    assert _table(board, xb, "--output", str(target), "--columns", "model,accuracy_ci")[0] == 0
    text = target.read_text()
    assert "Acc 95% CI" in text and "N F1" not in text and "ΔAcc = accuracy minus" in " ".join(text.split())


def test_every_default_column_has_a_name_and_the_named_ones_render():
    assert set(lb.DEFAULT_COLUMNS) <= set(lb.NAMED_COLUMNS)
    assert {m.key for m in __import__("xraybench.metric_registry").metric_registry.REGISTRY} <= set(lb.NAMED_COLUMNS)
    assert [lb.NAMED_COLUMNS[name].header for name in lb.NAMED_COLUMNS if lb.NAMED_COLUMNS[name] in lb.COLUMNS] == [
        h for h in ("Model", "Variant", "px", "Runs") if h in lb.HEADERS] + [
        h for h in lb.HEADERS if h not in ("Model", "Variant", "px", "Runs", "ΔAcc", "p", "Train s", "Epochs", "Seeds",
                                          "Date", "Run id")] + ["ΔAcc", "p", "Train s", "Epochs", "Seeds", "Date", "Run id"]
    assert lb.table_columns(" model , accuracy,model ") == ["model", "accuracy"] and lb.table_columns("all") is None


# --- 7. report on the default install ---------------------------------------------------------------


def test_matplotlib_is_a_base_dependency_and_report_stays_an_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("matplotlib") for d in project["dependencies"])
    assert "report" in project["optional-dependencies"]


def test_the_report_opens_with_the_results_at_a_glance(tmp_path):
    pytest.importorskip("matplotlib")
    from xraybench import html_report

    store = ResultStore(tmp_path / "results")
    for model, shifts in (("baseline_cnn", (0.0, -0.1)), ("other", (0.05, 0.0)), ("third", (-0.2,))):
        for record, scores in _pairs(shifts, model=model, n=120):
            record["val_threshold"] = {"value": 0.5, "method": "youden_j_on_validation"}
            store.save(record, scores)
    ctx = html_report.build(store, "0.5")
    text, cells = html_report.glance(ctx)
    assert ctx["glance_threshold"] == "val" and len(cells) == 3
    at_val = lb.build_rows([r for r in store.load().records], threshold="val", scores_loader=store.scores)
    top = at_val[0]
    assert cells[0][:2] == [top.model, top.variant]
    assert cells[0][4] == lb.fmt(top.estimates["accuracy"], top.sds["accuracy"]) and cells[0][5] == lb.ci(top, "accuracy")
    assert "threshold chosen on validation" in text and "hierarchical bootstrap" in text
    html = html_report.render_html(ctx)
    assert html.index("Results at a glance") < html.index("<h2>Leaderboard, at threshold 0.5</h2>") and 'id="glance"' in html
    md = html_report.render_markdown(ctx)
    assert md.index("## Results at a glance") < md.index("## Leaderboard")
