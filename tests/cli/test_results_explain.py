"""Results that explain themselves (issue 23): the first result beside the seed's, a reference on
every data set, the backend named, the same command never trained twice, and the small ones."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from recordfactory import make_record
from rich.console import Console

from xraybench import leaderboard as lb
from xraybench import repeats
from xraybench.cli import main
from xraybench.records import coerce
from xraybench.results import ResultStore

BUILTIN = "b" * 64  # a stand-in fingerprint for the built-in copy
FULL = "f" * 64


def _out(width: int = 100) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, color_system=None), buffer


def _done(model="m", seed=1, kind="keras", backend="tensorflow", **changes):
    """A finished run as `run` records it: what the report reads (validation metrics, environment)."""
    record, scores = make_record(model, seed)
    record.update(kind=kind, val_metrics=record["metrics"], val_threshold={"value": 0.5, "method": "youden_j_on_validation"},
                  precision="float32", environment={"backend": backend, "tensorflow": "2.99.0", "jax": "0.9.9",
                                                    "scikit-learn": "1.9.9", "xraybench": "0.1.0"},
                  params={"recipe": "seed", "epochs": 20}, data={"fingerprint": FULL, "val_fraction": 0.15,
                                                                  "source": "/data/chest_xray"})
    record.update(changes)
    return record, scores


# --- 1. the first result answers the first question ---------------------------------------------


def test_run_report_shows_this_run_beside_the_seed_and_says_why_they_differ():
    from xraybench.terminal_report import print_run_report

    record, _ = _done()
    console, out = _out()
    print_run_report(coerce(record), console)
    text = out.getvalue()
    m, v = record["metrics"], record["metrics_at_val_threshold"]
    assert "this run at 0.5" in text and f"this run at {v['threshold']:.3f} (val)" in text
    assert f"{m['accuracy']:.3f}" in text and "seed CNN (published)" in text and "0.86" in text and "0.90" in text
    assert "never on test" in text
    flat = " ".join(text.split())
    assert "appears to have early-stopped on its test set" in flat and "patient-grouped" in flat and "shifted" in flat
    assert "docs/results.md" in flat and "Why your first result differs from the seed's 0.86" in flat
    assert (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text().count(
        "## Why your first result differs from the seed's 0.86") == 1

    console, out = _out()
    print_run_report(coerce(record), console, explain=False, recorded=True)  # a batch says why once; a recorded run says so
    assert "early-stopped" not in out.getvalue() and "seed CNN (published)" in out.getvalue()
    assert "(recorded result)" in out.getvalue()


def test_leaderboard_footer_says_why_in_two_lines_at_80_columns():
    rows = lb.build_rows([make_record("baseline_cnn", s)[0] for s in (1, 2)])
    console, out = _out(80)
    lb.render_table(rows, lb.published_rows(), "t", console=console)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Below the seed's 0.86?"))
    assert lines[start + 1].rstrip().endswith("docs/results.md")  # two lines, the doc last
    assert "early-stopped on its test set" in " ".join(lines[start:start + 2])
    console, out = _out(80)
    lb.render_table(rows, [], "t", console=console)  # without the seed's row there is nothing to set beside it
    assert "Below the seed's" not in out.getvalue()


# --- 2. a reference on every data set --------------------------------------------------------------


def _sized(model, seed, size, fingerprint, **kw):
    record, scores = make_record(model, seed, fingerprint=fingerprint, **kw)
    record["image_size"] = size
    record["data"] = {"fingerprint": fingerprint, "source": f"/data/{fingerprint[:4]}", "dataset": f"set {fingerprint[:4]}"}
    return record, scores


def test_the_reference_is_compared_at_the_size_it_ran_at_on_each_data_set(tmp_path):
    pairs = [_sized("baseline_cnn", s, 28, BUILTIN) for s in (1, 2)]  # the built-in copy: only 28 px there
    pairs += [_sized("other", s, 28, BUILTIN, accuracy_shift=0.1, reference=False) for s in (1, 2)]
    pairs += [_sized("baseline_cnn", 1, 32, FULL), _sized("baseline_cnn", 1, 64, FULL, accuracy_shift=0.05)]
    pairs += [_sized("other", 1, 64, FULL, accuracy_shift=0.1, reference=False)]
    scores = {r["run_id"]: s for r, s in pairs}
    rows = {(r.model, r.image_size): r for r in lb.build_rows([r for r, _ in pairs], scores_loader=scores.get)}

    small, ref28 = rows[("other", 28)], rows[("baseline_cnn", 28)]
    assert small.delta_accuracy == pytest.approx(small.estimates["accuracy"] - ref28.estimates["accuracy"])
    assert small.p_value is not None and small.reference_size == 28
    assert ref28.is_reference and lb.p_cell(ref28) == "ref"
    # On the full data the reference ran at its own 32 px: a 64 px row is compared with that one.
    big = rows[("other", 64)]
    assert big.delta_accuracy == pytest.approx(big.estimates["accuracy"] - rows[("baseline_cnn", 32)].estimates["accuracy"])
    text = lb.footnote(list(rows.values()))
    assert "at its own 32 px" in text and "28 px on set bbbb" in text
    assert lb.reference_gaps(list(rows.values())) == []  # every "-"... there is none


def test_one_model_s_rows_are_still_compared_with_the_reference():
    pairs = [_sized("baseline_cnn", 1, 28, BUILTIN), _sized("other", 1, 28, BUILTIN, accuracy_shift=0.1, reference=False)]
    scores = {r["run_id"]: s for r, s in pairs}
    [row] = lb.build_rows([r for r, _ in pairs], model="other", scores_loader=scores.get)  # `leaderboard --model other`
    assert row.delta_accuracy is not None and row.p_value is not None
    assert lb.reference_gaps([row]) == []


def test_a_data_set_without_a_reference_run_names_the_command_that_makes_one(tmp_path):
    records = [_sized("baseline_cnn", 1, 32, FULL)[0], _sized("other", 1, 28, BUILTIN, reference=False)[0]]
    rows = lb.build_rows(records)
    other = next(r for r in rows if r.model == "other")
    assert other.delta_accuracy is None
    [line] = lb.reference_gaps(rows)
    assert "1 row on set bbbb" in line and "`xraybench run --model baseline_cnn --data /data/bbbb` makes one" in line
    console, out = _out(250)
    lb.render_table(rows, [], "t", console=console)
    assert "`xraybench run --model baseline_cnn --data /data/bbbb` makes one" in out.getvalue()
    markdown = lb.render_markdown(rows, [], "t")  # the line too, as literal Markdown text
    assert any("makes one" in line and "bbbb" in line and "xraybench run" in line for line in markdown.splitlines())


def test_on_the_builtin_copy_the_command_needs_no_data_flag(monkeypatch):
    """Where no data is configured the built-in copy is the default, so the command needs no --data
    (CI sets XRAYBENCH_DATA to the real data: this test must not depend on it)."""
    from xraybench.data import builtin

    monkeypatch.delenv("XRAYBENCH_DATA", raising=False)
    row = lb.Row(model="m", variant="default", runs=1, runs_text="1", image_size=28, estimates={}, sds={},
                 data_name=builtin.NAME, data_source=str(builtin.NPZ))
    assert lb.reference_command("ref_model", row) == "`xraybench run --model ref_model`"  # no user data here


def test_without_any_reference_run_the_footer_names_the_declared_reference():
    rows = lb.build_rows([make_record("a", 1, reference=False)[0]])
    [line] = lb.reference_gaps(rows)
    assert "no run of the reference model baseline_cnn (declared by its plugin)" in line
    assert "`xraybench run --model baseline_cnn" in line


def test_a_p_value_that_could_not_be_computed_says_why(tmp_path):
    pairs = [make_record("baseline_cnn", 1), make_record("other", 1, reference=False)]
    scores = {pairs[0][0]["run_id"]: pairs[0][1]}  # the other run's scores are gone
    rows = lb.build_rows([r for r, _ in pairs], scores_loader=scores.get)
    assert lb.reference_gaps(rows) == ['p is "-" for 1 row: per-image scores missing or damaged.']
    rows = lb.build_rows([r for r, _ in pairs], scores_loader=scores.get, max_paired_rows=1)
    assert any("more than 1 rows" in line for line in lb.reference_gaps(rows))


# --- 4. the backend is named on every run's summary line -------------------------------------------


@pytest.mark.parametrize("kind, backend, expected", [
    ("keras", "jax", "backend jax 0.9.9, precision float32"),
    ("keras", "tensorflow", "backend tensorflow 2.99.0, precision float32"),
    ("generic", "tensorflow", "scikit-learn 1.9.9 (no Keras backend), precision float32"),
])
def test_the_summary_line_names_backend_and_precision(kind, backend, expected):
    from xraybench.terminal_report import print_run_report

    record, _ = _done(kind=kind, backend=backend)
    console, out = _out(200)
    print_run_report(coerce(record), console)
    assert expected in out.getvalue()


# --- 5. same command, same run ------------------------------------------------------------------


def _planned(record: dict, **changes):
    """A prepared run (as run_plan makes one) that repeats ``record``, with ``changes`` applied."""
    from xraybench.runner import RunRequest

    spec = SimpleNamespace(name=record["model"], kind=record["kind"], distribution=record["distribution"],
                           version=record["version"])
    request = RunRequest(model=record["model"], seed=record["seed"], precision=changes.pop("precision", "auto"),
                         target_sensitivity=changes.pop("target_sensitivity", None))
    dataset = SimpleNamespace(fingerprint=record["data"]["fingerprint"], image_size=record["image_size"],
                              channels=record["channels"], val_fraction=record["data"]["val_fraction"])
    return SimpleNamespace(spec=spec, request=request, dataset=dataset,
                           params=changes.pop("params", dict(record["params"])))


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(repeats, "auto_precision", lambda: "float32")
    record, _ = _done()
    from xraybench.records import coerce

    return record, coerce(record)


def test_a_recorded_done_run_with_the_same_identity_is_found(recorded, monkeypatch):
    record, parsed = recorded
    assert repeats.find_recorded(_planned(record), [parsed]).run_id == record["run_id"]
    # Summaries (the results folder's index) have no parameters: the whole record is read to compare them.
    summary = repeats.coerce({k: v for k, v in record.items() if k != "params"})
    assert repeats.find_recorded(_planned(record), [summary], lambda run_id: parsed).run_id == record["run_id"]
    # Summaries keep the recipe of params (results._summary): still partial, still read in full.
    partial = repeats.coerce({**summary.to_dict(), "params": {"recipe": "seed"}})
    assert repeats.find_recorded(_planned(record), [partial], lambda run_id: parsed).run_id == record["run_id"]


@pytest.mark.parametrize("change", ["recipe", "seed", "backend", "version", "precision", "fingerprint", "status",
                                    "target"])
def test_anything_that_changes_the_run_is_not_a_repeat(recorded, monkeypatch, change):
    record, parsed = recorded
    planned = _planned(record)
    if change == "recipe":
        planned = _planned(record, params={**record["params"], "recipe": "modern"})
    elif change == "seed":
        planned.request.seed += 1
    elif change == "backend":
        monkeypatch.setenv("KERAS_BACKEND", "jax")  # what backend.py would choose; nothing is imported
    elif change == "version":
        parsed.environment = {**parsed.environment, "xraybench": "0.0.9"}
    elif change == "precision":
        planned = _planned(record, precision="mixed_bfloat16")
    elif change == "fingerprint":
        planned.dataset.fingerprint = "e" * 64
    elif change == "status":
        parsed.status = repeats.RunStatus.INTERRUPTED
    elif change == "target":
        planned = _planned(record, target_sensitivity=0.9)
    assert repeats.find_recorded(planned, [parsed]) is None


def test_run_twice_trains_once_and_force_trains_anew(xray_data, test_plugins, tmp_path, capsys):
    results = tmp_path / "results"
    command = ["run", "--model", "xb_good", "--data", str(xray_data), "--image-size", "16", "--no-isolation",
               "--results", str(results)]
    assert main(command) == 0
    first = capsys.readouterr().out
    [done] = ResultStore(results).records()
    assert main(command) == 0
    again = capsys.readouterr().out
    assert len(ResultStore(results).records()) == 1
    flat = " ".join(again.split())
    assert f"recorded result: run {done['run_id']}" in flat and "--force trains anew" in flat
    assert "(recorded result)" in again and "recorded" in again.split("runs")[-1]
    assert "Why they differ" in first and "Why they differ" in again
    assert main(command + ["--force"]) == 0
    capsys.readouterr()
    assert len(ResultStore(results).records()) == 2
    [row] = lb.build_rows(ResultStore(results).load().records)
    assert row.runs == 1 and row.runs_text == "1" and row.repeats == 1 and len(row.run_ids) == 2
    assert main(command[:-2] + ["--seeds", "1", "1", "--results", str(tmp_path / "seeds")]) == 0
    assert len(ResultStore(tmp_path / "seeds").records()) == 1  # the repeat within one command too


def test_identical_repeats_count_once_and_other_versions_do_not():
    a, _ = _done(seed=1)
    b, _ = _done(seed=1)  # the same command again, trained with --force: a new id, the same identity
    c, _ = _done(seed=1, environment={**a["environment"], "xraybench": "0.2.0"})
    [row] = lb.build_rows([a, b])
    assert (row.runs, row.runs_text, row.repeats) == (1, "1", 1)
    [row] = lb.build_rows([a, b, c])
    assert (row.runs, row.runs_text) == (2, "2 (1 seed)")


# --- 9. the small ones --------------------------------------------------------------------------


def test_compare_says_p_below_0001_not_zero(tmp_path, capsys):
    from xraybench.cli.results import p_text

    assert p_text(0.0) == "p < 0.001" and p_text(0.0004) == "p < 0.001" and p_text(0.0123) == "p = 0.0123"
    store = ResultStore(tmp_path / "results")
    a, sa = make_record("a", 1, n=600, accuracy_shift=-0.3)
    b, sb = make_record("b", 1, n=600, accuracy_shift=0.2)
    store.save(a, sa)
    store.save(b, sb)
    assert main(["compare", a["run_id"], b["run_id"], "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "p < 0.001" in out and "p = 0.0000" not in out


def test_importances_from_few_trials_carry_a_caveat():
    import optuna

    from xraybench.cli.tune import importance_caveat

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert "from 2 complete trials" in importance_caveat(study) and "mostly chance" in importance_caveat(study)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=8)
    assert importance_caveat(study) == ""


def test_data_says_duplicates_are_counted_within_a_split_and_class(xray_data, capsys):
    assert main(["data", "--data", str(xray_data), "--image-size", "16"]) == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert "Duplicates in split+class" in flat or "split+class" in flat
    assert "within the same split and class" in flat and "across splits or classes are not counted" in flat


def test_models_shows_the_size_used_on_the_builtin_copy(capsys, monkeypatch):
    monkeypatch.delenv("XRAYBENCH_DATA", raising=False)  # the user data folder is a temporary one: built-in copy
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "28px (own 32) x1" in out and "the built-in 28 px copy" in out


def test_a_resume_says_its_epoch_and_which_timeout_applies(tmp_path, monkeypatch):
    from xraybench import checkpoints, run_plan
    from xraybench.records import RunRecord, RunStatus
    from xraybench.runner import RunRequest

    path = checkpoints.folder(tmp_path, "r1")
    checkpoints.create(path, "r1", {"model": "m"})
    (path / checkpoints.STATE).write_text(json.dumps({"epoch": 2, "history": {}}))
    saved = RunRequest(model="m", timeout=60.0, resume_from=str(path), resumed_from="r1")
    resumed = RunRecord(run_id="r1", model="m", status=RunStatus.INTERRUPTED)
    monkeypatch.setattr(run_plan, "resume_request", lambda *a: (saved, resumed))
    monkeypatch.setattr(run_plan, "prepare", lambda request, registry, datasets: SimpleNamespace(
        request=request, dataset=SimpleNamespace(fingerprint="x", source="d")))
    plan = run_plan.RunPlan(RunRequest(model="", timeout=7200.0), resume="r1")
    console, out = _out(200)
    [prepared] = plan.prepare(None, SimpleNamespace(root=tmp_path), console)
    assert prepared.request.timeout == 7200.0  # this command's, never the interrupted run's 60 s
    text = out.getvalue()
    assert "resuming run r1 from epoch 3 (2 epochs done)" in text
    assert "this command's --timeout applies, 7200s (2h 00m); the run started with --timeout 60s" in text


@pytest.mark.parametrize("argv", [["run", "--model", "no_such_model"], ["tune", "--model", "no_such_model"],
                                  ["run", "--model", "xb_good", "--data", "/no/such/data"]])
def test_a_command_that_fails_before_training_leaves_no_results_folder(argv, tmp_path, test_plugins, capsys):
    results = tmp_path / "new" / "results"
    assert main([*argv, "--results", str(results)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "new").exists()


def test_reading_studies_makes_no_folder_or_study_file(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["tune", "--show", "nope", "--results", str(results)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["studies", "--results", str(results)]) == 0
    assert "no studies" in capsys.readouterr().out
    assert not results.exists()


@pytest.mark.skipif(not __import__("xraybench.training.backend", fromlist=["x"]).installed("tensorflow"),
                    reason="the start-up lines checked are TensorFlow's")
def test_check_and_tune_import_the_backend_quietly(tmp_path):
    """What `check` and `tune`'s trials call before Keras is first imported: TensorFlow's absl and
    oneDNN lines (written by C++ straight to stderr) never reach the user."""
    code = "from xraybench.training.backend import import_quietly; import_quietly(); import keras; print(keras.backend.backend())"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    env.pop("XRAYBENCH_VERBOSE", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "tensorflow", out.stderr[-2000:]
    assert "absl::InitializeLog" not in out.stderr and "oneDNN" not in out.stderr, out.stderr[-2000:]
