"""Explanations (xraybench/explain): occlusion, Grad-CAM, the shortcut check and the overlays, on tiny generated data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xraybench.errors import XRayBenchError
from xraybench.explain import (GradCamUnavailable, explain, explain_run, file_name, forward_passes, gradcam_maps,
                               image_shares, occlusion_maps, patch_grid, regions, render_overlays, shortcut_check)
from xraybench.explain.overlay import GENERATOR, MARKER, written_by_us

HERE = Path(__file__).resolve().parent


def _images(n=6, side=28, seed=0):
    return np.random.default_rng(seed).random((n, side, side, 1)).astype(np.float32)


def corner_model(images):
    """P(PNEUMONIA) from the mean of the top-left 4x4 pixels only: a model that reads a corner marker."""
    return 1 / (1 + np.exp(-8 * (images[:, :4, :4, 0].mean(axis=(1, 2)) - 0.5)))


def centre_model(images):
    """P(PNEUMONIA) from the central 8x8 pixels only: a model that looks at the chest."""
    h, w = images.shape[1:3]
    return images[:, h // 2 - 4:h // 2 + 4, w // 2 - 4:w // 2 + 4, 0].mean(axis=(1, 2))


class FakeLoaded:
    """A LoadedModel as xraybench.saved_model gives it: ``scores`` and ``keras_model``."""

    def __init__(self, score=corner_model, keras_model=None):
        self._score, self.keras_model, self.calls = score, keras_model, 0

    def scores(self, images):
        self.calls += 1
        return self._score(np.asarray(images, dtype=np.float32))


# --- occlusion ---------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [8, 28, 64, 100, 224])
def test_the_patch_grid_scales_with_the_image_and_covers_every_pixel(side):
    grid = patch_grid(side, side)
    assert grid.patch == (-(-side // 8),) * 2 and grid.stride == (max(1, grid.patch[0] // 2),) * 2
    covered = np.zeros((side, side), dtype=int)
    for r in grid.rows:
        for c in grid.cols:
            covered[r:r + grid.patch[0], c:c + grid.patch[1]] += 1
    assert covered.min() >= 1, "the last rows and columns (the border) must be occluded too"
    assert grid.positions <= 260  # the cost per image hardly grows with the image (64 at 8 px, 169 to 256 above)
    assert forward_passes(16, side, side) == 16 * (1 + grid.positions)


def test_occlusion_costs_the_forward_passes_it_documents_in_bounded_batches():
    images, seen = _images(n=3), []

    def score(batch):
        seen.append(len(batch))
        return corner_model(batch)

    maps = occlusion_maps(score, images, batch_size=50)
    assert sum(seen) == forward_passes(3, 28, 28) and max(seen) <= 50
    assert np.allclose(maps, occlusion_maps(corner_model, images, batch_size=1), atol=1e-6)  # batching changes nothing


def test_a_model_reading_a_corner_has_its_saliency_and_its_shortcut_share_there():
    images = _images(n=8)
    maps = occlusion_maps(corner_model, images, target="positive")
    assert maps.shape == (8, 28, 28) and maps.dtype == np.float32
    for m in np.abs(maps):
        r, c = np.unravel_index(m.argmax(), m.shape)
        assert r < 6 and c < 6  # within the 4x4 corner and the patch that reaches it
        assert m[8:, 8:].max() == 0  # nothing far from it changes the score
    shares = shortcut_check(np.abs(maps), "occlusion")
    assert shares.corner_share > 0.5 > 0.1 > shares.uniform_corner_share
    assert shares.border_share > 0.9 and shares.lung_share < 0.05 and shares.border_ratio > 1.5
    assert shares.n_images == 8 and shares.method == "occlusion"


def test_a_model_reading_the_centre_has_a_high_lung_share():
    shares = shortcut_check(occlusion_maps(centre_model, _images(n=8, side=32), target="positive").clip(0), "occlusion")
    assert shares.lung_share > 0.9 and shares.border_share < 0.05 and shares.corner_share == 0


def test_predicted_class_saliency_is_evidence_for_the_class_called():
    """An image called NORMAL because its corner is dark: hiding the corner (with the brighter image
    mean) raises P(PNEUMONIA), i.e. removes evidence for NORMAL, so the predicted-class map is
    positive there and the positive-class map negative."""
    image = np.full((1, 28, 28, 1), 0.8, dtype=np.float32)
    image[0, :4, :4, 0] = 0.0
    assert corner_model(image)[0] < 0.5
    predicted = occlusion_maps(corner_model, image)[0]
    positive = occlusion_maps(corner_model, image, target="positive")[0]
    assert predicted[:4, :4].min() > 0 and positive[:4, :4].max() < 0
    assert np.allclose(predicted, -positive)


def test_integer_images_are_occluded_in_their_own_dtype():
    images = (_images(n=2) * 255).astype(np.uint8)
    dtypes = set()

    def score(batch):
        dtypes.add(batch.dtype)
        return corner_model(batch / 255.0)

    assert np.isfinite(occlusion_maps(score, images)).all() and dtypes == {np.dtype(np.uint8)}


@pytest.mark.parametrize("score, images, message", [
    (lambda b: np.zeros((len(b), 2)), _images(n=2), "returned shape"),
    (lambda b: np.full(len(b), np.nan), _images(n=2), "NaN or infinite scores"),
    (corner_model, np.zeros((28, 28, 1)), r"shape \(N, H, W, C\)"),
    (corner_model, np.full((1, 28, 28, 1), np.nan), "NaN or infinite values"),
], ids=["two-columns", "nan-scores", "3-d-images", "nan-images"])
def test_bad_input_is_one_line(score, images, message):
    with pytest.raises(XRayBenchError, match=message) as caught:
        occlusion_maps(score, images)
    assert "\n" not in str(caught.value)


def test_a_patch_larger_than_the_image_is_one_line():
    with pytest.raises(XRayBenchError, match="does not fit a 28x28 image"):
        occlusion_maps(corner_model, _images(n=1), patch=40)


# --- the shortcut check ------------------------------------------------------------------------

def test_the_regions_are_the_documented_geometry():
    where = regions(64, 64)
    assert where.border.mean() == pytest.approx(1 - 0.75**2) and where.corners.mean() == pytest.approx(4 / 64)
    assert where.lung.mean() == pytest.approx(np.pi * 0.375**2, abs=0.01)
    assert not (where.border & where.lung).any() and (where.corners <= where.border).all()
    assert where.corners[:8, :8].all() and where.corners[-8:, -8:].all() and where.lung[32, 32]


sizes = st.integers(min_value=2, max_value=40)


@settings(max_examples=60, deadline=None)
@given(st.tuples(sizes, sizes).flatmap(lambda hw: hnp.arrays(np.float64, hw, elements=st.floats(-1, 10))))
def test_shares_are_fractions_and_border_and_lung_do_not_overlap(saliency):
    shares = image_shares(saliency)
    if np.maximum(saliency, 0).sum() == 0:
        assert shares is None
        return
    assert shares is not None
    for value in (shares.border, shares.corners, shares.lung):
        assert 0.0 <= value <= 1.0 + 1e-12
    assert shares.corners <= shares.border + 1e-12 and shares.border + shares.lung <= 1.0 + 1e-9
    scaled = image_shares(saliency * 3.5)  # only where the mass is, never how much
    assert scaled is not None and scaled.border == pytest.approx(shares.border)


@settings(max_examples=40, deadline=None)
@given(sizes, sizes, st.floats(0.01, 100))
def test_a_uniform_map_gives_each_region_its_area_share(h, w, level):
    shares = shortcut_check(np.full((3, h, w), level), "occlusion")
    assert shares.border_share == pytest.approx(shares.uniform_border_share)
    assert shares.corner_share == pytest.approx(shares.uniform_corner_share)
    assert shares.lung_share == pytest.approx(shares.uniform_lung_share)
    assert shares.border_ratio == pytest.approx(1.0)


def test_maps_without_positive_saliency_are_counted_apart_and_all_empty_is_one_line():
    maps = np.zeros((3, 16, 16))
    maps[0, 0, 0] = 1.0
    shares = shortcut_check(maps, "gradcam")
    assert (shares.n_images, shares.n_without_saliency) == (1, 2) and shares.corner_share == 1.0
    assert set(shares.as_dict()) >= {"border_share", "corner_share", "lung_share", "uniform_border_share", "method", "n_images"}
    with pytest.raises(XRayBenchError, match="none of the 2 occlusion maps has positive saliency"):
        shortcut_check(-np.ones((2, 16, 16)), "occlusion")


# --- overlays and explain_run ------------------------------------------------------------------

def test_file_names_are_safe_and_distinct():
    names = [file_name(i) for i in ("test/NORMAL/IM-1.jpeg", "test_NORMAL_IM-1.jpeg", "../../etc/passwd", ".hidden",
                                     "x" * 500, "pneumonía 1.png", "plain-id_1.png")]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) < 150 and name.endswith(".png")
    assert file_name("test_NORMAL_IM-1.jpeg") == "test_NORMAL_IM-1.jpeg.png"  # already safe: kept as it is


def test_explain_run_writes_one_marked_overlay_per_image(tmp_path):
    from PIL import Image

    images, ids = _images(n=3), ["test/NORMAL/a.jpeg", "test/PNEUMONIA/b.jpeg", "c"]
    loaded = FakeLoaded()
    paths = explain_run(loaded, ids, images, tmp_path / "out")
    assert [p.name for p in paths] == [file_name(i) for i in ids]
    assert (tmp_path / "out" / MARKER).is_file()
    for path in paths:
        with Image.open(path) as png:
            assert png.size == (224, 224) and png.mode == "RGB" and png.text["Software"] == GENERATOR
        assert written_by_us(path)
    assert explain_run(loaded, ids, images, tmp_path / "out", method="occlusion") == paths  # its own folder: rewritten


def test_the_overlay_is_the_grey_image_where_there_is_no_saliency(tmp_path):
    from PIL import Image

    image = np.zeros((1, 28, 28, 1), dtype=np.float32)
    image[0, :, 14:] = 1.0
    saliency = np.zeros((1, 28, 28))
    saliency[0, :4, :4] = 1.0
    (path,) = render_overlays(["x"], image, saliency, tmp_path / "o")
    rgb = np.asarray(Image.open(path)).astype(int)
    assert (rgb[200:, :100] == 0).all() and (rgb[200:, 130:] == 255).all()  # untouched grey (black, white)
    corner = rgb[:32, :32].reshape(-1, 3)
    assert (np.ptp(corner, axis=1) > 20).all()  # coloured where the map is


@pytest.mark.parametrize("setup, message", [
    (lambda out: (out.mkdir(), (out / "notes.txt").write_text("mine")), "holds files xraybench did not write"),
    (lambda out: out.write_text("a file"), "is not a folder"),
    (lambda out: (out.mkdir(), (out / MARKER).write_text(""), (out / "c.png").write_text("my own png")),
     "was not written by xraybench explain"),
], ids=["foreign-folder", "a-file", "foreign-png-in-our-folder"])
def test_explain_run_never_writes_over_what_xraybench_did_not_write(tmp_path, setup, message):
    out = tmp_path / "out"
    setup(out)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(XRayBenchError, match=message) as caught:
        explain_run(FakeLoaded(), ["a", "b", "c"], _images(n=3), out)
    assert "\n" not in str(caught.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written, nothing touched


def test_a_symlinked_output_folder_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(XRayBenchError, match="symbolic link"):
        explain_run(FakeLoaded(), ["a"], _images(n=1), tmp_path / "link")
    assert not any((tmp_path / "real").iterdir())


def test_a_model_without_keras_is_explained_by_occlusion_and_refuses_gradcam(tmp_path):
    loaded = FakeLoaded()
    result = explain(loaded, _images(n=2), "auto")
    assert result.method == "occlusion" and result.maps.shape == (2, 28, 28)
    with pytest.raises(GradCamUnavailable, match="needs a Keras model"):
        explain(loaded, _images(n=2), "gradcam")
    with pytest.raises(XRayBenchError, match="unknown explanation method"):
        explain(loaded, _images(n=2), "lime")  # type: ignore[arg-type]


def test_importing_explain_imports_no_backend():
    code = ("import sys, xraybench.explain\n"
            "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch', 'matplotlib', 'PIL') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# --- Grad-CAM ----------------------------------------------------------------------------------

def bright_detector(keras):
    """A hand-built CNN whose score rises with bright pixels and falls with dark ones, nested
    behind an input layer as xraybench's trainer nests a plugin's network: conv 'pre' (identity),
    2x2 max-pool, conv 'detect' (channel 0: relu(x - 0.5), channel 1: relu(0.5 - x)), global average
    pooling, a sigmoid of 8 * (bright - dark)."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(1, 1, name="pre", kernel_initializer="ones", bias_initializer="zeros")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(2, 1, activation="relu", name="detect")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    core = keras.Model(inputs, outputs, name="core")
    core.get_layer("detect").set_weights([np.array([[[[1.0, -1.0]]]], dtype="float32"), np.array([-0.5, 0.5], dtype="float32")])
    core.get_layer("head").set_weights([np.array([[8.0], [-8.0]], dtype="float32"), np.zeros(1, dtype="float32")])
    outer_in = keras.Input((16, 16, 1), name="image")
    return keras.Model(outer_in, core(keras.layers.RandomFlip(seed=1)(outer_in)), name="xraybench_core"), core


def bright_corner_images():
    """Dark images with a bright 4x4 square in the top-left corner (called NORMAL: mostly dark)."""
    images = np.full((3, 16, 16, 1), 0.1, dtype=np.float32)
    images[:, :4, :4] = 0.9
    return images


def test_gradcam_finds_the_region_the_network_responds_to():
    keras = pytest.importorskip("keras")
    model, core = bright_detector(keras)
    images = bright_corner_images()
    cams = gradcam_maps(model, images, target="positive")
    assert cams.shape == (3, 16, 16) and cams.dtype == np.float32 and np.isfinite(cams).all()
    assert cams.min() >= 0 and np.allclose(cams.reshape(3, -1).max(axis=1), 1.0)
    assert cams[:, :4, :4].mean() > 0.5 and cams[:, 8:, 8:].max() == 0  # evidence for PNEUMONIA: the bright square
    assert np.allclose(cams, gradcam_maps(core, images, target="positive"), atol=1e-6)  # nested or not, the same map
    shares = shortcut_check(cams, "gradcam")  # at 16 px the corner squares are 2x2: the 4x4 square fills more
    assert shares.border_share > 0.5 and shares.corner_share > 3 * shares.uniform_corner_share
    assert "call" not in core.get_layer("detect").__dict__  # the layer is left as it was


def test_gradcam_of_the_predicted_class_shows_the_evidence_for_normal():
    keras = pytest.importorskip("keras")
    model, _ = bright_detector(keras)
    images = bright_corner_images()
    assert float(np.asarray(model(images))[0, 0]) < 0.5  # called NORMAL: the dark background is its evidence
    cams = gradcam_maps(model, images)
    assert cams[:, :2, :2].max() == 0 and cams[:, 8:, 8:].min() > 0.9


def test_gradcam_reads_the_last_feature_map_at_the_last_convolutions_resolution():
    """The seed CNN: its last convolution (before the pooling that halves it). A residual network:
    the activation after its last block's sum, not the 1x1 shortcut convolution that runs last."""
    keras = pytest.importorskip("keras")
    from xraybench.explain.gradcam import target_layer
    from xraybench_plugins.cnn import build_baseline
    from xraybench_plugins.zoo import build_resnet

    sample = np.zeros((1, 32, 32, 1), dtype=np.float32)
    seed_cnn = build_baseline((32, 32, 1), {})
    assert target_layer(seed_cnn, sample) is [la for la in seed_cnn.layers if isinstance(la, keras.layers.Conv2D)][-1]
    resnet = build_resnet((32, 32, 1), {})
    chosen = target_layer(resnet, sample)
    assert isinstance(chosen, keras.layers.Activation)
    assert resnet.layers[resnet.layers.index(chosen) + 1].__class__.__name__ == "GlobalAveragePooling2D"
    cams = gradcam_maps(resnet, np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32))
    assert cams.shape == (2, 32, 32) and np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1


def test_gradcam_without_a_convolution_or_with_an_unknown_layer_is_one_line_and_auto_falls_back():
    keras = pytest.importorskip("keras")
    dense = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(GradCamUnavailable, match="no 2-D convolution layer"):
        gradcam_maps(dense, bright_corner_images())
    model, _ = bright_detector(keras)
    with pytest.raises(GradCamUnavailable, match="no layer named 'nope'"):
        gradcam_maps(model, bright_corner_images(), layer="nope")
    loaded = FakeLoaded(score=lambda x: np.asarray(dense(x))[:, 0], keras_model=dense)
    assert explain(loaded, bright_corner_images()).method == "occlusion"


def test_explain_run_uses_gradcam_for_a_keras_cnn(tmp_path):
    keras = pytest.importorskip("keras")
    model, _ = bright_detector(keras)
    loaded = FakeLoaded(score=lambda x: np.asarray(model(x))[:, 0], keras_model=model)
    result = explain(loaded, bright_corner_images(), target="positive")
    assert result.method == "gradcam" and result.maps[:, :4, :4].mean() > 0.5
    paths = explain_run(loaded, ["a", "b", "c"], bright_corner_images(), tmp_path / "o", method="gradcam")
    assert len(paths) == 3 and all(written_by_us(p) for p in paths)


def test_gradcam_takes_the_model_inputs_from_keras_inputs_and_never_guesses_the_scaling():
    """saved_model's LoadedModel.scores takes uint8 pixels and scales them before the network:
    Grad-CAM then needs keras_inputs() for the network's own inputs, else occlusion."""
    keras = pytest.importorskip("keras")
    model, _ = bright_detector(keras)
    pixels = np.rint(bright_corner_images() * 255).astype(np.uint8)
    loaded = FakeLoaded(score=lambda x: np.asarray(model(x / 255.0))[:, 0], keras_model=model)
    assert explain(loaded, pixels).method == "occlusion"
    with pytest.raises(GradCamUnavailable, match="no keras_inputs"):
        explain(loaded, pixels, "gradcam")
    loaded.keras_inputs = lambda x: x.astype(np.float32) / 255.0
    result = explain(loaded, pixels, target="positive")
    assert result.method == "gradcam"
    assert np.allclose(result.maps, gradcam_maps(model, bright_corner_images(), target="positive"), atol=1e-3)


def test_gradcam_under_jax_gives_the_tensorflow_map():
    """The suite runs on TensorFlow (conftest); the same network under JAX, in a child process."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("jax")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1])\n"
            "import keras; assert keras.backend.backend() == 'jax'\n"
            "from test_explain import bright_detector, bright_corner_images\n"
            "from xraybench.explain import gradcam_maps\n"
            "model, _ = bright_detector(keras)\n"
            "print(json.dumps(gradcam_maps(model, bright_corner_images(), target='positive').tolist()))\n")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    jax_map = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    model, _ = bright_detector(keras)
    assert np.allclose(jax_map, gradcam_maps(model, bright_corner_images(), target="positive"), atol=1e-5)
