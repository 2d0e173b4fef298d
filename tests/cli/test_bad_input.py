"""Bad input, built in code: each case must end in one `error: ...` line (exit 2) naming the file or
value and what to do, never a traceback; with --skip-bad a damaged record is skipped and named.

Most cases drive the CLI in this process (the `xb` fixture), so that an unexpected exception
fails the test with its traceback instead of hiding in a child's stderr; one case runs the real
command in a subprocess to check the whole path.
"""

from __future__ import annotations

import re
import builtins
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xraybench.data import load_dataset
from xraybench.data.readers import NPZ_KEYS, _npz_read
from xraybench.errors import DataError, XRayBenchError
from xraybench.testing import make_kaggle_tree


def one_line_error(err: str) -> str:
    """The single `error:` line of stderr; fails unless there is exactly one and no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def tree(tmp_path: Path, xraybench_env: Path) -> Path:
    return make_kaggle_tree(tmp_path / "chest_xray", n_train=(12, 16), n_test=(6, 6), size=24)


NORMAL = ("train", "NORMAL")


def bomb_png(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A 60-byte PNG whose header claims width x height pixels (400 megapixels: over Pillow's bomb limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# --- the Kaggle folder: entries that cannot be read -----------------------------------------


def _symlink_loop(root: Path) -> Path:
    link = root.joinpath(*NORMAL, "IM-0990-0001.jpeg")
    link.symlink_to(link.name)  # points at itself
    return link


def _bomb(root: Path) -> Path:
    return bomb_png(root.joinpath(*NORMAL, "IM-0991-0001.png"))


def _outside(root: Path) -> Path:
    outside = root.parent / "elsewhere"
    outside.mkdir()
    target = outside / "IM-0992-0001.jpeg"
    target.write_bytes(next(root.joinpath(*NORMAL).glob("*.jpeg")).read_bytes())
    link = root.joinpath(*NORMAL, "IM-0992-0001.jpeg")
    link.symlink_to(target)
    return link


def _dangling(root: Path) -> Path:
    link = root.joinpath(*NORMAL, "IM-0993-0001.jpeg")
    link.symlink_to(root / "no-such-file.jpeg")
    return link


def _fifo(root: Path) -> Path:
    path = root.joinpath(*NORMAL, "IM-0994-0001.jpeg")
    os.mkfifo(path)  # opening it would block: the scan must not
    return path


CASES = {
    "symlink-loop": (_symlink_loop, "symlink loop"),
    "decompression-bomb": (_bomb, "decompression bomb"),
    "symlink-outside": (_outside, "outside the data folder"),
    "dangling-symlink": (_dangling, "broken symlink"),
    "fifo": (_fifo, "not a regular file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_entry_is_one_line_error_then_skipped_and_named(case, tree, xb):
    make, why = CASES[case]
    bad = make(tree)
    code, _, err = xb("data", "--data", str(tree), "--image-size", "16")
    line = one_line_error(err)
    assert code == 2 and line.startswith("error: 1 unreadable image(s)")
    assert str(bad) in line and why in line and "--skip-bad" in line

    code, out, err = xb("data", "--data", str(tree), "--image-size", "16", "--skip-bad")
    assert code == 0 and "Traceback" not in err
    assert "skipped 1 unreadable image(s)" in err and bad.name in err and why in err
    assert re.search(r"skipped\s+1 unreadable image", out), out
    data = load_dataset(tree, image_size=16, skip_bad=True)  # warm: the cache agrees, and says it again
    assert data.cache_hit and data.stats["skipped_bad"] == [f"train/NORMAL/{bad.name}"]
    assert bad.name not in data.splits.train.ids + data.splits.val.ids
    assert len(data.splits.train) + len(data.splits.val) == 28


def test_symlink_inside_the_data_folder_is_used(tree):
    first = next(tree.joinpath(*NORMAL).glob("*.jpeg"))
    (tree.joinpath(*NORMAL) / "IM-0995-0001.jpeg").symlink_to(first)
    data = load_dataset(tree, image_size=16)
    assert "train/NORMAL/IM-0995-0001.jpeg" in data.splits.train.ids + data.splits.val.ids


def test_unreadable_file(tree, xb, monkeypatch):
    # Tests may run as root, where chmod 000 blocks nothing: make open() refuse this one file instead.
    victim = next(tree.joinpath(*NORMAL).glob("*.jpeg"))
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == str(victim):
            raise PermissionError(13, "Permission denied", str(victim))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    code, _, err = xb("data", "--data", str(tree), "--image-size", "16")
    line = one_line_error(err)
    assert code == 2 and str(victim) in line and "Permission denied" in line
    code, out, err = xb("data", "--data", str(tree), "--image-size", "16", "--skip-bad")
    assert code == 0 and "Traceback" not in err and victim.name in err and re.search(r"skipped\s+1 unreadable image", out)


def test_whole_command_in_a_subprocess(tree, xb):
    _symlink_loop(tree)
    out = xb.process("data", "--data", str(tree), "--image-size", "16", timeout=300)
    assert out.code == 2 and "Traceback" not in out.err
    assert out.err.strip().count("\n") == 0 and "symlink loop" in out.err


# --- .npz files -----------------------------------------------------------------------------


def _arrays(n: int = 6, size: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split in ("train", "val", "test"):
        out[f"{split}_images"] = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    return out


def _npz(path: Path, **change) -> Path:
    np.savez(path, **{**_arrays(), **change})
    return path


def _truncated(path: Path) -> Path:
    data = _npz(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _member_damaged(path: Path) -> Path:
    """A valid zip directory whose train_images member is compressed garbage."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in _arrays().items():
            zf.writestr(f"{key}.npy", b"\x93NUMPY garbage" if key == "train_images" else _npy_bytes(value))
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


NPZ_CASES = {
    "2-d images": (lambda p: _npz(p, train_images=np.zeros((6, 8), np.uint8)), "has shape (6, 8)"),
    "5-d images": (lambda p: _npz(p, train_images=np.zeros((6, 8, 8, 1, 1), np.uint8)), "has shape (6, 8, 8, 1, 1)"),
    "4 channels": (lambda p: _npz(p, val_images=np.zeros((6, 8, 8, 4), np.uint8)), "has shape (6, 8, 8, 4)"),
    "zero-pixel images": (lambda p: _npz(p, test_images=np.zeros((6, 0, 8), np.uint8)), "zero pixels"),
    "object images": (lambda p: _npz(p, train_images=np.array([None] * 6, dtype=object)), "Python objects"),
    "object labels": (lambda p: _npz(p, test_labels=np.array([{"x": 1}] * 6, dtype=object)), "Python objects"),
    "float images": (lambda p: _npz(p, train_images=np.zeros((6, 8, 8), np.float32)), "expected uint8"),
    "labels 0-2": (lambda p: _npz(p, val_labels=np.arange(6) % 3), "values other than 0 and 1"),
    "labels nan": (lambda p: _npz(p, val_labels=np.full(6, np.nan)), "values other than 0 and 1"),
    "labels 2 columns": (lambda p: _npz(p, val_labels=np.zeros((6, 2), np.uint8)), "has shape (6, 2)"),
    "truncated zip": (_truncated, "cannot read"),
    "zero bytes": (lambda p: p.write_bytes(b"") and p, "empty file"),
    "damaged member": (_member_damaged, "cannot read train_images"),
    "a .npy, not .npz": (lambda p: p.write_bytes(_npy_bytes(np.zeros(3))) and p, "single .npy array"),
    "text file": (lambda p: p.write_text("not numpy at all") and p, "cannot read"),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_damaged_npz_is_one_line_error(case, tmp_path, xraybench_env, xb):
    make, expected = NPZ_CASES[case]
    path = tmp_path / "pneumoniamnist.npz"
    make(path)
    code, _, err = xb("data", "--data", str(path), "--image-size", "16")
    line = one_line_error(err)
    assert code == 2 and str(path) in line and expected in line, line


def test_good_npz_still_loads(tmp_path, xraybench_env):
    data = load_dataset(_npz(tmp_path / "ok.npz", train_images=np.zeros((6, 8, 8, 3), np.uint8)), image_size=16)
    assert data.splits.train.images.shape == (6, 16, 16, 1)


_dtypes = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64, "U2"])


@st.composite
def npz_members(draw) -> dict[str, np.ndarray]:
    """Near-MedMNIST archives: each member may be missing, or of a random dtype, ndim (0-5) and shape."""
    n = draw(st.integers(0, 4))
    members = {}
    for split in ("train", "val", "test"):
        for kind in ("images", "labels"):
            key = f"{split}_{kind}"
            choice = draw(st.sampled_from(["good", "good", "random", "missing"]))
            if choice == "missing":
                continue
            if choice == "good":
                if kind == "images":
                    shape = (n, draw(st.integers(1, 6)), draw(st.integers(1, 6))) + draw(st.sampled_from([(), (1,), (3,)]))
                    members[key] = draw(hnp.arrays(np.uint8, shape))
                else:
                    members[key] = draw(hnp.arrays(np.uint8, (n, 1), elements=st.integers(0, 2)))
            else:
                members[key] = draw(hnp.arrays(draw(_dtypes), hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                                                 max_side=4)))
    return members


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=npz_members(), size=st.sampled_from([8, 12]), channels=st.sampled_from([1, 3]))
def test_npz_reader_property(members, size, channels, tmp_path):
    """A near-MedMNIST archive gives a valid data set or a one-line XRayBenchError, never another exception."""
    path = tmp_path / "p.npz"
    np.savez(path, **members)
    try:
        raw = _npz_read(path, size, channels, skip_bad=False)
    except XRayBenchError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert set(NPZ_KEYS) <= set(members)
    for split, part in (("train", raw.train), ("val", raw.val), ("test", raw.test)):
        assert part.images.dtype == np.uint8 and part.images.shape == (len(members[f"{split}_images"]), size, size, channels)
        assert set(np.unique(part.labels).tolist()) <= {0, 1}
        assert part.labels.tolist() == members[f"{split}_labels"].reshape(-1).astype(np.int64).tolist()


# --- commands and values --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "7", "1025", "abc", "1.5"])
@pytest.mark.parametrize("command", [["check", "baseline_cnn"], ["data"], ["run", "--model", "baseline_cnn"],
                                     ["tune", "--model", "baseline_cnn"]])
def test_image_size_out_of_range(command, value, xb, xraybench_env):
    code, _, err = xb(*command, "--image-size", value)
    line = one_line_error(err)
    assert code == 2 and f"--image-size: {value} is not a size" in line and "8 to 1024" in line


def test_image_size_zero_through_the_api_is_an_error(tree):
    with pytest.raises(DataError, match="--image-size 0 is not a size"):
        load_dataset(tree, image_size=0)


@pytest.mark.parametrize("command", [["studies"], ["tune", "--model", "baseline_cnn"], ["tune", "--show", "x"]])
def test_results_path_is_a_file(command, tmp_path, xb):
    path = tmp_path / "results.txt"
    path.write_text("my notes")
    code, _, err = xb(*command, "--results", str(path))
    line = one_line_error(err)
    assert code == 2 and f"results folder {path} cannot" in line and "--results DIR" in line
    assert path.read_text() == "my notes"
    code, _, err = xb(*command, "--results", str(path / "sub"))
    line = one_line_error(err)
    assert code == 2 and f"results folder {path / 'sub'} cannot" in line and "--results DIR" in line


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "abc"])
@pytest.mark.parametrize("command", [["run", "--model", "baseline_cnn", "--timeout"], ["check", "baseline_cnn", "--timeout"],
                                     ["tune", "--model", "baseline_cnn", "--trial-timeout"],
                                     ["tune", "--model", "baseline_cnn", "--timeout"]])
def test_seconds_must_be_finite_and_positive(command, value, xb, xraybench_env):
    code, _, err = xb(*command, value)
    line = one_line_error(err)
    assert code == 2 and f"{command[-1]}: {value!r} is not a positive number of seconds" in line


def test_run_timeout_default_is_the_runner_s():
    from xraybench.cli import build_parser
    from xraybench.runner import DEFAULT_TIMEOUT

    assert build_parser().parse_args(["run", "--model", "m"]).timeout == DEFAULT_TIMEOUT
