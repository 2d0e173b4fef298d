"""``export --to onnx``: the run's model as one ONNX graph from uint8 pixels to P(PNEUMONIA), kept
only if onnxruntime reproduces the run's stored test scores (the package's docstring says how)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xraybench.errors import XRayBenchError
from xraybench.export.common import OWNER_KEY, held_back, require, short_line
from xraybench.records import RunRecord

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from xraybench.results import ResultStore

TOLERANCE = 1e-4  # largest |ONNX score - stored score| over the run's test images that is kept
ONNX_INPUT = "images"
ONNX_OUTPUT = "pneumonia_score"
ONNX_OPSET = 17  # every converter here (tf2onnx, skl2onnx) and onnxruntime since 1.14 take it
PREFIX = "xraybench/"  # the names of the nodes and tensors this module adds to a converted graph


@dataclass(frozen=True)
class OnnxExport:
    """What ``to_onnx`` wrote and how well it reproduces the run."""

    path: Path
    bytes: int
    max_diff: float
    images: int
    replaced: bool
    converter: str


def default_onnx_path(store: ResultStore, run_id: str) -> Path:
    """``RESULTS/exports/RUN_ID.onnx``: beside the runs, never inside ``runs/`` (which holds records)."""
    return store.root / "exports" / f"{run_id}.onnx"


def onnx_owner(path: Path) -> str | None:
    """The run id an existing ONNX file at ``path`` was exported from by xraybench, else None
    (not a regular file, not ONNX, or ONNX that xraybench did not write)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # anything that does not parse as ONNX is not ours
        return None
    return {p.key: p.value for p in model.metadata_props}.get(OWNER_KEY) or None


def check_target(path: Path) -> bool:
    """Whether ``path`` holds an earlier xraybench export (to be replaced); a one-line error when
    something else is there, which is never overwritten."""
    if not (path.exists() or path.is_symlink()):
        return False
    if onnx_owner(path) is None:
        raise XRayBenchError(f"{path} exists and is not an ONNX file xraybench exported; it is not overwritten: "
                             "choose another --out, or move it away")
    return True


def to_onnx(store: ResultStore, record: RunRecord, out: Path | None = None, data: str | None = None,
            timeout: float | None = None) -> OnnxExport:
    """Export ``record``'s model to ONNX at ``out`` (default ``RESULTS/exports/RUN_ID.onnx``), checked
    against the run's stored test scores on its test images (read from ``data``, default the
    record's source). One-line ``XRayBenchError`` for every refusal; nothing but the temporary
    file this call wrote is ever removed."""
    from xraybench import saved_model
    from xraybench.isolation import run_once

    _, info = saved_model.verified_path(store, record)  # no model, a missing or changed file: before anything else
    require("onnx")
    require(f"onnx:{info.format}")
    target = Path(out) if out is not None else default_onnx_path(store, record.run_id)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        outcome = run_once(_onnx_in_child, (str(store.root), record.run_id, tmp, data), timeout,
                           expected=(XRayBenchError,))
        if not outcome.ok:
            raise XRayBenchError(f"exporting run {record.run_id} to ONNX failed: {outcome.reason}")
        replaced = check_target(target)  # again: the target may have appeared while the child worked
        os.chmod(tmp, _shared_mode())  # a file to hand on: mkstemp's owner-only mode is for the file while it is partial
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)  # the temporary file this call made, and nothing else
    value = outcome.value
    return OnnxExport(target, target.stat().st_size, float(value["max_diff"]), int(value["images"]), replaced,
                      value["converter"])


def _shared_mode() -> int:
    """0o666 less the process's umask: the mode a plainly created file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_images(store: ResultStore, record: RunRecord, data: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The run's test images (uint8, as it was scored on them) and its stored test scores, in the
    stored order: (ids, images, scores). The images are ``saved_model.read_test_split``'s: the data
    set the run was tested on, checked against its fingerprint. Loading data loads the plugins (a
    reader may be theirs): called in the export's child process."""
    import numpy as np

    from xraybench.saved_model import read_test_split

    scores = store.scores(record.run_id)
    if not scores or not scores.get("test_ids"):
        raise XRayBenchError(f"run {record.run_id} has no stored test scores to check an export against")
    test = read_test_split(record, data)
    where = {image_id: i for i, image_id in enumerate(test.ids)}
    missing = [i for i in scores["test_ids"] if i not in where]
    if missing:
        raise XRayBenchError(f"{len(missing)} of run {record.run_id}'s test images (e.g. {missing[0]}) are not in "
                             f"{test.source}'s test split; pass --data PATH to the run's images")
    order = np.array([where[i] for i in scores["test_ids"]], dtype=np.int64)
    return list(scores["test_ids"]), test.images[order], np.asarray(scores["test_scores"], dtype=np.float64)


def _onnx_in_child(root: str, run_id: str, out: str, data: str | None) -> dict[str, Any]:
    """In the child: read the run's test images (first: a data problem costs no conversion), convert,
    write to ``out`` (the parent's temporary file), check against the stored test scores."""
    import numpy as np
    import onnx

    from xraybench.results import ResultStore

    store = ResultStore(root)
    record = store.find(run_id)
    info = record.saved_model
    if info is not None and info.format == "keras" and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"  # before the data layer loads plugins that may import Keras
    _, images, stored = test_images(store, record, data)
    if info is None:  # checked by the parent; the record may have changed since
        raise XRayBenchError(f"run {run_id} has no model file")
    if info.format == "keras":
        model, converter = _keras_graph(store, record)
    elif info.format == "skops":
        model, converter = _estimator_graph(store, record)
    else:
        raise XRayBenchError(f"run {run_id}'s model is a {info.format} file, which xraybench cannot export to ONNX")
    _describe(model, record)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise XRayBenchError(f"the ONNX graph made from run {run_id}'s model is not valid ({short_line(exc)})") from None
    onnx.save(model, out)
    got = onnx_scores(Path(out), images)
    if got.shape != stored.shape:
        raise XRayBenchError(f"the ONNX model gave {got.shape} scores for {len(images)} images; expected one per image")
    gap = float(np.max(np.abs(got - stored))) if len(stored) else 0.0
    if not gap <= TOLERANCE:
        raise XRayBenchError(f"the ONNX model's scores differ from run {run_id}'s stored test scores by up to {gap:.3g} "
                             f"(more than {TOLERANCE:g}), so it is not written")
    return {"max_diff": gap, "converter": converter, "images": len(images)}


def onnx_scores(path: Path, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """P(PNEUMONIA) from an exported file, as an ONNX user gets them (onnxruntime, CPU), float64 (N,)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are not for users
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    parts = [session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(images[i:i + batch], dtype=np.uint8)})[0]
             for i in range(0, len(images), batch)]
    return np.concatenate(parts).astype(np.float64).reshape(-1) if parts else np.zeros(0, np.float64)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Converters' own chatter (tf2onnx's INFO lines, TensorFlow's start-up) held back."""
    from xraybench.progress import quiet_backend_startup

    with quiet_backend_startup(), held_back("tf2onnx", "skl2onnx", "tensorflow", "absl"):
        yield


def _keras_graph(store: ResultStore, record: RunRecord) -> tuple[Any, str]:
    """The run's network converted by Keras' exporter on TensorFlow, wrapped in the run's preprocessing."""
    if "keras" not in sys.modules:  # the .keras file loads on any backend; tf2onnx needs TensorFlow's graph
        os.environ["KERAS_BACKEND"] = "tensorflow"
    with _quiet():
        import keras

        if keras.backend.backend() != "tensorflow":
            raise XRayBenchError(f"Keras runs on {keras.backend.backend()} in this process; ONNX export needs TensorFlow "
                                 "(run without --no-isolation, or set KERAS_BACKEND=tensorflow)")
        import onnx
        import tf2onnx

        from xraybench import saved_model

        net = saved_model.load_model(store, record).keras_model
        size, channels = int(record.image_size or 0), int(record.channels or 1)
        with tempfile.TemporaryDirectory(prefix="xraybench-onnx-") as scratch:
            path = Path(scratch) / "net.onnx"
            try:
                net.export(str(path), format="onnx", verbose=False, opset_version=ONNX_OPSET,
                           input_signature=[keras.InputSpec(shape=(None, size, size, channels), dtype="float32")])
                converted = onnx.load(str(path))
            except XRayBenchError:
                raise
            except Exception as exc:
                raise XRayBenchError(f"run {record.run_id}'s Keras model cannot be converted to ONNX ({short_line(exc)})") \
                    from None
    params = record.params or {}
    prepare = "equalize" if params.get("equalize") else "scale"
    model = wrap(converted, (size, size, channels), prepare=prepare, tta=bool(params.get("tta")))
    return model, f"keras {keras.__version__} (TensorFlow, tf2onnx {tf2onnx.__version__})"


def _estimator_graph(store: ResultStore, record: RunRecord) -> tuple[Any, str]:
    """The estimator's own ``onnx_model(shape)`` (GenericModel contract), with xraybench's names."""
    import onnx

    from xraybench import saved_model

    loaded = saved_model.load_model(store, record)
    estimator = getattr(loaded.predict, "__self__", None)
    make = getattr(estimator, "onnx_model", None)
    if not callable(make):
        raise XRayBenchError(f"run {record.run_id}'s estimator ({type(estimator).__name__}) defines no onnx_model(shape), "
                             "so it cannot be exported to ONNX (docs/plugins.md)")
    shape = (int(record.image_size or 0), int(record.image_size or 0), int(record.channels or 1))
    try:
        with _quiet():
            converted = make(shape)
    except Exception as exc:
        raise XRayBenchError(f"run {record.run_id}'s estimator cannot be converted to ONNX ({short_line(exc)})") from None
    if not isinstance(converted, onnx.ModelProto):
        raise XRayBenchError(f"run {record.run_id}'s estimator's onnx_model returned {type(converted).__name__}, "
                             "not an onnx.ModelProto")
    import skl2onnx

    return wrap(converted, shape, prepare="none", tta=False), f"{type(estimator).__name__}.onnx_model (skl2onnx " \
                                                               f"{skl2onnx.__version__})"


def wrap(model: Any, shape: tuple[int, int, int], *, prepare: str, tta: bool) -> Any:
    """``model`` (one input, first output P(PNEUMONIA) per image) as xraybench's ONNX interface:
    input ``images`` uint8 (N, H, W, C), output ``pneumonia_score`` float32 (N,).

    ``prepare``: what turns the pixels into the model's input, as ``training/batches.py`` does it:
    ``"scale"`` (float32 x 1/255), ``"equalize"`` (each image's histogram CDF, ``equalized``) or
    ``"none"`` (the model takes the uint8 pixels itself). ``tta``: the mean score over the image
    and its four shifts by 1/16 of its side, edges repeated (``TTA_SHIFTS``, ``shifted``)."""
    import numpy as np
    from onnx import TensorProto, helper

    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or not graph.output:
        raise XRayBenchError(f"the converted model has {len(inputs)} inputs and {len(graph.output)} outputs; "
                             "xraybench exports models with one image input")
    net_in, net_out = inputs[0].name, graph.output[0].name
    if net_out == ONNX_OUTPUT:  # the name the final node takes: the network's own output renamed
        net_out = _rename(graph, ONNX_OUTPUT, PREFIX + "network_output")
    pre, post = _Added(), _Added()
    _rename(graph, net_in, _prepared(pre, shape, prepare, tta), outputs=False)  # the network reads the prepared pixels
    y = post.node("Reshape", [net_out, post.const("flat", np.array([-1], np.int64))], "scores")
    if tta:  # one score per copy, copy by copy (``_shifts``): their mean per image
        from xraybench.training.batches import TTA_SHIFTS

        y = post.node("Reshape", [y, post.const("copies", np.array([len(TTA_SHIFTS), -1], np.int64))], "by_copy")
        y = post.node("ReduceMean", [y], "tta_mean", axes=[0], keepdims=0)
    post.nodes.append(helper.make_node("Cast", [y], [ONNX_OUTPUT], name=PREFIX + "score", to=TensorProto.FLOAT))
    body, kept = list(graph.node), [i for i in graph.input if i.name in constants]
    del graph.node[:], graph.input[:], graph.output[:]
    graph.node.extend([*pre.nodes, *body, *post.nodes])
    graph.initializer.extend(pre.consts + post.consts)
    graph.input.append(helper.make_tensor_value_info(ONNX_INPUT, TensorProto.UINT8, ["N", *shape]))
    graph.input.extend(kept)
    graph.output.append(helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["N"]))
    return model


@dataclass
class _Added:
    """The nodes and constants xraybench adds to a converted graph, each named under ``PREFIX``."""

    nodes: list[Any] = field(default_factory=list)
    consts: list[Any] = field(default_factory=list)

    def const(self, name: str, value: Any) -> str:
        import numpy as np
        from onnx import numpy_helper

        self.consts.append(numpy_helper.from_array(np.asarray(value), PREFIX + name))
        return PREFIX + name

    def node(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [PREFIX + out], name=PREFIX + out, **attrs))
        return PREFIX + out


def _rename(graph: Any, old: str, new: str, outputs: bool = True) -> str:
    """Every node's use of tensor ``old`` (as an input and, with ``outputs``, as an output) renamed ``new``."""
    for n in graph.node:
        n.input[:] = [new if name == old else name for name in n.input]
        if outputs:
            n.output[:] = [new if name == old else name for name in n.output]
    return new


def _prepared(add: _Added, shape: tuple[int, int, int], prepare: str, tta: bool) -> str:
    """The nodes from ``images`` (uint8) to the network's input; the name of that input."""
    import numpy as np
    from onnx import TensorProto

    if prepare == "none":
        if tta:
            raise XRayBenchError("shift averaging needs xraybench's own preprocessing (prepare='scale' or 'equalize')")
        return ONNX_INPUT
    if prepare not in ("scale", "equalize"):
        raise ValueError(f"unknown preparation {prepare!r}")
    h, w, c = shape
    x = add.node("Cast", [ONNX_INPUT], "pixels", to=TensorProto.FLOAT)
    if tta:
        x = _shifts(add.node, add.const, x, h, w)
    if prepare == "scale":
        return add.node("Mul", [x, add.const("inv255", np.float32(1.0 / 255.0))], "scaled")
    return _equalize(add.node, add.const, x, h * w * c)


def _shifts(node: Any, const: Any, x: str, h: int, w: int) -> str:
    """The batch and its four shifted copies, stacked along the batch axis (``training/batches.shifted``)."""
    import numpy as np

    from xraybench.training.batches import TTA_SHIFTS

    step = max(1, h // 16)
    copies = []
    for k, (dy, dx) in enumerate(TTA_SHIFTS):
        dy, dx = dy * step, dx * step
        if dy == 0 and dx == 0:
            copies.append(x)
            continue
        py, px = abs(dy), abs(dx)
        padded = node("Pad", [x, const(f"pads{k}", np.array([0, py, px, 0, 0, py, px, 0], np.int64))], f"padded{k}",
                      mode="edge")
        copies.append(node("Slice", [padded, const(f"starts{k}", np.array([py - dy, px - dx], np.int64)),
                                     const(f"ends{k}", np.array([py - dy + h, px - dx + w], np.int64)),
                                     const(f"axes{k}", np.array([1, 2], np.int64))], f"shifted{k}"))
    return node("Concat", copies, "copies_stacked", axis=0)


def _equalize(node: Any, const: Any, x: str, pixels: int) -> str:
    """Each image's pixels replaced by its histogram's CDF at their value (``training/batches.equalized``)."""
    import numpy as np
    from onnx import TensorProto, helper

    values = node("Cast", [x], "levels", to=TensorProto.INT64)
    flat = node("Reshape", [values, const("rows", np.array([0, -1], np.int64))], "levels_flat")
    shape = node("Shape", [flat], "levels_shape")
    batch = node("Slice", [shape, const("zero", np.array([0], np.int64)), const("one", np.array([1], np.int64))], "batch")
    hist_shape = node("Concat", [batch, const("bins", np.array([256], np.int64))], "hist_shape", axis=0)
    zero = helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
    one = helper.make_tensor("o", TensorProto.FLOAT, [1], [1.0])
    zeros = node("ConstantOfShape", [hist_shape], "hist_zeros", value=zero)
    ones = node("ConstantOfShape", [shape], "ones", value=one)
    hist = node("ScatterElements", [zeros, flat, ones], "hist", axis=1, reduction="add")
    cdf = node("CumSum", [hist, const("axis1", np.array(1, np.int64))], "cdf_counts")
    cdf = node("Div", [cdf, const("pixel_count", np.float32(pixels))], "cdf")
    got = node("GatherElements", [cdf, flat], "equalized_flat", axis=1)
    return node("Reshape", [got, node("Shape", [x], "pixel_shape")], "equalized")


def _describe(model: Any, record: RunRecord) -> None:
    """The interface and provenance in the file's own metadata (what Netron and onnx.load show)."""
    from xraybench import __version__

    size, channels = record.image_size, record.channels
    threshold = (record.val_threshold or {}).get("value")
    facts = {
        OWNER_KEY: record.run_id,
        "xraybench.model": record.model,
        "xraybench.plugin": f"{record.distribution} {record.version}",
        "xraybench.version": __version__,
        "xraybench.model_sha256": record.saved_model.sha256 if record.saved_model else "",
        "xraybench.input": f"{ONNX_INPUT}: uint8 (N, {size}, {size}, {channels}), raw pixels 0-255 decoded and resized as "
                           "xraybench reads images (xraybench.saved_model.read_images)",
        "xraybench.output": f"{ONNX_OUTPUT}: float32 (N,), P(PNEUMONIA); NORMAL = 0, PNEUMONIA = 1",
        "xraybench.val_threshold": "" if threshold is None else repr(float(threshold)),
    }
    del model.metadata_props[:]
    for key, value in facts.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    model.doc_string = (f"xraybench run {record.run_id} ({record.model}): {ONNX_INPUT} uint8 (N, {size}, {size}, "
                        f"{channels}) -> {ONNX_OUTPUT} float32 (N,) = P(PNEUMONIA)")
    model.producer_name, model.producer_version = "xraybench", __version__
