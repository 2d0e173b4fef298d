import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from recordfactory import make_record
from xraybench.results import ResultStore


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self._in_board, self._depth = [], [], False, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "leaderboard":
            self._in_board = True
        if tag == "tr" and self._in_board:
            self.rows.append(attrs.get("class", ""))
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_board = False


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    for seed in (1, 2):
        for model, shift in (("baseline_cnn", 0.0), ("other", 0.05)):
            record, scores = make_record(model, seed, accuracy_shift=shift)
            record["history"] = {"loss": [0.6, 0.4, 0.3], "val_loss": [0.5, 0.45, 0.44], "val_auc": [0.8, 0.85, 0.86]}
            store.save(record, scores)
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_report_html_has_rows_and_images(recorded, xb):
    out = xb("report", "--output", str(recorded / "r.html"))
    assert out.code == 0, out.err
    parser = _Collect()
    parser.feed((recorded / "r.html").read_text())
    assert parser.rows.count("") == 1 + 2  # header + one row per model
    assert parser.rows.count("ref") == 6  # published references
    assert len(parser.images) >= 5
    for src in parser.images:
        assert src.startswith("data:image/png;base64,") and len(src) > 2000
    md = (recorded / "r.md").read_text()
    assert md.splitlines()[:2] == ["<!-- generator: xraybench report -->", "# xraybench report"]


def test_report_renders_in_headless_chromium(recorded, xb):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail(".ci/run must install Debian's chromium")
        pytest.skip("needs Chromium to render the HTML report (Debian: apt-get install chromium)")
    out = xb("report", "--output", str(recorded / "r.html"))
    assert out.code == 0, out.err
    shot = recorded / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={recorded / 'profile'}", "--window-size=1400,2000", f"--screenshot={shot}",
         (recorded / "r.html").as_uri()],
        capture_output=True, timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # not blank
    assert (pixels < 128).mean() > 0.01  # text, tables and plots drew dark pixels


def test_compare_command(recorded, xb):
    runs = sorted(p.name[:-5] for p in (recorded / "results" / "runs").glob("*.json") if not p.name.endswith(".scores.json"))
    a = next(r for r in runs if "baseline_cnn" in r)
    b = next(r for r in runs if "other" in r)
    out = xb("compare", a, b, env={"COLUMNS": "200"})
    assert out.code == 0, out.err
    assert "exact McNemar" in out.out and "AUC(B) - AUC(A)" in out.out and "[" in out.out


def test_compare_refuses_different_data(tmp_path, monkeypatch, xb):
    store = ResultStore(tmp_path / "results")
    a, sa = make_record("baseline_cnn", 1)
    b, sb = make_record("other", 1, fingerprint="e" * 64)
    store.save(a, sa)
    store.save(b, sb)
    monkeypatch.setenv("XRAYBENCH_RESULTS", str(tmp_path / "results"))
    out = xb("compare", a["run_id"], b["run_id"])
    assert out.code == 2 and "not compared: the runs used different data" in out.err


def test_leaderboard_shows_p_value_against_baseline(recorded, xb):
    import json

    out = xb("leaderboard", "--format", "json")
    rows = {r["model"]: r for r in json.loads(out.out)["rows"]}
    assert 0.0 <= rows["other"]["p_vs_baseline"] <= 1.0
    iv = rows["other"]["intervals"]["roc_auc"]
    assert iv["low"] <= iv["estimate"] <= iv["high"]


def test_report_never_overwrites_a_file_it_did_not_write(recorded, xb):
    notes = recorded / "notes.md"
    notes.write_text("my notes\n")
    # --output X.html would write X.md beside it: refused, naming the file, nothing written
    out = xb("report", "--output", str(recorded / "notes.html"))
    assert out.code == 2 and out.err.count("\n") == 1
    assert f"{notes} exists and was not written by xraybench report" in out.err and "--force" in out.err
    assert notes.read_text() == "my notes\n" and not (recorded / "notes.html").exists()
    # --output X.md writes X.html and X.md, never the HTML into X.md
    out = xb("report", "--output", str(notes))
    assert out.code == 2 and notes.read_text() == "my notes\n"
    out = xb("report", "--output", str(notes), "--force")
    assert out.code == 0, out.err
    assert notes.read_text().startswith("<!-- generator: xraybench report -->")
    assert (recorded / "notes.html").read_text().startswith("<!doctype html>")
    # its own files are overwritten without --force
    again = xb("report", "--output", str(recorded / "notes.html"))
    assert again.code == 0, again.err


def test_report_output_folder_is_a_one_line_error(recorded, xb):
    out = xb("report", "--output", str(recorded))
    assert out.code == 2 and out.err.count("\n") == 1 and "is a folder" in out.err


def test_report_names_damaged_records_and_scores(recorded, xb):
    runs = recorded / "results" / "runs"
    (runs / "junk.json").write_text("[1, 2]")
    for victim in runs.glob("*other*.scores.json"):
        victim.write_text("{torn")
    out = xb("report", "--output", str(recorded / "r.html"))
    assert out.code == 0, out.err
    line = next(ln for ln in out.err.splitlines() if "skipped" in ln)
    assert "junk.json (not a run record (a list, not an object))" in line and "other" in line and "not JSON" in line


@pytest.mark.parametrize("damage", ["record", "scores"])
def test_compare_names_a_corrupt_file(recorded, damage, xb):
    runs = recorded / "results" / "runs"
    ids = sorted(p.name[:-5] for p in runs.glob("*.json") if not p.name.endswith(".scores.json"))
    path = runs / (ids[0] + (".json" if damage == "record" else ".scores.json"))
    path.write_text("{not json")
    out = xb("compare", ids[0], ids[1])
    assert out.code == 2 and out.err.count("\n") == 1, out.err
    assert str(path) in out.err and "Traceback" not in out.err


def test_twenty_series_get_twenty_distinct_styles():
    from xraybench.html_report import series_styles

    styles = series_styles(20)
    assert len(set(styles)) == 20 and len({c for c, _ in styles}) == 20
    assert all(a[1] != b[1] for a, b in zip(styles, styles[1:]))  # neighbours differ in line style too
    assert len(set(series_styles(80))) == 80


def test_report_curves_use_the_styles(recorded, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xraybench import html_report as report

    drawn = []
    real = plt.Axes.plot

    def spy(ax, *args, **kw):
        if "label" in kw:
            drawn.append((ax.get_title(), kw.get("color"), kw.get("linestyle")))
        return real(ax, *args, **kw)

    monkeypatch.setattr(plt.Axes, "plot", spy)
    store = ResultStore(recorded / "results")
    runs = [(r, store.scores(r.run_id)) for r in store.load().records][:3]
    report._curves(runs)
    report._reliability(runs)
    assert len(drawn) == 9 and all(c is not None and s is not None for _, c, s in drawn)
    assert len({(c, s) for _, c, s in drawn}) == 3  # one (colour, style) per run, the same on every plot


def test_report_table_fits_its_page(recorded, xb):
    out = xb("report", "--output", str(recorded / "r.html"))
    assert out.code == 0, out.err
    page = (recorded / "r.html").read_text()
    assert '<div id="board"><table id="leaderboard" class="wide">' in page  # smaller type for a wide table
    style = page[page.index("<style>"):page.index("</style>")]
    assert "#board { overflow-x: auto; max-width: 100%; }" in style  # scrolls in its box, not the page
    assert "#leaderboard th { white-space: normal;" in style and "#leaderboard.wide { font-size:" in style
    assert '<td class="id">' in page and "#leaderboard td.id {" in style  # long run ids may break, numbers not


def _runs(recorded):
    runs = recorded / "results" / "runs"
    return sorted(p.name[:-5] for p in runs.glob("*.json") if not p.name.endswith(".scores.json"))


def test_compare_names_an_interrupted_run(recorded, xb):
    record, _ = make_record("other", 7, status="interrupted")
    record["reason"] = "stopped by Ctrl-C"
    ResultStore(recorded / "results").save(record)  # no scores: an interrupted run has none
    out = xb("compare", _runs(recorded)[0], record["run_id"])
    assert out.code == 2 and out.err.count("\n") == 1, out.err
    assert f"run {record['run_id']} was interrupted (stopped by Ctrl-C)" in out.err
    assert "per-image scores" not in out.err


def test_compare_reports_an_ambiguous_prefix(recorded, xb):
    ids = _runs(recorded)
    prefix = ids[0][:4]  # the year: every run matches
    out = xb("compare", prefix, ids[1])
    assert out.code == 2 and out.err.count("\n") == 1, out.err
    assert f"ambiguous: '{prefix}' matches {', '.join(ids)} (give more characters)" in out.err
    assert xb("compare", ids[0][:-2], ids[1]).code == 0  # a unique prefix is enough


def test_a_report_that_cannot_be_written_is_a_one_line_error(recorded, monkeypatch):
    import errno
    from pathlib import Path

    from xraybench import html_report as report
    from xraybench.errors import XRayBenchError

    real = Path.write_text

    def full_disk(self, *args, **kw):
        if self.suffix == ".md":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(XRayBenchError, match=r"cannot write report .*r\.md \(No space left on device\)") as exc:
        report.write(ResultStore(recorded / "results"), recorded / "r.html")
    assert "\n" not in str(exc.value)


def _scored(store, model, seed, shift, val_at=None, **fields):
    """A done run saved with validation scores (an ensemble needs them); ``val_at``: its metrics at
    the validation threshold are taken at that threshold (else at 0.5, as make_record does)."""
    from xraybench.metrics import evaluate

    record, scores = make_record(model, seed, accuracy_shift=shift, n=120)
    scores.update(val_ids=[f"v{i}" for i in range(30)], val_labels=[i % 2 for i in range(30)],
                  val_scores=[0.2 + 0.6 * (i % 2) for i in range(30)])
    if val_at is not None:
        record["metrics_at_val_threshold"] = evaluate(np.asarray(scores["test_labels"]),
                                                      np.asarray(scores["test_scores"]), val_at)
    record.update(fields)
    store.save(record, scores)
    return record["run_id"]


def test_glance_and_leaderboard_name_their_thresholds_and_why_their_order_differs(tmp_path, monkeypatch, xb):
    store = ResultStore(tmp_path / "results")
    _scored(store, "steady", 1, 0.1)
    # scores 0.25 too low: poor at 0.5, perfect at its validation threshold
    _scored(store, "shifted", 1, -0.3, val_at=0.2, command="xraybench run --model shifted")
    monkeypatch.chdir(tmp_path)
    out = xb("report", "--results", str(tmp_path / "results"), "--output", "r[bold].html", env={"COLUMNS": "40"})
    assert out.code == 0, out.err
    # the paths absolute, whole however narrow the terminal, and as named: "[bold]" is no markup
    assert out.out == f"wrote {tmp_path / 'r[bold].html'} and {tmp_path / 'r[bold].md'}\n"
    md, page = (tmp_path / "r[bold].md").read_text(), (tmp_path / "r[bold].html").read_text()
    glance = md[md.index("## Results at a glance, at the threshold chosen on validation\n"):]
    assert glance.index("| shifted |") < glance.index("| steady |")
    board = md[md.index("## Leaderboard, at threshold 0.5\n"):]
    assert board.index("| steady |") < board.index("| shifted |")
    assert ("The leaderboard below is at threshold 0.5, so its order differs: there, a model whose validation-chosen "
            "threshold is far from 0.5 loses accuracy; shifted 32px, #1 here, is #2 of 2 there") in md
    assert "<h2>Results at a glance, at the threshold chosen on validation</h2>" in page
    assert "<h2>Leaderboard, at threshold 0.5</h2>" in page and "is #2 of 2 there" in page
    # "How each row was produced" is in both, its commands as code
    assert "<h3>How each row was produced</h3>" in page and "<code>xraybench run --model shifted</code>" in page
    assert "### How each row was produced" in md and "| `xraybench run --model shifted` |" in md
    same = ResultStore(tmp_path / "same")  # ranked alike at both thresholds: nothing to explain
    _scored(same, "steady", 1, 0.1)
    _scored(same, "weaker", 2, 0.0)
    assert xb("report", "--results", str(tmp_path / "same"), "--output", "s.html").code == 0
    assert "order differs" not in (tmp_path / "s.md").read_text()


def test_report_data_and_environment_are_per_data_set_and_per_row(tmp_path, xb):
    store = ResultStore(tmp_path / "results")
    machines = {"keras": {"kind": "keras", "environment": {"keras": "3.1", "backend": "jax", "jax": "0.4",
                                                           "accelerator": "GPU X"}},
                "sklearn": {"kind": "generic", "environment": {"cpu": {"model": "CPU Y", "cores": 2}}}}
    for seed, (machine, fingerprint) in enumerate((("keras", "a" * 64), ("sklearn", "a" * 64), ("keras", "b" * 64)), 1):
        record, scores = make_record("m", seed, fingerprint=fingerprint)
        counts = {"train": {"NORMAL": 10 if fingerprint[0] == "a" else 30, "PNEUMONIA": 30},
                  "test": {"NORMAL": 20, "PNEUMONIA": 40}}
        record.update(machines[machine], epochs_run=11, image_size=30 + seed,
                      data={"fingerprint": fingerprint, "dataset": f"set {fingerprint[0]}", "split_counts": counts})
        store.save(record, scores)
    out = xb("report", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "r.html"))
    assert out.code == 0, out.err
    md = (tmp_path / "r.md").read_text()
    data, environment = md[md.index("## Data"):md.index("## Environment")], md[md.index("## Environment"):]
    assert "| set a | aaaaaaaaaaaa | train 10 / 30; test 20 / 40 | - | 2 |" in data
    assert "| set b | bbbbbbbbbbbb | train 30 / 30; test 20 / 40 | - | 1 |" in data and "{" not in data
    lines = {line.split(" | ")[0]: set(line.split(" | ")[1].rstrip(" |").split(", ")) for line in environment.splitlines()[4:]}
    assert lines == {"| keras 3.1 / jax 0.4 on GPU X": {"m 31px", "m 33px"},
                     "| scikit-learn ? on CPU (CPU Y, 2 cores)": {"m 32px"}}
    assert "| 11 |" in md and "11.0" not in md  # whole epochs as whole numbers


def test_an_ensemble_shows_no_none(tmp_path, xb):
    store = ResultStore(tmp_path / "results")
    ids = [_scored(store, "a", 1, 0.0, precision="float32"), _scored(store, "b", 1, 0.05, image_size=28)]
    assert xb("ensemble", *ids, "--results", str(tmp_path / "results")).code == 0
    from xraybench import html_report

    [ensemble] = [r for r in store.load().records if r.members]
    assert ensemble.image_size is None and html_report._label(ensemble) == "ensemble a default 32px + b default 28px seed 1"
    out = xb("report", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "r.html"))
    assert out.code == 0, out.err
    assert "None" not in (tmp_path / "r.md").read_text() and "None" not in (tmp_path / "r.html").read_text()
    board = xb("leaderboard", "--format", "json", "--results", str(tmp_path / "results"))
    assert board.code == 0 and '"None"' not in board.out  # where an ensemble's missing precision used to read "None"


def test_the_explain_command_of_a_run_without_a_shortcut_check_is_code_in_both_formats():
    from xraybench.explain import report as explain_report
    from xraybench.records import coerce

    record = coerce(make_record("m", 1)[0])
    section = explain_report.Section(runs=[explain_report.RunPanel(record, 0.5, [], [])], with_model=1)
    assert f"not measured yet: `xraybench explain {record.run_id}` measures" in explain_report.render_markdown(section)
    assert f"<code>xraybench explain {record.run_id}</code>" in explain_report.render_html(section)


def test_training_curves_are_one_figure_a_row_with_every_seed(tmp_path, monkeypatch):
    """A row of three seeded Keras runs draws one training-curves figure with the three runs, not
    three: a report of many seeded rows stays readable (and was 46 figures for 23 rows)."""
    from xraybench import html_report as report
    from xraybench.results import ResultStore

    store = ResultStore(tmp_path / "results")
    history = {"loss": [0.6, 0.4], "val_loss": [0.5, 0.45], "val_auc": [0.9, 0.93], "val_accuracy": [0.8, 0.85]}
    ids = [_scored(store, "cnn", seed, 0.1, history=history, kind="keras", epochs_run=2) for seed in (1, 2, 3)]
    _scored(store, "forest", 1, 0.0)  # no history: no figure
    drawn = []
    import matplotlib.pyplot as plt

    def png(fig):  # what the real _png does besides encoding: close the figure
        drawn.append(fig._suptitle and fig._suptitle.get_text())
        plt.close(fig)
        return "png"

    monkeypatch.setattr(report, "_png", png)
    ctx = report.build(store)
    titled = [title for title in drawn if title]  # ROC, PR, confusion and reliability have none
    assert len(ctx["histories"]) == 1 and len(drawn) == 5 and len(titled) == 1
    assert titled == ["cnn 32px: 3 runs, seeds 1, 2, 3"] and ctx["histories"][0][1] == ids
