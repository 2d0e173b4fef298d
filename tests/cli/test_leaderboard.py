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
    names = [(r.model, r.variant, r.runs) for r in rows]
    assert ("baseline_cnn", "default", 3) in names and ("better", "default", 3) in names
    assert ("better", "tuned", 1) in names
    assert all(r.model != "broken" for r in rows)
    base = next(r for r in rows if r.model == "baseline_cnn")
    assert base.sds["accuracy"] is not None and base.delta_accuracy == 0.0
    accs = [make_record("baseline_cnn", s)[0]["metrics"]["accuracy"] for s in (1, 2, 3)]
    assert base.estimates["accuracy"] == pytest.approx(sum(accs) / 3)
    assert base.param_count == 10 and base.precision == []  # the records' (make_record: 10 parameters, no precision)


def test_all_runs_and_sort():
    rows = lb.build_rows(_records(), all_runs=True, sort="roc_auc")
    assert len(rows) == 7
    aucs = [r.estimates["roc_auc"] for r in rows]
    assert aucs == sorted(aucs, reverse=True)
    with pytest.raises(XRayBenchError, match="cannot sort by"):
        lb.build_rows(_records(), sort="nonsense")


def test_different_fingerprints_are_not_compared():
    records = [make_record("baseline_cnn", 1)[0], make_record("other", 1, fingerprint="e" * 64)[0]]
    rows = {r.model: r for r in lb.build_rows(records)}
    assert rows["other"].delta_accuracy is None


def test_renderers_include_published_figures():
    rows = lb.build_rows(_records())
    published = lb.published_rows()
    md = lb.render_markdown(rows, published, "t")
    assert "| baseline_cnn | default | 3 |" in md and "*seed CNN (published)*" in md and "0.860" in md
    data = json.loads(lb.render_json(rows, published))
    assert {r["model"] for r in data["rows"]} >= {"baseline_cnn", "better"}
    assert data["published_references"][0]["accuracy"] == 0.86
    csv_text = lb.render_csv(rows)
    assert csv_text.splitlines()[0].startswith("model,variant,runs")


def test_mean_and_sd_match_the_statistics_module():
    import statistics

    from xraybench.leaderboard.build import _mean_sd

    values = [0.81, 0.7925, 0.833333, None]
    mean, sd = _mean_sd(values)
    assert mean == pytest.approx(statistics.fmean(values[:3])) and sd == pytest.approx(statistics.stdev(values[:3]))
    assert _mean_sd([0.5]) == (0.5, None) and _mean_sd([None]) == (None, None)


@pytest.mark.parametrize("width", [80, 100, 120, 160, 200, 250])
def test_terminal_table_fits_and_never_truncates_numbers(width):
    import io

    from rich.console import Console

    rows = lb.build_rows(_records())
    out = io.StringIO()
    lb.render_table(rows, lb.published_rows(), "t", console=Console(file=out, width=width, color_system=None))
    lines = out.getvalue().splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith(("Not shown", "Dim rows")))]
    assert max(len(line) for line in table) <= width
    # no number squeezed into an ellipsis; only a long published name is cut with one, never wrapped
    assert not any("…" in line for line in table if " pub. " not in line)
    assert all("…" not in line.split(" pub. ")[1] for line in table if "…" in line)  # in the names, before Runs
    assert not any(line.strip().startswith("(published") for line in table)
    base = next(r for r in rows if r.model == "baseline_cnn")
    text = "\n".join(table)
    digits = 3 if f"{base.estimates['accuracy']:.3f}" in text else 2
    for key in ("accuracy", "normal_precision", "normal_recall", "normal_f1", "pneumonia_precision",
                "pneumonia_recall", "pneumonia_f1", "roc_auc"):
        assert f"{base.estimates[key]:.{digits}f}" in text, key
    if width >= 250:
        assert "Acc 95% CI" in text and "±" in text
    else:
        assert "Not shown at this terminal width" in out.getvalue()


def test_bf16_runs_form_their_own_row():
    records = [make_record("baseline_cnn", s)[0] for s in (1, 2)]
    for s in (1, 2):
        record = make_record("baseline_cnn", s, accuracy_shift=-0.3)[0]
        record["precision"] = "mixed_bfloat16"
        records.append(record)
    rows = {r.variant: r for r in lb.build_rows(records)}
    assert set(rows) == {"default", "default bf16"}
    assert rows["default"].runs == rows["default bf16"].runs == 2
    delta = rows["default bf16"].estimates["accuracy"] - rows["default"].estimates["accuracy"]
    assert delta < 0 and rows["default bf16"].delta_accuracy == pytest.approx(delta)  # vs float32


def test_overridden_parameters_form_their_own_named_row():
    records = [make_record("baseline_cnn", s)[0] for s in (1, 2)]
    for s in (1, 2):
        record = make_record("baseline_cnn", s)[0]
        record["tags"] = {"overrides": {"standardize": True, "epochs": 10}}
        records.append(record)
    variants = sorted(r.variant for r in lb.build_rows(records))
    assert variants == ["default", "epochs=10 standardize=True"]


def _store(tmp_path, statuses=("done", "done"), junk=False):
    """A results folder with baseline_cnn runs of the given statuses (seeds 1, 2, ...)."""
    from xraybench.results import ResultStore

    store = ResultStore(tmp_path / "results")
    for seed, status in enumerate(statuses, 1):
        record, scores = make_record("baseline_cnn", seed, status=status)
        store.save(record, scores if status == "done" else None)
    if junk:
        (store.runs / "junk.json").write_text("[1]")
    return store


def _board(xb, tmp_path, *args, columns=200):
    return xb("leaderboard", "--results", str(tmp_path / "results"), *args, env={"COLUMNS": str(columns)})


def test_run_ids_in_every_format():
    rows = lb.build_rows(_records())
    base = next(r for r in rows if r.model == "baseline_cnn")
    first, *others = base.run_ids
    assert base.representative_run == first and len(others) == 2
    md = lb.render_markdown(rows, [], "t")
    line = next(row for row in md.splitlines() if row.startswith("| baseline_cnn | default |"))
    assert all(run in line for run in base.run_ids)  # Markdown lists them all
    assert "| Run id |" in md
    csv_rows = list(__import__("csv").DictReader(__import__("io").StringIO(lb.render_csv(rows))))
    row = next(r for r in csv_rows if r["model"] == "baseline_cnn" and r["variant"] == "default")
    assert row["representative_run"] == first and row["run_ids"].split() == base.run_ids
    assert json.loads(lb.render_json(rows, []))["rows"][0]["representative_run"]


@pytest.mark.parametrize("width", [250, 300])
def test_terminal_table_shows_the_run_id_where_it_fits(width):
    import io

    from rich.console import Console

    rows = lb.build_rows(_records())
    out = io.StringIO()
    lb.render_table(rows, [], "t", console=Console(file=out, width=width, color_system=None))
    base = next(r for r in rows if r.model == "baseline_cnn")
    assert f"{base.representative_run} +2" in out.getvalue()
    assert max(len(line) for line in out.getvalue().splitlines() if "│" in line) <= width


def test_status_footer_counts_runs_not_ranked(tmp_path, xb):
    _store(tmp_path, ("done", "interrupted", "error", "timeout", "interrupted"), junk=True)
    out = _board(xb, tmp_path)
    assert out.code == 0, out.err
    assert "Not ranked (only done runs are): 1 error, 1 timeout, 2 interrupted, 1 invalid" in " ".join(out.out.split())
    md = _board(xb, tmp_path, "--format", "markdown").out
    assert "2 interrupted" in md and "1 invalid" in md
    data = json.loads(_board(xb, tmp_path, "--format", "json").out)
    assert data["statuses"] == {"done": 1, "error": 1, "timeout": 1, "interrupted": 2, "invalid": 1}


def test_no_done_run_says_what_there_is(tmp_path, xb):
    _store(tmp_path, ("interrupted",))
    out = _board(xb, tmp_path)
    text = " ".join(out.out.split())
    assert out.code == 0 and "no finished runs in" in text and "(1 interrupted; `xraybench runs` lists them" in text
    assert "there is none: no finished runs" not in text


def test_table_output_file_is_plain_and_guarded(tmp_path, xb):
    _store(tmp_path)
    target = tmp_path / "board.txt"
    out = _board(xb, tmp_path, "--format", "table", "--output", str(target), columns=80)
    assert out.code == 0, out.err
    assert out.out == ""  # the table went to the file
    text = target.read_text()
    assert text.startswith("# generator: xraybench leaderboard\n") and "\x1b[" not in text
    assert "baseline_cnn" in text and "Run id" in text and "Acc 95% CI" in text  # every column: a file has no width
    assert "Not shown at this terminal width" not in text
    # rewritten without --force (it is ours); a file xraybench did not write is never replaced without it
    assert _board(xb, tmp_path, "--format", "table", "--output", str(target)).code == 0
    for name, fmt in (("notes.txt", "table"), ("notes.md", "markdown"), ("data.csv", "csv"), ("data.json", "json")):
        mine = tmp_path / name
        mine.write_text("mine\n")
        refused = _board(xb, tmp_path, "--format", fmt, "--output", str(mine))
        assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
        assert f"{mine} exists and was not written by xraybench leaderboard" in refused.err and "--force" in refused.err
        assert mine.read_text() == "mine\n"
        assert _board(xb, tmp_path, "--format", fmt, "--output", str(mine), "--force").code == 0
        assert mine.read_text() != "mine\n"
        again = _board(xb, tmp_path, "--format", fmt, "--output", str(mine))  # now ours: no --force needed
        assert again.code == 0, (fmt, again.err)


def test_a_model_without_runs_is_an_error_naming_the_models_that_have_runs():
    """`--model nosuch` is a typo or a model never run, not "no finished runs"; a model whose runs
    all failed is not an error (the status line counts them)."""
    records = [make_record("baseline_cnn", 1)[0], make_record("logreg_pixels", 1, status="error")[0]]
    with pytest.raises(XRayBenchError, match=r"no run of model 'nosuch'; runs exist of: baseline_cnn, logreg_pixels"):
        lb.build_rows(records, model="nosuch")
    assert lb.build_rows(records, model="logreg_pixels") == []
    with pytest.raises(XRayBenchError, match="no run of model 'nosuch'; there are no runs yet"):
        lb.build_rows([], model="nosuch")


def test_leaderboard_model_nosuch_exits_2_with_one_line(tmp_path, xb):
    _store(tmp_path, ("done", "interrupted"))
    target = tmp_path / "lb.md"
    out = _board(xb, tmp_path, "--model", "nosuch", "--format", "markdown", "--output", str(target))
    assert out.code == 2 and out.out == "" and not target.exists()
    assert out.err.count("\n") == 1 and out.err.startswith("error: --model nosuch: no run of model 'nosuch'")
    assert "runs exist of: baseline_cnn" in out.err and "no finished runs" not in out.err


# --- newcomer 2026-12-06: data sets, names, --baseline, the legend ---------------------------------

BUILTIN = "Kermany 2018 chest X-ray, built-in 28 px copy"


def _two_data_sets():
    """baseline_cnn and logreg_pixels on a full data set ("chest_xray", 32 px) and on the built-in
    copy (28 px), where they score otherwise."""
    records = []
    for fingerprint, name, size, shift in (("f" * 64, "chest_xray", 32, 0.0), ("e" * 64, BUILTIN, 28, -0.2)):
        for model, extra in (("baseline_cnn", 0.0), ("logreg_pixels", 0.1)):
            for seed in ((1, 2) if name == "chest_xray" else (1,)):
                record = make_record(model, seed, accuracy_shift=shift + extra, fingerprint=fingerprint)[0]
                record["data"]["dataset"], record["image_size"] = name, size
                records.append(record)
    return records


def _table(rows, width, columns=lb.DEFAULT_COLUMNS, published=()):
    import io

    from rich.console import Console

    out = io.StringIO()
    lb.render_table(rows, list(published), "t", console=Console(file=out, width=width, color_system=None),
                    columns=columns)
    return out.getvalue()


def test_rows_on_several_data_sets_are_marked_and_compared_only_on_their_own_data():
    rows = lb.build_rows(_two_data_sets())
    on = {(r.model, r.data_name): r for r in rows}
    assert {r.data_mark for r in rows if r.data_name == BUILTIN} == {"†"}
    assert {r.data_mark for r in rows if r.data_name == "chest_xray"} == {""}  # the data set with most rows
    small = on[("logreg_pixels", BUILTIN)]
    assert small.delta_accuracy == pytest.approx(
        small.estimates["accuracy"] - on[("baseline_cnn", BUILTIN)].estimates["accuracy"])
    assert small.reference_size == 28 and on[("logreg_pixels", "chest_xray")].reference_size == 32
    for width in (80, 200):
        text = _table(rows, width)
        flat = " ".join(text.split())
        assert "28†" in text and "32†" not in text
        assert f"px† = {BUILTIN} (data eeeeeeeeeeee)" in flat and "px unmarked = chest_xray (data ffffffffffff)" in flat
        assert "ΔAcc: against the reference row on the same data, baseline_cnn default 32 px on chest_xray, 28 px " \
               "on † (shown as ref)" in flat
    md = lb.render_markdown(rows, [], "t")
    assert "| 28† |" in " ".join(md.split()) and f"px† = {BUILTIN}" in " ".join(md.split())
    first = next(iter(__import__("csv").DictReader(__import__("io").StringIO(lb.render_csv(rows)))))
    assert first["data_name"] in ("chest_xray", BUILTIN) and first["fingerprint"]
    data = json.loads(lb.render_json(rows, []))["rows"]
    assert {r["data_name"] for r in data} == {"chest_xray", BUILTIN} and "data_mark" not in data[0]


def test_rows_on_one_data_set_carry_no_data_mark():
    rows = lb.build_rows(_records())
    text = _table(rows, 80)
    assert all(r.data_mark == "" for r in rows) and "†" not in text and "px unmarked" not in text
    assert "ΔAcc: against the reference row, baseline_cnn default 32 px (shown as ref)." in " ".join(text.split())


def test_names_are_cut_with_an_ellipsis_never_wrapped_and_share_the_width():
    records = _records()
    for seed in (1, 2):
        record = make_record("baseline_cnn", seed)[0]
        record["tags"] = {"overrides": {"standardize": True, "label_smoothing": 0.1, "learning_rate": 0.0003,
                                        "mixup_alpha": 0.2, "weight_decay": 0.0001, "augment": "modern"}}
        records.append(record)
    rows = lb.build_rows(records)
    long_variant = next(r.variant for r in rows if "standardize" in r.variant)
    assert len(long_variant) > 80
    published = lb.published_rows()
    for width in (80, 120, 200):
        text = _table(rows, width, published=published)
        lines = text.splitlines()
        head = next(i for i, line in enumerate(lines) if "Model" in line)
        end = next(i for i, line in enumerate(lines) if line.startswith(("Not shown", "Dim rows")))
        body = [line.strip("│ ") for line in lines[head + 1:end] if line.strip() and line.lstrip()[0] not in "┃┡├└"]
        assert all(line.split()[0] in ("baseline_cnn", "better") or "pub." in line for line in body), body
        cut = next(line for line in body if line.startswith("baseline_cnn") and "…" in line)
        assert "augment=modern" in cut or width < 200  # the start of the variant, on its own row
        assert "whole names" in text  # named under the table: Markdown and JSON keep them
    wide = _table(rows, 200, published=published)
    assert "Kermany 2018 InceptionV3 (published)" in wide  # published names get their room before a long variant
    assert long_variant in lb.render_markdown(rows, [], "t")


def test_an_unknown_baseline_is_a_one_line_error_naming_the_models_with_runs(tmp_path, xb):
    records = [make_record("baseline_cnn", 1)[0], make_record("logreg_pixels", 1, status="error")[0]]
    with pytest.raises(XRayBenchError, match=r"--baseline nosuch: no run of model 'nosuch'; runs exist of: "
                                             r"baseline_cnn, logreg_pixels"):
        lb.build_rows(records, baseline="nosuch")
    failed_only = lb.build_rows(records, baseline="logreg_pixels")  # runs, none finished: the footer says so
    assert "--baseline logreg_pixels: no finished run" in lb.footnote(failed_only)
    _store(tmp_path)
    out = _board(xb, tmp_path, "--baseline", "nosuch")
    assert out.code == 2 and out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith("error: --baseline nosuch: no run of model 'nosuch'; runs exist of: baseline_cnn")


def test_the_legend_names_p_only_where_it_is_shown_and_the_reference_row_says_ref():
    rows = lb.build_rows(_records())
    default = " ".join(_table(rows, 80).split())
    assert "ΔAcc: against the reference row" in default and "ΔAcc, p:" not in default
    every = " ".join(_table(rows, 400, columns=None).split())
    assert "ΔAcc, p: against the reference row" in every
    base = next(r for r in rows if r.model == "baseline_cnn")
    assert base.is_reference and lb.cells(base, [lb.NAMED_COLUMNS["delta_accuracy"], lb.NAMED_COLUMNS["p"]]) == [
        "ref", "ref"]
    line = next(line for line in _table(rows, 80).splitlines() if line.startswith("baseline_cnn"))
    assert line.rstrip().endswith("ref") and "+0.00" not in line
    md_line = next(line for line in lb.render_markdown(rows, [], "t").splitlines() if line.startswith("| baseline_cnn"))
    assert "+0.000" not in md_line and "| ref | ref |" in md_line
    row = next(r for r in json.loads(lb.render_json(rows, []))["rows"] if r["model"] == "baseline_cnn")
    assert row["delta_accuracy_vs_baseline"] == 0.0 and row["p_vs_baseline"] is None and row["is_reference"] is True


@pytest.mark.parametrize("width", [40, 50, 60, 70])
def test_a_narrow_terminal_keeps_accuracy_and_says_which_columns_gave_way(width):
    """Under about 70 columns the table showed Model and Variant only: every number squeezed to
    nothing, the note naming "SDs, third digit" alone. The rightmost columns now give way first,
    each named under the table, and the names and the accuracy stay."""
    rows = lb.build_rows(_records())
    text = _table(rows, width, published=lb.published_rows())
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Model"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Not shown"))
    assert max(len(line) for line in lines[:end]) <= width and "Acc" in lines[head].split()
    base = next(r for r in rows if r.model == "baseline_cnn")
    assert any(line.split()[0] == "baseline_cnn" and f"{base.estimates['accuracy']:.2f}" in line
               for line in lines[head + 1:end]), text
    said = " ".join(lines[end:end + 3])
    missing = [h for h in ("AUC", "ΔAcc") if h not in lines[head] and h not in lines[head - 1]]
    assert missing and all(h in said for h in missing), said


def test_markdown_names_its_threshold(tmp_path, xb):
    """The published LEADERBOARD-val-threshold.md began "## xraybench leaderboard", its threshold said nowhere."""
    _store(tmp_path)
    for threshold, said in (("0.5", "at threshold 0.5"), ("val", "at the threshold chosen on validation")):
        out = _board(xb, tmp_path, "--format", "markdown", "--threshold", threshold)
        assert f"## xraybench leaderboard, {said}\n" in out.out, out.out[:300]
