"""The tf.data input pipeline reads batches from the (memory-mapped) array; it never copies it whole."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from xraybench.training.batches import make_dataset  # noqa: E402


class GuardedImages:
    """Array-like that records every read and refuses to be turned into one whole array."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape, self.dtype = data.shape, data.dtype
        self.rows_per_read: list[int] = []

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        out = self.data[index]
        self.rows_per_read.append(len(out) if out.ndim == self.data.ndim else 1)
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the pipeline materialised the whole image array")

    def __iter__(self):
        raise AssertionError("the pipeline iterated the whole image array")


def _reference(images, labels, batch_size, shuffle, seed):
    """The former pipeline: the whole array as one tensor, shuffled with a full buffer."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) * (1.0 / 255.0), y))


def _data(tmp_path, n=75):
    rng = np.random.default_rng(3)
    path = tmp_path / "images.npy"
    np.save(path, rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8))
    return np.load(path, mmap_mode="r"), rng.integers(0, 2, n)


def test_pipeline_reads_one_batch_at_a_time(tmp_path):
    images, labels = _data(tmp_path)
    guard = GuardedImages(images)
    ds = make_dataset(guard, labels, batch_size=16, shuffle=True, seed=1)
    assert guard.rows_per_read == []  # building the pipeline reads nothing
    batches = list(ds)
    assert [len(x) for x, _ in batches] == [16, 16, 16, 16, 11]
    assert guard.rows_per_read and max(guard.rows_per_read) <= 16
    assert sum(guard.rows_per_read) == len(images)  # each image read once per epoch


@pytest.mark.parametrize("shuffle", [True, False])
def test_same_batches_as_the_whole_array_pipeline(tmp_path, shuffle):
    images, labels = _data(tmp_path)
    new = make_dataset(images, labels, batch_size=16, shuffle=shuffle, seed=7)
    old = _reference(np.asarray(images), labels, 16, shuffle, 7)
    for _epoch in range(2):  # reshuffled each epoch, identically
        for (xa, ya), (xb, yb) in zip(new, old, strict=True):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_prediction_batches_in_order_without_labels(tmp_path):
    images, _ = _data(tmp_path, n=20)
    out = np.concatenate([x.numpy() for x in make_dataset(images, None, 8, shuffle=False, seed=0)])
    np.testing.assert_allclose(out, np.asarray(images, dtype=np.float32) / 255.0)
