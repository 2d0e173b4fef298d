"""The results folder is checked before training, and a finished run is never dropped.

The tests run as root, where a read-only mode does not stop writes; an unwritable folder is
made instead by putting it under a regular file, or by replacing it with a file mid-run.
"""

import json

import pytest

from recordfactory import make_record
from xraybench.errors import XRayBenchError
from xraybench.results import ResultStore
from xraybench.testing import make_kaggle_tree


def _records(folder):
    return [json.loads(p.read_text()) for p in folder.glob("*.json")
            if not p.name.startswith(".") and not p.name.endswith(".scores.json")]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_test_models,xb_hostile")
    monkeypatch.setenv("COLUMNS", "250")
    data = make_kaggle_tree(tmp_path / "data", n_train=(12, 18), n_test=(6, 8), size=24)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {"XRAYBENCH_CACHE": str(tmp_path / "cache"), "XRAYBENCH_FALLBACK_RESULTS": str(tmp_path / "fallback")}
    return data, blocker, env


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_run_refuses_an_unwritable_results_folder_before_training(setup, tmp_path, where, xb):
    data, blocker, env = setup
    results = blocker if where == "file" else blocker / "results"
    out = xb("run", "--model", "xb_good", "--data", str(data), "--results", str(results), env=env)
    assert out.code == 2, out.out[-2000:] + out.err[-2000:]
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: results folder {results} cannot be written")
    assert "--results DIR" in lines[0] and "Traceback" not in out.err
    assert not (tmp_path / "cache").exists()  # refused before the data was even decoded
    assert blocker.read_text() == "x"  # a file xraybench did not create is left alone


def test_tune_refuses_an_unwritable_results_folder(setup, tmp_path, xb):
    data, blocker, env = setup
    out = xb("tune", "--model", "xb_tunable", "--data", str(data), "--results", str(blocker / "r"), env=env)
    assert out.code == 2 and out.err.startswith("error: results folder") and "Traceback" not in out.err
    shown = xb("studies", "--results", str(blocker), env=env)
    assert shown.code == 2 and shown.err.startswith("error: results folder") and "Traceback" not in shown.err


def test_a_run_finished_after_its_results_folder_went_away_is_kept(setup, tmp_path, xb):
    data, _, env = setup
    results = tmp_path / "results"
    out = xb("run", "--model", "xb_sabotage", "--model", "xb_good", "--data", str(data), "--results", str(results),
              env={**env, "XRAYBENCH_RESULTS": str(results)})
    assert out.code == 0, out.out[-3000:] + out.err[-3000:]
    assert results.is_file()  # the model really replaced the folder with a file mid-run
    kept = _records(tmp_path / "fallback")
    assert sorted(r["model"] for r in kept) == ["xb_good", "xb_sabotage"] and all(r["status"] == "done" for r in kept)
    assert all((tmp_path / "fallback" / f"{r['run_id']}.scores.json").is_file() for r in kept)
    warnings = [line for line in out.err.splitlines() if line.startswith("warning: results folder")]
    assert len(warnings) == 2 and all(str(tmp_path / "fallback") in w for w in warnings)
    assert "Traceback" not in out.err


def test_save_falls_back_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XRAYBENCH_FALLBACK_RESULTS", str(tmp_path / "fallback"))
    (tmp_path / "blocker").write_text("x")
    store = ResultStore(tmp_path / "blocker" / "results")
    record, scores = make_record("m")
    path = store.save(record, scores)
    assert path == tmp_path / "fallback" / f"{record['run_id']}.json"
    assert json.loads(path.read_text())["run_id"] == record["run_id"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "could not be written" in err[0]


def test_save_says_so_when_no_fallback_can_be_written_either(tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("x")
    monkeypatch.setenv("XRAYBENCH_FALLBACK_RESULTS", str(tmp_path / "blocker" / "fallback"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "blocker" / "tmp"))
    record, _ = make_record("m")
    with pytest.raises(XRayBenchError, match="could not be written"):
        ResultStore(tmp_path / "blocker" / "results").save(record)


def test_check_writable_leaves_nothing_behind(tmp_path):
    store = ResultStore(tmp_path / "new")
    store.check_writable()
    assert store.runs.is_dir() and list(store.runs.iterdir()) == []


@pytest.mark.parametrize("foreign", ["garbage", '{"records": {}}', "[1]", None])
def test_an_index_file_that_is_not_ours_is_left_alone(tmp_path, foreign):
    store = ResultStore(tmp_path)
    record, _ = make_record()
    store.save(record)
    index = store.runs / ".index.json"
    if foreign is None:  # a dangling link: writing the index would replace it
        index.symlink_to(tmp_path / "elsewhere.json")
    else:
        index.write_text(foreign)
    assert [r["run_id"] for r in store.summaries()] == [record["run_id"]]
    if foreign is None:
        assert index.is_symlink() and not (tmp_path / "elsewhere.json").exists()
    else:
        assert index.read_text() == foreign


def test_an_index_of_ours_is_still_written(tmp_path):
    store = ResultStore(tmp_path)
    record, _ = make_record()
    store.save(record)
    assert [r["run_id"] for r in store.summaries()] == [record["run_id"]]
    assert record["run_id"] in (store.runs / ".index.json").read_text()


@pytest.mark.parametrize("dangling", [True, False])
def test_an_output_path_that_is_a_symlink_is_refused(tmp_path, dangling):
    from xraybench import generated

    target = tmp_path / "target.md"
    if not dangling:
        target.write_text("user file\n")
    link = tmp_path / "out.md"
    link.symlink_to(target)
    with pytest.raises(XRayBenchError, match="is a symbolic link"):
        generated.check_target(link, "leaderboard", force=True)
    assert target.exists() is not dangling
