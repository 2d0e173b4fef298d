"""A done run's trained model: saved where it lives, kept beside its record, loaded only after its hash.

Why this path: the model exists only in the run's child process (``runner.py``), and a run
exists once its record does (``results.py``). So the child writes the model under a temporary
name in the results folder's ``runs/`` (``.RUN_ID.staged.keras``), loads it back the way
``predict`` will and checks it reproduces the run's first test scores; the record carries its
path, SHA-256 and size (``records.ModelFile``); and ``ResultStore.save`` renames it into place
(``runs/RUN_ID.keras``) just before it writes the record. A run that fails, times out or is
interrupted has its staged file removed, so no model file exists without a done record.

Formats that run no code when loaded: ``.keras`` (Keras' zip of config and weights, loaded with
``safe_mode=True``: no lambdas) for ``KerasModel`` plugins, ``skops`` for ``GenericModel``
estimators (loaded with an explicit list of trusted types, never pickle). Each model family's
trainer (``xraybench.training``) owns its format. A model that cannot be saved or does not load
back leaves the run ``done`` with a one-line ``model_note`` saying why there is no file.

Loading (``load_model``), reading images as the run was trained on them (``read_images``) and
reading the run's own test split, checked against its data fingerprint (``read_test_split``), are
the API ``predict``, ``explain``, the report and ``export`` build on. Importing this module imports
no backend.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xraybench.errors import XRayBenchError
from xraybench.records import MODEL_FORMATS, ModelFile, RunRecord, RunStatus, model_file_name

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from xraybench.results import ResultStore
    from xraybench.specs import ModelSpec
    from xraybench.training import Fitted

STAGED = ".staged"  # .RUN_ID.staged.keras: hidden, so no reader of runs/ ever takes it for a record
CHECK_IMAGES = 64  # test images the child predicts again with the saved model before keeping it
TOLERANCE = 1e-5  # largest |score difference| between the trained and the reloaded model that is kept
NOT_ASKED = "not saved: the run was started with --no-save-model"
NO_RESULTS = "not saved: this process could not write to the results folder's runs/"


# --- names -----------------------------------------------------------------------------------


def staged_stem(results_root: str | os.PathLike[str], run_id: str) -> Path:
    """Where the run's child writes the model (the trainer adds its format's suffix)."""
    return Path(results_root) / "runs" / f".{run_id}{STAGED}"


def staged_path(runs: Path, run_id: str, fmt: str) -> Path:
    return runs / f".{run_id}{STAGED}{MODEL_FORMATS[fmt]}"


def discard_staged(results_root: str | os.PathLike[str] | None, run_id: str) -> None:
    """Remove whatever the run's child staged (a run that did not finish keeps no model). Only
    names made from this run's unique id, so nothing xraybench did not write is touched."""
    if results_root:
        _drop(staged_stem(results_root, run_id))


def _drop(stem: Path) -> None:
    for suffix in MODEL_FORMATS.values():
        try:
            Path(f"{stem}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass  # an unwritable folder: nothing was staged there either


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- in the run's child process ------------------------------------------------------------------


def save(fitted: Fitted, spec: ModelSpec, params: dict[str, Any], stem: Path,
         images: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Save ``fitted`` at ``stem`` (+ its format's suffix), load it back and check it gives ``scores``
    for ``images``; returns the record fields: ``model_file`` (its staged path for now: the runner
    names the final one) or ``model_note``, one line on why there is no model. Never raises for a
    model that cannot be saved: the run stays done."""
    import numpy as np

    from xraybench.training import one_line
    from xraybench.training import NotSavable, trainer_for

    trainer = trainer_for(spec.kind)
    saver = getattr(trainer, "save_model", None)
    if trainer is None or saver is None:
        return {"model_note": f"not saved: a {spec.kind} model has no saved form in xraybench"}
    if not stem.parent.is_dir():
        return {"model_note": NO_RESULTS}
    try:
        stored = saver(fitted, stem)
    except NotSavable as exc:
        _drop(stem)
        return {"model_note": f"not saved: {exc}"}
    except Exception as exc:  # a plugin's layer or estimator that its format cannot hold
        _drop(stem)
        return {"model_note": f"not saved: {spec.kind} model could not be written ({one_line(exc)})"}
    try:
        shape = tuple(int(d) for d in images.shape[1:])
        restored = trainer.load_model(stored.path, spec, params, stored.types, shape)
        again = np.asarray(restored.predict(images), dtype=np.float64).reshape(-1)
        gap = float(np.max(np.abs(again - np.asarray(scores, dtype=np.float64)))) if len(again) else 0.0
    except Exception as exc:
        _drop(stem)
        return {"model_note": f"not saved: the saved {stored.format} model did not load back ({one_line(exc)})"}
    if not gap <= TOLERANCE:
        _drop(stem)
        return {"model_note": f"not saved: the reloaded model's scores differ from the run's by up to {gap:.3g}"}
    return {"model_file": {"path": str(stored.path), "sha256": sha256_of(stored.path),
                           "bytes": stored.path.stat().st_size, "format": stored.format, "types": list(stored.types)}}


# --- in the parent: the record, then the store -------------------------------------------------------


def stored_fields(results: dict[str, Any], run_id: str, results_root: str | None) -> dict[str, Any]:
    """A done run's model fields as stored, from its ``results``: the staged path becomes
    ``runs/RUN_ID.suffix``; a run that was not asked to save one says so (``--no-save-model``)."""
    staged = results.get("model_file")
    if isinstance(staged, dict):
        return {"model_file": {**staged, "path": model_file_name(run_id, staged["format"])}, "model_note": None}
    if results_root is None and not results.get("model_note"):
        return {"model_note": NOT_ASKED}
    return {}


def take_staged(record: RunRecord, runs: Path) -> tuple[Path | None, RunRecord]:
    """The staged file ``ResultStore.save`` must move into place for ``record`` (or None), and the
    record to write.

    A done record whose staged file is missing or not the bytes the child hashed loses its
    ``model_file`` and gets a ``model_note`` instead: the record never names a file that is not
    there. A record already saved once (its file in place) keeps it."""
    info = record.saved_model
    if record.status is not RunStatus.DONE or info is None:
        return None, record
    staged = staged_path(runs, record.run_id, info.format)
    placed = runs.parent / info.path
    if staged.is_file():
        if staged.stat().st_size == info.bytes and sha256_of(staged) == info.sha256:
            return staged, record
        why = f"not saved: the staged model {staged} changed before it was recorded"
        staged.unlink(missing_ok=True)  # ours (this run's unique id), and never to be kept: no file without a record
    elif placed.is_file() and placed.stat().st_size == info.bytes and sha256_of(placed) == info.sha256:
        return None, record
    else:
        why = f"not saved: the model file the run wrote ({staged}) is not there (removed, or it never reached this machine)"
    return None, replace(record, model_file=None, model_note=why)


def place(staged: Path, target: Path) -> Path:
    """Move ``staged`` to ``target`` atomically (a copy under a temporary name first when they are
    on different file systems, e.g. the fallback folder); returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, target)
        return target
    except OSError:
        if not staged.is_file():
            raise
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(staged, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    staged.unlink(missing_ok=True)
    return target


# --- loading ---------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A run's model, loaded from its verified file: P(PNEUMONIA) for images prepared as the run's.

    ``keras_model`` is the ``keras.Model`` for Keras runs (None for others); it takes the float
    inputs ``keras_inputs`` makes from the uint8 images (the trainer's scaling or equalisation,
    which ``scores`` applies before it too)."""

    record: RunRecord
    path: Path
    predict: Callable[[np.ndarray], np.ndarray]
    keras_model: Any = None
    inputs: Callable[[np.ndarray], np.ndarray] | None = None

    def _checked(self, images: np.ndarray) -> np.ndarray:
        """``images`` as the run's uint8 (N, size, size, channels), or a one-line error."""
        import numpy as np

        images = np.asarray(images)
        want = (self.record.image_size, self.record.image_size, self.record.channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise XRayBenchError(f"images of shape {images.shape} do not fit run {self.record.run_id}, "
                                 f"which takes (N, {want[0]}, {want[1]}, {want[2]}); read them with read_images")
        if images.dtype != np.uint8:
            raise XRayBenchError(f"images are {images.dtype}; run {self.record.run_id}'s model takes uint8 pixels "
                                 "(0-255), as read_images returns them")
        return images

    def scores(self, images: np.ndarray) -> np.ndarray:
        """P(PNEUMONIA), shape (N,), for uint8 images (N, H, W, C) at the run's size and channels
        (what ``read_images`` returns, and what the harness gave the model): scaled, equalised and
        shift-averaged exactly as the run's own predictions were."""
        import numpy as np

        from xraybench.metrics import check_scores

        images = self._checked(images)
        if len(images) == 0:
            return np.zeros(0, dtype=np.float64)
        try:
            return check_scores(self.predict(images), len(images))
        except ValueError as exc:
            raise XRayBenchError(f"run {self.record.run_id}'s model returned bad scores: {exc}") from None

    def keras_inputs(self, images: np.ndarray) -> np.ndarray:
        """What ``keras_model`` itself takes for uint8 ``images``: float32 (N, H, W, C), scaled to
        [0, 1] or histogram-equalised as the run's training and ``scores`` fed the network (the
        record's ``equalize``). Why: Grad-CAM differentiates the network, not ``scores``, and maps
        from pixels at another scale would explain inputs the model never saw. A run with
        test-time shift averaging (``tta``) is explained on the unshifted image. One-line error for
        a run that has no Keras network."""
        images = self._checked(images)
        if self.keras_model is None or self.inputs is None:
            raise XRayBenchError(f"run {self.record.run_id}'s model is not a Keras network; it has no network inputs "
                                 "to compute (explain it by occlusion)")
        return self.inputs(images)


def verified_path(store: ResultStore, record: RunRecord) -> tuple[Path, ModelFile]:
    """The run's model file, once its size and SHA-256 are the record's; one-line errors otherwise
    (no model, a missing file, different bytes)."""
    if record.status is not RunStatus.DONE:
        raise XRayBenchError(f"run {record.run_id} is {record.status.label}, not done: it has no model")
    info = record.saved_model
    if info is None:
        why = record.model_note or ("an ensemble averages its members' scores" if record.kind == "ensemble"
                                    else "recorded before xraybench kept models")
        raise XRayBenchError(f"run {record.run_id} has no model file ({why}); train it again with "
                             f"`xraybench run --model {record.model}`")
    path = store.root / info.path
    if not path.is_file():
        raise XRayBenchError(f"run {record.run_id}'s model file {path} is missing (published results folders keep only "
                             "its hash); train it again, or copy the file in")
    size, digest = path.stat().st_size, sha256_of(path)
    if size != info.bytes or digest != info.sha256:
        raise XRayBenchError(f"run {record.run_id}'s model file {path} is not the one recorded (sha256 {digest[:12]}..., "
                             f"{size} bytes; the record says {info.sha256[:12]}..., {info.bytes} bytes); it was "
                             "changed or replaced, so it is not loaded")
    return path, info


def load_model(store: ResultStore, record: RunRecord) -> LoadedModel:
    """Load ``record``'s model in this process, after checking its file's SHA-256 against the record.

    Keras models load on the run's own backend when Keras is not imported yet (so the scores are
    the run's), with ``safe_mode=True``; skops files with only the types the record lists, each
    from scikit-learn, NumPy, SciPy or the package of the plugin that registered the model. The
    plugin is looked up (``load_registry``) for its classes; a model whose plugin is gone still
    loads when it needs none of them. One-line ``XRayBenchError`` for everything that goes wrong."""
    from xraybench.training import one_line
    from xraybench.training import trainer_for

    path, info = verified_path(store, record)
    if info.format == "keras":
        _pin_backend(record)
    spec = _spec(record)  # first: importing its plugin registers the trainer of a family defined there
    trainer = trainer_for(spec if spec is not None else record.kind)
    loader = getattr(trainer, "load_model", None)
    if trainer is None or loader is None:
        raise XRayBenchError(f"run {record.run_id} is a {record.kind} model, which this xraybench cannot load")
    shape = (int(record.image_size or 0), int(record.image_size or 0), int(record.channels or 1))
    try:
        restored = loader(path, spec, dict(record.params), info.types, shape)
    except XRayBenchError:
        raise
    except Exception as exc:
        raise XRayBenchError(f"run {record.run_id}'s model file {path} could not be loaded ({one_line(exc)})") from None
    return LoadedModel(record, path, restored.predict, restored.keras_model, getattr(restored, "inputs", None))


def _pin_backend(record: RunRecord) -> None:
    """The run's Keras backend, where Keras is not imported yet and that backend is installed:
    another backend's kernels can move a score in its sixth decimal."""
    from xraybench.training.backend import installed

    backend = (record.environment or {}).get("backend")
    if "keras" not in sys.modules and isinstance(backend, str) and backend in ("jax", "tensorflow", "torch") \
            and installed(backend):
        os.environ["KERAS_BACKEND"] = backend


def _spec(record: RunRecord) -> ModelSpec | None:
    """The plugin's spec of the run's model, or None when it is not installed (or disabled)."""
    from xraybench.plugins import load_registry

    try:
        return load_registry().model(record.model)
    except XRayBenchError:
        return None


# --- images, as the run saw them -----------------------------------------------------------------------


def image_suffixes() -> frozenset[str]:
    """The file suffixes a folder is searched for: those the Kaggle reader trains on."""
    from xraybench.data.readers import IMAGE_SUFFIXES

    return frozenset(IMAGE_SUFFIXES)


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders as every image file under them (hidden names skipped, sorted;
    symlinked folders not followed). A path that does not exist: a one-line ``XRayBenchError``."""
    suffixes = image_suffixes()
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in suffixes]
            out += sorted(found)
        elif path.exists() or path.is_symlink():
            out.append(path)
        else:
            raise XRayBenchError(f"{path} does not exist; give image files (JPEG, PNG) or folders of them")
    return out


def read_images(paths: list[Path], record: RunRecord, *,
                skipped: list[tuple[str, str]] | None = None) -> tuple[list[str], np.ndarray]:
    """The images at ``paths`` (folders expanded) as the run's model saw its training data:
    decoded by the data layer's own function (``data/parallel.decode_one`` ->
    ``data/images.decode_image``) at the record's image size and channels, uint8 (N, H, W, C), so
    a file gives the very array it has in the decode cache. Returns (the paths as strings, array).

    A file that cannot be read is a one-line ``XRayBenchError`` naming it; with ``skipped`` given,
    it is left out and listed there as (path, reason) instead."""
    import numpy as np

    from xraybench.data.parallel import decode_files

    size, channels = record.image_size, record.channels
    if not size or not channels:
        raise XRayBenchError(f"run {record.run_id} records no image size or channels; it cannot be predicted with")
    files = expand(paths)
    ids: list[str] = []
    arrays = []
    bad: list[tuple[str, str]] = []
    regular = []
    for f in files:
        if f.is_file():  # follows a link to a file; a FIFO or a device is never opened
            regular.append(f)
        else:
            bad.append((str(f), "not a regular file"))
    for f, (arr, _mode, _size, _digest, error) in zip(regular, decode_files([str(f) for f in regular], size, channels)):
        if error is not None:
            bad.append((str(f), error))
            continue
        ids.append(str(f))
        arrays.append(arr)
    if bad and skipped is None:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise XRayBenchError(f"cannot read {len(bad)} image(s): {listed}{more}; fix or remove them, or pass --skip-bad")
    if skipped is not None:
        skipped.extend(bad)
    images = np.stack(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return ids, images


@dataclass(frozen=True)
class SplitImages:
    """A run's test split as its model saw it: ids, uint8 images (N, H, W, C), labels, and the data
    set they were read from."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    source: Path

    def take(self, index: np.ndarray) -> SplitImages:
        return SplitImages([self.ids[i] for i in index], self.images[index], self.labels[index], self.source)


def run_data_path(record: RunRecord, data: str | os.PathLike[str] | None = None) -> Path:
    """Where the run's test images are read from: ``data`` when given; else the source its record
    names; else, for a run on the built-in 28 px copy whose recorded path is not here (another
    install, another machine), this install's copy: ``read_test_split`` checks its fingerprint
    against the record's all the same, so a copy that differs is refused, never used. One-line
    errors otherwise, each saying to pass ``--data``."""
    from xraybench.data import builtin

    if data is not None:
        path = Path(data).expanduser()
        if not path.exists():
            raise XRayBenchError(f"data path {path} does not exist; check --data")
        return path
    d = record.data or {}
    source = d.get("source")
    if not isinstance(source, str) or not source:
        raise XRayBenchError(f"run {record.run_id} records no data source; pass --data PATH to the data set it was "
                             "tested on")
    path = Path(source).expanduser()
    if path.exists():
        return path
    on_builtin = d.get("reader") == builtin.READER and (d.get("dataset") == builtin.NAME or path.name == builtin.NPZ.name)
    if on_builtin and builtin.available():
        return builtin.NPZ
    raise XRayBenchError(f"run {record.run_id}'s data {path} (from its record) is not here; pass --data PATH to the "
                         "same data set")


def read_test_split(record: RunRecord, data: str | os.PathLike[str] | None = None, registry: Any = None) -> SplitImages:
    """The run's test split, decoded (or read from the decode cache) at its image size and channels
    by its reader, from ``run_data_path``. Why the fingerprint check: maps, scores or an export
    checked on other images would be filed under this run. One-line errors: no such data, a run
    without an image size or fingerprint, and data whose fingerprint is not the record's."""
    import numpy as np

    from xraybench.data.loading import load_raw

    if not record.image_size or not record.channels:
        raise XRayBenchError(f"run {record.run_id} records no image size or channels; its test images cannot be read")
    if not record.fingerprint:
        raise XRayBenchError(f"run {record.run_id} records no data fingerprint; its test images cannot be checked")
    path = run_data_path(record, data)
    d = record.data or {}
    reader = d.get("reader")
    sets, meta, _entry, _hit = load_raw(path, int(record.image_size), int(record.channels),
                                        skip_bad=bool(d.get("skipped_bad")), registry=registry,
                                        reader=reader if isinstance(reader, str) else None)
    found = str(meta.get("fingerprint") or "")
    if found != record.fingerprint:
        from xraybench.data import builtin

        stand_in = data is None and builtin.is_builtin(path) and not builtin.is_builtin(d.get("source"))
        instead = f" (this install's built-in copy: the record's {d.get('source')} is not here)" if stand_in else ""
        raise XRayBenchError(f"the data at {path}{instead} is not the data run {record.run_id} was tested on "
                             f"(fingerprint {found[:12]}..., the record's {record.fingerprint[:12]}...); pass --data "
                             "PATH to that data set")
    test = sets["test"]
    return SplitImages(list(map(str, test.ids)), np.asarray(test.images), np.asarray(test.labels), path)
