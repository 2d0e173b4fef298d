import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xraybench.data import load_dataset, locate_data
from xraybench.data.readers import patient_id
from xraybench.errors import DataError
from xraybench.testing import make_kaggle_tree


def test_loads_kaggle_layout_with_fixed_labels(xray_data):
    data = load_dataset(xray_data, image_size=32, seed=1)
    s = data.splits
    assert s.train.images.dtype == np.uint8 and s.train.images.shape[1:] == (32, 32, 1)
    assert s.test.class_counts() == {"NORMAL": 10, "PNEUMONIA": 14}
    assert len(s.train) + len(s.val) == 60
    for part in (s.train, s.val, s.test):
        for image_id, label in zip(part.ids, part.labels):
            assert label == (1 if "/PNEUMONIA/" in image_id else 0)


def test_rgb_on_request(xray_data):
    data = load_dataset(xray_data, image_size=24, channels=3)
    assert data.splits.test.images.shape[1:] == (24, 24, 3)


def test_any_size_and_mode_loads(tmp_path, xraybench_env):
    root = make_kaggle_tree(tmp_path / "d", mode="RGB", size=40)
    folder = root / "train" / "NORMAL"
    sixteen = (np.linspace(0, 65535, 50 * 70).reshape(50, 70)).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "IM-0900-0001.png")
    Image.new("CMYK", (30, 20), (10, 20, 30, 40)).save(folder / "IM-0901-0001.jpeg")
    Image.new("P", (33, 33), 7).save(folder / "IM-0902-0001.png")
    data = load_dataset(root, image_size=16)
    everything = data.splits.train.ids + data.splits.val.ids
    assert "train/NORMAL/IM-0900-0001.png" in everything
    images = np.concatenate([data.splits.train.images, data.splits.val.images])
    ids = data.splits.train.ids + data.splits.val.ids
    png16 = images[ids.index("train/NORMAL/IM-0900-0001.png")]
    assert png16.dtype == np.uint8 and png16.min() < 10 and png16.max() > 245  # scaled, not clipped
    assert data.stats["modes"]["CMYK"] == 1 and data.stats["modes"]["P"] == 1


def _write_bad(folder: Path):
    good = folder / "IM-0000-0001.jpeg"
    data = good.read_bytes()
    (folder / "IM-0800-0001.jpeg").write_bytes(data[: len(data) // 3])  # truncated
    (folder / "IM-0801-0001.jpeg").write_bytes(b"")  # zero bytes
    (folder / "IM-0802-0001.jpeg").write_text("this is not an image")


def test_unreadable_images_fail_listing_them(xray_data):
    _write_bad(xray_data / "train" / "NORMAL")
    with pytest.raises(DataError) as err:
        load_dataset(xray_data, image_size=32)
    message = str(err.value)
    assert message.startswith("3 unreadable image(s)") and "IM-0801-0001.jpeg" in message
    assert "--skip-bad" in message and "\n" not in message


def test_skip_bad_skips_and_records(xray_data):
    _write_bad(xray_data / "train" / "NORMAL")
    data = load_dataset(xray_data, image_size=32, skip_bad=True)
    assert data.stats["skipped_bad_count"] == 3
    assert data.describe()["skipped_bad"] == 3
    assert len(data.splits.train) + len(data.splits.val) == 60


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda r: [p.unlink() for p in (r / "train" / "NORMAL").iterdir()], "holds no images"),
        (lambda r: __import__("shutil").rmtree(r / "test"), "has no test/ folder"),
        (lambda r: (r / "train" / "COVID").mkdir(), "unknown class folder"),
    ],
    ids=["empty-class", "missing-test", "unknown-class"],
)
def test_bad_layouts_get_one_line_errors(xray_data, damage, expected):
    damage(xray_data)
    with pytest.raises(DataError) as err:
        load_dataset(xray_data, image_size=32)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_missing_path_and_no_data(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        locate_data(tmp_path / "nope")
    monkeypatch.delenv("XRAYBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    from xraybench.data import builtin

    assert locate_data(None) == builtin.NPZ  # nothing given, nothing downloaded: the built-in copy
    monkeypatch.setattr(builtin, "NPZ", tmp_path / "stripped.npz")  # an install without it
    with pytest.raises(DataError) as err:
        locate_data(None)
    assert "XRAYBENCH_DATA unset" in str(err.value) and "download" in str(err.value)


def _write_npz(path, n=(20, 6, 8), size=28, **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 255, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_loads_with_its_own_val(tmp_path, xraybench_env):
    path = _write_npz(tmp_path / "pneumoniamnist.npz")
    data = load_dataset(path, image_size=32)
    assert data.reader == "medmnist_npz"
    assert (len(data.splits.train), len(data.splits.val), len(data.splits.test)) == (20, 6, 8)
    assert data.splits.train.images.shape[1:] == (32, 32, 1)
    assert data.val_strategy == "the data set's own validation split"


def test_npz_missing_key_and_mismatched_lengths(tmp_path, xraybench_env):
    with pytest.raises(DataError, match="lacks key"):
        load_dataset(_write_npz(tmp_path / "a.npz", val_labels=None), image_size=28)
    bad = np.zeros((5, 1), np.uint8)
    with pytest.raises(DataError, match="train_images has 20 entries but train_labels has 5"):
        load_dataset(_write_npz(tmp_path / "b.npz", train_labels=bad), image_size=28)


def test_download_verifies_checksum_on_local_urls(tmp_path, xraybench_env, monkeypatch):
    from xraybench.data import download

    src = _write_npz(tmp_path / "pneumoniamnist.npz")
    good = download.md5sum(src)
    out = download.fetch(src.resolve().as_uri(), tmp_path / "dl" / "p.npz", good)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(DataError, match="wrong MD5"):
        download.fetch(src.resolve().as_uri(), tmp_path / "dl" / "q.npz", "0" * 32)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["p.npz"]  # no q.npz, no temporary file left
    # The whole command path, with a local mirror standing in for Zenodo.
    name, _ = download.PNEUMONIAMNIST[28]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / name).write_bytes(src.read_bytes())
    monkeypatch.setitem(download.PNEUMONIAMNIST, 28, (name, good))
    path = download.download_pneumoniamnist(28, tmp_path / "dest", base_url=mirror.resolve().as_uri())
    assert load_dataset(path, image_size=28).reader == "medmnist_npz"  # cached under xraybench_env, not ~/.cache


def test_cache_hit_and_invalidation(xray_data):
    first = load_dataset(xray_data, image_size=32)
    second = load_dataset(xray_data, image_size=32)
    assert not first.cache_hit and second.cache_hit
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(first.splits.test.images, second.splits.test.images)
    # replace one image (a new file moved over it, as a copy or a download does): new key, new fingerprint.
    # Its folder changes, which a warm load checks; a rewrite in place under the same name is seen by
    # rescan (test_cache_freshness.py), or here only while the folder is too recent to trust: timing.
    target = xray_data / "test" / "NORMAL" / "IM-0000-0000.jpeg"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(xray_data.parent / "new.jpeg")
    os.replace(xray_data.parent / "new.jpeg", target)
    changed = load_dataset(xray_data, image_size=32)
    assert not changed.cache_hit and changed.fingerprint != first.fingerprint
    # remove one image
    target.unlink()
    removed = load_dataset(xray_data, image_size=32)
    assert not removed.cache_hit and len(removed.splits.test) == 23
    # other preprocessing is another entry
    assert not load_dataset(xray_data, image_size=24).cache_hit


def _load_in_child(root, cache, queue):
    os.environ["XRAYBENCH_CACHE"] = cache
    data = load_dataset(root, image_size=32)
    queue.put((data.fingerprint, int(data.splits.test.images.sum())))


def test_two_processes_loading_at_once_agree(xray_data):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(str(xray_data), os.environ["XRAYBENCH_CACHE"], queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results[0] == results[1]
    warm = load_dataset(xray_data, image_size=32)
    assert warm.cache_hit and (warm.fingerprint, int(warm.splits.test.images.sum())) == results[0]
    leftovers = [p for p in Path(os.environ["XRAYBENCH_CACHE"]).iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "name, pid",
    [
        ("person123_bacteria_456.jpeg", "person123"),
        ("person123_virus_457.jpeg", "person123"),
        ("IM-0115-0001.jpeg", "IM-115"),
        ("NORMAL2-IM-0115-0002.jpeg", "IM-115"),
        ("odd-name.png", "odd-name"),
    ],
)
def test_patient_ids(name, pid):
    assert patient_id(name) == pid


def test_validation_split_is_patient_grouped_stratified_and_seeded(tmp_path, xraybench_env):
    root = make_kaggle_tree(tmp_path / "d", n_train=(60, 120), images_per_patient=3)
    a = load_dataset(root, image_size=16, seed=3)
    b = load_dataset(root, image_size=16, seed=3)
    c = load_dataset(root, image_size=16, seed=4)
    assert a.splits.val.ids == b.splits.val.ids
    assert a.splits.val.ids != c.splits.val.ids
    assert not set(a.splits.train.groups) & set(a.splits.val.groups)
    ratio = a.splits.val.labels.mean()
    assert abs(ratio - 120 / 180) < 0.1
    assert 0.08 < len(a.splits.val) / 180 < 0.25


def test_real_data_counts_and_no_leak(real_data, real_cache):
    data = load_dataset(real_data, image_size=32)
    stats = data.stats["splits"]
    assert stats["train"]["NORMAL"]["images"] == 1341 and stats["train"]["PNEUMONIA"]["images"] == 3875
    assert stats["test"]["NORMAL"]["images"] == 234 and stats["test"]["PNEUMONIA"]["images"] == 390
    assert not set(data.splits.train.groups) & set(data.splits.val.groups)
    assert len(data.splits.train) + len(data.splits.val) == 5216


def test_cli_data_summary_on_real_data(real_data, real_cache, xb):
    out = xb("data", "--data", str(real_data), "--image-size", "32", env={"COLUMNS": "200"})
    assert out.code == 0, out.err
    for number in ("1341", "3875", "234", "390"):
        assert number in out.out
    assert "fingerprint" in out.out


def test_cli_clear_cache(xray_data, xb):
    load_dataset(xray_data, image_size=32)
    out = xb("data", "--clear-cache")
    assert out.code == 0 and "removed 1 cache entry" in out.out


def _old_format_entry(root: Path, key: str = "ab" * 32) -> Path:
    """An entry as xraybench wrote it before entries carried the ownership marker."""
    folder = root / key[:24]
    folder.mkdir(parents=True)
    np.save(folder / "train_images.npy", np.zeros((2, 8, 8, 1), np.uint8))
    np.save(folder / "train_labels.npy", np.zeros(2, np.int64))
    (folder / "meta.json").write_text(json.dumps({"key": key, "sets": {"train": {"ids": [], "groups": []}}}))
    return folder


def test_clear_cache_removes_only_what_xraybench_made(xray_data, xb):
    from xraybench.data import cache

    root = Path(os.environ["XRAYBENCH_CACHE"])
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "thesis").mkdir()
    (root / "thesis" / "chapter1.tex").write_text("\\chapter{Pneumonia}")
    (root / "notes.txt").write_text("keep me")
    looks_like_ours = root / ("0" * 24)  # an entry-like name, but not made by xraybench
    looks_like_ours.mkdir()
    (looks_like_ours / "meta.json").write_text("{}")
    old = _old_format_entry(root)
    first = load_dataset(xray_data, image_size=16).cache_path
    second = load_dataset(xray_data, image_size=24).cache_path
    (second / "my-own-file.txt").write_text("put here by the user")

    out = xb("data", "--clear-cache")
    assert out.code == 0, out.err
    assert "removed 1 cache entry" in out.out
    assert "kept 1 entry holding files xraybench did not write" in out.out and second.name in out.out
    assert f"without the ownership marker: {old.name}; pass --force" in out.out
    assert "left 4 item(s) xraybench did not make: .git, 000000000000000000000000, notes.txt, thesis" in out.out
    assert not first.exists()
    assert (root / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n" and (root / ".git" / "objects").is_dir()
    assert (root / "thesis" / "chapter1.tex").is_file() and (root / "notes.txt").read_text() == "keep me"
    assert (looks_like_ours / "meta.json").is_file()
    assert sorted(p.name for p in second.iterdir()) == [cache.MARKER, "my-own-file.txt"]
    assert old.is_dir()

    out = xb("data", "--clear-cache", "--force")
    assert out.code == 0 and "removed 1 cache entry" in out.out and not old.exists()
    assert (root / ".git" / "HEAD").is_file() and (root / "thesis" / "chapter1.tex").is_file()
    assert (second / "my-own-file.txt").is_file() and looks_like_ours.is_dir()


def test_old_format_entry_under_the_same_key_is_replaced(xray_data):
    from xraybench.data import cache

    fresh = load_dataset(xray_data, image_size=16)
    key = json.loads((fresh.cache_path / cache.MANIFEST).read_text())["key"]
    for p in fresh.cache_path.iterdir():
        p.unlink()
    fresh.cache_path.rmdir()
    _old_format_entry(fresh.cache_path.parent, key)  # what an older xraybench left under this key
    again = load_dataset(xray_data, image_size=16)
    assert not again.cache_hit and (again.cache_path / cache.MARKER).is_file()
    assert again.fingerprint == fresh.fingerprint


def test_foreign_folder_in_the_way_of_an_entry_is_an_error(xray_data):
    first = load_dataset(xray_data, image_size=16)
    path = first.cache_path
    __import__("shutil").rmtree(path)
    path.mkdir()
    (path / "thesis.tex").write_text("mine")
    with pytest.raises(DataError, match="is in the way and was not made by xraybench"):
        load_dataset(xray_data, image_size=16)
    assert (path / "thesis.tex").read_text() == "mine"


def _flip_labels(entry: Path) -> None:
    labels = np.load(entry / "test_labels.npy")
    np.save(entry / "test_labels.npy", 1 - labels)


def _edit_one_pixel(entry: Path) -> None:
    images = np.load(entry / "train_images.npy", mmap_mode="r+")
    images[3, 5, 5, 0] ^= 0xFF
    images.flush()


def _truncate(entry: Path) -> None:
    data = (entry / "test_images.npy").read_bytes()
    (entry / "test_images.npy").write_bytes(data[:-100])


def _edit_meta(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["fingerprint"] = "f" * 64
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, why",
    [
        (_flip_labels, "test_labels.npy does not match its checksum"),
        (_edit_one_pixel, "train_images.npy does not match its checksum"),
        (_truncate, "test_images.npy has"),
        (_edit_meta, "meta.json"),
        (lambda e: (e / "train_labels.npy").unlink(), "train_labels.npy is missing"),
        (lambda e: (e / "manifest.json").write_text("{not json"), "manifest.json is unreadable"),
        (lambda e: (e / "manifest.json").unlink(), "manifest.json is unreadable"),
    ],
    ids=["flipped-labels", "one-pixel", "truncated", "edited-meta", "missing-array", "bad-manifest", "no-manifest"],
)
def test_damaged_cache_entry_is_discarded_and_rebuilt(xray_data, capsys, damage, why):
    first = load_dataset(xray_data, image_size=16)
    truth = {s: (getattr(first.splits, s).ids, getattr(first.splits, s).labels.tolist(),
                 np.asarray(getattr(first.splits, s).images).copy()) for s in ("train", "val", "test")}
    damage(first.cache_path)
    capsys.readouterr()
    again = load_dataset(xray_data, image_size=16)
    err = capsys.readouterr().err
    assert not again.cache_hit
    assert err.count("\n") == 1 and err.startswith(f"warning: cache entry {first.cache_path} is damaged")
    assert why in err and "decoding the data again" in err
    assert again.fingerprint == first.fingerprint
    for s, (ids, labels, images) in truth.items():
        part = getattr(again.splits, s)
        assert part.ids == ids and part.labels.tolist() == labels
        np.testing.assert_array_equal(part.images, images)
    for image_id, label in zip(again.splits.test.ids, again.splits.test.labels):
        assert label == (1 if "/PNEUMONIA/" in image_id else 0)
    third = load_dataset(xray_data, image_size=16)
    assert third.cache_hit and capsys.readouterr().err == ""


def test_tampered_validation_index_is_carved_again(xray_data):
    first = load_dataset(xray_data, image_size=16, seed=5)
    (index_file,) = first.cache_path.glob("val-index-seed5-*.npy")
    index = np.load(index_file)
    np.save(index_file, np.roll(np.arange(len(first.splits.train) + len(first.splits.val)), 1)[: len(index)])
    again = load_dataset(xray_data, image_size=16, seed=5)
    assert again.cache_hit and again.splits.val.ids == first.splits.val.ids
    assert np.load(index_file).tolist() == index.tolist()  # rewritten, intact
