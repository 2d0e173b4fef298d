"""Every first-party model honours the plugin contract; the classical ones also run on the real data."""

import pytest

from xraybench.plugins import load_registry
from xraybench.testing import check_model

KERAS = ["baseline_cnn", "baseline_cnn_bn", "baseline_cnn_weighted", "deep_cnn", "resnet_small", "mobilenet_v3_small"]
CLASSICAL = ["logreg_pixels", "svm_rbf_pixels", "random_forest_pixels", "hist_gradient_boosting_pixels"]


@pytest.mark.parametrize("name", KERAS + CLASSICAL)
def test_contract(name):
    spec = load_registry().model(name)
    size = 32 if name != "mobilenet_v3_small" else 48
    rows = check_model(spec, size=size)
    failed = [(check, detail) for check, ok, detail in rows if not ok]
    assert not failed, failed
    assert len(rows) == (7 if spec.kind == "keras" else 6)


def test_baseline_is_the_seed_network():
    import keras

    model = load_registry().model("baseline_cnn").build((150, 150, 1), {"dense_units": 128, "dropout": 0.5})
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense",
                     "Activation", "Dropout", "Dense"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 64] and all(c.kernel_size == (3, 3) for c in convs)
    assert model.layers[-1].units == 1 and model.layers[-1].activation.__name__ == "sigmoid"
    assert model.layers[-4].units == 128 and model.layers[-2].rate == 0.5


def test_mobilenet_batch_norms_use_the_shorter_memory():
    """keras.applications' momentum 0.999 left the moving statistics untrained from scratch."""
    import keras

    spec = load_registry().model("mobilenet_v3_small")
    model = spec.build((48, 48, 1), {**spec.all_defaults(), "bn_momentum": 0.8})
    momenta = {layer.momentum for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.8}
    assert spec.all_defaults()["bn_momentum"] == 0.9


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_on_real_data(name, real_data, real_cache):
    from xraybench import harness
    from xraybench.data import load_dataset

    spec = load_registry().model(name)
    data = load_dataset(real_data, image_size=32, seed=1)
    params = dict(spec.all_defaults())
    if name == "random_forest_pixels":  # fewer rounds than the defaults: a real signal, in a third of the time
        params["n_estimators"] = 100
    if name == "hist_gradient_boosting_pixels":
        params["max_iter"] = 60
    record, scores = harness.run(spec, data, params, seed=1)
    m = record["metrics"]
    assert len(scores["test_scores"]) == 624
    assert m["roc_auc"] > 0.85, m["roc_auc"]  # a real signal, well above chance, on the shifted test set


def test_standardization_layer_gives_each_image_zero_mean_unit_variance():
    import keras
    import numpy as np

    from xraybench.training.keras import standardization

    rng = np.random.default_rng(0)
    x = np.stack([rng.random((8, 8, 1)) * 0.3, rng.random((8, 8, 1)) * 0.9 + 0.1, np.full((8, 8, 1), 0.5)])
    out = keras.ops.convert_to_numpy(standardization(keras)(x.astype("float32")))
    assert np.allclose(out[:2].mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert np.allclose(out[:2].std(axis=(1, 2, 3)), 1, atol=1e-3)
    assert np.allclose(out[2], 0)  # a flat image stays finite
