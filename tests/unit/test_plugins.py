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


def test_a_spec_type_without_a_trainer_is_refused_in_one_line():
    from xraybench.specs import ModelSpec

    class Orphan(ModelSpec):
        kind = "orphan"

    module = types.ModuleType("orphans")

    @hookimpl
    def register_models(register):
        register(Orphan(name="orphan_model", description="x"))
        register(GenericModel(name="adopted", description="x", create=lambda p, s: None))

    module.register_models = register_models
    with registered_plugin(module):
        registry = load_registry()
    status, reason = _status(registry, "orphans")
    assert status == "error" and "\n" not in reason
    assert reason == ("'orphan_model' is of type Orphan, which has no trainer: register one with "
                      "xraybench.register_trainer")
    assert "orphan_model" not in registry.models and "adopted" in registry.models
    with pytest.raises(PluginError) as err:
        registry.model("orphan_model")
    assert str(err.value) == f"model 'orphan_model' is unavailable: plugin orphans failed: {reason}"


def _module(name, **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _models(*names):
    @hookimpl
    def register_models(register):
        for n in names:
            register(GenericModel(name=n, description=n, create=lambda p, s: None))

    return register_models


def _status(registry, name):
    info = next(p for p in registry.plugins if p.name == name)
    return info.status, info.reason


def test_misspelled_hook_is_an_error_naming_it_and_the_rest_load():
    @hookimpl
    def register_model(register):  # missing "s"
        raise AssertionError("never called")

    with registered_plugin(_module("typo_plugin", register_model=register_model)), \
            registered_plugin(_module("fine_plugin", register_models=_models("fine_model"))):
        registry = load_registry()
    status, reason = _status(registry, "typo_plugin")
    assert status == "error" and "\n" not in reason
    assert reason.startswith("unknown hook register_model;") and "register_models" in reason
    assert "fine_model" in registry.models and _status(registry, "fine_plugin") == ("ok", "")


def test_hook_with_wrong_argument_names_is_an_error():
    @hookimpl
    def register_models(reg):
        raise AssertionError("never called")

    with registered_plugin(_module("bad_args", register_models=register_models)):
        status, reason = _status(load_registry(), "bad_args")
    assert status == "error" and "\n" not in reason
    assert reason.startswith("invalid hook implementation:") and "'reg'" in reason


def test_undecorated_hook_is_an_error_not_silently_ignored():
    def register_models(register):  # no @hookimpl
        register(GenericModel(name="unmarked_model", description="x", create=lambda p, s: None))

    with registered_plugin(_module("unmarked", register_models=register_models)):
        registry = load_registry()
    status, reason = _status(registry, "unmarked")
    assert status == "error" and "register_models is not marked @xraybench.hookimpl" in reason
    assert "unmarked_model" not in registry.models


def test_plugin_without_hooks_is_an_error():
    with registered_plugin(_module("empty_plugin", helper=lambda: None)):
        status, reason = _status(load_registry(), "empty_plugin")
    assert status == "error" and "implements no xraybench hook" in reason


def test_each_plugin_is_called_in_isolation():
    @hookimpl
    def register_models(register):
        register(GenericModel(name="half_registered", description="x", create=lambda p, s: None))
        raise RuntimeError("boom")

    # the raising plugin sits between two good ones; its partial registration is dropped
    with registered_plugin(_module("before", register_models=_models("m_before"))), \
            registered_plugin(_module("raiser", register_models=register_models)), \
            registered_plugin(_module("after", register_models=_models("m_after"))):
        registry = load_registry()
    assert _status(registry, "raiser") == ("error", "register_models raised RuntimeError: boom")
    assert {"m_before", "m_after"} <= set(registry.models) and "half_registered" not in registry.models
    assert _status(registry, "before") == _status(registry, "after") == ("ok", "")


def test_the_same_object_may_be_registered_under_two_names():
    module = _module("twice", register_datasets=_datasets_hook())
    with registered_plugin(module, name="first"), registered_plugin(module, name="second"):
        registry = load_registry()
    assert _status(registry, "first") == ("ok", "")
    status, reason = _status(registry, "second")
    assert status == "error" and "registered twice" in reason


def _datasets_hook():
    from xraybench import DatasetSpec

    @hookimpl
    def register_datasets(register):
        register(DatasetSpec(name="twice_reader", description="x", detect=lambda p: False,
                             files=lambda p: [], read=lambda *a: None))

    return register_datasets


def test_class_based_plugin_with_staticmethod_hooks():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register(GenericModel(name="from_class", description="x", create=lambda p, s: None))

    with registered_plugin(Plugin(), name="class_plugin"):
        registry = load_registry()
    assert "from_class" in registry.models and _status(registry, "class_plugin") == ("ok", "")


def test_hook_table_matches_the_hookspecs():
    from xraybench import hookspecs, plugins

    specs = {n for n, f in vars(hookspecs).items() if hasattr(f, "xraybench_spec")}
    assert set(plugins._HOOKS) == set(plugins.HOOK_NAMES) == specs
