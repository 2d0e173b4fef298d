"""Training recipes (xraybench/training/recipes.py) and the trainer pieces they switch on."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xraybench.errors import ParamError
from xraybench.specs import GenericModel, ImageSet, KerasModel
from xraybench.training import recipes


def _spec(**kw) -> KerasModel:
    kw.setdefault("build", lambda shape, params: None)
    return KerasModel(name="m", description="", **kw)


def test_the_seed_recipe_is_the_training_every_published_run_had():
    """`seed` must reproduce the numbers of runs recorded before recipes existed: the same values
    the harness defaulted to then (epochs 20, batch 32, Adam 1e-3, augmentation, val-loss early
    stopping with patience 3)."""
    params = _spec().all_defaults()
    assert params["recipe"] == "seed"
    assert {k: params[k] for k in ("epochs", "batch_size", "learning_rate", "patience", "select", "optimizer",
                                   "schedule", "warmup_epochs", "label_smoothing", "mixup", "weight_average", "tta")} == {
        "epochs": 20, "batch_size": 32, "learning_rate": 1e-3, "patience": 3, "select": "val_loss", "optimizer": "adam",
        "schedule": "constant", "warmup_epochs": 0, "label_smoothing": 0.0, "mixup": 0.0, "weight_average": 0.0,
        "tta": False}
    assert recipes.augment_policy(params["augment"]) == "seed"
    assert params["class_weight"] is False and params["standardize"] is False and params["equalize"] is False


def test_every_recipe_field_is_a_run_parameter():
    for recipe in recipes.RECIPES.values():
        params = recipe.params()
        assert set(params) == {"recipe", *recipes.TRAINING_FIELDS}
        recipes.check(params)  # every shipped recipe passes its own checks


def test_layering_plugin_defaults_over_its_own_recipe_and_an_asked_recipe_over_plugin_defaults():
    spec = _spec(defaults={"epochs": 25, "dropout": 0.5})
    assert spec.all_defaults()["epochs"] == 25  # the plugin's own choice over its recipe's 20
    modern = spec.all_defaults("modern")
    assert modern["epochs"] == recipes.MODERN.epochs  # --recipe modern means modern's epochs
    assert modern["dropout"] == 0.5  # architecture knobs stay the plugin's
    assert modern["recipe"] == "modern" and modern["optimizer"] == "adamw"
    own_modern = _spec(defaults={"epochs": 12}, recipe="modern")
    assert own_modern.all_defaults()["epochs"] == 12 and own_modern.all_defaults()["recipe"] == "modern"
    assert own_modern.all_defaults("seed")["epochs"] == 20


def test_families_without_recipes_reject_the_recipe_parameter_in_one_line():
    from xraybench.params import resolve

    spec = GenericModel(name="g", description="", defaults={"C": 1.0}, create=lambda p, s: None)
    with pytest.raises(ParamError, match="unknown parameter 'recipe' for g"):
        resolve(spec.all_defaults("modern"), {"recipe": "modern"}, spec.name)


@pytest.mark.parametrize(("params", "message"), [
    ({"optimizer": "sgd"}, "optimizer='sgd': expected one of adam, adamw"),
    ({"schedule": "linear"}, "schedule='linear'"),
    ({"select": "val_accuracy"}, "select='val_accuracy'"),
    ({"augment": "heavy"}, "augment='heavy'"),
    ({"label_smoothing": 0.9}, "label_smoothing=0.9"),
    ({"weight_average": 1.0}, "weight_average=1.0"),
    ({"warmup_epochs": -1}, "warmup_epochs=-1"),
])
def test_bad_recipe_values_are_one_line_errors(params, message):
    with pytest.raises(ParamError, match=message.replace("[", r"\[")):
        recipes.check(params)


def test_an_unknown_recipe_names_the_known_ones():
    with pytest.raises(ParamError, match="unknown recipe 'fancy'; known: seed, modern, medmnist"):
        _spec().all_defaults("fancy")


def test_old_boolean_augment_values_map_to_policies():
    assert recipes.augment_policy(True) == "seed" and recipes.augment_policy("false") == "none"
    assert recipes.augment_policy("strong") == "strong"


def test_the_leaderboard_variant_names_the_recipe_and_never_pools_recipes():
    from recordfactory import make_record

    from xraybench.leaderboard import build_rows, variant

    def run(model="baseline_cnn", seed=1, params=None, overrides=None):
        record, _ = make_record(model, seed=seed)
        record.update(kind="keras", params=params if params is not None else {"recipe": "seed"},
                      tags={"overrides": overrides} if overrides else {})
        return record

    seed_run, old_run = run(), run(seed=2, params={})
    modern = run(params={"recipe": "modern"}, overrides={"recipe": "modern"})
    ablated = run(params={"recipe": "modern"}, overrides={"recipe": "modern", "label_smoothing": 0.0})
    own = run("convnext_nano", params={"recipe": "modern"})
    assert variant(seed_run) == variant(old_run) == "default"  # records from before recipes: the seed's
    assert variant(modern) == "modern" and variant(own) == "modern"
    assert variant(ablated) == "modern label_smoothing=0.0"
    asked_seed = run("convnext_nano", params={"recipe": "seed"}, overrides={"recipe": "seed"})
    assert variant(asked_seed) == "seed"  # asked for: named, never pooled with the plugin's own default
    rows = build_rows([seed_run, old_run, modern, ablated])
    assert sorted((r.variant, r.runs) for r in rows) == [
        ("default", 2), ("modern", 1), ("modern label_smoothing=0.0", 1)]


def test_the_recipe_survives_into_the_summaries_the_leaderboard_reads(tmp_path):
    """`leaderboard` reads summaries (no params): a plugin's own recipe must still name the row."""
    from recordfactory import make_record

    from xraybench.leaderboard import build_rows
    from xraybench.results import ResultStore

    store = ResultStore(tmp_path)
    for model, recipe in (("convnext_nano", "modern"), ("resnet18", "medmnist"), ("resnet18", "seed")):
        record, scores = make_record(model)
        record.update(kind="keras", params={"recipe": recipe, "width": 16},
                      tags={"overrides": {"recipe": recipe}} if recipe == "seed" else {})
        store.save(record, scores)
    variants = sorted((r.model, r.variant) for r in build_rows(store.load().records))
    assert variants == [("convnext_nano", "modern"), ("resnet18", "medmnist"), ("resnet18", "seed")]


# --- the trainer's pieces ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.just(1))),
       st.lists(st.integers(0, 255), min_size=256, max_size=256, unique=True))
def test_equalisation_is_in_range_and_blind_to_any_monotonic_exposure_change(images, table):
    """The point of equalising: an image and any strictly increasing remapping of its grey levels
    (brighter, more contrast, a raised black level) give the network the same input."""
    from xraybench.training.batches import equalized

    out = equalized(images)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.all(out > 0) and np.all(out <= 1.0)
    remap = np.sort(np.asarray(table, dtype=np.uint8))  # strictly increasing: unique values, sorted
    np.testing.assert_array_equal(equalized(remap[images]), out)
    for img, eq in zip(images, out):  # order within an image is kept
        flat, flat_eq = img.ravel(), eq.ravel()
        order = np.argsort(flat, kind="stable")
        assert np.all(np.diff(flat_eq[order]) >= 0)


def test_tta_shifts_repeat_the_edges_and_keep_the_shape():
    from xraybench.training.batches import shifted

    images = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    down = shifted(images, 1, 0)[0, :, :, 0]
    assert down.shape == (4, 4)
    np.testing.assert_array_equal(down[0], [0, 1, 2, 3])  # the top row repeated
    np.testing.assert_array_equal(down[1:], images[0, :3, :, 0])
    left = shifted(images, 0, -1)[0, :, :, 0]
    np.testing.assert_array_equal(left[:, -1], images[0, :, -1, 0])
    assert shifted(images, 0, 0) is images


def test_mixup_is_deterministic_per_batch_and_keeps_labels_in_range():
    from xraybench.training.batches import mix_batch

    rng = np.random.default_rng(0)
    x = rng.random((8, 4, 4, 1), dtype=np.float32)
    y = np.array([0, 1] * 4, dtype=np.float32)
    index = np.arange(8)
    a, b = mix_batch(x, y, 0.2, 7, index), mix_batch(x, y, 0.2, 7, index)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.all((a[1] >= 0) & (a[1] <= 1))
    assert not np.array_equal(mix_batch(x, y, 0.2, 8, index)[0], a[0])  # another seed, other draws


def test_schedules_warm_up_then_decay():
    import keras

    from xraybench.training.keras import learning_rate

    params = {"learning_rate": 1e-3, "epochs": 10, "warmup_epochs": 2, "schedule": "cosine"}
    schedule = learning_rate(keras, params, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 9, 19, 20, 60, 99)]
    assert values[0] == pytest.approx(1e-3 / 20) and values[2] == pytest.approx(1e-3)
    assert values[3] == pytest.approx(1e-3) and values[3] > values[4] > values[5]
    assert values[5] < 1e-5
    step = learning_rate(keras, {"learning_rate": 1e-3, "epochs": 100, "schedule": "step"}, steps_per_epoch=1)
    assert [float(step(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    assert learning_rate(keras, {"learning_rate": 2e-3}, steps_per_epoch=5) == 2e-3


def _tiny(n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * (n // 2))
    images = rng.integers(0, 60, (n, 16, 16, 1)).astype(np.uint8)
    images[labels == 1, 4:12, 4:12] += 150  # a bright blob means PNEUMONIA
    ids = [f"i{seed}-{i}" for i in range(n)]
    return ImageSet(images, labels, ids, ids)


@pytest.mark.slow
def test_the_modern_recipe_trains_end_to_end_with_every_element_on():
    """Averaging, TTA, mixup, warm-up + cosine, AdamW, label smoothing, strong augmentation and the
    val-AUC epoch choice together, on tiny data: it learns the blob, and the history is whole.
    (Equalisation is held by its property test above: on this 16 px blob it leaves too little to
    learn in four epochs.)"""
    import keras

    from xraybench.training.keras import fit_keras

    def build(shape, params):
        inputs = keras.Input(shape=shape)
        x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))

    spec = _spec(build=build)
    params = {**spec.all_defaults("modern"), "epochs": 4, "batch_size": 8, "mixup": 0.2,
              "learning_rate": 1e-2}
    recipes.check(params)
    fitted, info = fit_keras(spec, _tiny(32, 0), _tiny(16, 1), params, seed=3, precision="float32")
    assert info["epochs_run"] == 4 and len(info["history"]["val_auc"]) == 4
    test = _tiny(16, 2)
    scores = fitted.predict_proba(test.images).ravel()
    assert scores.shape == (16,) and np.all((scores >= 0) & (scores <= 1))
    assert scores[test.labels == 1].mean() > scores[test.labels == 0].mean()


def test_help_with_the_recipe_flag_imports_no_numpy_and_no_backend():
    """`--recipe`'s choices come from recipes.py: listing them must stay as light as any `--help`."""
    import subprocess
    import sys

    code = ("import sys\nfrom xraybench.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'keras', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "--recipe NAME" in out and out.strip().endswith("[]"), out[-300:]
