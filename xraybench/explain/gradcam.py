"""Grad-CAM for Keras CNNs, on the backends that give gradients (TensorFlow and JAX).

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via
gradient-based localization", ICCV): the feature maps A (h, w, k) of the last convolutional
stage (:func:`target_layer`), each channel weighted by the mean gradient of the explained class's score over its
positions, summed over channels and kept where positive, upsampled (bilinear) to the image and
scaled to [0, 1] per image. One forward and one backward pass per image: far cheaper than
occlusion, but only where the model is a Keras network with a convolution and the backend
differentiates it; elsewhere :class:`GradCamUnavailable` (one line) and callers use occlusion.

The explained class (``target``) is the one of :mod:`xraybench.explain.occlusion`: the predicted
class at ``threshold`` by default (the gradient of 1 - score for an image called NORMAL), or
PNEUMONIA (``"positive"``: the classic positive-class map). The score is the model's sigmoid
output; its gradient is the logit's times a positive factor per image, which the per-image
scaling removes.

How the layer's output is reached: the layer's ``call`` is wrapped for the duration of the
computation (and restored after), so that what it returns is watched by the tape (TensorFlow) or
has a zero added whose gradient is taken (JAX). Unlike ``keras.Model(inputs, [layer.output,
model.output])`` this works when the network is nested in another model, as xraybench's Keras
trainer nests each plugin's network behind its augmentation layers. Keras is imported here,
inside the functions only: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.explain.occlusion import Target, check_images, class_sign

BACKENDS = ("tensorflow", "jax")


class GradCamUnavailable(XRayBenchError):
    """Grad-CAM cannot run for this model or backend (one line); occlusion still can."""


def _leaf_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, nested models opened in place."""
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):  # a nested Model (Functional, Sequential or subclassed)
            yield from _leaf_layers(layer)
        else:
            yield layer


def _is_conv(keras: Any, layer: Any) -> bool:
    kinds = tuple(getattr(keras.layers, name) for name in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
                  if hasattr(keras.layers, name))
    return isinstance(layer, kinds)


def _execution(model: Any, sample: np.ndarray) -> list[tuple[Any, tuple[int, ...]]]:
    """Each leaf layer and its output shape, in the order one prediction calls them (inputs first)."""
    calls: list[tuple[Any, tuple[int, ...]]] = []
    layers = list({id(layer): layer for layer in _leaf_layers(model)}.values())
    owns = [layer.__dict__.get("call") for layer in layers]

    def recording(layer: Any, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            calls.append((layer, tuple(getattr(out, "shape", ()))))
            return out
        return call

    for layer in layers:
        layer.call = recording(layer, layer.call)
    try:
        model(sample, training=False)
    finally:
        for layer, own in zip(layers, owns):
            _restore(layer, own)
    return calls


def target_layer(model: Any, sample: np.ndarray, name: str | None = None) -> Any:
    """The layer Grad-CAM reads: the one named ``name``; else the last feature map at the last
    convolution's resolution: the last 2-D convolution a prediction runs, or the last layer
    after it whose output keeps its height and width (its batch norm and activation; in a
    residual block, the activation after the sum of both branches, not the 1x1 shortcut
    convolution that happens to run last; in a ConvNeXt block, the block's sum). That is the map
    Grad-CAM is defined on (the rectified output of the last convolutional stage), before pooling
    lowers its resolution. A one-line :class:`GradCamUnavailable` when there is none."""
    import keras

    model_name = getattr(model, "name", type(model).__name__)
    if name is not None:
        for layer in _leaf_layers(model):
            if layer.name == name:
                return layer
        raise GradCamUnavailable(f"model {model_name} has no layer named {name!r}; "
                                 "leave the layer out to use its last convolution")
    calls = _execution(model, sample)
    convs = [i for i, (layer, shape) in enumerate(calls) if _is_conv(keras, layer) and len(shape) == 4]
    if not convs:
        raise GradCamUnavailable(f"model {model_name} has no 2-D convolution layer, which Grad-CAM needs; use occlusion")
    last = convs[-1]
    size = calls[last][1][1:3]
    same = [i for i in range(last, len(calls)) if len(calls[i][1]) == 4 and calls[i][1][1:3] == size]
    return calls[same[-1]][0]


def _positive_column(out: Any, keras: Any) -> Any:
    """P(PNEUMONIA) from the model's output: (N, 1) sigmoid or (N, 2) softmax."""
    shape = tuple(out.shape)
    if len(shape) == 1:
        return out
    if len(shape) == 2 and shape[1] in (1, 2):
        return out[:, shape[1] - 1]
    raise GradCamUnavailable(f"the model's output has shape {shape}; Grad-CAM needs one score per image (N, 1) or (N, 2)")


def _restore(layer: Any, own: Any) -> None:
    """Undo the wrapping of ``layer.call``: its class's method again (or its own, if it had one)."""
    if own is None:
        del layer.call
    else:
        layer.call = own


def _tensorflow_batch(model: Any, layer: Any, x: np.ndarray, sign: np.ndarray | None, target: Target,
                      threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import keras
    import tensorflow as tf

    seen: list[Any] = []
    original = layer.call
    tape: Any = None

    def watched(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        tape.watch(out)
        seen.append(out)
        return out

    own = layer.__dict__.get("call")  # restored exactly, should the instance carry a call of its own
    layer.call = watched
    try:
        with tf.GradientTape() as tape:
            p = tf.cast(_positive_column(model(tf.constant(x), training=False), keras), tf.float32)
            s = tf.constant(class_sign(p.numpy(), target, threshold) if sign is None else sign, tf.float32)
            explained = tf.where(s > 0, p, 1.0 - p)
            total = tf.reduce_sum(explained)
        if not seen:
            raise GradCamUnavailable(f"layer {layer.name} was not called when the model predicted; name another layer")
        grads = tape.gradient(total, seen[-1])
    finally:
        _restore(layer, own)
    if grads is None:
        raise GradCamUnavailable(f"the score does not depend on layer {layer.name}; name another layer")
    return (np.asarray(tf.cast(seen[-1], tf.float32)), np.asarray(tf.cast(grads, tf.float32)), np.asarray(p))


def _jax_batch(model: Any, layer: Any, x: np.ndarray, sign: np.ndarray | None, target: Target,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import jax
    import jax.numpy as jnp
    import keras

    seen: list[Any] = []
    probe: list[Any] = [None]
    original = layer.call

    def probed(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        if probe[0] is not None:
            out = out + probe[0].astype(out.dtype)
        seen.append(out)
        return out

    own = layer.__dict__.get("call")
    layer.call = probed
    try:
        p0 = np.asarray(_positive_column(model(x, training=False), keras), dtype=np.float64)
        if not seen:
            raise GradCamUnavailable(f"layer {layer.name} was not called when the model predicted; name another layer")
        shape, dtype = seen[-1].shape, seen[-1].dtype
        s = jnp.asarray(class_sign(p0, target, threshold) if sign is None else sign, jnp.float32)

        def explained(delta: Any) -> tuple[Any, Any]:
            probe[0] = delta
            seen.clear()
            p = _positive_column(model(x, training=False), keras).astype(jnp.float32)
            return jnp.sum(jnp.where(s > 0, p, 1.0 - p)), seen[-1]

        grads, acts = jax.grad(explained, has_aux=True)(jnp.zeros(shape, dtype))
    finally:
        probe[0] = None
        _restore(layer, own)
    return np.asarray(acts, dtype=np.float32), np.asarray(grads, dtype=np.float32), p0


def _resize(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (N, h, w) to (N, height, width), pixel centres aligned (numpy only)."""

    def weights(src: int, dst: int) -> np.ndarray:
        pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, src - 1)
        frac = pos - low
        matrix = np.zeros((dst, src))
        np.add.at(matrix, (np.arange(dst), low), 1 - frac)
        np.add.at(matrix, (np.arange(dst), high), frac)
        return matrix

    return np.einsum("yh,nhw,xw->nyx", weights(maps.shape[1], height), maps, weights(maps.shape[2], width))


def gradcam_maps(model: Any, images: np.ndarray, *, layer: str | None = None, target: Target = "predicted",
                 threshold: float = 0.5, batch_size: int = 64, sign: np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM maps (N, H, W), float32 in [0, 1] (each image's maximum 1, or all 0 where no
    channel speaks for the explained class), for a Keras ``model`` and ``images`` exactly as it
    takes them. ``sign`` (+1 PNEUMONIA, -1 NORMAL per image) overrides ``target`` when the caller
    already knows the explained class (from the run's own scores)."""
    images = check_images(images)
    try:
        import keras
    except ImportError:
        raise GradCamUnavailable("Grad-CAM needs Keras, which is not installed; use occlusion") from None
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise GradCamUnavailable(f"Grad-CAM runs on the TensorFlow and JAX backends, not {backend}; use occlusion "
                                 "(or set KERAS_BACKEND=jax)")
    if not isinstance(model, keras.Model):
        raise GradCamUnavailable(f"Grad-CAM needs a keras.Model, got {type(model).__name__}; use occlusion")
    if batch_size < 1:
        raise XRayBenchError(f"batch size {batch_size} must be at least 1")
    read = target_layer(model, images[:1].astype(np.float32), layer)
    step = _tensorflow_batch if backend == "tensorflow" else _jax_batch
    n, h, w = images.shape[:3]
    x_all = images.astype(np.float32)
    cams = []
    for start in range(0, n, batch_size):
        part = None if sign is None else np.asarray(sign[start:start + batch_size])
        acts, grads, _ = step(model, read, x_all[start:start + batch_size], part, target, threshold)
        if acts.ndim != 4:
            raise GradCamUnavailable(f"layer {read.name} gives outputs of shape {acts.shape}, not (N, h, w, channels); "
                                     "name a 2-D convolution layer")
        alpha = grads.mean(axis=(1, 2))  # (B, k): each channel's weight, the mean gradient over positions
        cams.append(np.maximum(np.einsum("bhwk,bk->bhw", acts, alpha), 0.0))
    cam = _resize(np.concatenate(cams), h, w)
    cam = np.maximum(cam, 0.0)
    peak = cam.reshape(n, -1).max(axis=1)
    cam = np.where(peak[:, None, None] > 0, cam / np.where(peak > 0, peak, 1.0)[:, None, None], 0.0)
    if not np.isfinite(cam).all():
        raise XRayBenchError("Grad-CAM gave NaN or infinite values (the model's gradients overflowed); use occlusion")
    return cam.astype(np.float32)
