"""The built-in 28 px copy of Kermany et al.: its fingerprint, its rebuild, its use when no data is given."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from proctools import one_line_error

from xraybench.data import builtin, load_dataset, locate_data
from xraybench.data.readers import patient_id

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_copy_matches_its_recorded_fingerprint():
    record = builtin.recorded()
    assert hashlib.sha256(builtin.NPZ.read_bytes()).hexdigest() == record["sha256"]
    assert builtin.verify() == record["sha256"]
    arrays = builtin.load_arrays()
    assert arrays["images"].shape == (record["images"], 28, 28) and arrays["images"].dtype == np.uint8
    for split, code in builtin.SPLIT_CODES.items():
        for c, label in enumerate(("NORMAL", "PNEUMONIA")):
            n = int(((arrays["split"] == code) & (arrays["labels"] == c)).sum())
            assert n == record["counts"].get(split, {}).get(label, 0), (split, label)
    assert record["counts"]["train"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert record["counts"]["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    # Every name keeps its Kaggle path, so the label and the patient id can be read from it.
    for name, label, split in zip(arrays["names"][::37], arrays["labels"][::37], arrays["split"][::37]):
        parts = str(name).split("/")
        assert parts[0] == {0: "train", 1: "test", 2: "val"}[int(split)]
        assert parts[1] == ("NORMAL", "PNEUMONIA")[int(label)]
        assert patient_id(parts[-1]).startswith(("person", "IM-"))
    assert "CC BY 4.0" in record["source"]["licence"] and record["source"]["doi"] == "10.17632/rscbjbr9sj"
    assert "10.17632/rscbjbr9sj" in (builtin.HERE / "BUILTIN_DATA.md").read_text()


def test_archive_is_deterministic(tmp_path):
    arrays = {k: v[:50] for k, v in builtin.load_arrays().items()}
    builtin.write_npz(arrays, tmp_path / "a.npz")
    builtin.write_npz(arrays, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert [i.filename for i in zf.infolist()] == [f"{m}.npy" for m in builtin.MEMBERS]
        assert {i.date_time for i in zf.infolist()} == {builtin.ZIP_DATE}
    back = builtin.load_arrays(tmp_path / "a.npz")
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_rebuild_from_the_full_data_reproduces_it(real_data, tmp_path):
    import PIL

    out = tmp_path / "rebuilt.npz"
    record = builtin.build(real_data, out, tmp_path / "rebuilt.json")
    shipped, rebuilt = builtin.load_arrays(), builtin.load_arrays(out)
    assert record["source_manifest_sha256"] == builtin.recorded()["source_manifest_sha256"]
    for key in ("labels", "split", "names"):
        assert np.array_equal(shipped[key], rebuilt[key]), key
    if PIL.__version__ == builtin.recorded()["built_with"]["pillow"]:
        assert record["sha256"] == builtin.recorded()["sha256"]  # byte for byte
    else:  # another libjpeg may round a few pixels differently
        assert np.abs(shipped["images"].astype(int) - rebuilt["images"].astype(int)).max() <= 2


def test_loads_with_patient_grouped_validation(xraybench_env):
    data = load_dataset(builtin.NPZ, image_size=28)
    assert data.reader == "xraybench_npz" and data.image_size == 28
    assert len(data.splits.train) + len(data.splits.val) == 5216 and len(data.splits.test) == 624
    assert data.splits.train.images.shape[1:] == (28, 28, 1)
    assert not set(data.splits.train.groups) & set(data.splits.val.groups)  # no patient on both sides
    described = data.describe()
    assert described["dataset"] == builtin.NAME and described["image_size"] == 28
    assert described["val_strategy"].startswith("patient-grouped")
    # The same images at another size are another data set for the leaderboard: the size is in the key.
    assert load_dataset(builtin.NPZ, image_size=32).splits.test.images.shape[1:] == (32, 32, 1)


def test_a_damaged_copy_is_a_one_line_error(tmp_path, xraybench_env):
    from xraybench.errors import DataError

    bad = tmp_path / "copy.npz"
    arrays = {k: v[:10] for k, v in builtin.load_arrays().items()}
    arrays["labels"] = arrays["labels"][:5]
    builtin.write_npz(arrays, bad)
    with pytest.raises(DataError, match="damaged") as err:
        load_dataset(bad, image_size=28)
    assert "\n" not in str(err.value)


def test_used_when_no_data_is_given_and_said_in_one_line(tmp_path, monkeypatch, xb):
    """Nothing given, nothing downloaded: the situation of a fresh install."""
    monkeypatch.delenv("XRAYBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty-data"))
    assert locate_data(None) == builtin.NPZ
    assert builtin.fallback_notice(None) == builtin.NOTICE
    assert builtin.fallback_notice(str(builtin.NPZ)) is None  # asked for by name: nothing to say
    assert builtin.native_size(None) == 28

    from xraybench.runner import RunRequest, prepare

    assert prepare(RunRequest(model="baseline_cnn")).dataset.image_size == 28  # not upsampled to 150
    assert prepare(RunRequest(model="baseline_cnn", image_size=32)).dataset.image_size == 32

    out = xb("data", env={"COLUMNS": "80"})
    assert out.code == 0, out.err[-2000:]
    lines = out.out.splitlines()
    assert lines[0] == builtin.NOTICE and sum(builtin.NOTICE in line for line in lines) == 1
    assert "28 px, 1 channel" in out.out and "{" not in out.out  # tables, no Python dicts
    assert all(len(line) <= 80 for line in lines)
    # The decoded copy went to the test's cache, not the user's.
    assert any(Path(os.environ["XRAYBENCH_CACHE"]).iterdir())


def test_wheel_ships_the_data(tmp_path):
    """A non-editable install carries the copy: it is package data in the wheel. Built from a copy of
    the sources, since setuptools writes build/ and *.egg-info beside what it builds."""
    src = tmp_path / "src"
    for package in ("xraybench", "plugins"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("xraybench-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in ("kermany2018_28px.npz", "kermany2018_28px.json", "BUILTIN_DATA.md"):
            assert f"xraybench/data/{name}" in names
        assert hashlib.sha256(zf.read("xraybench/data/kermany2018_28px.npz")).hexdigest() == builtin.recorded()["sha256"]
        assert json.loads(zf.read("xraybench/data/kermany2018_28px.json"))["sha256"] == builtin.recorded()["sha256"]


def test_pyproject_lists_every_package():
    """setuptools ships an unlisted subpackage (cli/, training/) only as deprecated data, with a warning."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "xraybench").rglob("__init__.py")}
    assert not packages - listed, f"add {sorted(packages - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_leaderboard_never_pools_data_sets_or_sizes():
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from recordfactory import make_record

    from xraybench.leaderboard import build_rows

    records = []
    for seed, fingerprint, size in ((1, "a" * 64, 150), (2, "b" * 64, 28), (3, "b" * 64, 64), (4, "b" * 64, 28)):
        record, _ = make_record("baseline_cnn", seed=seed, fingerprint=fingerprint)  # "b": the built-in copy
        record["image_size"] = size
        records.append(record)
    rows = {(r.fingerprint[0], r.image_size): r.runs for r in build_rows(records)}
    assert rows == {("a", 150): 1, ("b", 28): 2, ("b", 64): 1}


def test_leaderboard_never_pools_backends_of_keras_runs():
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from recordfactory import make_record

    from xraybench.leaderboard import build_rows

    records = []
    for seed, kind, backend in ((1, "keras", "tensorflow"), (2, "keras", "jax"), (3, "keras", "jax"),
                                (4, "generic", "tensorflow"), (5, "generic", "jax")):
        record, _ = make_record("baseline_cnn" if kind == "keras" else "logreg", seed=seed)
        record.update(kind=kind, environment={"backend": backend})
        records.append(record)
    rows = build_rows(records)
    assert sorted((r.model, r.runs) for r in rows) == [("baseline_cnn", 1), ("baseline_cnn", 2), ("logreg", 2)]
    from xraybench.leaderboard import COLUMNS

    variant = next(c for c in COLUMNS if c.header == "Variant")
    shown = sorted(variant.cell(r) for r in rows)
    assert shown == ["default", "default (jax)", "default (tensorflow)"]


def test_a_changed_builtin_copy_is_refused_before_use_in_one_line(tmp_path, monkeypatch, xraybench_env, xb):
    """The copy inside the installed package is checked against its recorded sha256 on every load,
    a warm one from the cache too: with its labels flipped it once scored AUC 0.09 with no warning."""
    from xraybench.errors import DataError

    monkeypatch.delenv("XRAYBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty-data"))
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_test_models")
    installed = (tmp_path / "site-packages" / "kermany2018_28px.npz")
    installed.parent.mkdir()
    installed.write_bytes(builtin.NPZ.read_bytes())
    arrays = builtin.load_arrays()
    monkeypatch.setattr(builtin, "NPZ", installed.resolve())
    assert locate_data(None) == builtin.NPZ
    load_dataset(None, image_size=28)  # intact: decoded into the cache

    arrays["labels"] = 1 - arrays["labels"]
    builtin.write_npz(arrays, installed)  # changed inside the package after install
    for load in (lambda: load_dataset(None, image_size=28), lambda: load_dataset(None, image_size=16),
                 lambda: builtin.load_arrays(builtin.NPZ)):
        with pytest.raises(DataError) as err:
            load()
        message = str(err.value)
        assert "\n" not in message and str(installed.resolve()) in message
        assert "changed after install" in message and "reinstall xraybench" in message

    assert "changed after install" in one_line_error(*xb("run", "--model", "xb_good"))
    assert not (xraybench_env / "results" / "runs").exists() or not any((xraybench_env / "results" / "runs").iterdir())
