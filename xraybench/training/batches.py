"""The batches a Keras model trains and predicts on, from the cache's uint8 arrays, made float one
batch at a time (never the whole set up front): ``tf.data`` under TensorFlow, prefetched, so both
cores stay busy; ``keras.utils.PyDataset`` under JAX and PyTorch. Scaled to [0, 1] or equalised
per image, mixed up for training, and shifted copies for test-time averaging. Apart from
``make_dataset``'s pipeline, numpy only: the ONNX export writes the same steps as graph nodes."""

from __future__ import annotations

import os

import numpy as np

from xraybench.progress import quiet_backend_startup


def _has_tf_data() -> bool:
    """tf.data feeds the TensorFlow backend only: under JAX or PyTorch it would load TensorFlow
    beside them (and a GPU build of it would take the GPU), so they get ``PyDataset``."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        with quiet_backend_startup():
            import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def mix_batch(x: np.ndarray, y: np.ndarray, alpha: float, seed: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mixup (Zhang et al. 2018) of one float batch: each image blended with another of the batch,
    weight ``max(lam, 1 - lam)`` for its own, ``lam ~ Beta(alpha, alpha)``, labels alike.

    The draws come from a generator seeded by the run's seed and the batch's image indices, so
    they do not depend on which pipeline thread prepares the batch: same seed, same batches.
    """
    rng = np.random.default_rng([seed & 0xFFFFFFFF, *(int(i) for i in index[:8])])
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)
    partner = rng.permutation(len(x))
    mixed = lam[:, None, None, None] * x + (1.0 - lam[:, None, None, None]) * x[partner]
    return mixed.astype(np.float32), (lam * y + (1.0 - lam) * y[partner]).astype(np.float32)


def equalized(rows: np.ndarray) -> np.ndarray:
    """Per-image histogram equalisation of uint8 images (N, H, W, C) to float32 in (0, 1]: each
    pixel becomes the share of its image's pixels at or below its value (the image's CDF).

    Why: it maps any monotonic change of exposure or contrast to the same input, so a network
    cannot read a scanner's or a split's intensity profile as a label (the Kaggle test split's
    NORMAL images have brighter dark pixels than train's: docs/examples/intensity_by_split.py).
    A standard step in chest X-ray pipelines (there usually CLAHE, its local variant).
    """
    rows = np.asarray(rows, dtype=np.uint8)
    n = rows.shape[0]
    flat = rows.reshape(n, -1).astype(np.int64)
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    cdf = np.cumsum(hist, axis=1, dtype=np.float64) / max(flat.shape[1], 1)
    return np.take_along_axis(cdf, flat, axis=1).astype(np.float32).reshape(rows.shape)


def batch_arrays(images: np.ndarray, labels: np.ndarray | None, index: np.ndarray, seed: int,
                 mixup: float = 0.0, equalize: bool = False):
    """One batch as float arrays: pixels scaled to [0, 1] (or equalised), then mixed (training)."""
    x = equalized(images[index]) if equalize else images[index].astype(np.float32) * (1.0 / 255.0)
    if labels is None:
        return x
    y = np.asarray(labels[index], dtype=np.float32)
    return mix_batch(x, y, mixup, seed, index) if mixup > 0 else (x, y)


def _pydataset(images: np.ndarray, labels: np.ndarray | None, batch_size: int, shuffle: bool, seed: int,
               mixup: float = 0.0, equalize: bool = False):
    """Backend-neutral batches (keras.utils.PyDataset) for installs without TensorFlow."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            # One thread: a 256-image batch at 150 px is gathered and cast in a few ms, and JAX and
            # PyTorch dispatch asynchronously, so the next batch is read while the device computes.
            # Keras' thread enqueuer (workers > 1) delivered about half the batches/s on 2 cores.
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(images))
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return (len(images) + batch_size - 1) // batch_size

        def __getitem__(self, i: int):
            index = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            return batch_arrays(images, labels, index, seed, mixup, equalize)

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

    return Batches()


def make_dataset(images: np.ndarray, labels: np.ndarray | None, batch_size: int, shuffle: bool, seed: int,
                 mixup: float = 0.0, equalize: bool = False):
    """uint8 arrays to float batches in [0, 1], read and converted per batch (never the whole set up front);
    ``mixup`` > 0 blends each training batch (:func:`mix_batch`), ``equalize`` equalises each image
    (:func:`equalized`) instead of scaling it.

    ``tf.data`` carries only image *indices* (shuffled, seeded, batched); each batch's rows are
    gathered from ``images`` (the cache's memory-mapped array) by a NumPy call inside the
    pipeline. ``from_tensor_slices(images)`` would instead copy every image into one tensor,
    and a full-size shuffle buffer would hold a second copy: memory that grows with the data
    set (docs/performance.md, scale benchmark). Same seed, same batches as that older form.
    """
    if os.environ.get("XRAYBENCH_INPUT") == "pydataset" or not _has_tf_data():
        return _pydataset(np.asarray(images), labels, batch_size, shuffle, seed, mixup, equalize)
    import tensorflow as tf

    n = len(images)
    shape = tuple(int(d) for d in images.shape[1:])
    index = tf.data.Dataset.range(n)
    if shuffle:
        index = index.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    index = index.batch(batch_size)
    label_array = None if labels is None else np.asarray(labels, dtype=np.float32)
    in_numpy = (mixup > 0 and labels is not None) or equalize  # the whole batch made by batch_arrays

    def gather(idx: np.ndarray):
        if in_numpy:
            return batch_arrays(images, label_array, idx, seed, mixup, equalize)
        return np.asarray(images[idx], dtype=np.uint8)  # a fancy index reads just these rows

    y = None if label_array is None else tf.constant(label_array)

    def load(idx):
        if in_numpy:
            out = tf.numpy_function(gather, [idx], tf.float32 if y is None else (tf.float32, tf.float32), stateful=False)
            image, target = (out, None) if y is None else out
        else:
            image = tf.numpy_function(gather, [idx], tf.uint8, stateful=False)
            target = None if y is None else tf.gather(y, idx)
        image.set_shape((None, *shape))
        if not in_numpy:
            image = tf.cast(image, tf.float32) * (1.0 / 255.0)
        if target is None:
            return image
        target.set_shape((None,))
        return image, target

    return index.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # in steps of 1/16 of the image side (recipes.py: tta)


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (N, H, W, C) moved ``dy`` rows down and ``dx`` columns right, edges repeated."""
    if dy == 0 and dx == 0:
        return images
    h, w = images.shape[1], images.shape[2]
    py, px = abs(dy), abs(dx)
    padded = np.pad(images, ((0, 0), (py, py), (px, px), (0, 0)), mode="edge")
    return padded[:, py - dy : py - dy + h, px - dx : px - dx + w]
