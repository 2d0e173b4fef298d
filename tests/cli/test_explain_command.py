"""``xraybench explain``, the shortcut check in the record and the report's "Where the models look"
section, end to end on tiny generated data (xraybench/explain/jobs.py, report.py, cli/explain.py)."""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from proctools import one_line_error, run_cli
from recordfactory import TRAINED_MODELS as MODELS, TRAINED_SIZE, make_record

from xraybench import records, saved_model
from xraybench.cli import build_parser, main
from xraybench.errors import XRayBenchError
from xraybench.explain import jobs, report
from xraybench.explain.overlay import MARKER, written_by_us
from xraybench.explain.run import METHODS, explain
from xraybench.records import InvalidRecord, coerce, parse
from xraybench.results import ResultStore
from xraybench.synthetic import make_kaggle_tree

HEAVY = ("keras", "tensorflow", "jax", "torch")


# --- LoadedModel.keras_inputs -------------------------------------------------------------------------


def test_keras_inputs_are_the_trainers_own_scaling_or_equalisation():
    """The network's inputs come from the Keras trainer's own batch function (training/batches.py):
    pixels / 255, or the per-image equalisation when the run was trained with it."""
    pytest.importorskip("keras")
    from xraybench.training.batches import equalized
    from xraybench.training.keras import FittedKeras

    record = parse(make_record()[0])
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    for equalize, expected in ((False, pixels.astype(np.float32) / 255.0), (True, equalized(pixels))):
        fitted = FittedKeras(None, None, 32, equalize=equalize)
        loaded = saved_model.LoadedModel(record, Path("m.keras"), fitted.predict_proba, object(), fitted.inputs)
        inputs = loaded.keras_inputs(pixels)
        assert inputs.dtype == np.float32 and np.allclose(inputs, expected, atol=1e-7)
    with pytest.raises(XRayBenchError, match="takes uint8 pixels"):
        loaded.keras_inputs(pixels.astype(np.float32))
    sklearn_like = saved_model.LoadedModel(record, Path("m.skops"), lambda x: np.zeros(len(x)))
    with pytest.raises(XRayBenchError, match="is not a Keras network"):
        sklearn_like.keras_inputs(pixels)


@pytest.mark.slow
def test_gradcam_through_a_loaded_keras_run_and_auto_picks_by_model(trained):
    """A trained Keras CNN loaded from its file: its network on keras_inputs gives the run's scores,
    Grad-CAM through it gives finite maps, and auto picks Grad-CAM; for the scikit-learn run, occlusion."""
    pytest.importorskip("keras")
    data, results, ids = trained
    store = ResultStore(results)
    for model in MODELS:
        record = coerce(store.get(ids[model]))
        loaded = saved_model.load_model(store, record)
        _, images = saved_model.read_images([data / "test"], record)
        result = explain(loaded, images[:6])
        assert result.maps.shape == (6, TRAINED_SIZE, TRAINED_SIZE) and np.isfinite(result.maps).all()
        if model == "baseline_cnn":
            assert result.method == "gradcam" and result.maps.min() >= 0 and result.maps.max() <= 1
            direct = np.asarray(loaded.keras_model(loaded.keras_inputs(images[:6]), training=False)).reshape(-1)
            if not record.params.get("tta"):  # shift averaging scores the mean over shifts: the network alone differs
                assert np.allclose(direct, loaded.scores(images[:6]), atol=1e-5)
        else:
            assert loaded.keras_model is None and result.method == "occlusion"


# --- the command ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_explain_writes_overlays_and_records_the_shortcut_check(trained_copy, tmp_path, capsys):
    _, results, ids = trained_copy
    store = ResultStore(results)
    run_id = ids["logreg_pixels"]
    before = store.get(run_id)
    code, out, err = run_cli(capsys, "explain", run_id, "--results", str(results))  # occlusion, the default
    assert code == 0, err
    folder = results / "explanations" / run_id
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 24 and all(written_by_us(p) for p in pngs) and (folder / MARKER).is_file()
    assert f"to {folder}" in out and "shortcut check (occlusion" in out and "border " in out and "recorded in" in out
    after = store.get(run_id)
    entry = after["shortcut_check"]["occlusion"]
    assert entry["n_images"] + entry["n_without_saliency"] == 24 == entry["test_images"]
    assert entry["sample_seed"] is None and entry["method"] == "occlusion"
    assert 0 <= entry["border_share"] <= 1 and entry["uniform_border_share"] == pytest.approx(0.4375)
    assert {k: v for k, v in after.items() if k != "shortcut_check"} == \
        {k: v for k, v in before.items() if k != "shortcut_check"}  # nothing else in the record changed
    jsonschema.validate(json.loads((results / "runs" / f"{run_id}.json").read_text()), records.json_schema())

    # a limited run: a fixed, seeded sample, kept as such; the same command again replaces its own PNGs
    code, out, err = run_cli(capsys, "explain", run_id, "--method", "occlusion", "--limit", "5", "--results", str(results))
    assert code == 0, err
    assert "5 of the 24 test images (a fixed sample, seed 0)" in out
    entry = store.get(run_id)["shortcut_check"]["occlusion"]
    assert entry["sample_seed"] == jobs.SAMPLE_SEED and entry["n_images"] + entry["n_without_saliency"] == 5

    # Grad-CAM for the Keras run joins, never replaces, another method's entry
    keras_id = ids["baseline_cnn"]
    assert run_cli(capsys, "explain", keras_id, "--method", "occlusion", "--limit", "4", "--results", str(results))[0] == 0
    code, out, err = run_cli(capsys, "explain", keras_id, "--method", "auto", "--results", str(results),
                          "--out", str(tmp_path / "cams"))
    assert code == 0, err
    assert "gradcam overlays" in out and len(list((tmp_path / "cams").glob("*.png"))) == 24
    assert set(store.get(keras_id)["shortcut_check"]) == {"occlusion", "gradcam"}


@pytest.mark.slow
def test_explain_given_paths_writes_overlays_and_leaves_the_record(trained_copy, tmp_path, capsys):
    data, results, ids = trained_copy
    run_id = ids["logreg_pixels"]
    before = (results / "runs" / f"{run_id}.json").read_bytes()
    code, out, err = run_cli(capsys, "explain", run_id, str(data / "test" / "NORMAL"), "--limit", "3",
                          "--out", str(tmp_path / "o"), "--results", str(results))
    assert code == 0, err
    assert len(list((tmp_path / "o").glob("*.png"))) == 3 and "3 image(s)" in out and "recorded" not in out
    assert (results / "runs" / f"{run_id}.json").read_bytes() == before


@pytest.mark.slow
def test_explain_one_line_errors(trained_copy, tmp_path, capsys):
    data, results, ids = trained_copy
    run_id = ids["logreg_pixels"]
    r = ("--results", str(results))
    assert "no single run matches 'nope'" in one_line_error(*run_cli(capsys, "explain", "nope", *r))

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert str(bad) in one_line_error(*run_cli(capsys, "explain", run_id, str(bad), *r))

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "holds files xraybench did not write" in one_line_error(
        *run_cli(capsys, "explain", run_id, "--out", str(foreign), *r))
    assert (foreign / "notes.txt").read_text() == "mine" and not (foreign / MARKER).exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is not a folder" in one_line_error(*run_cli(capsys, "explain", run_id, "--out", str(a_file / "sub"), *r))

    other = make_kaggle_tree(tmp_path / "other", seed=5)
    err = one_line_error(*run_cli(capsys, "explain", run_id, "--data", str(other), *r))
    assert "is not the data run" in err and "fingerprint" in err
    assert "does not exist" in one_line_error(*run_cli(capsys, "explain", run_id, "--data", str(tmp_path / "gone"), *r))

    model = results / "runs" / f"{run_id}.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    assert "is not the one recorded" in one_line_error(*run_cli(capsys, "explain", run_id, *r))

    record, scores = make_record("no_model_here")
    ResultStore(results).save(record, scores)
    assert "has no model file" in one_line_error(*run_cli(capsys, "explain", record["run_id"], *r))
    assert not (results / "explanations").exists(), "no failed command wrote anything"


@pytest.mark.slow
def test_a_record_xraybench_may_not_rewrite_is_one_line_before_any_work(trained_copy, tmp_path, capsys):
    """A record that is a link (to a file somewhere else) is not xraybench's to rewrite: the command
    says so before it explains anything; --no-record writes the overlays and leaves it alone."""
    _, results, ids = trained_copy
    run_id = ids["logreg_pixels"]
    path = results / "runs" / f"{run_id}.json"
    elsewhere = tmp_path / "elsewhere.json"
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    r = ("--results", str(results))
    assert "was not written by xraybench (or is a link)" in one_line_error(*run_cli(capsys, "explain", run_id, *r))
    assert not (results / "explanations").exists()
    code, out, err = run_cli(capsys, "explain", run_id, "--no-record", "--limit", "2", *r)
    assert code == 0, err
    assert "recorded" not in out
    assert elsewhere.read_bytes() == before and path.is_symlink()


@pytest.mark.slow
def test_explain_and_report_import_no_backend_in_their_own_process(trained_copy, tmp_path):
    """The models run in a child process: the command's and the report's own processes import no
    Keras or backend, even while drawing Grad-CAM maps of a Keras run."""
    _, results, ids = trained_copy
    script = ("import sys; from xraybench.cli import main; code = main(sys.argv[1:]); "
              f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(code)")
    for args in (["explain", ids["baseline_cnn"], "--limit", "3"],
                 ["report", "--output", str(tmp_path / "r.html")]):
        out = subprocess.run([sys.executable, "-c", script, *args, "--results", str(results)], capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.splitlines()[-1] == "LOADED []"


# --- the report -----------------------------------------------------------------------------------------


class _Sections(HTMLParser):
    """The report's explanation section: run headings, case images, shortcut tables, hard-case rows."""

    def __init__(self):
        super().__init__()
        self.runs, self.case_images, self.shortcut_rows, self.hard_rows, self._in = [], [], 0, 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h3" and attrs.get("class") == "explained":
            self.runs.append("")
        if tag == "figure" and attrs.get("class") == "case":
            self._in = "case"
        if tag == "img" and self._in == "case":
            self.case_images.append(attrs["src"])
        if tag == "table":
            self._in = attrs.get("class")
        if tag == "tr" and self._in == "shortcut":
            self.shortcut_rows += 1
        if tag == "tr" and self._in == "hard":
            self.hard_rows += 1

    def handle_endtag(self, tag):
        if tag in ("figure", "table"):
            self._in = None


@pytest.mark.slow
def test_run_explain_report_end_to_end(trained_copy, tmp_path, capsys):
    """run -> explain -> report: the report shows each run with a model, its confident cases with
    their maps, the shortcut shares explain stored, and the hard cases with thumbnails."""
    _, results, ids = trained_copy
    assert run_cli(capsys, "explain", ids["logreg_pixels"], "--results", str(results))[0] == 0
    code, out, err = run_cli(capsys, "report", "--results", str(results), "--output", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "Where the models look" in html and "text markers" in html
    seen = _Sections()
    seen.feed(html)
    assert len(seen.runs) == 2
    assert len(seen.case_images) >= 6 and all(s.startswith("data:image/png;base64,") for s in seen.case_images)
    assert seen.shortcut_rows == 2  # header + the occlusion entry of the one run explain measured
    assert f"xraybench explain {ids['baseline_cnn']}" in html  # the other says how to measure it
    assert "Hard cases" in html
    md = (tmp_path / "r.md").read_text()
    assert "## Where the models look" in md

    code, out, err = run_cli(capsys, "report", "--results", str(results), "--output", str(tmp_path / "r2.html"),
                          "--explain-runs", "0")
    assert code == 0, err
    assert "Maps are off" in (tmp_path / "r2.html").read_text()


# --- pieces, without a model -------------------------------------------------------------------------------


def test_confident_cases_are_the_farthest_from_the_threshold_on_each_side():
    ids = ["a", "b", "c", "d", "e", "f"]
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.9, 0.1, 0.2, 0.95, 0.6, 0.45]
    errors, correct = report.confident_cases(ids, labels, scores, threshold=0.5, k=2)
    assert [c.image_id for c in errors] == ["a", "c"] and [c.image_id for c in correct] == ["d", "b"]
    assert all(c.called != c.label for c in errors) and all(c.called == c.label for c in correct)
    errors, _ = report.confident_cases(ids, labels, scores, threshold=0.4, k=3)  # f (0.45) is called PNEUMONIA there
    assert [c.image_id for c in errors] == ["a", "c", "e"]


def _store_with(tmp_path, runs, source=None):
    """A results folder of generated records: (model, {id: (label, score)}) each, one data set."""
    store = ResultStore(tmp_path / "results")
    for model, scored in runs:
        record, _ = make_record(model)
        if source is not None:
            record["data"]["source"] = str(source)
        ids = list(scored)
        store.save(record, {"test_ids": ids, "test_labels": [scored[i][0] for i in ids],
                            "test_scores": [scored[i][1] for i in ids]})
    return store


def test_hard_cases_are_the_images_most_runs_call_wrongly(tmp_path):
    store = _store_with(tmp_path, [
        ("m1", {"x": (0, 0.9), "y": (1, 0.2), "z": (1, 0.9), "w": (0, 0.6)}),
        ("m2", {"x": (0, 0.8), "y": (1, 0.7), "z": (1, 0.9), "w": (0, 0.7)}),
        ("m3", {"x": (0, 0.7), "y": (1, 0.3), "z": (1, 0.8), "w": (0, 0.1)}),
    ])
    loaded = store.load(full=True).records
    (panel,) = report.hard_cases(loaded, store.scores)
    assert panel.runs == 3 and panel.hard == 3
    assert [(c.image_id, c.wrong, c.runs) for c in panel.cases] == [("x", 3, 3), ("y", 2, 3), ("w", 2, 3)]
    # y and w: 2 of 3 wrong; y's mean 0.4 (PNEUMONIA) lies farther on the wrong side than w's 0.47 (NORMAL)
    assert panel.cases[0].mean_score == pytest.approx(0.8)
    (alone,) = report.hard_cases(loaded[:1], store.scores)
    assert alone.cases == [] and "at least 2" in alone.note


def test_the_section_escapes_what_records_and_scores_hold_and_starts_no_child(tmp_path, monkeypatch):
    """Without a model file nothing is started (no child, no backend); every text from a record or
    a scores file is escaped; a thumbnail id that leads out of the data folder is not followed."""
    from PIL import Image

    nasty = '<img src=x onerror=alert(1)>'
    data = tmp_path / "data"
    data.mkdir()
    for path in (data / "inside.png", tmp_path / "secret.png"):
        Image.fromarray(np.full((20, 20), 128, dtype=np.uint8)).save(path)
    (data / "link.png").symlink_to(tmp_path / "secret.png")
    out_ids = ("../secret.png", str(tmp_path / "secret.png"), "link.png")
    scored = {nasty: (0, 0.9), "inside.png": (1, 0.1), **{i: (0, 0.95) for i in out_ids}}
    store = _store_with(tmp_path, [("m1", scored), ("m2", scored)], source=data)

    def no_child(*args, **kwargs):
        raise AssertionError("no map is drawn without a model file")

    monkeypatch.setattr(jobs.MapMaker, "maps", no_child)
    loaded = store.load(full=True).records
    section = report.build(store, loaded, loaded, store.scores)
    html = report.render_html(section)
    assert nasty not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "No run here has its model file" in html
    thumbs = {c.image_id: c.thumbnail for c in section.hard[0].cases}
    assert set(thumbs) == {nasty, "inside.png", *out_ids}
    assert thumbs["inside.png"] is not None and all(thumbs[i] is None for i in (*out_ids, nasty))
    md = report.render_markdown(section)
    assert md.count(nasty) == md.count(f"`{nasty}`") >= 1  # in Markdown only inside code spans (md_code): inert


def test_hard_cases_on_the_built_in_copy_have_thumbnails_from_its_npz(tmp_path, monkeypatch):
    """The built-in copy is one .npz, not a folder of images: its hard cases showed empty cells."""
    from xraybench.data import builtin

    names = [str(n) for n in builtin.load_arrays()["names"][:2]]
    scored = {names[0]: (0, 0.9), names[1]: (1, 0.1), "not/in/the/copy.jpeg": (0, 0.9)}
    store = _store_with(tmp_path, [("m1", scored), ("m2", scored)], source=builtin.NPZ)
    monkeypatch.setattr(jobs.MapMaker, "maps", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no child")))
    loaded = store.load(full=True).records
    thumbs = {c.image_id: c.thumbnail for c in report.build(store, loaded, loaded, store.scores).hard[0].cases}
    assert thumbs[names[0]] and thumbs[names[1]] and thumbs["not/in/the/copy.jpeg"] is None


def test_a_model_that_hangs_costs_the_report_one_panel_not_the_report(xray_data, xraybench_env, test_plugins,
                                                                     monkeypatch):
    """A saved model whose predictions hang (it trained and saved well) is given up after
    ``MAP_SECONDS``: its panel says why, and the section is built."""
    results = xraybench_env / "results"
    assert main(["run", "--model", "xb_good", "--data", str(xray_data), "--image-size", "16", "--results",
                 str(results)]) == 0
    store = ResultStore(results)
    loaded = store.load(full=True).records
    assert loaded[0].model_file is not None
    monkeypatch.setenv("XB_PREDICT_HANGS", "1")  # inherited by the report's map child
    monkeypatch.setattr(report, "MAP_SECONDS", 3.0)
    section = report.build(store, loaded, loaded, store.scores)
    assert len(section.runs) == 1
    assert section.runs[0].method is None and "no result within 3s" in section.runs[0].note, section.runs[0].note


def test_a_damaged_shortcut_check_is_named_and_the_schema_has_it():
    record, _ = make_record()
    good = {"border_share": 0.4, "corner_share": 0.05, "lung_share": 0.4, "uniform_border_share": 0.4375,
            "uniform_corner_share": 0.0625, "uniform_lung_share": 0.44, "method": "occlusion", "n_images": 10,
            "n_without_saliency": 0, "test_images": 10, "sample_seed": None}
    jsonschema.validate(parse({**record, "shortcut_check": {"occlusion": good}}).to_dict(), records.json_schema())
    for bad, why in (({"lime": good}, "'lime' key"), ({"occlusion": {**good, "border_share": 2}}, "'border_share'"),
                     ({"occlusion": {**good, "n_images": -1}}, "'n_images'"), ({"occlusion": 3}, "expected an object")):
        with pytest.raises(InvalidRecord, match=why):
            parse({**record, "shortcut_check": bad})


def test_the_sample_is_fixed_and_the_cli_names_what_the_code_does():
    assert np.array_equal(jobs.sample(50, 7), jobs.sample(50, 7)) and len(set(jobs.sample(50, 7))) == 7
    assert list(jobs.sample(50, 7)) == sorted(jobs.sample(50, 7)) and list(jobs.sample(5, 9)) == list(range(5))
    parser = build_parser()  # the options offer what the code does
    assert [parser.parse_args(["explain", "r", "--method", m]).method for m in METHODS] == list(METHODS)
    assert parser.parse_args(["report"]).explain_runs == report.DEFAULT_RUNS
