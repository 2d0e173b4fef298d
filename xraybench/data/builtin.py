"""The built-in 28 px copy of Kermany et al. (2018), shipped inside the package.

Why: a fresh install with no internet and no download still runs the main job on the
real data set, at the PneumoniaMNIST resolution (28 x 28 grayscale) so its results sit
beside the MedMNIST v2 28 px rows like for like. The copy keeps every image's Kaggle
path (``train/PNEUMONIA/person1_virus_6.jpeg``), so patient ids, and with them the
patient-grouped validation split, work exactly as on the full-resolution folder.

One ``.npz`` holds ``images`` (N, 28, 28) uint8, ``labels`` (N,) uint8 (NORMAL = 0,
PNEUMONIA = 1), ``split`` (N,) uint8 (0 = train, 1 = test, 2 = Kaggle's val/) and
``names`` (N,) the relative paths. ``kermany2018_28px.json`` beside it records the
provenance, the licence (CC BY 4.0) and the fingerprints; ``BUILTIN_DATA.md`` says the same
for people.

Rebuild it from the full Kaggle-layout download (same bytes on every rebuild with the
same Pillow/libjpeg)::

    python -m xraybench.data.builtin build /path/to/chest_xray
    python -m xraybench.data.builtin verify

This module imports nothing heavy at import time: the CLI asks it whether the built-in
copy is in use (``locate_data``, the fallback when no data is given) before anything is decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from xraybench.data.layout import kaggle_layout, patient_id
from xraybench.errors import DataError
from xraybench.specs import LABELS, DatasetSpec, ImageSet, RawDataset, ReaderStats

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

HERE = Path(__file__).resolve().parent
NPZ = HERE / "kermany2018_28px.npz"
PROVENANCE = HERE / "kermany2018_28px.json"
SIZE = 28
NAME = "Kermany 2018 chest X-ray, built-in 28 px copy"
READER = "xraybench_npz"
NOTICE = "using the built-in 28 px copy; pass --data for full resolution"
DATA_ENV = "XRAYBENCH_DATA"
SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
MEMBERS = ("images", "labels", "split", "names")  # fixed order: part of the byte-for-byte promise
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # no timestamps in the archive
RESIZE = "decode (Pillow), convert to 8-bit grayscale (L), resize to 28x28 with Image.Resampling.BOX (area average)"
REINSTALL = "pip install --force-reinstall --no-deps xraybench"  # what a damaged package file needs
SOURCE = {
    "title": "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification",
    "authors": "Daniel Kermany, Kang Zhang, Michael Goldbaum",
    "paper": "Kermany et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning, "
    "Cell 172(5):1122-1131, 2018, doi:10.1016/j.cell.2018.02.010",
    "doi": "10.17632/rscbjbr9sj",
    "url": "https://data.mendeley.com/datasets/rscbjbr9sj",
    "kaggle": "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia",
    "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
    "changes": "downscaled to 28x28 grayscale; file names kept; nothing else changed",
}


def default_data_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("xraybench")) / "chest_xray"


def locate_data(explicit: str | os.PathLike | None = None) -> Path:
    """``--data PATH``, else ``$XRAYBENCH_DATA``, else the default folder, else the built-in
    28 px copy; a one-line error if none."""
    for given, what in ((explicit, "data path {} does not exist; check --data"),
                        (os.environ.get(DATA_ENV), DATA_ENV + "={} does not exist; fix the variable or pass --data PATH")):
        if given:
            path = Path(given).expanduser()
            if not path.exists():
                raise DataError(what.format(path))
            return path
    path = default_data_path()
    if path.exists():
        return path
    if available():  # a fresh install with no download still runs on the real images, at 28 px
        return NPZ
    raise DataError(
        f"no data found: no --data given, {DATA_ENV} unset, {path} missing; download Kaggle's "
        f"'Chest X-Ray Images (Pneumonia)' and pass --data PATH, or run `xraybench data download pneumoniamnist`"
    )


def is_builtin(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is the copy shipped in this package."""
    try:
        return path is not None and Path(path).resolve() == NPZ
    except OSError:
        return False


def available() -> bool:
    return NPZ.is_file()


def fallback_notice(explicit: str | os.PathLike | None) -> str | None:
    """The one line a command prints when it falls back to the built-in copy, else None.

    Raises the same one-line DataError as ``locate_data`` for a bad ``--data``.
    """
    return None if explicit or not is_builtin(locate_data(None)) else NOTICE


def native_size(explicit: str | os.PathLike | None) -> int | None:
    """28 when the data resolved from ``explicit`` is the built-in copy (train at its own size,
    never upsampled to a model's 150 px default), else None."""
    try:
        return SIZE if is_builtin(locate_data(explicit)) else None
    except DataError:
        return None  # load_dataset reports it, in one line, where it matters


# --- reading ------------------------------------------------------------------------


def _detect(path: Path) -> bool:
    """An xraybench ``.npz`` (the built-in copy or a rebuild): it carries names and splits."""
    if not (path.is_file() and path.suffix.lower() == ".npz"):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return {f"{m}.npy" for m in MEMBERS} <= set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_arrays(path: Path = NPZ) -> dict[str, np.ndarray]:
    """The arrays of an xraybench ``.npz``; the built-in copy is checked against its recorded
    sha256 first (``verify``), so a changed package file is never decoded into results."""
    import numpy as np

    if is_builtin(path):
        verify(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {m: archive[m] for m in MEMBERS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as an xraybench .npz ({exc}); rebuild it or reinstall xraybench") from None
    n = len(arrays["images"])
    if any(len(a) != n for a in arrays.values()) or arrays["images"].dtype != np.uint8:
        raise DataError(f"{path} is damaged (arrays of different lengths or not uint8); rebuild it or reinstall xraybench")
    return arrays


def _read(path: Path, size: int, channels: int, skip_bad: bool) -> RawDataset:
    import numpy as np

    from xraybench.data.images import resize_array

    arrays = load_arrays(path)
    native = arrays["images"].shape[1]
    names = [str(n) for n in arrays["names"]]
    patients = [patient_id(os.path.basename(n)) for n in names]
    stats: dict[str, Any] = {"reader": READER, "dataset": NAME if is_builtin(path) else f"xraybench .npz {path.name}",
                             "splits": {}, "skipped_bad": [], "skipped_bad_count": 0}
    sets: dict[str, ImageSet] = {}
    for split in ("train", "test"):
        index = np.flatnonzero(arrays["split"] == SPLIT_CODES[split])
        images = arrays["images"][index][:, :, :, None]
        if native != size or channels != 1:
            images = np.stack([resize_array(a, size, channels) for a in images]) if len(index) else \
                np.zeros((0, size, size, channels), np.uint8)
        sets[split] = ImageSet(images=images, labels=arrays["labels"][index].astype(np.int64), ids=[names[i] for i in index],
                               groups=[f"{split}:{patients[i]}" for i in index])
        stats["splits"][split] = {label: _class_stats(arrays["images"], patients, index[arrays["labels"][index] == c])
                                  for c, label in enumerate(LABELS)}
    n_val = int((arrays["split"] == SPLIT_CODES["val"]).sum())
    if n_val:
        stats["kaggle_val_images"] = n_val
    total = len(sets["train"]) + len(sets["test"])
    stats.update(sizes={f"{native}x{native}": total}, modes={"L": total})
    return RawDataset(train=sets["train"], test=sets["test"], val=None, stats=cast(ReaderStats, stats))


def _class_stats(images: np.ndarray, patients: list[str], rows: np.ndarray) -> dict[str, int]:
    """Images, patients and exact duplicates among ``rows``, as the Kaggle reader counts them."""
    digests = {hashlib.sha256(images[i].tobytes()).hexdigest() for i in rows}
    return {"images": len(rows), "patients": len({patients[i] for i in rows}), "duplicates": len(rows) - len(digests)}


SPEC = DatasetSpec(
    name=READER,
    description="xraybench .npz with file names (the built-in 28 px Kermany copy; "
    "`python -m xraybench.data.builtin build` makes one)",
    detect=_detect,
    files=lambda p: [p],
    read=_read,
    version="1",
)


# --- building -----------------------------------------------------------------------


def _decode(path: str, size: int) -> np.ndarray:
    """One source image as the copy holds it: full decode (no JPEG draft), grayscale, area-averaged."""
    import numpy as np
    from PIL import Image

    from xraybench.data.images import to_mode

    with Image.open(path) as img:
        img.load()
        return np.asarray(to_mode(img, 1).resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def _sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def source_files(src: Path) -> list[tuple[str, str, int]]:
    """(relative path, split, label) for every image in a Kaggle-layout folder, sorted."""
    layout, bad = kaggle_layout(src)
    unusable = [entry for classes in bad.values() for entries in classes.values() for entry in entries]
    if unusable:  # the shipped copy is all of the source or nothing
        path, why = unusable[0]
        raise DataError(f"{len(unusable)} unusable file(s) in {src}, first {path} ({why}); the built-in copy needs every image")
    return sorted((os.path.relpath(f, src).replace(os.sep, "/"), split, LABELS.index(label))
                  for split, classes in layout.items() for label, files in classes.items() for f in files)


def build_arrays(src: Path, rows: list[tuple[str, str, int]], size: int = SIZE) -> dict[str, np.ndarray]:
    """The arrays of the copy: the images ``rows`` (from :func:`source_files`) name under ``src``."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        images = list(pool.map(lambda r: _decode(str(src / r[0]), size), rows))
    return {
        "images": np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        "labels": np.asarray([r[2] for r in rows], dtype=np.uint8),
        "split": np.asarray([SPLIT_CODES[r[1]] for r in rows], dtype=np.uint8),
        "names": np.asarray([r[0] for r in rows], dtype=str),
    }


def write_npz(arrays: dict[str, np.ndarray], out: Path) -> None:
    """np.savez_compressed, minus the timestamps: fixed member order and dates, so a rebuild
    gives the same bytes."""
    import numpy as np

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for member in MEMBERS:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[member]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{member}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    os.replace(tmp, out)


def manifest_sha256(src: Path, rows: list[tuple[str, str, int]]) -> str:
    """sha256 over 'relative path<TAB>sha256 of the file' lines, sorted: which source files went in."""
    return hashlib.sha256("".join(f"{rel}\t{_sha256_file(src / rel)}\n" for rel, _, _ in rows).encode()).hexdigest()


def build(src: Path, out: Path = NPZ, provenance: Path | None = PROVENANCE) -> dict[str, Any]:
    """Rebuild the copy (and its provenance record) from the full Kaggle-layout download."""
    import numpy as np
    import PIL

    src = Path(src)
    rows = source_files(src)
    arrays = build_arrays(src, rows)
    write_npz(arrays, out)
    counts = {
        split: {label: int(((arrays["split"] == code) & (arrays["labels"] == c)).sum()) for c, label in enumerate(LABELS)}
        for split, code in SPLIT_CODES.items() if (arrays["split"] == code).any()
    }
    record = {
        "name": NAME,
        "file": out.name,
        "sha256": _sha256_file(out),
        "image_size": SIZE,
        "channels": 1,
        "images": int(len(arrays["images"])),
        "counts": counts,
        "source": SOURCE,
        "source_manifest_sha256": manifest_sha256(src, rows),
        "resize": RESIZE,
        "built_with": {"pillow": PIL.__version__, "numpy": np.__version__,
                       "command": "python -m xraybench.data.builtin build SRC"},
        "members": {m: f"{arrays[m].dtype} {list(arrays[m].shape)}" for m in MEMBERS},
    }
    if provenance is not None:
        provenance.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


# --- checking -----------------------------------------------------------------------


def recorded() -> dict[str, Any]:
    return json.loads(PROVENANCE.read_text())


def _refused(what: str) -> DataError:
    return DataError(f"the built-in copy{what}; reinstall xraybench ({REINSTALL}) or pass --data PATH")


_verified: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256: once per process for an unchanged file


def verify(path: Path = NPZ) -> str:
    """The file's sha256, checked against the recorded one; a one-line DataError if they differ.

    Why every use: the copy sits inside the installed package, where an edit, a bad disk or a
    partial reinstall changes it with nothing else noticing (a run on a copy with its labels
    flipped scores AUC 0.09, with no warning). Hashing 4 MB costs a few milliseconds; the
    answer is kept per process for as long as the file's size, mtime and inode stay the same.
    """
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        try:
            expected = recorded()["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _refused(f"'s record {PROVENANCE} is unreadable ({type(exc).__name__})") from None
        if not isinstance(expected, str):
            raise _refused(f"'s record {PROVENANCE} has no sha256")
        actual = expected if _verified.get(key) == expected else _sha256_file(path)
    except OSError as exc:
        raise _refused(f" {path} is unreadable ({exc.strerror or type(exc).__name__})") from None
    if actual != expected:
        raise _refused(f" {path} was changed after install (sha256 {actual[:16]}..., its record says {expected[:16]}...)")
    _verified[key] = actual
    return actual


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xraybench.data.builtin", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="rebuild the copy from the full Kaggle-layout folder")
    b.add_argument("src", help="folder with train/ and test/ (NORMAL/, PNEUMONIA/ inside)")
    b.add_argument("--out", default=str(NPZ), help="where to write the .npz (default: the package's copy)")
    sub.add_parser("verify", help="check the shipped copy against its recorded sha256")
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            out = Path(args.out)
            record = build(Path(args.src), out, PROVENANCE if out.resolve() == NPZ else out.with_suffix(".json"))
            print(f"wrote {out} ({record['images']} images, sha256 {record['sha256']})")
        else:
            print(f"{NPZ} ok, sha256 {verify()}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
