"""The trainer interface: each spec type's trainer, and keras imported by no core module outside it."""

import ast
from pathlib import Path

import numpy as np
import pytest

from xraybench.errors import PluginFailure
from xraybench.specs import GenericModel, ImageSet, KerasModel, ModelSpec
from xraybench.training import trainer_for

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"keras", "tensorflow", "torch", "jax"}
ALLOWED = {
    "xraybench/training/keras.py": "the Keras trainer itself",
    "xraybench/environment.py": "names the GPU of a backend a run already imported (sys.modules), imports none",
    "xraybench/training/backend.py": "import_quietly(): imports the chosen backend on request, with its start-up "
                                     "noise held back (check and tune); never at module import",
    "xraybench/explain/gradcam.py": "Grad-CAM: keras and the backend's gradients (tensorflow or jax), imported inside its "
                                    "functions when a Keras model is explained; never at module import",
    "xraybench/export.py": "ONNX: keras' own exporter (keras.InputSpec, on TensorFlow), imported inside the export "
                           "child's function; never at module import",
}


def test_each_spec_type_has_its_trainer():
    keras_trainer, generic_trainer = trainer_for(KerasModel.kind), trainer_for(GenericModel.kind)
    assert type(keras_trainer).__module__ == KerasModel.trainer and keras_trainer.epochs
    assert type(generic_trainer).__module__ == GenericModel.trainer and not generic_trainer.epochs
    assert generic_trainer.backend() is None
    assert trainer_for(ModelSpec.kind) is None and trainer_for("no-such-kind") is None


def test_a_new_family_is_one_spec_type_and_one_trainer_module(tmp_path, monkeypatch):
    """What docs/architecture.md promises for, say, PyTorch: nothing else in the core changes."""
    from xraybench import harness

    (tmp_path / "xb_fake_family.py").write_text(
        "import numpy as np\n"
        "from xraybench.training import Fitted\n"
        "class FakeTrainer:\n"
        "    epochs = False\n"
        "    def fit(self, spec, train, val, params, seed, precision='auto', on_epoch=None, callbacks=None):\n"
        "        mean = float(train.labels.mean())\n"
        "        return Fitted(lambda images: np.full(len(images), mean), {'param_count': 1}, 'float32')\n"
        "    def backend(self):\n"
        "        return 'fake'\n"
        "TRAINER = FakeTrainer()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class FakeModel(ModelSpec):
        kind = "fake"
        trainer = "xb_fake_family"

    images = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    data = ImageSet(images, np.array([0, 1, 1, 1]), ["a", "b", "c", "d"], ["a", "b", "c", "d"])
    fitted = harness.fit(FakeModel(name="f", description=""), data, data, {}, seed=0)
    assert fitted.info["param_count"] == 1
    assert list(harness.predict(fitted, images, "test", "f")) == [0.75] * 4


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
