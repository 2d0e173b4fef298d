"""A done run's model taken out of xraybench: an ONNX file that scores raw pixels, or an MLflow run.

Why: a team that picks a winner wants it in the tools it already uses, an ONNX runtime or an
MLflow tracking server, without xraybench, its plugins or a Keras backend at the other end.

ONNX (``to_onnx``, extra ``xraybench[onnx]``). One graph from the pixels ``read_images`` gives to
P(PNEUMONIA): input ``images``, uint8 (N, H, W, C) at the run's image size and channels (0-255,
decoded and resized as the run's images were); output ``pneumonia_score``, float32 (N,). Every
step the run's ``scores`` takes is inside it: the /255 scaling (or the run's per-image
equalisation), the shift test-time averaging, the plugin's own preprocessing. A Keras model is
converted by Keras' own exporter on the TensorFlow backend (tf2onnx), whatever backend the run
trained on: the ``.keras`` file is backend-independent, and Keras' JAX route needs jax2onnx
(flax, orbax and more). A scikit-learn model is converted by its estimator's ``onnx_model(shape)``
(``GenericModel`` contract, docs/plugins.md; the first-party ones use skl2onnx). The file is
written under a temporary name and kept only if onnxruntime reproduces the run's stored test
scores within ``TOLERANCE`` on the run's own test images; its metadata names the run
(``OWNER_KEY``), which is also how a later export knows the file is xraybench's to replace.

MLflow (``to_mlflow``, extra ``xraybench[mlflow]``, the skinny client). One MLflow run per
xraybench run: parameters (flattened, secrets masked), metrics (test at the validation
threshold and at 0.5, validation at 0.5, every ``metric_registry`` entry; the training
history per epoch), tags, and the record, scores and model files as artifacts. The tracking
URI is masked in every line shown.

The conversion runs in a child process (``isolation.py``), as every prediction does: this
module and the command's own process import no Keras backend, plugin or scikit-learn.
"""

from xraybench.export.common import FORMATS, OWNER_KEY
from xraybench.export.mlflow_run import MLFLOW_EXPERIMENT, run_metrics, run_params, to_mlflow
from xraybench.export.onnx_file import ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT, TOLERANCE, onnx_scores, to_onnx, wrap

__all__ = ["FORMATS", "MLFLOW_EXPERIMENT", "ONNX_INPUT", "ONNX_OPSET", "ONNX_OUTPUT", "OWNER_KEY", "TOLERANCE", "onnx_scores",
           "run_metrics", "run_params", "to_mlflow", "to_onnx", "wrap"]
