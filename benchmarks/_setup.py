"""What the training benchmarks share: the model from the registry, its timed harness fit, the
plain-Keras twin of baseline_cnn and its tf.data input pipeline.

``bench_efficiency.py``, ``bench_paired.py``, ``gpu_baseline.py`` and ``test_bench_training.py``
compare figures with each other, so the model, the pipeline and the epoch clock they time must be
the same code, written here once.

Nothing here imports a backend at module level: ``gpu_baseline.py`` sets ``KERAS_BACKEND``
before its first Keras import, and the GPU machine it runs on has JAX but no TensorFlow
(only ``plain_tfdata`` needs TensorFlow).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def head(split: Any, n: int) -> Any:
    """The first ``n`` images of a split (all of them when it has fewer): the same images every run."""
    return split.subset(np.arange(min(n, len(split))))


def model_params(name: str = "baseline_cnn", **overrides: Any) -> tuple[Any, dict]:
    """The registry's spec of ``name`` and its default parameters with ``overrides`` applied."""
    from xraybench.plugins import load_registry

    spec = load_registry().model(name)
    params = spec.all_defaults()
    params.update(overrides)
    return spec, params


def epoch_timer() -> tuple[Any, list[float]]:
    """A Keras callback and the list it fills: per epoch, the seconds from the epoch's start to
    the end of its last training batch, so the validation pass after it is not counted."""
    import keras

    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        # Under JAX and PyTorch a batch hook that is not async-safe makes Keras read every step's
        # loss back from the device in the step loop: a sync per step, the very cost a GPU
        # benchmark measures. Async-safe, Keras calls it from its callback thread once the step's
        # logs are ready, so ``last`` is when the epoch's last step finished on the device.
        async_safe = True

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(self.last - self.start)

    return EpochTimer(), times


def timed_fit(spec: Any, train: Any, val: Any, params: dict, seed: int = 0,
              precision: str = "float32") -> tuple[Any, list[float]]:
    """Train through the harness exactly as ``xraybench run`` does; returns the fitted model and
    the per-epoch training seconds (``epoch_timer``)."""
    from xraybench import harness

    callback, times = epoch_timer()
    fitted = harness.fit(spec, train, val, params, seed=seed, precision=precision, callbacks=[callback])
    return fitted, times


def plain_model(keras: Any, size: int, rescale: bool = False) -> Any:
    """baseline_cnn written as a plain Keras script would: the same layers and augmentation, compiled
    with Adam; ``rescale`` adds the /255 for input that is not scaled by its pipeline."""
    from xraybench.training.keras import augmentation
    from xraybench_plugins.cnn import build_baseline

    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1.0 / 255)(inputs) if rescale else inputs
    for layer in augmentation(keras):
        x = layer(x)
    model = keras.Model(inputs, build_baseline((size, size, 1), {"dense_units": 128, "dropout": 0.5})(x))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def plain_tfdata(split: Any, batch_size: int = 32, shuffle_seed: int | None = 0) -> Any:
    """A plain script's tf.data pipeline over a split's uint8 array: shuffled (unless
    ``shuffle_seed`` is None), batched, scaled to [0, 1] in parallel, prefetched."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.asarray(split.images), split.labels.astype("float32")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(split), seed=shuffle_seed)
    return (ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
