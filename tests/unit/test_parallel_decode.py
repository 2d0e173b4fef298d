"""The process-pool cold decode gives exactly the serial decode's arrays, in the same order."""

from pathlib import Path

import numpy as np
import pytest

from xraybench.data import parallel
from xraybench.errors import DataError
from xraybench.synthetic import make_kaggle_tree


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.jpeg"))


def test_pool_matches_serial_decode(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "CHUNK", 16)  # several chunks from a small tree
    root = make_kaggle_tree(tmp_path / "data", n_train=(70, 90), n_test=(10, 12), size=40)
    files = _files(root)
    (Path(files[5])).write_bytes(b"not an image")  # an error must come back at its own position
    files.append(str(tmp_path / "missing.jpeg"))
    assert len(files) > 2 * parallel.CHUNK  # several chunks, so order across chunks is tested
    serial = parallel.decode_files(files, 24, 1, workers=1)
    pooled = parallel.decode_files(files, 24, 1, workers=2)
    assert len(serial) == len(pooled) == len(files)
    for (a, mode_a, size_a, digest_a, err_a), (b, mode_b, size_b, digest_b, err_b) in zip(serial, pooled):
        assert (mode_a, size_a, digest_a, err_a) == (mode_b, size_b, digest_b, err_b)
        if a is None:
            assert b is None
        else:
            assert a.dtype == np.uint8 and a.shape == (24, 24, 1)
            np.testing.assert_array_equal(a, b)
    assert serial[5][4] is not None and serial[-1][4] is not None
    assert sum(r[4] is None for r in serial) == len(files) - 2


def test_loaded_dataset_identical_with_one_and_two_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "CHUNK", 16)  # a real pool, not the in-process path for small sets
    from xraybench.data import load_dataset

    root = make_kaggle_tree(tmp_path / "data", n_train=(40, 60), n_test=(10, 12), size=32)
    out = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / f"cache{workers}"))
        monkeypatch.setenv(parallel.WORKERS_ENV, workers)
        d = load_dataset(root, image_size=16)
        assert not d.cache_hit
        out[workers] = d
    for split in ("train", "val", "test"):
        a, b = getattr(out["1"].splits, split), getattr(out["2"].splits, split)
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert out["1"].fingerprint == out["2"].fingerprint


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_worker_count_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(parallel.WORKERS_ENV, value)
    with pytest.raises(DataError, match=parallel.WORKERS_ENV):
        parallel.default_workers()


def test_warm_load_maps_the_carved_split_from_disk(tmp_path, monkeypatch):
    """Train-minus-validation is written once beside the entry, then memory-mapped: no copy per load."""
    from xraybench.data import load_dataset

    root = make_kaggle_tree(tmp_path / "data", n_train=(40, 60), n_test=(10, 12), size=32)
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "cache"))
    cold = load_dataset(root, image_size=16)
    warm = load_dataset(root, image_size=16)
    assert warm.cache_hit
    for split in ("train", "val"):
        a, b = getattr(cold.splits, split), getattr(warm.splits, split)
        assert isinstance(b.images, np.memmap)
        np.testing.assert_array_equal(a.images, b.images)
        assert a.ids == b.ids
    names = sorted(p.name.rsplit("-", 1)[1] for p in warm.cache_path.glob("val-index-*_images.npy"))
    assert names == ["train_images.npy", "val_images.npy"]


def test_one_carved_copy_per_cache_entry(tmp_path, monkeypatch):
    """Another seed replaces the carved copy on disk instead of adding one per seed."""
    from xraybench.data import load_dataset

    root = make_kaggle_tree(tmp_path / "data", n_train=(40, 60), n_test=(10, 12), size=32)
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "cache"))
    first = load_dataset(root, image_size=16, seed=1)
    second = load_dataset(root, image_size=16, seed=2)
    carved = sorted(p.name for p in second.cache_path.glob("val-index-*_images.npy"))
    assert len(carved) == 2 and all("seed2" in name for name in carved)
    again = load_dataset(root, image_size=16, seed=1)  # rewritten, same split as before
    assert again.splits.val.ids == first.splits.val.ids
    np.testing.assert_array_equal(again.splits.train.images, first.splits.train.images)


def test_a_tampered_carved_split_is_written_again(tmp_path, monkeypatch, capsys):
    """The carved copy is checked against the CRC-32 written with it, like the cache entry itself."""
    from xraybench.data import load_dataset

    root = make_kaggle_tree(tmp_path / "data", n_train=(40, 60), n_test=(10, 12), size=32)
    monkeypatch.setenv("XRAYBENCH_CACHE", str(tmp_path / "cache"))
    cold = load_dataset(root, image_size=16)
    load_dataset(root, image_size=16)  # the first warm load writes the carved copy
    carved = next(cold.cache_path.glob("val-index-*-train_images.npy"))
    tampered = np.load(carved, mmap_mode="r+")
    tampered[0] = 255 - tampered[0]
    tampered.flush()
    del tampered
    capsys.readouterr()
    warm = load_dataset(root, image_size=16)
    assert "does not match its checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(warm.splits.train.images, cold.splits.train.images)
