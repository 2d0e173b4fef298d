import multiprocessing as mp

import pytest

from recordfactory import make_record
from xraybench.results import ResultStore


def _writer(root, count, tag):
    store = ResultStore(root)
    for i in range(count):
        record, scores = make_record(model=f"{tag}", seed=i)
        store.save(record, scores)


def test_two_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 40, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    records = ResultStore(tmp_path).records()
    assert len(records) == 80
    assert len({r["run_id"] for r in records}) == 80
    assert sorted({r["model"] for r in records}) == ["a", "b"]
    assert not list((tmp_path / "runs").glob(".*tmp"))


def test_roundtrip_scores_and_status_check(tmp_path):
    store = ResultStore(tmp_path)
    record, scores = make_record()
    store.save(record, scores)
    assert store.get(record["run_id"])["has_scores"] is True
    assert store.scores(record["run_id"])["test_scores"] == scores["test_scores"]
    bad, _ = make_record()
    bad["status"] = "finished"
    with pytest.raises(ValueError, match="'status' is \"finished\", expected 'done'"):
        store.save(bad)


def test_damaged_file_does_not_hide_others(tmp_path):
    store = ResultStore(tmp_path)
    record, _ = make_record()
    store.save(record)
    (tmp_path / "runs" / "broken.json").write_text("{not json")
    assert [r["run_id"] for r in store.records()] == [record["run_id"]]


def test_summaries_index_follows_the_files(tmp_path):
    store = ResultStore(tmp_path)
    first, _ = make_record(model="a")
    store.save(first)
    assert [r["model"] for r in store.summaries()] == ["a"]
    assert (tmp_path / "runs" / ".index.json").is_file()
    second, _ = make_record(model="b")
    store.save(second)
    assert sorted(r["model"] for r in store.summaries()) == ["a", "b"]
    changed = dict(first, model="a2", history={"loss": [1.0]})
    store.save(changed)  # same run id: rewritten in place
    summaries = {r["run_id"]: r for r in store.summaries()}
    assert summaries[first["run_id"]]["model"] == "a2" and "history" not in summaries[first["run_id"]]
    (tmp_path / "runs" / f"{second['run_id']}.json").unlink()
    assert [r["model"] for r in store.summaries()] == ["a2"]
    assert [r["model"] for r in store.records()] == ["a2"]  # the index is never read as a record
    (tmp_path / "runs" / ".index.json").write_text("garbage")
    assert [r["model"] for r in store.summaries()] == ["a2"]


def test_dangling_and_looping_links_are_skipped_with_reason(tmp_path):
    store = ResultStore(tmp_path)
    record, _ = make_record()
    store.save(record)
    runs = tmp_path / "runs"
    (runs / "dangling.json").symlink_to(runs / "nowhere.json")
    (runs / "loop.json").symlink_to(runs / "loop.json")
    for full in (False, True):
        loaded = store.load(full=full)
        assert [r.run_id for r in loaded.records] == [record["run_id"]]
        assert sorted(s.path.name for s in loaded.skipped) == ["dangling.json", "loop.json"]
        assert all(s.reason.startswith("unreadable") for s in loaded.skipped)


@pytest.mark.parametrize("bad", ["**", "../x", "a/b", "..", "", "a b", "x*"])
def test_a_run_id_that_is_not_one_is_a_one_line_error(tmp_path, bad):
    from xraybench.errors import XRayBenchError

    store = ResultStore(tmp_path)
    store.save(make_record()[0])
    with pytest.raises(XRayBenchError, match="is not a run id") as exc:
        store.get(bad)
    assert "\n" not in str(exc.value)
    assert store.scores(bad) is None  # a record's id that is not one names no file


def test_a_unique_prefix_finds_the_run(tmp_path):
    store = ResultStore(tmp_path)
    record, _ = make_record()
    store.save(record)
    assert store.get(record["run_id"][:-3])["run_id"] == record["run_id"]
    assert store.get(record["run_id"])["run_id"] == record["run_id"]


def test_a_record_whose_id_is_a_path_is_never_written(tmp_path):
    from xraybench.errors import XRayBenchError

    record, _ = make_record()
    record["run_id"] = "../escaped"
    with pytest.raises(XRayBenchError, match="is not a run id"):
        ResultStore(tmp_path / "results").save(record)
    assert not (tmp_path / "results" / "escaped.json").exists() and not (tmp_path / "escaped.json").exists()
