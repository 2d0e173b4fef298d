"""Nothing lost on interrupt: per-epoch checkpoints, history in interrupted records, ``run --resume``.

The interruption is a real Ctrl-C (SIGINT to ``xraybench run``) at a known point: the training
process pauses after saving epoch 2 (``XRAYBENCH_TEST_PAUSE=epoch2=DIR``), the test signals the
parent, then lets the child go on (it is stopped by then). Nothing sleeps for a guessed time.
"""

import json
import signal
import subprocess
from pathlib import Path

import pytest
from proctools import run_xb, wait_for
from recordfactory import make_record

from xraybench import checkpoints
from xraybench.cli import main
from xraybench.records import RunStatus
from xraybench.results import ResultStore

TRAIN = ("--image-size", "16", "--model", "baseline_cnn", "--epochs", "4", "--param", "patience=10", "--seed", "7")


def _only(store: ResultStore, **match) -> dict:
    found = [r for r in store.records() if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("extra", [(), ("--param", "weight_average=0.7")], ids=["seed-recipe", "weight-average"])
def test_interrupted_run_keeps_its_epochs_and_resumes_to_the_uninterrupted_result(xray_data, xraybench_env, spawn, extra):
    """Weight averaging too: the checkpoint holds the raw weights and the average, so the resumed
    run averages as the uninterrupted one does."""
    straight_dir, cut_dir, pause = (xraybench_env / n for n in ("straight", "cut", "pause"))
    pause.mkdir()
    train = (*TRAIN, *extra)
    # The uninterrupted run and the run to interrupt train side by side (two cores).
    straight = spawn("run", "--data", str(xray_data), *train, "--results", str(straight_dir), stderr=subprocess.STDOUT)
    cut = spawn("run", "--data", str(xray_data), *train, "--results", str(cut_dir),
                env={"XRAYBENCH_TEST_PAUSE": f"epoch2={pause}"}, stderr=subprocess.STDOUT)
    wait_for(pause / "epoch2.ready", cut)
    cut.send_signal(signal.SIGINT)
    (pause / "epoch2.go").touch()
    out, _ = cut.communicate(timeout=120)
    assert cut.returncode == 130, out[-2000:]

    cut_store = ResultStore(cut_dir)
    interrupted = _only(cut_store, status="interrupted")
    assert interrupted["epochs_run"] == 2
    assert len(interrupted["history"]["loss"]) == len(interrupted["history"]["val_loss"]) == 2
    assert interrupted["checkpoint"] == f"checkpoints/{interrupted['run_id']}"
    assert checkpoints.state(cut_dir / interrupted["checkpoint"])["epoch"] == 2
    assert not interrupted.get("model_file") and not list((cut_dir / "runs").glob("*.keras")), \
        "an interrupted run keeps no model (saved_model.py)"
    assert not list((cut_dir / "runs").glob(".*.staged*")), "nor a staged one"

    out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out[-2000:]
    straight_store = ResultStore(straight_dir)
    reference = _only(straight_store, status="done")
    assert not (straight_dir / "checkpoints").exists(), "a done run's checkpoint is removed"

    resumed_run = run_xb("run", "--resume", interrupted["run_id"], "--results", str(cut_dir), timeout=300)
    assert resumed_run.returncode == 0, resumed_run.stdout[-2000:] + resumed_run.stderr[-2000:]
    resumed = _only(cut_store, status="done")
    assert resumed["resumed_from"] == interrupted["run_id"]
    assert resumed["run_id"] != interrupted["run_id"]
    assert _only(cut_store, status="interrupted")["run_id"] == interrupted["run_id"], "the interrupted record is kept"
    assert not (cut_dir / interrupted["checkpoint"]).exists(), "the resumed checkpoint has served its purpose"

    # Same data, same seed, same epochs: bit-identical history and test scores on CPU.
    assert resumed["epochs_run"] == reference["epochs_run"] == 4
    assert resumed["history"] == reference["history"]
    assert resumed["history"]["loss"][:2] == interrupted["history"]["loss"]
    assert cut_store.scores(resumed["run_id"])["test_scores"] == straight_store.scores(reference["run_id"])["test_scores"]
    assert resumed["metrics"] == reference["metrics"]
    assert (cut_dir / resumed["model_file"]["path"]).is_file(), "the resumed run keeps its model"


def _resume_error(results: Path, run_id: str, capsys) -> str:
    assert main(["run", "--resume", run_id, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _saved(results: Path, **changes) -> dict:
    record, scores = make_record(status=changes.pop("status", "interrupted"))
    record.update(changes)
    ResultStore(results).save(record, scores if record["status"] == "done" else None)
    return record


def test_resume_errors_are_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    assert "no single run matches 'nope'" in _resume_error(results, "nope", capsys)

    done = _saved(results, status="done", kind="keras")
    assert "finished (done)" in _resume_error(results, done["run_id"], capsys)

    sklearn = _saved(results, kind="generic")
    assert "no epochs to resume" in _resume_error(results, sklearn["run_id"], capsys)

    early = _saved(results, kind="keras")  # interrupted before its first epoch ended: no checkpoint
    assert "has no checkpoint" in _resume_error(results, early["run_id"], capsys)

    gone = _saved(results, kind="keras", checkpoint="checkpoints/gone")
    assert "no checkpoint in" in _resume_error(results, gone["run_id"], capsys)

    damaged_dir = results / "checkpoints" / "damaged"
    checkpoints.create(damaged_dir, "damaged", {"model": "baseline_cnn"})
    (damaged_dir / checkpoints.STATE).write_text("{not json")
    damaged = _saved(results, kind="keras", checkpoint="checkpoints/damaged")
    assert "is damaged" in _resume_error(results, damaged["run_id"], capsys)

    secret_dir = results / "checkpoints" / "secret"
    checkpoints.create(secret_dir, "secret", {"model": "baseline_cnn", "data": "s3://u:***@host/x"})
    (secret_dir / checkpoints.STATE).write_text(json.dumps({"epoch": 1, "history": {}}))
    secret = _saved(results, kind="keras", checkpoint="checkpoints/secret")
    assert "pass --data again" in _resume_error(results, secret["run_id"], capsys)

    for elsewhere in ("../outside", str(tmp_path / "outside"), "checkpoints", "checkpoints/a/b"):
        escaped = _saved(results, kind="keras", checkpoint=elsewhere)
        assert "is not a folder of" in _resume_error(results, escaped["run_id"], capsys)

    assert main(["run", "--resume", done["run_id"], "--model", "baseline_cnn", "--results", str(results)]) == 2
    assert "--resume RUN_ID" in capsys.readouterr().err


def test_checkpoint_folders_are_removed_only_when_ours(tmp_path):
    foreign = tmp_path / "checkpoints" / "not-ours"
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("user data")
    checkpoints.remove(foreign)
    assert (foreign / "keep.txt").exists()
    ours = checkpoints.folder(tmp_path, "run1")
    checkpoints.create(ours, "run1", {})
    checkpoints.remove(ours)
    assert not ours.exists() and foreign.exists()


def test_saved_state_round_trips_and_replaces_the_previous_epoch(tmp_path):
    import numpy as np

    path = checkpoints.folder(tmp_path, "r")
    checkpoints.create(path, "r", {"model": "m"})
    assert checkpoints.history_of(path) == ({}, 0)
    stopper = {"wait": 1, "best_epoch": 0, "stopped_epoch": 0, "best": 0.25}
    for epoch in (1, 2):
        checkpoints.save(path, epoch, {"loss": [0.5] * epoch}, [np.full(3, epoch, np.float32)], [np.int64(epoch)],
                         stopper, None)
    assert sorted(p.name for p in path.glob("epoch-*.npz")) == ["epoch-2.npz"]
    saved = checkpoints.load(path)
    assert saved["epoch"] == 2 and saved["stopper"] == stopper and saved["best"] is None
    assert saved["model"][0].tolist() == [2.0, 2.0, 2.0] and int(saved["optimizer"][0]) == 2
    assert checkpoints.history_of(path) == ({"loss": [0.5, 0.5]}, 2)
    assert json.loads((path / checkpoints.MANIFEST).read_text())["request"] == {"model": "m"}


def _prepared(results: Path, resume_from: Path | None = None):
    from types import SimpleNamespace

    from xraybench import KerasModel
    from xraybench.runner import RunRequest

    request = RunRequest(model="m", checkpoints=str(results), resume_from=str(resume_from) if resume_from else None)
    return SimpleNamespace(request=request, spec=KerasModel(name="m", description="a Keras model", build=lambda *_: None))


@pytest.mark.parametrize("status", [RunStatus.TIMEOUT, RunStatus.ERROR, RunStatus.INTERRUPTED])
def test_an_unfinished_run_keeps_its_epochs_and_checkpoint(tmp_path, status):
    import numpy as np

    from xraybench.runner import _finish_checkpoints, _start_checkpoints

    prepared = _prepared(tmp_path)
    path = _start_checkpoints(prepared, "r1")
    checkpoints.save(path, 1, {"loss": [0.7], "val_loss": [0.6]}, [np.zeros(2)], [], {"wait": 0, "best_epoch": 0,
                     "stopped_epoch": 0, "best": 0.6}, None)
    fields = _finish_checkpoints(prepared, status, path)
    assert fields == {"history": {"loss": [0.7], "val_loss": [0.6]}, "epochs_run": 1, "checkpoint": "checkpoints/r1"}
    assert path.is_dir()

    # Resumed and stopped again before an epoch ended: the old checkpoint is still the last one.
    again = _prepared(tmp_path, resume_from=path)
    path2 = _start_checkpoints(again, "r2")
    assert _finish_checkpoints(again, status, path2)["checkpoint"] == "checkpoints/r1" and not path2.exists()

    # Resumed to the end: both checkpoints have served their purpose.
    path3 = _start_checkpoints(again, "r3")
    assert _finish_checkpoints(again, RunStatus.DONE, path3) == {}
    assert not path.exists() and not path3.exists() and not (tmp_path / "checkpoints").exists()


def test_resume_on_other_data_is_refused(tmp_path, xray_data, capsys):
    results = tmp_path / "results"
    path = results / "checkpoints" / "other"
    checkpoints.create(path, "other", {"model": "baseline_cnn", "data": str(xray_data), "image_size": 16})
    (path / checkpoints.STATE).write_text(json.dumps({"epoch": 1, "history": {}}))
    record = _saved(results, kind="keras", checkpoint="checkpoints/other")  # fingerprint "fff...": not this data
    assert "changed since run" in _resume_error(results, record["run_id"], capsys)


def test_checkpoint_removal_deletes_only_its_own_files(tmp_path):
    import numpy as np

    ours = checkpoints.folder(tmp_path, "run1")
    checkpoints.create(ours, "run1", {})
    checkpoints.save(ours, 1, {"loss": [0.5]}, [np.zeros(2)], [], {}, None)
    (ours / ".state.json.abc.tmp").write_text("{}")
    (ours / "notes.txt").write_text("user data")
    checkpoints.remove(ours, tmp_path)
    assert sorted(p.name for p in ours.iterdir()) == ["notes.txt"]
    (ours / "notes.txt").unlink()
    checkpoints.create(ours, "run1", {})
    other = tmp_path / "elsewhere" / "run2"
    checkpoints.create(other, "run2", {})
    checkpoints.remove(other, tmp_path)  # its parent is not RESULTS/checkpoints: kept
    assert not other.exists() and other.parent.is_dir()
    checkpoints.remove(ours, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_a_state_naming_other_arrays_is_damaged_and_nothing_outside_is_deleted(tmp_path):
    import numpy as np

    path = checkpoints.folder(tmp_path, "r")
    checkpoints.create(path, "r", {})
    victim = tmp_path / "victim.npz"
    victim.write_text("user data")
    (path / checkpoints.STATE).write_text(json.dumps({"epoch": 1, "history": {}, "arrays": "../../victim.npz",
                                                      "counts": {"model": 0, "optimizer": 0}}))
    with pytest.raises(checkpoints.CheckpointError, match="not epoch-N.npz"):
        checkpoints.load(path)
    checkpoints.save(path, 2, {"loss": [0.5, 0.4]}, [np.zeros(2)], [], {}, None)
    assert victim.read_text() == "user data"
