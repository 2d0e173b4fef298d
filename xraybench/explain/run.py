"""A run's explanations from its loaded model: maps by the best method available, overlays as PNG.

What ``xraybench explain`` (and the report) call with a loaded model: anything with
``scores(images) -> P(PNEUMONIA) per image`` and ``keras_model`` (a ``keras.Model`` or None),
as :mod:`xraybench.saved_model`'s ``LoadedModel`` has. ``method``:

- ``"auto"``: Grad-CAM where the model is a Keras CNN on a backend with gradients, occlusion
  otherwise (the fallback is silent; :attr:`SaliencyMaps.method` says which ran);
- ``"occlusion"``: every model, ``N * (1 + K)`` forward passes (:mod:`.occlusion`);
- ``"gradcam"``: Keras CNNs only, else a one-line :class:`~.gradcam.GradCamUnavailable`.

Both explain the class the run's scores call at ``threshold`` (0.5 unless the caller passes the
run's validation threshold), or PNEUMONIA with ``target="positive"``. Grad-CAM feeds
``keras_model`` the images as the model takes them: ``loaded.keras_inputs(images)`` when the
loaded model has that method (for a loader whose ``scores`` scales the pixels before the
network), else the images themselves as float32, and never integer pixels (``saved_model``'s
``scores`` takes uint8 and scales inside): without ``keras_inputs`` those are explained by
occlusion (``auto``) or refused (``gradcam``), never mapped from wrongly scaled inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.explain.gradcam import GradCamUnavailable, gradcam_maps
from xraybench.explain.occlusion import Target, check_images, class_sign, occlusion_maps
from xraybench.explain.overlay import render_overlays
from xraybench.records import EXPLAIN_METHODS as METHODS

Method = Literal["auto", "occlusion", "gradcam"]


class Explainable(Protocol):
    """What a loaded model offers to be explained (``saved_model.LoadedModel``)."""

    keras_model: Any

    def scores(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SaliencyMaps:
    """Maps (N, H, W) and the method that made them (``occlusion`` or ``gradcam``)."""

    maps: np.ndarray
    method: str


def explain(loaded: Explainable, images: np.ndarray, method: Method = "auto", *, target: Target = "predicted",
            threshold: float = 0.5, layer: str | None = None) -> SaliencyMaps:
    """Saliency maps of ``images`` (N, H, W, C, preprocessed as in training) for ``loaded``."""
    if method not in METHODS:
        raise XRayBenchError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    images = check_images(images)
    keras_model = getattr(loaded, "keras_model", None)
    if method == "gradcam" and keras_model is None:
        raise GradCamUnavailable("Grad-CAM needs a Keras model and this run's model is not one; use occlusion")
    if method in ("auto", "gradcam") and keras_model is not None:
        try:
            sign = class_sign(np.asarray(loaded.scores(images), dtype=np.float64).reshape(-1), target, threshold)
            to_inputs = getattr(loaded, "keras_inputs", None)
            if not callable(to_inputs) and np.issubdtype(images.dtype, np.integer):
                raise GradCamUnavailable("Grad-CAM needs the Keras model's own inputs, and the loaded model has no "
                                         "keras_inputs() to scale these integer pixels with; use occlusion")
            inputs = to_inputs(images) if callable(to_inputs) else images
            return SaliencyMaps(gradcam_maps(keras_model, inputs, layer=layer, sign=sign), "gradcam")
        except GradCamUnavailable:
            if method == "gradcam":
                raise
    return SaliencyMaps(occlusion_maps(loaded.scores, images, target=target, threshold=threshold), "occlusion")


def explain_run(loaded: Explainable, ids: Sequence[str], images: np.ndarray, out_dir: Path, method: Method = "auto", *,
                target: Target = "predicted", threshold: float = 0.5) -> list[Path]:
    """Explain ``images`` and write one overlay PNG per image id into ``out_dir`` (a new folder,
    or one xraybench wrote before: :mod:`.overlay`); the paths, in the order of ``ids``."""
    if len(ids) != len(np.asarray(images)):
        raise XRayBenchError(f"{len(ids)} image ids for {len(np.asarray(images))} images; give one id per image")
    result = explain(loaded, images, method, target=target, threshold=threshold)
    return render_overlays(ids, images, result.maps, Path(out_dir))
