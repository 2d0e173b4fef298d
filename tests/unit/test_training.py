"""The trainer interface: each spec type's trainer, and keras imported by no core module outside it."""

import ast
import os
from pathlib import Path

import numpy as np
import pytest

from xraybench import training
from xraybench.errors import PluginFailure
from xraybench.specs import GenericModel, ImageSet, KerasModel, ModelSpec, spec_type
from xraybench.training import has_trainer, register_trainer, trainer_for

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = {"keras", "tensorflow", "torch", "jax"}
ALLOWED = {
    "xraybench/training/keras.py": "the Keras trainer itself",
    "xraybench/environment.py": "names the GPU of a backend a run already imported (sys.modules), imports none",
    "xraybench/training/backend.py": "import_quietly(): imports the chosen backend on request, with its start-up "
                                     "noise held back (check and tune); never at module import",
    "xraybench/explain/gradcam.py": "Grad-CAM: keras and the backend's gradients (tensorflow or jax), imported inside its "
                                    "functions when a Keras model is explained; never at module import",
    "xraybench/export/onnx_file.py": "ONNX: keras' own exporter (keras.InputSpec, on TensorFlow), imported inside the export "
                                     "child's function; never at module import",
    "xraybench/training/batches.py": "the Keras trainer's batches: tf.data under TensorFlow, keras.utils.PyDataset "
                                     "otherwise, imported inside the functions that make them; never at module import",
}


def test_each_spec_type_has_its_trainer():
    keras_trainer, generic_trainer = trainer_for(KerasModel.kind), trainer_for(GenericModel.kind)
    assert type(keras_trainer).__module__ == "xraybench.training.keras" and keras_trainer.epochs
    assert type(generic_trainer).__module__ == "xraybench.training.generic" and not generic_trainer.epochs
    assert generic_trainer.backend() is None
    assert trainer_for(ModelSpec.kind) is None and trainer_for("no-such-kind") is None

    class OwnKeras(KerasModel):  # a plugin's subclass keeps its base's trainer
        pass

    class OwnKind(KerasModel):  # ...but a kind of its own, which its runs record, needs a trainer of its own
        kind = "own"

    assert trainer_for(OwnKeras(name="k", description="")) is keras_trainer and has_trainer(OwnKeras)
    assert not has_trainer(OwnKind) and trainer_for(OwnKind(name="o", description="")) is None
    assert not has_trainer(ModelSpec) and spec_type("keras") is KerasModel and spec_type("nope") is ModelSpec


def test_a_trainer_is_registered_for_a_kind_of_its_own():
    class SameKind(ModelSpec):
        kind = "keras"

    class NoKind(KerasModel):
        pass

    for spec_type_, owner in ((SameKind, "KerasModel"), (NoKind, "KerasModel"), (ModelSpec, "ModelSpec")):
        with pytest.raises(ValueError, match=f"{spec_type_.__name__}.kind '\\w+' is {owner}'s; give the spec type"):
            register_trainer(spec_type_, "xraybench.training.keras")
    assert not has_trainer(SameKind) and trainer_for(SameKind(name="s", description="")) is None


FAMILY = '''
from dataclasses import dataclass

import numpy as np

import xraybench
from xraybench.specs import ModelSpec
from xraybench.training import Fitted, register_trainer


@dataclass
class BrightnessModel(ModelSpec):
    kind = "brightness"
    library = "numpy"


class BrightnessTrainer:
    """Scores an image by its mean brightness, centred between the training classes' means."""

    epochs = False
    epoch_keys = {}

    def prepare(self):
        pass

    def fit(self, spec, train, val, params, seed, precision="auto", on_epoch=None, callbacks=None):
        means = train.images.mean(axis=(1, 2, 3))
        middle = (means[train.labels == 0].mean() + means[train.labels == 1].mean()) / 2

        def predict(images):
            return 1.0 / (1.0 + np.exp(-(images.mean(axis=(1, 2, 3)) - middle) / 8.0))

        return Fitted(predict, {"history": {}, "epochs_run": None, "train_seconds": 0.0, "param_count": 1}, "float64")

    def backend(self):
        return None

    def check_build(self, spec, shape, params, seed):
        return "nothing to build"


register_trainer(BrightnessModel, BrightnessTrainer())


@xraybench.hookimpl
def register_models(register):
    register(BrightnessModel(name="brightness", description="mean brightness"))
'''


def test_a_third_family_is_a_spec_type_and_a_registered_trainer(tmp_path, monkeypatch, capsys, xray_data):
    """What docs/plugins.md promises for, say, PyTorch: a plugin's own ModelSpec subclass with a
    registered trainer is checked, run, recorded and shown; nothing in the core names it."""
    import json

    from xraybench.cli import main

    (tmp_path / "xb_third_family.py").write_text(FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_third_family")
    monkeypatch.setattr(training, "_TRAINERS", dict(training._TRAINERS))
    monkeypatch.setattr(training, "_OWNERS", dict(training._OWNERS))
    assert main(["check", "brightness", "--image-size", "16"]) == 0
    assert main(["run", "--model", "brightness", "--data", str(xray_data), "--image-size", "16"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--format", "json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["model"] == "brightness")
    assert row["runs"] == 1 and row["accuracy"] > 0.5 and row["backend"] is None
    assert row["hardware"][0].startswith(f"numpy {np.__version__} on ")


def test_a_spec_type_without_a_trainer_is_a_plugin_failure():
    from xraybench import harness

    class Orphan(ModelSpec):
        kind = "orphan"

    data = ImageSet(np.zeros((2, 8, 8, 1), dtype=np.uint8), np.array([0, 1]), ["a", "b"], ["a", "b"])
    with pytest.raises(PluginFailure, match="Orphan, which the harness cannot train"):
        harness.fit(Orphan(name="o", description=""), data, data, {}, seed=0)


def test_no_core_module_outside_its_trainer_imports_a_backend():
    """Training knowledge in one place: harness, runner, tuning, checks and the CLI go through
    xraybench.training (plugins' own build functions may import keras)."""
    offenders = []
    for path in sorted((ROOT / "xraybench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}:{node.lineno} {n}" for n in names if n.split(".")[0] in BACKENDS]
    assert not offenders, offenders
