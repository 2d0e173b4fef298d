"""Every done run keeps its model (``saved_model.py``), and ``xraybench predict`` applies it to images.

The end-to-end tests take the session's Keras and scikit-learn runs trained on tiny generated data
(conftest's ``trained``), and check that ``predict`` gives every test image the score the run stored for it.
"""

import hashlib
import json
import re
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from proctools import one_line_error, run_cli, wait_for
from recordfactory import TRAINED_MODELS as MODELS, make_record

from xraybench import records, saved_model
from xraybench.cli import main
from xraybench.records import InvalidRecord, coerce, parse
from xraybench.results import ResultStore
from xraybench.synthetic import make_kaggle_tree

@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_each_done_run_keeps_its_model_with_its_hash(trained, model):
    _, results, ids = trained
    record = coerce(ResultStore(results).get(ids[model]))
    info = record.saved_model
    assert info is not None and record.model_note is None
    assert info.format == ("keras" if model == "baseline_cnn" else "skops")
    path = results / info.path
    assert path.name == f"{record.run_id}.{info.format}" and path.parent == results / "runs"
    data = path.read_bytes()
    assert len(data) == info.bytes and hashlib.sha256(data).hexdigest() == info.sha256
    assert not list((results / "runs").glob(".*staged*")), "the staged file was moved into place"
    jsonschema.validate(record.to_dict(), records.json_schema())


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_predict_reproduces_the_runs_stored_test_scores(trained, model, capsys):
    data, results, ids = trained
    store = ResultStore(results)
    stored = store.scores(ids[model])
    expected = dict(zip(stored["test_ids"], stored["test_scores"]))
    code, out, err = run_cli(capsys, "predict", ids[model], str(data / "test"), "--format", "json", "--results", str(results))
    assert code == 0, err
    shown = json.loads(out)
    threshold = coerce(store.get(ids[model])).val_threshold["value"]
    assert shown["threshold"] == threshold
    got = {os.path.relpath(p["image"], data).replace(os.sep, "/"): p for p in shown["predictions"]}
    assert set(got) == set(expected)
    gaps = [abs(got[i]["score"] - expected[i]) for i in expected]
    assert max(gaps) <= 1e-5, max(gaps)
    assert all(p["label"] == ("PNEUMONIA" if p["score"] >= threshold else "NORMAL") for p in got.values())


@pytest.mark.slow
def test_predict_table_and_csv(trained, capsys):
    data, results, ids = trained
    image = data / "test" / "PNEUMONIA" / "person0_virus_0.jpeg"
    code, out, _ = run_cli(capsys, "predict", ids["logreg_pixels"], str(image), "--format", "csv", "--results", str(results))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "image,score,label" and len(lines) == 2 and lines[1].startswith(str(image) + ",")
    code, out, _ = run_cli(capsys, "predict", ids["logreg_pixels"], str(image), "--results", str(results))
    assert code == 0 and "person0_virus_0.jpeg" in out and "Youden's J on validation" in out


@pytest.mark.slow
def test_a_changed_model_file_is_not_loaded(trained_copy, capsys):
    data, results, ids = trained_copy
    record = coerce(ResultStore(results).get(ids["baseline_cnn"]))
    path = results / record.saved_model.path
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    before = {p.name: p.read_bytes() for p in (results / "runs").iterdir()}
    err = one_line_error(*run_cli(capsys, "predict", record.run_id, str(data / "test"), "--results", str(results)))
    assert "is not the one recorded" in err
    assert {p.name: p.read_bytes() for p in (results / "runs").iterdir()} == before, "nothing touched"

    path.unlink()
    assert "is missing" in one_line_error(*run_cli(capsys, "predict", record.run_id, str(data), "--results", str(results)))


@pytest.mark.slow
def test_predict_one_line_errors(trained, tmp_path, capsys):
    data, results, ids = trained
    run_id = ids["logreg_pixels"]
    r = ("--results", str(results))
    assert "no single run matches 'nope'" in one_line_error(*run_cli(capsys, "predict", "nope", str(data), *r))
    missing = tmp_path / "no-such.png"
    assert "does not exist" in one_line_error(*run_cli(capsys, "predict", run_id, str(missing), "--results", str(results)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    good = data / "test" / "NORMAL" / "IM-0000-0000.jpeg"
    err = one_line_error(*run_cli(capsys, "predict", run_id, str(good), str(bad), "--results", str(results)))
    assert str(bad) in err and "--skip-bad" in err

    code, out, err = run_cli(capsys, "predict", run_id, str(good), str(bad), "--skip-bad", "--format", "csv", *r)
    assert code == 0 and err.startswith("warning: skipped 1 unreadable image(s): ") and err.count("\n") == 1
    assert len(out.splitlines()) == 2 and "IM-0000-0000.jpeg" in out


@pytest.mark.slow
def test_predict_loads_no_backend_or_plugin_in_its_own_process(trained):
    """The model is loaded and run in a child process (isolation.py): the command's process reads
    records and images only."""
    data, results, ids = trained
    heavy = ("keras", "tensorflow", "jax", "torch", "sklearn", "skops", "xraybench_plugins")
    script = ("import sys; from xraybench.cli import main; code = main(sys.argv[1:]); "
              f"print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules)); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", script, "predict", ids["logreg_pixels"], str(data / "test"),
                          "--format", "csv", "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "LOADED []"


def test_no_save_model_records_why_and_predict_says_so(xray_data, xraybench_env, capsys):
    results = xraybench_env / "results"
    assert main(["run", "--model", "logreg_pixels", "--data", str(xray_data), "--image-size", "16", "--no-save-model",
                 "--results", str(results)]) == 0
    (record,) = ResultStore(results).load(full=True).records
    assert record.model_file is None and record.model_note == saved_model.NOT_ASKED
    assert not [p for p in (results / "runs").iterdir() if p.suffix in (".skops", ".keras") or "staged" in p.name]
    capsys.readouterr()
    err = one_line_error(*run_cli(capsys, "predict", record.run_id, str(xray_data), "--results", str(results)))
    assert "has no model file (not saved: the run was started with --no-save-model)" in err


def test_a_run_stopped_after_its_model_was_staged_leaves_no_model_file(xray_data, test_plugins, xraybench_env, spawn):
    """The child has saved the model (it pauses just before sending its result back); Ctrl-C then
    records the run as interrupted, and the staged file goes with it."""
    pause = xraybench_env / "pause"
    pause.mkdir()
    proc = spawn("run", "--data", str(xray_data), "--image-size", "16", "--model", "xb_good",
                 env={"XRAYBENCH_TEST_PAUSE": f"saving={pause}"}, stderr=subprocess.STDOUT)
    wait_for(pause / "saving.ready", proc)
    runs = xraybench_env / "results" / "runs"
    assert list(runs.glob(".*.staged.skops")), "the child staged its model"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-2000:]
    (record,) = ResultStore(runs.parent).load(full=True).records
    assert record.status.label == "interrupted" and record.model_file is None
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".index")) == [f"{record.run_id}.json"]


# --- units ---------------------------------------------------------------------------------------


class Holder:
    """A plain estimator holding whatever it is given."""

    def __init__(self, value=None) -> None:
        self.value = value

    def fit(self, train, val):
        return self

    def predict_proba(self, images):
        return np.full(len(images), 0.25)


def _generic_spec(create):
    from xraybench import GenericModel

    return GenericModel(name="holder", description="test", create=create, image_size=16)


def _dataset(tmp_path):
    from xraybench.data import load_dataset

    return load_dataset(str(make_kaggle_tree(tmp_path / "d", n_train=(8, 8), n_test=(4, 4))), image_size=16, channels=1)


@pytest.mark.parametrize("value, why", [((i for i in range(2)), "not saved: skops cannot hold a Holder"),
                                        (lambda x: x, "not saved: the saved skops model did not load back")])
def test_a_model_that_cannot_be_saved_is_still_done_with_a_note(tmp_path, value, why):
    from xraybench import harness

    stem = saved_model.staged_stem(tmp_path / "results", "run1")
    stem.parent.mkdir(parents=True)
    fields, _ = harness.run(_generic_spec(lambda p, s: Holder(value)), _dataset(tmp_path), {}, 1, save_model=str(stem))
    assert "model_file" not in fields and fields["model_note"].startswith(why), fields["model_note"]
    assert not list(stem.parent.iterdir()), "nothing staged is left"


def test_a_saved_estimator_loads_only_with_trusted_types(tmp_path):
    from xraybench import harness
    from xraybench.training.generic import TRAINER

    spec = _generic_spec(lambda p, s: Holder(np.arange(3)))
    stem = saved_model.staged_stem(tmp_path / "results", "run1")
    stem.parent.mkdir(parents=True)
    fields, _ = harness.run(spec, _dataset(tmp_path), {}, 1, save_model=str(stem))
    info = fields["model_file"]
    assert info["format"] == "skops" and info["types"] == [f"{__name__}.Holder"]
    path = Path(info["path"])
    restored = TRAINER.load_model(path, spec, {}, info["types"], (16, 16, 1))
    assert restored.predict(np.zeros((2, 16, 16, 1), np.uint8)).tolist() == [0.25, 0.25]
    from xraybench.errors import XRayBenchError

    with pytest.raises(XRayBenchError, match="needs types xraybench does not trust"):
        TRAINER.load_model(path, spec, {}, [], (16, 16, 1))  # a record that does not list it
    with pytest.raises(XRayBenchError, match="is the plugin of this model installed"):
        TRAINER.load_model(path, None, {}, info["types"], (16, 16, 1))  # no plugin: only scikit-learn's classes


def _module_function() -> None:  # a function of the plugin's own package: never a type a file may call
    pass


@pytest.mark.parametrize("name", ["numpy.testing._private.utils.runstring", "numpy.memmap", "scipy.io.savemat",
                                  f"{__name__}._module_function", "sklearn.utils.estimator_checks.check_estimator"])
def test_a_file_that_needs_a_callable_of_its_choosing_is_refused_before_loading(tmp_path, monkeypatch, name):
    """skops calls a trusted name with arguments from the file: a record and file swapped together
    must not get NumPy's code-running or file-writing helpers, nor any function, trusted."""
    import skops.io as sio

    from xraybench.errors import XRayBenchError
    from xraybench.training.generic import TRAINER

    spec = _generic_spec(lambda p, s: Holder(np.arange(3)))
    path = tmp_path / "m.skops"
    sio.dump(Holder(np.arange(3)), path)
    monkeypatch.setattr(sio, "get_untrusted_types", lambda file: [name, f"{__name__}.Holder"])
    loaded: list[object] = []
    monkeypatch.setattr(sio, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(XRayBenchError, match="needs types xraybench does not trust: " + re.escape(name)):
        TRAINER.load_model(path, spec, {}, [name, f"{__name__}.Holder"], (16, 16, 1))
    assert not loaded, "refused before skops read the file"


def _done_with_model(tmp_path: Path, fmt: str = "skops", payload: bytes = b"model bytes") -> tuple[ResultStore, dict]:
    store = ResultStore(tmp_path / "results")
    record, scores = make_record()
    staged = saved_model.staged_path(store.runs, record["run_id"], fmt)
    staged.parent.mkdir(parents=True)
    staged.write_bytes(payload)
    record["model_file"] = {"path": records.model_file_name(record["run_id"], fmt), "format": fmt, "types": [],
                            "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    return store, {"record": record, "scores": scores, "staged": staged}


def test_the_store_moves_the_staged_model_into_place_with_the_record(tmp_path):
    store, made = _done_with_model(tmp_path)
    store.save(made["record"], made["scores"])
    run_id = made["record"]["run_id"]
    assert not made["staged"].exists()
    assert (store.runs / f"{run_id}.skops").read_bytes() == b"model bytes"
    assert coerce(store.get(run_id)).saved_model.bytes == len(b"model bytes")


def test_a_staged_model_that_is_gone_or_changed_is_not_recorded(tmp_path):
    store, made = _done_with_model(tmp_path)
    made["staged"].write_bytes(b"other bytes")
    store.save(made["record"], made["scores"])
    record = coerce(store.get(made["record"]["run_id"]))
    assert record.model_file is None and "changed before it was recorded" in record.model_note
    assert not (store.runs / f"{record.run_id}.skops").exists()

    store, made = _done_with_model(tmp_path / "again")
    made["staged"].unlink()
    store.save(made["record"], made["scores"])
    record = coerce(store.get(made["record"]["run_id"]))
    assert record.model_file is None and "is not there" in record.model_note


@pytest.mark.parametrize("change, reason", [
    (lambda r: {**r["model_file"], "path": "runs/other-run.skops"}, "is not 'runs/"),
    (lambda r: {**r["model_file"], "path": "../../etc/passwd"}, "is not 'runs/"),
    (lambda r: {**r["model_file"], "sha256": "x" * 64}, "'sha256' does not match"),
    (lambda r: {**r["model_file"], "bytes": -1}, "'bytes' is -1, expected greater than or equal to 0"),
    (lambda r: {**r["model_file"], "format": "pickle"}, "'format' is \"pickle\", expected 'keras' or 'skops'"),
    (lambda r: {k: v for k, v in r["model_file"].items() if k != "sha256"}, "has no 'sha256'"),
])
def test_a_record_names_only_its_own_model_file(tmp_path, change, reason):
    _, made = _done_with_model(tmp_path)
    record = made["record"]
    parse(record)  # the good one
    with pytest.raises(InvalidRecord, match=reason):
        parse({**record, "model_file": change(record)})


def test_read_images_gives_the_arrays_the_run_trained_on(tmp_path):
    from xraybench.data import load_dataset

    data = make_kaggle_tree(tmp_path / "d", n_train=(8, 8), n_test=(4, 4), mode="RGB")
    test = load_dataset(str(data), image_size=20, channels=1).splits.test
    record = parse({**make_record()[0], "image_size": 20, "channels": 1})
    ids, images = saved_model.read_images([data / "test"], record)
    assert [os.path.relpath(i, data) for i in ids] == test.ids
    assert images.dtype == np.uint8 and np.array_equal(images, test.images)



def _tested_on(data: dict, size: int) -> records.RunRecord:
    return parse({**make_record()[0], "image_size": size, "channels": 1, "data": data})


def test_the_test_split_is_read_from_the_runs_data_and_checked_against_its_fingerprint(tmp_path):
    """``read_test_split`` (explain, the report and export): ``--data``, else the record's source,
    each refused in one line unless its fingerprint is the record's; a missing one says --data."""
    from xraybench.data import load_dataset
    from xraybench.errors import XRayBenchError

    data = make_kaggle_tree(tmp_path / "d", n_train=(8, 8), n_test=(4, 4))
    loaded = load_dataset(str(data), image_size=16, channels=1)
    described = loaded.describe()
    split = saved_model.read_test_split(_tested_on(described, 16))
    assert split.ids == loaded.splits.test.ids and np.array_equal(split.images, loaded.splits.test.images)
    assert split.source == data and np.array_equal(split.labels, loaded.splits.test.labels)
    moved = Path(shutil.copytree(data, tmp_path / "moved"))
    gone = {**described, "source": str(tmp_path / "gone")}
    assert saved_model.read_test_split(_tested_on(gone, 16), moved).source == moved
    with pytest.raises(XRayBenchError, match=r"data .*gone \(from its record\) is not here; pass --data PATH") as e:
        saved_model.read_test_split(_tested_on(gone, 16))
    assert "\n" not in str(e.value)
    with pytest.raises(XRayBenchError, match="data path .*nowhere does not exist; check --data"):
        saved_model.read_test_split(_tested_on(described, 16), tmp_path / "nowhere")
    with pytest.raises(XRayBenchError, match="records no data source; pass --data PATH"):
        saved_model.read_test_split(_tested_on({"fingerprint": loaded.fingerprint}, 16))
    other = make_kaggle_tree(tmp_path / "other", n_train=(8, 8), n_test=(4, 4), seed=3)
    with pytest.raises(XRayBenchError, match=r"the data at .*other is not the data run .* was tested on \(fingerprint"):
        saved_model.read_test_split(_tested_on(described, 16), other)


def test_a_run_on_the_builtin_copy_reads_this_installs_copy_when_its_own_path_is_gone(tmp_path):
    """A run recorded on the built-in 28 px copy elsewhere (another install, another machine): its
    test split comes from this install's copy, once that copy's fingerprint is the record's."""
    from xraybench.data import builtin, load_dataset
    from xraybench.errors import XRayBenchError

    if not builtin.available():
        pytest.skip("this install has no built-in copy")
    described = load_dataset(str(builtin.NPZ), image_size=28, channels=1).describe()
    elsewhere = {**described, "source": str(tmp_path / "other-install" / builtin.NPZ.name)}
    split = saved_model.read_test_split(_tested_on(elsewhere, 28))
    assert split.source == builtin.NPZ and len(split.ids) == sum(described["split_counts"]["test"].values())
    with pytest.raises(XRayBenchError, match=r"\(this install's built-in copy: the record's .*other-install.* is not "
                                             r"here\) is not the data run .* was tested on"):
        saved_model.read_test_split(_tested_on({**elsewhere, "fingerprint": "e" * 64}, 28))
    a_folder = {**elsewhere, "reader": "kaggle_folders", "dataset": "a folder of mine"}  # not the built-in copy
    with pytest.raises(XRayBenchError, match="is not here; pass --data PATH"):
        saved_model.read_test_split(_tested_on(a_folder, 28))

def _keras_spec(build):
    from xraybench import KerasModel

    return KerasModel(name="tiny_keras", description="test", build=build, image_size=16)


def _tiny_net(keras, shape, middle):
    inputs = keras.Input(shape=shape)
    x = middle(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x))


def _with_lambda(shape, params):
    import keras

    return _tiny_net(keras, shape, keras.layers.Lambda(lambda x: x * 2.0))


def _with_custom_layer(shape, params):
    import keras

    class Shift(keras.layers.Layer):  # not registered with Keras: found through this build when loading
        def __init__(self, by: float, **kwargs) -> None:
            super().__init__(**kwargs)
            self.by = by

        def call(self, x):
            return x + self.by

        def get_config(self):
            return {**super().get_config(), "by": self.by}

    return _tiny_net(keras, shape, Shift(0.5))


@pytest.mark.slow
@pytest.mark.parametrize("build, kept", [(_with_custom_layer, True), (_with_lambda, False)], ids=["custom-layer", "lambda"])
def test_a_keras_model_is_kept_only_if_it_loads_back_in_safe_mode(tmp_path, build, kept):
    from xraybench import harness

    spec = _keras_spec(build)
    params = {**spec.all_defaults(), "epochs": 1, "augment": "none"}
    stem = saved_model.staged_stem(tmp_path / "results", "run1")
    stem.parent.mkdir(parents=True)
    fields, scores = harness.run(spec, _dataset(tmp_path), params, 1, save_model=str(stem))
    if kept:
        assert fields["model_file"]["format"] == "keras" and Path(fields["model_file"]["path"]).is_file()
    else:
        assert "model_file" not in fields and not list(stem.parent.iterdir())
        assert fields["model_note"].startswith("not saved: the saved keras model did not load back"), fields["model_note"]


@pytest.mark.parametrize("tampered", [False, True])
def test_a_model_staged_on_a_worker_travels_as_bytes_and_is_kept_only_as_hashed(tmp_path, tampered):
    """Dask: the worker's child stages the model in the worker's own folder; its bytes return with
    the record and the client's store keeps them only if they hash to what the record says."""
    from xraybench.distributed.runs import stage_returned_model
    from xraybench.distributed.worker import _staged_bytes

    worker, made = _done_with_model(tmp_path / "worker")  # staged under the worker's folder only
    record = made["record"]
    sent = _staged_bytes(coerce(record), str(worker.root))
    assert sent == b"model bytes"
    client = ResultStore(tmp_path / "client")
    stage_returned_model(client.runs, coerce(record), sent + b"!" if tampered else sent)
    client.save(record, made["scores"])
    kept = json.loads((client.runs / f"{record['run_id']}.json").read_text())
    if tampered:
        assert kept["model_file"] is None and "changed before it was recorded" in kept["model_note"]
    else:
        assert (client.root / kept["model_file"]["path"]).read_bytes() == b"model bytes"
    assert not [p for p in client.runs.iterdir() if ".staged" in p.name]
