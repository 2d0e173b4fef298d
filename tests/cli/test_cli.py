import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from proctools import pid_gone, wait_for

HEAVY = ("keras", "tensorflow", "torch", "jax", "optuna", "matplotlib", "sklearn")


@pytest.mark.parametrize("command", [["--help"], ["models"], ["plugins"], ["leaderboard"], ["run", "--help"]])
def test_fast_commands_import_no_backend(command, tmp_path, xb):
    out = xb.process(*command, env={"XRAYBENCH_RESULTS": str(tmp_path)}, timeout=120, python_args=("-X", "importtime"))
    assert out.code == 0, out.err[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.err.splitlines() if line.startswith("import time:")}
    assert "rich" in imported or command == ["--help"] or command == ["run", "--help"]
    assert not imported & set(HEAVY), imported & set(HEAVY)


def test_models_lists_first_party_and_broken_plugins(monkeypatch, xb):
    out = xb("models", env={"XRAYBENCH_PLUGINS": "xb_import_fails,xb_test_models"})
    assert out.code == 0
    assert "baseline_cnn" in out.out and "xb_good" in out.out
    assert "xb_import_fails" in out.out and "import failed" in out.out


def test_models_at_80_columns_shows_each_model_on_a_line_and_its_description_whole(monkeypatch, xb):
    """At 80 columns the seven-column table cut cells to `xray…` and put the description one word a line (142
    lines): each model is now one line, its description whole (and literal: markup stays text) under it."""
    from xraybench.plugins import load_registry

    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_test_models,xb_hostile,xb_import_fails")
    out = xb("models", env={"COLUMNS": "80"})
    assert out.code == 0, out.err[-2000:]
    lines, models = out.out.splitlines(), load_registry().models
    starts = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] in models] + \
        [next(i for i, line in enumerate(lines) if line.startswith("(xb_import_fails)"))]
    assert len(starts) == len(models) + 1 and max(map(len, lines)) <= 80, out.out
    for start, end in zip(starts, starts[1:]):
        name, below = lines[start].split()[0], " ".join(" ".join(lines[start + 1:end]).split())
        assert end - start <= 3 and below == " ".join(models[name].description.split()), lines[start:end]
    assert "import failed: ModuleNotFoundError" not in out.out  # the helper plugins import
    tight = xb("models", env={"COLUMNS": "40"}).out.splitlines()  # names whole, the status beside them
    assert all(any(line.split()[:2] == [name, "ok"] for line in tight) for name in models), tight
    wide = xb("models", env={"COLUMNS": "200"}).out  # where there is room, the table as it was
    assert "┃ Distribution" in wide and "┃ Description" in wide and "a description with markup: [/x]" in wide


def test_runs_at_80_columns_never_wraps_a_run_id(tmp_path, xb):
    """At 80 columns `runs` broke ids over three lines (`20261206T012822` / `-baseline_cnn-8` / `79aab.json`):
    each id is now whole on its line, as compare, predict and ensemble take it (no `.json`), a reason whole too."""
    from recordfactory import make_record
    from xraybench.results import ResultStore

    store = ResultStore(tmp_path)
    ids = []
    for model, status in (("baseline_cnn", "done"), ("hist_gradient_boosting_pixels", "done"), ("crashy", "error")):
        record, scores = make_record(model, 1, status=status)
        record["reason"] = "training crashy failed: RuntimeError: boom" if status == "error" else ""
        store.save(record, scores if status == "done" else None)
        ids.append(record["run_id"])
    headers = {}
    narrowest = xb("runs", "--results", str(tmp_path), env={"COLUMNS": "40"}).out  # the ids alone, seed and status under
    short, long = [i for i in ids if len(i) <= 36], [i for i in ids if len(i) > 36]
    assert len(short) == 2 and all(re.search(rf"│ {i} +│\n│ seed 1, (done|error)", narrowest) for i in short), narrowest
    assert long[0] in re.sub(r"[│\s]", "", narrowest)  # too long for 40 columns: folded whole, never cut
    for columns in (80, 140, 250):
        out = xb("runs", "--results", str(tmp_path), env={"COLUMNS": str(columns)})
        assert out.code == 0 and max(map(len, out.out.splitlines())) <= columns, out.out
        for run_id in ids:
            assert re.search(rf"│ {run_id} +│", out.out) and f"{run_id}.json" not in out.out, out.out
        assert columns == 140 or "training crashy failed: RuntimeError: boom" in out.out  # at 140 it folds in its column
        headers[columns] = [h for h in ("Created", "Model", "Reason") if f"┃ {h} " in out.out]
    # Created gives way first, then Model (the reason then goes under the id); at 250 every column
    assert headers == {80: [], 140: ["Model", "Reason"], 250: ["Created", "Model", "Reason"]}


def test_plugins_requirements(xb):
    out = xb("plugins", "--requirements")
    assert out.code == 0 and re.search(r"^xraybench==\S+$", out.out, re.M)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--model", "nope"], "unknown model 'nope'; known models:"),
        (["run", "--model", "logreg_pixels", "--param", "bogus=1"], "unknown parameter 'bogus'"),
        (["run", "--model", "logreg_pixels", "--param", "C=high"], "expected float"),
        (["run", "--model", "baseline_cnn", "--epochs", "0"], "--epochs must be at least 1"),
        (["run", "--model", "logreg_pixels", "--data", "/no/such/folder"], "data path /no/such/folder does not exist"),
        (["leaderboard", "--sort", "vibes"], "cannot sort by 'vibes'"),
        (["run", "--model", "logreg_pixels", "--target-sensitivity", "1.5"], "--target-sensitivity must be in (0, 1]"),
        (["compare", "nope-a", "nope-b"], "no single run matches 'nope-a'"),
    ],
)
def test_bad_input_is_one_line(args, expected, xray_data, xb):
    out = xb(*args, env={"XRAYBENCH_DATA": str(xray_data)})
    assert out.code == 2
    assert out.err.startswith("error: ") and expected in out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err


def _records(results):
    """The run records only: not the summary index (.index.json), score sidecars or temporary files."""
    records = []
    for p in sorted((results / "runs").glob("*.json")):
        if p.name.startswith(".") or p.name.endswith(".scores.json"):
            continue
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "run_id" in data and "status" in data:
            records.append(data)
    return records


def test_bad_plugins_are_recorded_and_others_still_run(xray_data, test_plugins, xraybench_env, xb):
    models = ["xb_fit_raises", "xb_nan", "xb_out_of_range", "xb_wrong_shape", "xb_build_raises", "xb_crash",
              "xb_killed", "xb_good"]
    args = ["run", "--data", str(xray_data), "--image-size", "16"]
    for m in models:
        args += ["--model", m]
    out = xb(*args)
    assert out.code == 1, out.out[-3000:] + out.err[-3000:]
    records = {r["model"]: r for r in _records(xraybench_env / "results")}
    assert records["xb_good"]["status"] == "done"
    assert 0.0 <= records["xb_good"]["metrics"]["accuracy"] <= 1.0
    expected = {
        "xb_fit_raises": "RuntimeError: boom in fit",
        "xb_nan": "NaN",
        "xb_out_of_range": "probabilities in [0, 1]",
        "xb_wrong_shape": "shape",
        "xb_build_raises": "ValueError: boom in build",
        "xb_crash": "exited with code 13",
        "xb_killed": "SIGKILL",
    }
    for model, text in expected.items():
        assert records[model]["status"] == "error", model
        assert text in records[model]["reason"], (model, records[model]["reason"])
        assert "\n" not in records[model]["reason"]
    board = xb("leaderboard", "--format", "json")
    ranked = {r["model"] for r in json.loads(board.out)["rows"]}
    assert ranked == {"xb_good"}


def test_hanging_plugin_times_out_and_next_runs(xray_data, test_plugins, xraybench_env, xb):
    out = xb("run", "--data", str(xray_data), "--image-size", "16", "--model", "xb_hang", "--model", "xb_good",
             "--timeout", "15")
    records = {r["model"]: r for r in _records(xraybench_env / "results")}
    assert records["xb_hang"]["status"] == "timeout" and "--timeout 15" in records["xb_hang"]["reason"]
    assert records["xb_good"]["status"] == "done", records["xb_good"].get("reason")
    assert out.code == 1


def _sigint(disposition):
    """Start a process with this SIGINT disposition: SIG_IGN is what a background job inherits."""
    return lambda: signal.signal(signal.SIGINT, disposition)


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"])
def test_ctrl_c_records_interrupted_and_nothing_half_written(inherited, xray_data, test_plugins, xraybench_env, spawn):
    # The child announces that it is training through a checkpoint file: no sleeping, no guessing.
    pause = xraybench_env / "pause"
    pause.mkdir()
    proc = spawn("run", "--data", str(xray_data), "--image-size", "16", "--model", "xb_hang", "--model", "xb_good",
                 env={"XRAYBENCH_TEST_PAUSE": f"training={pause}"}, stderr=subprocess.STDOUT,
                 preexec_fn=_sigint(inherited))
    wait_for(pause / "training.ready", proc)
    child = int((pause / "training.ready").read_text())
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-2000:]
    records = _records(xraybench_env / "results")
    assert [(r["model"], r["status"]) for r in records] == [("xb_hang", "interrupted")]
    assert not [p for p in (xraybench_env / "results" / "runs").iterdir() if p.name.endswith(".tmp")]
    assert pid_gone(child), "the training child outlived the interrupted run"


def test_end_to_end_baseline_on_real_data(real_data, real_cache, xb):
    out = xb("run", "--model", "baseline_cnn", "--data", str(real_data), "--image-size", "32", "--epochs", "1",
             "--seed", "7")
    assert out.code == 0, out.out[-3000:] + out.err[-3000:]
    assert "PNEUMONIA" in out.out and "ROC AUC" in out.out
    board = xb("leaderboard", "--format", "json")
    rows = json.loads(board.out)["rows"]
    row = next(r for r in rows if r["model"] == "baseline_cnn")
    assert row["image_size"] == 32 and row["seeds"] == [7] and row["epochs"] == 1
    assert row["variant"] == "epochs=1", row  # an overridden run never joins the defaults' row
    assert row["precision"] == ["float32"]  # auto is float32 on every CPU, whatever flags it lists
    assert 0.5 < row["roc_auc"] <= 1.0
    record = next(iter(_records(Path(os.environ["XRAYBENCH_RESULTS"]))))
    for key in ("run_id", "created_at", "distribution", "version", "params", "seed", "precision", "data",
                "environment", "train_seconds", "predict_seconds", "param_count", "history", "val_threshold",
                "wall_seconds", "cpu_seconds"):
        assert key in record, key
    assert 0 < record["cpu_seconds"] < 2 * os.cpu_count() * record["wall_seconds"]
    assert record["data"]["split_counts"]["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    assert len(record["data"]["fingerprint"]) == 64
    table = xb("leaderboard")
    assert "baseline_cnn" in table.out and "seed CNN (published)" in table.out


def test_check_fails_with_nonzero_exit_for_a_broken_plugin(test_plugins, xb):
    out = xb("check", "xb_build_raises")
    assert out.code == 1
    assert "FAIL" in out.out and "boom in build" in out.out and "0 passed" not in out.out


def test_check_kills_a_hanging_check_and_goes_on(test_plugins, xb):
    out = xb("check", "xb_hang_sampled", "--timeout", "12")
    assert out.code == 1, out.out[-3000:] + out.err[-3000:]
    rows = {line.split("│")[1].strip(): line for line in out.out.splitlines() if line.count("│") >= 3}
    assert "FAIL" in rows["builds with a search-space sample"] and "--timeout 12" in out.out
    for later in ("fits one short epoch on tiny generated data", "predicts probabilities of the right shape",
                  "same seed gives the same predictions", "no test data reachable while training"):
        assert "pass" in rows[later], later  # after the killed check, the rest run in a fresh child
    assert "5 passed, 1 failed" in out.out


def test_a_plugin_calling_sys_exit_is_an_error_row_not_the_end(xb):
    out = xb("plugins", env={"XRAYBENCH_PLUGINS": "xb_exits_at_import,xb_exits_in_hook,xb_test_models"})
    assert out.code == 0, out.err[-2000:]
    assert "xb_exits_at_import" in out.out and "SystemExit: 3" in out.out
    assert "xb_exits_in_hook" in out.out and "SystemExit: bye" in out.out
    models = xb("models", env={"XRAYBENCH_PLUGINS": "xb_exits_at_import,xb_exits_in_hook,xb_test_models"})
    assert models.code == 0 and "xb_good" in models.out
