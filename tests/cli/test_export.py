"""``xraybench export``: a run's saved model as ONNX (checked against its stored scores) or an MLflow run.

The end-to-end tests take the session's Keras and scikit-learn runs trained on tiny generated data
(conftest's ``trained``), export them, run the ONNX files with onnxruntime and read the MLflow runs back with MlflowClient.
Each kind of test skips, saying which extra is missing, where ``xraybench[onnx]`` or
``xraybench[mlflow]`` is not installed (``.ci/run`` installs both through the test extra).
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from proctools import one_line_error, run_cli
from recordfactory import TRAINED_MODELS as MODELS, TRAINED_SIZE, make_record

from xraybench import export
from xraybench.errors import XRayBenchError
from xraybench.export import common as export_common, onnx_file
from xraybench.cli import main
from xraybench.records import coerce
from xraybench.results import ResultStore
from xraybench.synthetic import make_kaggle_tree

def _need_onnx(model: str = "") -> None:
    for module in ("onnx", "onnxruntime", *(("tf2onnx", "tensorflow") if model != "logreg_pixels" else ()),
                   *(("skl2onnx",) if model != "baseline_cnn" else ())):
        pytest.importorskip(module, reason=f'{module} is not installed: pip install "xraybench[onnx]"')


def _need_mlflow() -> None:
    pytest.importorskip("mlflow", reason='mlflow-skinny is not installed: pip install "xraybench[mlflow]"')


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- ONNX ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_onnx_export_reproduces_the_stored_scores_from_raw_pixels(trained_copy, model, capsys):
    _need_onnx(model)
    import onnx

    data, results, ids = trained_copy
    code, out, err = run_cli(capsys, "export", ids[model], "--to", "onnx", "--results", str(results))
    assert code == 0, err
    path = results / "exports" / f"{ids[model]}.onnx"
    assert f"wrote {path}" in out and "test images: largest difference from the stored scores" in out
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file is left"
    assert path.stat().st_mode & 0o777 == onnx_file._shared_mode(), "a plain file's mode, not the temporary file's 0600"

    graph = onnx.load(str(path))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta[export.OWNER_KEY] == ids[model]
    (inp,), (outp,) = graph.graph.input, graph.graph.output
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [TRAINED_SIZE, TRAINED_SIZE, 1]
    assert outp.name == "pneumonia_score" and outp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    # As a user would: the test images read from their files, scored by onnxruntime, beside the stored scores.
    from xraybench import saved_model

    store = ResultStore(results)
    record = coerce(store.get(ids[model]))
    stored = store.scores(ids[model])
    files = [data / i for i in stored["test_ids"]]
    _, images = saved_model.read_images(files, record)
    got = export.onnx_scores(path, images)
    gap = float(np.max(np.abs(got - np.asarray(stored["test_scores"]))))
    assert gap <= export.TOLERANCE, gap


@pytest.mark.slow
def test_onnx_export_replaces_only_its_own_files(trained_copy, tmp_path, capsys):
    _need_onnx("logreg_pixels")
    _, results, ids = trained_copy
    run_id = ids["logreg_pixels"]
    out = tmp_path / "mine.onnx"
    assert run_cli(capsys, "export", run_id, "--to", "onnx", "--out", str(out), "--results", str(results))[0] == 0
    code, shown, err = run_cli(capsys, "export", run_id, "--to", "onnx", "--out", str(out), "--results", str(results))
    assert code == 0 and f"replaced {out}" in shown, err

    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"a file xraybench did not write")
    err = one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--out", str(theirs), "--results", str(results)))
    assert "is not an ONNX file xraybench exported" in err
    assert theirs.read_bytes() == b"a file xraybench did not write"
    link = tmp_path / "link.onnx"
    link.symlink_to(out)  # even a link to an export of ours is not followed or replaced
    assert "is not an ONNX file" in one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--out", str(link),
                                                             "--results", str(results)))
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx") == ["link.onnx", "mine.onnx", "theirs.onnx"]


@pytest.mark.slow
def test_an_export_that_does_not_reproduce_the_scores_is_not_kept(trained_copy, capsys):
    """The stored scores the child compares with, moved by 0.01: it refuses, and the only file
    removed is the temporary one it wrote; an earlier export at the target stays as it was."""
    _need_onnx("logreg_pixels")
    _, results, ids = trained_copy
    run_id = ids["logreg_pixels"]
    target = results / "exports" / f"{run_id}.onnx"
    assert run_cli(capsys, "export", run_id, "--to", "onnx", "--results", str(results))[0] == 0
    before = target.read_bytes()
    scores_file = results / "runs" / f"{run_id}.scores.json"
    scores = json.loads(scores_file.read_text())
    scores["test_scores"] = [min(1.0, s + 0.01) if s < 0.5 else s - 0.01 for s in scores["test_scores"]]
    scores_file.write_text(json.dumps(scores))
    err = one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--results", str(results)))
    assert "differ from run" in err and "stored test scores by up to" in err and "not written" in err
    assert target.read_bytes() == before
    assert _files(results / "exports") == [target.name]


@pytest.mark.slow
def test_onnx_one_line_errors(trained_copy, tmp_path, capsys, monkeypatch):
    _need_onnx()
    data, results, ids = trained_copy
    run_id = ids["baseline_cnn"]
    assert "no single run matches 'nope'" in one_line_error(*run_cli(capsys, "export", "nope", "--to", "onnx", "--results",
                                                                        str(results)))
    record = coerce(ResultStore(results).get(run_id))
    model = results / record.saved_model.path
    original = model.read_bytes()
    model.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    err = one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--results", str(results)))
    assert "is not the one recorded" in err
    model.write_bytes(original)

    elsewhere = make_kaggle_tree(tmp_path / "other", seed=7)  # other images: another fingerprint
    err = one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--data", str(elsewhere), "--results",
                                   str(results)))
    assert "is not the data run" in err
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    code, out, err = run_cli(capsys, "export", run_id, "--to", "onnx", "--data", str(moved), "--results", str(results))
    assert code == 0, err

    real = export_common.find_spec
    monkeypatch.setattr(export_common, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    err = one_line_error(*run_cli(capsys, "export", run_id, "--to", "onnx", "--results", str(results)))
    assert 'needs onnxruntime, which is not installed: pip install "xraybench[onnx]"' in err
    assert "--out and --data are for --to onnx" in one_line_error(*run_cli(
        capsys, "export", run_id, "--to", "mlflow", "--out", "x.onnx", "--results", str(results)))


def test_a_run_without_a_model_file_or_an_onnx_form_is_refused(xray_data, xraybench_env, test_plugins, capsys):
    _need_onnx("logreg_pixels")
    results = xraybench_env / "results"
    assert main(["run", "--model", "xb_good", "--data", str(xray_data), "--image-size", "16", "--results",
                 str(results)]) == 0
    assert main(["run", "--model", "xb_good", "--data", str(xray_data), "--image-size", "16", "--no-save-model",
                 "--force", "--results", str(results)]) == 0
    saved, unsaved = sorted(ResultStore(results).load(full=True).records, key=lambda r: r.model_file is None)
    capsys.readouterr()
    err = one_line_error(*run_cli(capsys, "export", unsaved.run_id, "--to", "onnx", "--results", str(results)))
    assert "has no model file (not saved: the run was started with --no-save-model)" in err
    err = one_line_error(*run_cli(capsys, "export", saved.run_id, "--to", "onnx", "--results", str(results)))
    assert "defines no onnx_model(shape), so it cannot be exported to ONNX" in err
    assert not (results / "exports").exists() or not any((results / "exports").iterdir())


@pytest.mark.slow
def test_export_loads_no_backend_or_plugin_in_its_own_process(trained_copy):
    _need_onnx()
    _, results, ids = trained_copy
    heavy = ("keras", "tensorflow", "jax", "torch", "sklearn", "skops", "xraybench_plugins", "tf2onnx", "skl2onnx",
             "onnxruntime")
    script = ("import sys; from xraybench.cli import main; code = main(sys.argv[1:]); "
              f"print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules)); sys.exit(code)")
    for model in MODELS:
        out = subprocess.run([sys.executable, "-c", script, "export", ids[model], "--to", "onnx", "--results",
                              str(results)], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.splitlines()[-1] == "LOADED []"


# --- the graph around a Keras network: scaling, equalisation, shift averaging ----------------------------


@pytest.mark.slow
@pytest.mark.parametrize("equalize,tta", [(False, True), (True, False), (True, True)])
def test_the_onnx_graph_scores_as_the_keras_trainer_does(tmp_path, equalize, tta):
    """The preprocessing ``wrap`` puts in front of a converted network gives what FittedKeras
    gives for the same uint8 images, with equalisation and shift averaging on."""
    _need_onnx("baseline_cnn")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras exporter here runs on TensorFlow")
    import onnx

    from xraybench.training.keras import FittedKeras

    size = 32
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    net = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, size, size, 1), dtype=np.uint8)
    images[:, :4] = 255  # a bright border: a shift moves it, and an equalised image's histogram changes with it
    expected = FittedKeras(net, None, 4, tta=tta, equalize=equalize, inference=net).predict_proba(images).reshape(-1)

    path = tmp_path / "net.onnx"
    net.export(str(path), format="onnx", verbose=False, opset_version=export.ONNX_OPSET,
               input_signature=[keras.InputSpec(shape=(None, size, size, 1), dtype="float32")])
    model = export.wrap(onnx.load(str(path)), (size, size, 1), prepare="equalize" if equalize else "scale", tta=tta)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "wrapped.onnx"))
    got = export.onnx_scores(tmp_path / "wrapped.onnx", images)
    assert got.shape == (9,)
    assert float(np.max(np.abs(got - expected))) <= 1e-5
    assert float(np.ptp(expected)) > 1e-3, "the images score differently, so a wrong preprocessing would show"


def test_a_converter_failure_is_one_line(tmp_path, monkeypatch):
    """What a converter raises (an op tf2onnx cannot map, say) becomes one line naming the run."""
    _need_onnx("logreg_pixels")
    from xraybench import saved_model

    class Estimator:
        def predict_proba(self, images):
            return np.zeros(len(images))

        def onnx_model(self, shape):
            raise RuntimeError("Unsupported ops: Counter({'FancyOp': 1})\nmore detail")

    record = coerce(make_record()[0])
    monkeypatch.setattr(saved_model, "load_model", lambda store, rec: saved_model.LoadedModel(
        rec, tmp_path, Estimator().predict_proba))
    with pytest.raises(XRayBenchError) as info:
        onnx_file._estimator_graph(ResultStore(tmp_path), record)
    message = str(info.value)
    assert "cannot be converted to ONNX (RuntimeError: Unsupported ops: Counter({'FancyOp': 1}))" in message
    assert "\n" not in message


# --- MLflow --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["default", "file"])
def test_mlflow_run_reads_back_with_its_client(trained_copy, tmp_path, capsys, monkeypatch, store_kind):
    _need_mlflow()
    from mlflow.tracking import MlflowClient

    _, results, ids = trained_copy
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test: export may set it
    run_id = ids["baseline_cnn"]
    if store_kind == "default":
        uri, args = f"sqlite:///{(results / 'mlflow' / 'mlflow.db').resolve()}", []
    else:
        uri = (tmp_path / "mlruns").resolve().as_uri()
        args = ["--tracking-uri", uri, "--experiment", "chest"]
    code, out, err = run_cli(capsys, "export", run_id, "--to", "mlflow", *args, "--results", str(results))
    assert code == 0, err
    experiment = "chest" if args else "xraybench"
    assert f"logged run {run_id} to MLflow at {uri}: experiment {experiment!r}" in out
    if store_kind == "default":
        assert (results / "mlflow" / "artifacts").is_dir(), "artifacts beside the database, not under the current folder"

    if store_kind == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    store = ResultStore(results)
    record = coerce(store.get(run_id))
    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    assert run.data.params == export.run_params(record)
    assert run.data.params["epochs"] == "1" and run.data.params["run.seed"] == str(record.seed)
    single = {name: value for name, value, _ in export.run_metrics(record) if not name.startswith("history/")}
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("history/")} == pytest.approx(single, rel=1e-12)
    assert run.data.metrics["test_at_val_threshold/accuracy"] == pytest.approx(record.metrics_at_val_threshold["accuracy"])
    assert run.data.metrics["test_at_0.5/roc_auc"] == pytest.approx(record.metrics["roc_auc"])
    assert run.data.metrics["val_threshold"] == pytest.approx(record.val_threshold["value"])
    for name, values in record.history.items():
        steps = sorted(client.get_metric_history(run.info.run_id, f"history/{name}"), key=lambda m: m.step)
        assert [m.value for m in steps] == pytest.approx(values)
    tags = run.data.tags
    assert tags["xraybench.run_id"] == run_id and tags["xraybench.model"] == "baseline_cnn"
    assert tags["xraybench.seed"] == str(record.seed) and tags["xraybench.data_fingerprint"] == record.data["fingerprint"]
    assert tags["xraybench.plugin_version"] == record.version and tags["xraybench.version"]

    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "back")))
    runs = results / "runs"
    originals = {f"record/{run_id}.json": runs / f"{run_id}.json", f"scores/{run_id}.scores.json":
                 runs / f"{run_id}.scores.json", f"model/{run_id}.keras": results / record.saved_model.path}
    got = {str(p.relative_to(local)): p for p in local.rglob("*") if p.is_file()}
    assert set(got) == set(originals)
    for name, path in originals.items():
        assert hashlib.sha256(got[name].read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest(), name
    assert json.loads(got[f"record/{run_id}.json"].read_text())["run_id"] == run_id

    code, out, _ = run_cli(capsys, "export", run_id, "--to", "mlflow", *args, "--results", str(results))
    assert code == 0 and "is already in MLflow experiment" in out and "nothing logged" in out
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_mlflow_parameters_are_flat_and_masked():
    record = coerce({**make_record(seed=3)[0], "params": {"api_token": "hunter2", "url": "postgresql://u:pw@db/x",
                                                          "layers": [1, 2], "opt": {"name": "adam", "lr": 0.1},
                                                          "weird key!": True}})
    params = export.run_params(record)
    assert params["api_token"] == "***" and params["url"] == "postgresql://u:***@db/x"
    assert params["layers"] == "[1, 2]" and params["opt.name"] == "adam" and params["opt.lr"] == "0.1"
    assert params["weird key_"] == "true" and params["run.seed"] == "3"
    assert "hunter2" not in json.dumps(params) and "pw@" not in json.dumps(params)


@pytest.mark.slow
def test_mlflow_errors_never_show_the_uris_secrets(trained, capsys, monkeypatch):
    _need_mlflow()
    _, results, ids = trained
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://alice:s3cr3tpw@127.0.0.1:{port}/?token=t0ps3cret"
    code, out, err = run_cli(capsys, "export", ids["logreg_pixels"], "--to", "mlflow", "--tracking-uri", uri, "--results",
                             str(results))
    err = one_line_error(code, out, err)
    assert "to MLflow at http://alice:***@127.0.0.1" in err
    assert "s3cr3tpw" not in out + err and "t0ps3cret" not in out + err

    real = export_common.find_spec
    monkeypatch.setattr(export_common, "find_spec", lambda name: None if name == "mlflow" else real(name))
    err = one_line_error(*run_cli(capsys, "export", ids["logreg_pixels"], "--to", "mlflow", "--results", str(results)))
    assert 'needs mlflow-skinny, which is not installed: pip install "xraybench[mlflow]"' in err
