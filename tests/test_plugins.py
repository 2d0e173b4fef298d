import types

import pytest

from xraybench import GenericModel, hookimpl
from xraybench.errors import PluginError
from xraybench.plugins import load_registry
from xraybench.testing import registered_plugin


def test_first_party_plugins_register_through_entry_points():
    registry = load_registry()
    for name in ("baseline_cnn", "baseline_cnn_bn", "baseline_cnn_weighted", "deep_cnn", "resnet_small",
                 "mobilenet_v3_small", "logreg_pixels", "svm_rbf_pixels", "random_forest_pixels",
                 "hist_gradient_boosting_pixels"):
        spec = registry.models[name]
        assert spec.distribution == "xraybench" and spec.search_space is not None
    assert {"kaggle_folders", "medmnist_npz"} <= set(registry.datasets)
    assert all(p.status == "ok" for p in registry.plugins), [p for p in registry.plugins if p.status != "ok"]


def test_broken_plugins_are_reported_and_the_rest_work(monkeypatch):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_import_fails,xb_register_raises,xb_test_models")
    registry = load_registry()
    by_name = {p.name: p for p in registry.plugins}
    assert by_name["xb_import_fails"].status == "error"
    assert "import failed: ImportError: this plugin cannot be imported" == by_name["xb_import_fails"].reason
    assert by_name["xb_register_raises"].status == "error"
    assert "register_models raised RuntimeError" in by_name["xb_register_raises"].reason
    assert "baseline_cnn" in registry.models and "xb_good" in registry.models


def test_duplicate_model_names_name_both_distributions(monkeypatch):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_duplicate")
    registry = load_registry()
    with pytest.raises(PluginError) as err:
        registry.model("baseline_cnn")
    assert "xraybench 0.1.0" in str(err.value) and "local 0 (plugin xb_duplicate)" in str(err.value)


def test_disable_by_env_and_option(monkeypatch):
    monkeypatch.setenv("XRAYBENCH_DISABLE_PLUGINS", "classical")
    registry = load_registry(["zoo"])
    assert "logreg_pixels" not in registry.models and "deep_cnn" not in registry.models
    assert "baseline_cnn" in registry.models
    assert {p.name: p.status for p in registry.plugins}["classical"] == "disabled"


def test_unknown_model_lists_known_ones():
    with pytest.raises(PluginError) as err:
        load_registry().model("no_such_model")
    assert "unknown model 'no_such_model'" in str(err.value) and "baseline_cnn" in str(err.value)


def test_registered_plugin_context_manager():
    module = types.ModuleType("inline_plugin")

    @hookimpl
    def register_models(register):
        register(GenericModel(name="inline_model", description="inline", create=lambda p, s: None))

    module.register_models = register_models
    with registered_plugin(module):
        assert "inline_model" in load_registry().models
    assert "inline_model" not in load_registry().models


def test_wrong_spec_type_is_an_error(monkeypatch):
    module = types.ModuleType("wrong_type")

    @hookimpl
    def register_models(register):
        register({"name": "dict_model"})

    module.register_models = register_models
    with registered_plugin(module):
        registry = load_registry()
    info = next(p for p in registry.plugins if p.name == "wrong_type")
    assert info.status == "error" and "registered dict" in info.reason
