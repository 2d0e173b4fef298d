"""Warm loads check the source's folders and the cache files' identities, not every file and byte.

Each test counts what a load actually did (source listings, checksummed bytes) through the
functions that do it, so "O(1) in images" is asserted by behaviour, never by a timing.
"""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xraybench.data import cache, load_dataset
from xraybench.data import readers
from xraybench.testing import make_kaggle_tree

SIZE = 16


@pytest.fixture
def counted(monkeypatch):
    """{"listings": source listings, "crc": names checksummed} for the loads run inside the test."""
    seen = {"listings": 0, "crc": []}
    files, starts = readers._kaggle_files, cache._start_checksums

    def listing(root):
        seen["listings"] += 1
        return files(root)

    def start(buffers):
        seen["crc"].extend(buffers)
        return starts(buffers)

    # the registered spec holds a reference to the function: patch the registry's copy too
    from xraybench.plugins import load_registry

    real_registry = load_registry

    def registry(*args, **kwargs):
        reg = real_registry(*args, **kwargs)
        spec = reg.datasets["kaggle_folders"]
        reg.datasets["kaggle_folders"] = type(spec)(**{**spec.__dict__, "files": listing})
        return reg

    monkeypatch.setattr("xraybench.plugins.load_registry", registry)
    monkeypatch.setattr(cache, "_start_checksums", start)

    def reset():
        seen["listings"], seen["crc"] = 0, []

    seen["reset"] = reset
    return seen


@pytest.fixture
def settled(monkeypatch):
    """Snapshots count as settled at once (no racy window): what a data folder untouched for a second is."""
    monkeypatch.setattr(cache, "RACY_NS", 0)


def _ids(data) -> set[str]:
    return {i for s in ("train", "val", "test") for i in getattr(data.splits, s).ids}


def _on_disk(root: Path) -> set[str]:
    """The images a run uses: Kaggle's own val/ is counted in the stats, never used (readers.py)."""
    return {p.relative_to(root).as_posix() for split in ("train", "test") for p in root.glob(f"{split}/*/*.jpeg")}


def _warm(root, counted):
    """Load twice (the first warm load writes the carved split once), count the second."""
    load_dataset(root, image_size=SIZE)
    counted["reset"]()
    return load_dataset(root, image_size=SIZE)


def test_warm_load_lists_no_source_file_and_checksums_nothing(xray_data, counted, settled):
    cold = load_dataset(xray_data, image_size=SIZE)
    assert not cold.cache_hit
    warm = _warm(xray_data, counted)
    assert warm.cache_hit and warm.fingerprint == cold.fingerprint
    assert counted["listings"] == 0 and counted["crc"] == []
    np.testing.assert_array_equal(warm.splits.test.images, cold.splits.test.images)


def test_fingerprint_is_the_content_fingerprint_as_before(xray_data, settled):
    """Records carry the fingerprint: the same data keeps the fingerprint published rows hold."""
    data = load_dataset(xray_data, image_size=SIZE)
    train, val = data.splits.train.class_counts(), data.splits.val.class_counts()
    counts = {"train": {k: train.get(k, 0) + val.get(k, 0) for k in {*train, *val}}, "test": data.splits.test.class_counts()}
    assert data.fingerprint == cache.content_fingerprint(xray_data, readers._kaggle_files(xray_data), counts)


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new-split"])
def test_source_changes_are_seen_from_the_folders(xray_data, counted, settled, change):
    first = load_dataset(xray_data, image_size=SIZE)
    folder = xray_data / "train" / "NORMAL"
    some = sorted(folder.glob("*.jpeg"))[0]
    if change == "add":
        shutil.copy2(some, folder / "IM-0999-0999.jpeg")  # same bytes and mtime: only the folder says so
    elif change == "remove":
        some.unlink()
    elif change == "rename":
        some.rename(folder / "IM-0998-0001.jpeg")
    else:
        (xray_data / "val" / "NORMAL").mkdir(parents=True)
        shutil.copy2(some, xray_data / "val" / "NORMAL" / some.name)
    counted["reset"]()
    again = load_dataset(xray_data, image_size=SIZE)
    assert not again.cache_hit and counted["listings"] >= 1
    assert _ids(again) == _on_disk(xray_data)
    assert again.fingerprint != first.fingerprint
    assert again.cache_path == first.cache_path  # the entry was replaced, not duplicated
    assert len([p for p in Path(os.environ["XRAYBENCH_CACHE"]).iterdir() if not p.name.startswith(".")]) == 1


def test_a_folder_touched_without_a_change_is_listed_once_then_trusted(xray_data, counted, settled):
    load_dataset(xray_data, image_size=SIZE)
    load_dataset(xray_data, image_size=SIZE)
    junk = xray_data / "train" / "NORMAL" / "notes.txt"
    junk.write_text("not an image")
    junk.unlink()  # the folder's mtime moved; its images did not
    counted["reset"]()
    again = load_dataset(xray_data, image_size=SIZE)
    assert again.cache_hit and counted["listings"] == 1 and counted["crc"] == []
    counted["reset"]()
    assert load_dataset(xray_data, image_size=SIZE).cache_hit and counted["listings"] == 0


def test_a_fresh_snapshot_is_racy_and_checked_file_by_file(xray_data, counted):
    """Folders modified within RACY_NS of the snapshot could change again unseen in the same tick."""
    load_dataset(xray_data, image_size=SIZE)
    counted["reset"]()
    assert load_dataset(xray_data, image_size=SIZE).cache_hit and counted["listings"] == 1


def test_in_place_edit_of_a_source_image_needs_rescan(xray_data, counted, settled):
    """The documented limit: an image rewritten under its own name leaves its folder's mtime alone."""
    first = load_dataset(xray_data, image_size=SIZE)
    target = xray_data / "test" / "NORMAL" / "IM-0000-0000.jpeg"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(target)  # same file, same folder entry
    stale = load_dataset(xray_data, image_size=SIZE)
    assert stale.cache_hit and stale.fingerprint == first.fingerprint
    counted["reset"]()
    fresh = load_dataset(xray_data, image_size=SIZE, rescan=True)
    assert not fresh.cache_hit and counted["listings"] >= 1 and fresh.fingerprint != first.fingerprint
    assert load_dataset(xray_data, image_size=SIZE).fingerprint == fresh.fingerprint


def test_rescan_checksums_every_cached_byte(xray_data, counted, settled):
    load_dataset(xray_data, image_size=SIZE)
    load_dataset(xray_data, image_size=SIZE)
    counted["reset"]()
    data = load_dataset(xray_data, image_size=SIZE, rescan=True)
    manifest = json.loads((data.cache_path / cache.MANIFEST).read_text())
    assert data.cache_hit and counted["listings"] == 1
    assert set(manifest["files"]) <= set(counted["crc"])
    assert any(name.startswith("val-index-") for name in counted["crc"])  # the carved split's files too


def test_a_touched_cache_array_is_checksummed_once_and_kept(xray_data, counted, settled, capsys):
    first = load_dataset(xray_data, image_size=SIZE)
    load_dataset(xray_data, image_size=SIZE)
    target = first.cache_path / "test_images.npy"
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns - 10**10))
    counted["reset"]()
    again = load_dataset(xray_data, image_size=SIZE)
    assert again.cache_hit and counted["crc"] == ["test_images.npy"] and capsys.readouterr().err == ""
    counted["reset"]()
    assert load_dataset(xray_data, image_size=SIZE).cache_hit and counted["crc"] == []


def test_a_cache_array_copied_over_itself_is_kept(xray_data, counted, settled):
    first = load_dataset(xray_data, image_size=SIZE)
    target = first.cache_path / "train_labels.npy"
    shutil.copy2(target, target.with_name("copy.tmp.npy"))
    os.replace(target.with_name("copy.tmp.npy"), target)  # same bytes and mtime, another inode
    counted["reset"]()
    again = load_dataset(xray_data, image_size=SIZE)
    assert again.cache_hit and "train_labels.npy" in counted["crc"]


def _edit_keeping_mtime(path: Path, edit) -> None:
    before = path.stat()
    edit(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the mtime says nothing happened; the ctime moved
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size


def _flip_labels(path: Path) -> None:
    np.save(path, 1 - np.load(path))


def _edit_pixel(path: Path) -> None:
    images = np.load(path, mmap_mode="r+")
    images[0, 1, 1, 0] ^= 0xFF
    images.flush()
    del images


@pytest.mark.parametrize("name, edit", [("test_labels.npy", _flip_labels), ("train_images.npy", _edit_pixel)])
def test_an_edit_that_restores_the_mtime_is_still_caught(xray_data, settled, capsys, name, edit):
    first = load_dataset(xray_data, image_size=SIZE)
    truth = first.splits.test.labels.tolist()
    _edit_keeping_mtime(first.cache_path / name, edit)
    capsys.readouterr()
    again = load_dataset(xray_data, image_size=SIZE)
    err = capsys.readouterr().err
    assert not again.cache_hit and f"{name} does not match its checksum" in err and err.count("\n") == 1
    assert again.splits.test.labels.tolist() == truth and again.fingerprint == first.fingerprint


def test_an_edited_carved_split_is_caught_and_written_again(xray_data, settled, capsys):
    load_dataset(xray_data, image_size=SIZE)
    first = load_dataset(xray_data, image_size=SIZE)
    (carved,) = first.cache_path.glob("val-index-*-train_images.npy")
    truth = np.asarray(first.splits.train.images).copy()
    del first
    _edit_keeping_mtime(carved, _edit_pixel)
    capsys.readouterr()
    again = load_dataset(xray_data, image_size=SIZE)
    assert "does not match its checksum; written again" in capsys.readouterr().err
    np.testing.assert_array_equal(again.splits.train.images, truth)


def test_a_one_file_source_is_checked_by_its_own_stat(tmp_path, xraybench_env, settled):
    from xraybench.data import builtin

    npz = tmp_path / "copy.npz"
    shutil.copy2(builtin.NPZ, npz)
    first = load_dataset(npz, image_size=28)
    assert load_dataset(npz, image_size=28).cache_hit
    os.utime(npz, ns=(npz.stat().st_atime_ns, npz.stat().st_mtime_ns + 10**9))  # as a rewrite in place would
    again = load_dataset(npz, image_size=28)
    assert not again.cache_hit and again.fingerprint == first.fingerprint  # decoded again; same bytes, same data


OPS = st.lists(st.sampled_from(["add", "remove", "rename", "touch-folder", "none"]), min_size=1, max_size=4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_after_any_changes_a_load_sees_exactly_the_files_on_disk(tmp_path_factory, monkeypatch, ops):
    monkeypatch.setattr(cache, "RACY_NS", 0)
    base = tmp_path_factory.mktemp("prop")
    monkeypatch.setenv("XRAYBENCH_CACHE", str(base / "cache"))
    root = make_kaggle_tree(base / "data", n_train=(10, 10), n_test=(3, 3), size=24, images_per_patient=1)
    load_dataset(root, image_size=SIZE)
    for step, op in enumerate(ops):
        # RACY_NS is 0 here, so leave the last snapshot a timestamp tick (<= 10 ms) behind, as the real 1 s does
        time.sleep(0.03)
        folder = root / "train" / ("NORMAL", "PNEUMONIA")[step % 2]
        files = sorted(folder.glob("*.jpeg"))
        if op == "add":
            shutil.copy2(files[0], folder / f"IM-09{step:02d}-0001.jpeg")
        elif op == "remove" and len(files) > 3:
            files[-1].unlink()
        elif op == "rename":
            files[0].rename(folder / f"IM-08{step:02d}-0002.jpeg")
        elif op == "touch-folder":
            (folder / "x.txt").write_text("x")
            (folder / "x.txt").unlink()
        data = load_dataset(root, image_size=SIZE)
        assert _ids(data) == _on_disk(root)
        assert data.fingerprint == load_dataset(root, image_size=SIZE, rescan=True).fingerprint


def test_cli_data_rescan_sees_an_image_rewritten_in_place(xray_data, settled, capsys):
    from xraybench.cli import main

    first = load_dataset(xray_data, image_size=SIZE)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(xray_data / "test" / "NORMAL" / "IM-0000-0000.jpeg")
    assert main(["data", "--data", str(xray_data), "--image-size", str(SIZE)]) == 0
    assert load_dataset(xray_data, image_size=SIZE).fingerprint == first.fingerprint  # not seen without --rescan
    assert main(["data", "--data", str(xray_data), "--image-size", str(SIZE), "--rescan"]) == 0
    assert load_dataset(xray_data, image_size=SIZE).fingerprint != first.fingerprint


def _outside_reader(folder: Path):
    """A plugin reader whose images live outside the data folder it is given (e.g. listed by an index)."""
    from types import SimpleNamespace

    from xraybench import hookimpl
    from xraybench.specs import DatasetSpec, ImageSet, RawDataset

    def files(path):
        return [str(Path(path) / "index.txt"), *sorted(map(str, folder.glob("*.npy")))]

    def read(path, size, channels, skip_bad):
        paths = files(path)[1:]
        images = np.stack([np.full((size, size, channels), int(np.load(p)), np.uint8) for p in paths])
        labels = np.arange(len(paths)) % 2
        ids = [Path(p).name for p in paths]
        part = ImageSet(images, labels, ids, ids)
        return RawDataset(train=part, test=part, val=part, stats={})

    spec = DatasetSpec(name="outside_list", description="test reader", detect=lambda p: False, files=files, read=read)
    return SimpleNamespace(register_datasets=hookimpl(lambda register: register(spec)))


def test_folders_of_listed_files_outside_the_data_folder_are_checked_too(tmp_path, xraybench_env, settled):
    from xraybench.testing import registered_plugin

    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    (root / "index.txt").write_text(str(outside))
    for i in range(4):
        np.save(outside / f"img{i}.npy", np.array(10 * i))
    with registered_plugin(_outside_reader(outside), "outside_list"):
        first = load_dataset(root, image_size=8, reader="outside_list")
        assert load_dataset(root, image_size=8, reader="outside_list").cache_hit
        np.save(outside / "img9.npy", np.array(90))  # only the outside folder's mtime moves
        again = load_dataset(root, image_size=8, reader="outside_list")
    assert not again.cache_hit and len(again.splits.test) == 5 and again.fingerprint != first.fingerprint


def test_an_identity_recorded_in_the_same_tick_as_a_write_is_checked_again(xray_data, counted):
    """With the real RACY_NS a cache file written just before its identity was taken is checksummed
    on the next load (a write in that same tick would have left the identity unchanged)."""
    load_dataset(xray_data, image_size=SIZE)
    counted["reset"]()
    again = load_dataset(xray_data, image_size=SIZE)
    assert again.cache_hit and "test_images.npy" in counted["crc"]


def test_images_added_below_a_symlinked_split_folder_are_seen(tmp_path, xraybench_env, settled):
    """Review finding: `train -> /big/train` was recorded by its target but never descended, so an image
    added to `/big/train/NORMAL` left every recorded folder as it was and the warm load served the old set."""
    big = make_kaggle_tree(tmp_path / "big")
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / split).symlink_to(big / split, target_is_directory=True)
    cold = load_dataset(data, image_size=SIZE)
    shutil.copy(next((big / "train" / "NORMAL").glob("*.jpeg")), big / "train" / "NORMAL" / "IM-9999-0001.jpeg")
    next((big / "test" / "PNEUMONIA").glob("*.jpeg")).unlink()
    warm = load_dataset(data, image_size=SIZE)
    assert not warm.cache_hit and warm.fingerprint != cold.fingerprint
    assert len(warm.splits.train) + len(warm.splits.val) == len(cold.splits.train) + len(cold.splits.val) + 1
    assert len(warm.splits.test) == len(cold.splits.test) - 1


def test_a_symlink_loop_in_the_data_folder_ends_the_folder_walk(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "NORMAL").mkdir(parents=True)
    (root / "train" / "NORMAL" / "again").symlink_to(root / "train", target_is_directory=True)
    folders = cache.source_state(root)["folders"]
    assert set(folders) == {".", "train", os.path.join("train", "NORMAL")}


def test_rescan_at_one_size_makes_every_other_size_look_again(xray_data, settled):
    """Review finding: `data --rescan` loads one size; the entries of the other sizes kept serving the
    old pixels of an image rewritten in place. After a rescan they list their source at their next load."""
    other = SIZE + 8
    before = load_dataset(xray_data, image_size=other).fingerprint
    load_dataset(xray_data, image_size=SIZE)
    target = xray_data / "test" / "NORMAL" / "IM-0000-0000.jpeg"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(target)
    assert load_dataset(xray_data, image_size=other).fingerprint == before  # the documented limit, warm
    fresh = load_dataset(xray_data, image_size=SIZE, rescan=True).fingerprint
    assert fresh != before
    again = load_dataset(xray_data, image_size=other)
    assert not again.cache_hit and again.fingerprint == fresh
    assert load_dataset(xray_data, image_size=other).cache_hit  # and then O(1) again


def test_the_carved_split_files_are_named_after_the_data_they_came_from(xray_data, settled):
    """Review finding: an entry folder is replaced in place when its source changes; a process still on
    the old entry could leave its split where the new entry's loads would take it for their own."""
    data = load_dataset(xray_data, image_size=SIZE, seed=5)
    (index_file,) = data.cache_path.glob("val-index-seed5-*.npy")
    assert index_file.name.endswith(f"-{data.fingerprint[:16]}.npy")
    assert all(data.fingerprint[:16] in p.name for p in data.cache_path.glob("val-index-*"))
