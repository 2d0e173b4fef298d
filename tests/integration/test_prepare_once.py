"""A run is prepared once, in the parent: its child gets the spec, the resolved parameters and the
cache entry, and loads no registry and resolves nothing again; a sequential study sends its
train and validation arrays to its child once, not once per trial (issue 22, item 2)."""

import os
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from xraybench import isolation, tuning
from xraybench.data import load_dataset
from xraybench.data.loading import reopen
from xraybench.errors import DataError
from xraybench.plugins import load_registry
from xraybench.testing import make_kaggle_tree

# A plugin whose model pickles by reference, and that notes, with the process id, each registry
# load (its hook runs once per load) and each parameter resolution once it is imported.
COUNTING = '''
import os

import numpy as np

from xraybench import GenericModel, hookimpl, params


def note(what, pid=None):
    with open(os.environ["XB_COUNT_LOG"], "a") as fh:
        fh.write(f"{what} {pid or os.getpid()}\\n")


_resolve = params.resolve


def counted_resolve(*args, **kwargs):
    note("resolve")
    return _resolve(*args, **kwargs)


params.resolve = counted_resolve


class Brightness:
    def fit(self, train, val):
        note("fit")
        note("spawner", os.getppid())  # the process that started the run's child (a Dask worker's)
        self.cut = float(np.mean(train.images))
        return self

    def predict_proba(self, images):
        means = np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(axis=1)
        return 1.0 / (1.0 + np.exp(-(means - self.cut) / 10.0))


def create(params, seed):
    return Brightness()


@hookimpl
def register_models(register):
    note("registry")
    register(GenericModel(name="xb_counted", description="counts", create=create, defaults={"c": 1.0}))
'''


def _counted_run(tmp_path, xray_data, xb, *args: str, **env) -> tuple[object, Counter]:
    """``xraybench run`` of the COUNTING plugin's model with ``args`` and ``env``: (the process's result,
    a Counter of (what, pid) as the plugin noted them)."""
    (tmp_path / "xb_counted.py").write_text(COUNTING)
    log = tmp_path / "count.log"
    env = {"XRAYBENCH_PLUGINS": "xb_counted", "XB_COUNT_LOG": str(log), "XRAYBENCH_RESULTS": str(tmp_path / "results"),
           "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), **env}
    done = xb.process("run", "--model", "xb_counted", "--data", str(xray_data), "--image-size", "16", *args, env=env)
    assert done.code == 0, done.out[-3000:] + done.err[-3000:]
    return done, Counter(tuple(line.split()) for line in log.read_text().splitlines())


def _on_one_worker(done, notes: Counter) -> tuple[str, str, str]:
    """(client, worker, the run's child): the pids of a one-worker local cluster's run, each checked distinct."""
    assert "engine: local Dask cluster of 1 worker process" in done.out
    (child,) = {pid for what, pid in notes if what == "fit"}
    (worker,) = {pid for what, pid in notes if what == "spawner"}
    assert child != worker, notes
    (client,) = {pid for what, pid in notes} - {child, worker}  # no other process (the nanny) noted anything
    assert notes[("registry", client)] == 1 and notes[("resolve", client)] == 1, notes
    return client, worker, child


def test_the_child_loads_no_registry_and_resolves_no_parameters(tmp_path, xray_data, xb):
    _, notes = _counted_run(tmp_path, xray_data, xb)
    child = {pid for what, pid in notes if what == "fit"}
    parent = {pid for what, pid in notes} - child
    assert len(child) == 1 and len(parent) == 1, notes
    (child_pid,), (parent_pid,) = child, parent
    assert notes[("registry", parent_pid)] == 1 and notes[("resolve", parent_pid)] == 1, notes
    assert notes[("registry", child_pid)] == 0 and notes[("resolve", child_pid)] == 0, notes


@pytest.mark.xdist_group("dask")
def test_a_dask_worker_loads_no_registry_and_resolves_no_parameters(tmp_path, xray_data, xb):
    """A Dask task carries the run its client prepared (spec, resolved parameters, data set without
    images): its worker maps the client's cache entry and prepares nothing again (issue 22, item 2)."""
    pytest.importorskip("distributed")
    done, notes = _counted_run(tmp_path, xray_data, xb, "--workers", "1")
    _, worker, child = _on_one_worker(done, notes)
    for pid in (worker, child):
        assert notes[("registry", pid)] == 0 and notes[("resolve", pid)] == 0, notes


@pytest.mark.xdist_group("dask")
def test_a_dask_worker_that_decodes_its_own_copy_resolves_nothing_again(tmp_path, xray_data, xb):
    """The other branch of ``distributed.worker._data_here``: the worker's cache lacks the client's entry (a
    cache of its own, as on another machine), so it decodes its own copy of the same folder, which
    ``run_task`` compares by fingerprint. To decode it needs the client's reader, which its registry
    holds (one load); it resolves no parameter, and the run's child neither loads nor resolves."""
    pytest.importorskip("distributed")
    clients, workers = tmp_path / "client-home", tmp_path / "worker-cache"
    # The worker's cache comes through Dask's nanny environment; the OS's value wins over that
    # (distributed.nanny._get_env_variables), so the client has none: its cache is under XDG_CACHE_HOME.
    done, notes = _counted_run(tmp_path, xray_data, xb, "--workers", "1", XRAYBENCH_CACHE=None,
                               XDG_CACHE_HOME=str(clients),
                               DASK_DISTRIBUTED__NANNY__ENVIRON=repr({"XRAYBENCH_CACHE": str(workers)}))
    _, worker, child = _on_one_worker(done, notes)

    def entries(root):  # the cache's entry folders (cache.MARKER in each)
        return sorted(marker.parent.name for marker in root.rglob("XRAYBENCH_CACHE_ENTRY"))

    # the branch taken: the worker decoded the folder into its own cache (open_cached found nothing there)
    assert entries(clients) and entries(workers), (entries(clients), entries(workers))
    assert notes[("registry", worker)] == 1 and notes[("resolve", worker)] == 0, notes  # the reader, nothing else
    assert notes[("registry", child)] == 0 and notes[("resolve", child)] == 0, notes
    # a worker whose own copy has another fingerprint is refused in one line:
    # test_distributed.py::test_fingerprint_mismatch_is_a_one_line_error


def test_a_sequential_study_sends_its_arrays_to_its_child_once(xray_data, test_plugins, monkeypatch):
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("xb_tunable_wide")
    sent: list[tuple] = []
    call = isolation.Child.call

    def recorded(self, target, args=(), *rest, **kwargs):
        sent.append(args)
        return call(self, target, args, *rest, **kwargs)

    monkeypatch.setattr(isolation.Child, "call", recorded)
    study, session, _ = tuning.run_study(spec, data.splits.train, data.splits.val,
                                         f"sqlite:///{xray_data.parent / 'once.db'}", "once", 4, None, "val_auc",
                                         "random", "none", {}, 0, trial_timeout=300)
    assert session.trials_run == 4
    assert [t.state.name for t in study.trials if "duplicate_of" not in t.user_attrs] == ["COMPLETE"] * 4
    tasks = [args[-1] for args in sent if isinstance(args[-1], tuning.TrialTask)]
    assert len(tasks) == 1 and tasks[0].train.images.shape == data.splits.train.images.shape
    assert len(sent) == 4 + 1  # each trial by its task's key; the first one again with the task


def test_the_child_maps_the_cache_entry_the_parent_loaded_and_refuses_other_data(xray_data):
    data = load_dataset(xray_data, image_size=16)
    shipped = data.without_images()
    assert shipped.splits is None  # nothing of the images crosses the pipe
    again = reopen(shipped)
    for name in ("train", "val", "test"):
        mine, theirs = getattr(again.splits, name), getattr(data.splits, name)
        assert np.array_equal(mine.images, theirs.images) and mine.ids == theirs.ids
    with pytest.raises(DataError, match="changed since this run loaded"):
        reopen(replace(shipped, fingerprint="0" * 64))


def test_a_dask_worker_maps_the_clients_entry_else_loads_its_own_copy(xray_data, tmp_path, monkeypatch):
    """``distributed.worker._data_here``: the client's cache entry when this machine holds it (no load);
    else, a worker with a cache of its own (another machine) loads the same folder, and gets the
    client's images; a worker whose data path names another folder loads that one."""
    import xraybench.data
    from xraybench.distributed.worker import _data_here

    data = load_dataset(xray_data, image_size=16)
    theirs, request = replace(data, splits=None), SimpleNamespace(data=str(xray_data), skip_bad=False)

    def no_load(*args, **kwargs):
        raise AssertionError("loaded the data although the client's cache entry is here")

    with monkeypatch.context() as patched:
        patched.setattr(xraybench.data, "load_dataset", no_load)
        mapped = _data_here(theirs, request)
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "another-machine"))
    loaded = _data_here(theirs, request)
    assert loaded.cache_path is not None and loaded.cache_path.is_relative_to(tmp_path / "another-machine")
    for got in (mapped, loaded):
        assert got.fingerprint == data.fingerprint
        for name in ("train", "val", "test"):
            mine, client = getattr(got.splits, name), getattr(data.splits, name)
            assert np.array_equal(mine.images, client.images) and mine.ids == client.ids
    other = make_kaggle_tree(tmp_path / "other" / "chest_xray", seed=1, n_train=(20, 30))
    elsewhere = _data_here(theirs, SimpleNamespace(data=str(other), skip_bad=False))
    # run_task refuses it (test_distributed: test_fingerprint_mismatch_is_a_one_line_error)
    assert elsewhere.source == other and elsewhere.fingerprint != data.fingerprint
