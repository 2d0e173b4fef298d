"""Which Keras backend a run takes (xraybench/training/backend.py), and the default install's
backend (JAX, no TensorFlow) training the main job end to end."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from proctools import kill_group
from xraybench.data import builtin
from xraybench.training import backend


@pytest.fixture
def only(monkeypatch):
    """Pretend exactly these modules are installed."""

    def install(*names):
        monkeypatch.setenv("KERAS_BACKEND", "recorded")  # so that monkeypatch restores whatever was there
        monkeypatch.delenv("KERAS_BACKEND")
        monkeypatch.setattr(backend, "installed", lambda name: name in names)

    return install


def test_jax_whatever_else_is_installed_and_torch_only_when_asked(only, monkeypatch):
    only("jax")
    assert backend.keras_backend() == "jax"
    only("tensorflow", "jax", "torch")  # after installing ".[tensorflow]" or ".[test]": still JAX
    assert backend.keras_backend() == "jax"
    only("tensorflow", "torch")  # TensorFlow only where JAX is missing
    assert backend.keras_backend() == "tensorflow"
    only("torch")
    assert backend.keras_backend() is None
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert backend.keras_backend() == "torch" and backend.unusable("torch") is None


def test_the_documented_rule_says_jax_whatever_is_installed():
    assert backend.PREFERENCE[0] == "jax"
    assert "when unset, JAX, whatever extras are installed" in backend.RULE
    assert "TensorFlow if installed" not in backend.RULE
    render = runpy.run_path(str(Path(__file__).resolve().parents[2] / "docs" / "clidoc.py"))["render"]

    assert backend.RULE in render()  # docs/cli.md's "Environment" says it (test_docs keeps the file equal)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "JAX, whatever extras are installed, unless `KERAS_BACKEND` names" in readme.replace("\n", " ")


def test_a_cuda_jax_goes_before_a_cpu_tensorflow(only):
    only("tensorflow", "jax", "jax_cuda12_plugin")
    assert backend.keras_backend() == "jax"


def test_the_suite_names_tensorflow_explicitly_where_it_is_installed():
    """tests/conftest.py sets KERAS_BACKEND=tensorflow before anything imports Keras (the published
    rows' backend), since the default is JAX; a KERAS_BACKEND the caller set is left alone."""
    import conftest

    if not backend.installed("tensorflow"):
        pytest.skip("TensorFlow is not installed: the suite trains on the default, JAX")
    assert os.environ["KERAS_BACKEND"] == (conftest.CALLERS_BACKEND or "tensorflow")


def test_the_users_choice_wins(only, monkeypatch):
    only("tensorflow", "jax")
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert backend.keras_backend() == "torch"


def test_ensure_pins_the_choice_for_keras_and_child_processes(only, monkeypatch):
    only("jax")
    assert backend.ensure_keras_backend() == "jax"
    assert os.environ["KERAS_BACKEND"] == "jax"


def test_none_installed_is_none_and_leaves_the_environment_alone(only):
    only()
    assert backend.ensure_keras_backend() is None
    assert "KERAS_BACKEND" not in os.environ


def test_a_backend_asked_for_but_missing_is_a_one_line_plugin_failure(only, monkeypatch):
    from xraybench.errors import PluginFailure
    from xraybench.plugins import load_registry
    from xraybench.training.keras import TRAINER

    spec = load_registry().model("baseline_cnn")
    only("jax")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(PluginFailure, match=r'KERAS_BACKEND=tensorflow but tensorflow is not installed: '
                                            r'python -m pip install "xraybench\[tensorflow\]", or unset') as err:
        TRAINER.fit(spec, None, None, {}, seed=1)
    assert "\n" not in str(err.value)


def test_a_keras_model_without_a_backend_is_a_one_line_plugin_failure(only):
    from xraybench.errors import PluginFailure
    from xraybench.plugins import load_registry
    from xraybench.training.keras import TRAINER

    spec = load_registry().model("baseline_cnn")
    only()
    with pytest.raises(PluginFailure, match="no Keras backend is installed: python -m pip install jax") as err:
        TRAINER.fit(spec, None, None, {}, seed=1)
    assert "\n" not in str(err.value)


def test_installed_is_false_for_a_module_that_is_blocked():
    # find_spec of a name whose sys.modules entry is None is None: how the next test hides TensorFlow.
    sys.modules.setdefault("xraybench_no_such_backend", None)
    try:
        assert not backend.installed("xraybench_no_such_backend")
        assert not backend.installed("xraybench_not_a_module_at_all")
        assert backend.installed("json") and backend.installed("xraybench")
    finally:
        sys.modules.pop("xraybench_no_such_backend", None)


@pytest.mark.slow
@pytest.mark.skipif(not backend.installed("jax"), reason="needs jax, the default install's Keras backend")
def test_default_install_trains_the_main_job_with_jax_and_without_tensorflow(tmp_path):
    """TensorFlow hidden (as in ``pip install xraybench``) and no KERAS_BACKEND: the run picks JAX,
    feeds it through keras.utils.PyDataset, and records a finished run that names JAX."""
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XRAYBENCH_INPUT")}
    hide_tf = ("import sys; sys.modules['tensorflow'] = None; from xraybench.cli import main; "
               "sys.exit(main())")
    proc = subprocess.Popen(
        [sys.executable, "-c", hide_tf, "run", "--model", "baseline_cnn", "--data", str(builtin.NPZ),
         "--epochs", "1", "--no-isolation", "--results", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=600)
    finally:
        kill_group(proc)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, output, "")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    [path] = [p for p in Path(tmp_path, "runs").glob("*.json") if not p.name.endswith(".scores.json")]
    record = json.loads(path.read_text())
    assert record["status"] == "done" and record["epochs_run"] == 1
    assert record["environment"]["backend"] == "jax"
    assert 0.5 < record["metrics"]["accuracy"] <= 1.0
