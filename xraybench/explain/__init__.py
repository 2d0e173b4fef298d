"""Where a model looks: saliency maps, their overlays and the shortcut check (issue 25).

- :mod:`.occlusion`: occlusion sensitivity, forward passes only, for every plugin (numpy).
- :mod:`.gradcam`: Grad-CAM for Keras CNNs on TensorFlow and JAX (Keras imported on use only).
- :mod:`.shortcut`: the share of saliency on the image border and corners against the lung field.
- :mod:`.overlay`: PNG overlays, written only where xraybench wrote before.
- :mod:`.run`: all of it for a loaded model (``explain``, ``explain_run``).

Importing this package imports numpy only, never Keras or a backend.
"""

from xraybench.explain.gradcam import GradCamUnavailable, gradcam_maps
from xraybench.explain.occlusion import forward_passes, occlusion_maps, patch_grid
from xraybench.explain.overlay import file_name, render_overlays
from xraybench.explain.run import SaliencyMaps, explain, explain_run
from xraybench.explain.shortcut import ShortcutShares, image_shares, regions, shortcut_check

__all__ = [
    "GradCamUnavailable", "SaliencyMaps", "ShortcutShares", "explain", "explain_run", "file_name", "forward_passes",
    "gradcam_maps", "image_shares", "occlusion_maps", "patch_grid", "regions", "render_overlays", "shortcut_check",
]
