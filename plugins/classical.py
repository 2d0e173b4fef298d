"""Classical scikit-learn baselines on downsampled pixels: is a CNN even better than a linear model?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xraybench import GenericModel, ImageSet, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def pixels(images: np.ndarray, side: int) -> np.ndarray:
    """Block-average uint8 images (N, H, W, C) down to (N, side*side) floats in [0, 1]."""
    import numpy as np

    n, h, w, c = images.shape
    x = np.asarray(images, dtype=np.float32).mean(axis=3) / 255.0
    if h % side == 0 and w % side == 0:
        x = x.reshape(n, side, h // side, side, w // side).mean(axis=(2, 4))
    else:
        rows = (np.arange(side) * h // side).astype(int)
        cols = (np.arange(side) * w // side).astype(int)
        x = x[:, rows][:, :, cols]
    return x.reshape(n, side * side)


class PixelEstimator:
    """Wraps a scikit-learn pipeline on downsampled pixels in the GenericModel contract."""

    def __init__(self, pipeline, side: int) -> None:
        self.pipeline, self.side = pipeline, side

    def fit(self, train: ImageSet, val: ImageSet) -> PixelEstimator:
        import numpy as np

        x = pixels(train.images, self.side)
        steps = getattr(self.pipeline, "named_steps", {})
        if "pca" in steps:  # tiny data sets (tests, checks) have fewer images than components
            wanted = steps["pca"].n_components
            self.pipeline.set_params(pca__n_components=min(wanted, x.shape[0] - 1, x.shape[1]))
        self.pipeline.fit(x, np.asarray(train.labels))
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(pixels(images, self.side))[:, 1]

    def param_count(self) -> int | None:
        from xraybench_plugins._sklearn_size import count_parameters

        return count_parameters(self.pipeline)

    def onnx_model(self, shape: tuple[int, int, int]):
        """``xraybench export --to onnx``: :func:`pixels` as ONNX nodes in front of the pipeline
        converted by skl2onnx; input uint8 images (N, H, W, C), output P(PNEUMONIA) (N,)."""
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        h, w, c = shape
        side = self.side
        model = to_onnx(self.pipeline, initial_types=[("features", FloatTensorType([None, side * side]))],
                        target_opset={"": 17, "ai.onnx.ml": 3}, options={id(self.pipeline): {"zipmap": False}})
        graph = model.graph
        probabilities = graph.output[1].name  # skl2onnx's classifier outputs: label, probabilities
        consts: dict[str, np.ndarray] = {
            "px_255": np.array(255.0, np.float32),
            "px_features": np.array([-1, side * side], np.int64),
            "px_positive": np.array(list(self.pipeline.classes_).index(1), np.int64),
        }
        nodes = [helper.make_node("Cast", ["images"], ["px_float"], to=TensorProto.FLOAT),
                 helper.make_node("ReduceMean", ["px_float"], ["px_gray"], axes=[3], keepdims=0),
                 helper.make_node("Div", ["px_gray", "px_255"], ["px_unit"])]
        if h % side == 0 and w % side == 0:  # block means, as pixels() reshapes
            consts["px_blocks"] = np.array([-1, side, h // side, side, w // side], np.int64)
            nodes += [helper.make_node("Reshape", ["px_unit", "px_blocks"], ["px_block_view"]),
                      helper.make_node("ReduceMean", ["px_block_view"], ["px_small"], axes=[2, 4], keepdims=0)]
        else:  # pixels() picks rows and columns
            consts["px_rows"] = (np.arange(side) * h // side).astype(np.int64)
            consts["px_cols"] = (np.arange(side) * w // side).astype(np.int64)
            nodes += [helper.make_node("Gather", ["px_unit", "px_rows"], ["px_picked_rows"], axis=1),
                      helper.make_node("Gather", ["px_picked_rows", "px_cols"], ["px_small"], axis=2)]
        nodes.append(helper.make_node("Reshape", ["px_small", "px_features"], ["features"]))
        body = list(graph.node)
        del graph.node[:]
        graph.node.extend([*nodes, *body,
                           helper.make_node("Gather", [probabilities, "px_positive"], ["score"], axis=1)])
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        del graph.input[:]
        graph.input.append(helper.make_tensor_value_info("images", TensorProto.UINT8, [None, h, w, c]))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, [None]))
        return model


def _logreg(params: dict[str, Any], seed: int) -> PixelEstimator:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        StandardScaler(),
        PCA(n_components=int(params["pca_components"]), random_state=seed),
        LogisticRegression(C=float(params["C"]), class_weight="balanced" if params["class_weight"] else None, max_iter=2000),
    )
    return PixelEstimator(pipe, int(params["side"]))


def _svm(params: dict[str, Any], seed: int) -> PixelEstimator:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svm = SVC(C=float(params["C"]), gamma=params["gamma"], random_state=seed,
              class_weight="balanced" if params["class_weight"] else None)
    pipe = make_pipeline(
        StandardScaler(),
        PCA(n_components=int(params["pca_components"]), random_state=seed),
        # Platt scaling fitted by cross-validation, as SVC(probability=True) did before it was deprecated.
        CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False),
    )
    return PixelEstimator(pipe, int(params["side"]))


def _forest(params: dict[str, Any], seed: int) -> PixelEstimator:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=int(params["n_estimators"]), max_features=params["max_features"],
        min_samples_leaf=int(params["min_samples_leaf"]), n_jobs=-1, random_state=seed,
        class_weight="balanced" if params["class_weight"] else None,
    )
    return PixelEstimator(model, int(params["side"]))


def _hgb(params: dict[str, Any], seed: int) -> PixelEstimator:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        learning_rate=float(params["learning_rate"]), max_iter=int(params["max_iter"]),
        max_leaf_nodes=int(params["max_leaf_nodes"]), l2_regularization=float(params["l2_regularization"]),
        early_stopping=True, validation_fraction=0.1, random_state=seed,
        class_weight="balanced" if params["class_weight"] else None,
    )
    return PixelEstimator(model, int(params["side"]))


def _logreg_space(trial) -> dict[str, Any]:
    return {
        "C": trial.suggest_float("C", 1e-4, 10.0, log=True),
        "pca_components": trial.suggest_categorical("pca_components", [25, 50, 100, 200]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _svm_space(trial) -> dict[str, Any]:
    return {
        "C": trial.suggest_float("C", 0.1, 100.0, log=True),
        "pca_components": trial.suggest_categorical("pca_components", [25, 50, 100]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _forest_space(trial) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 500, step=100),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2"]),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


def _hgb_space(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 63),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 1.0, log=True),
        "class_weight": trial.suggest_categorical("class_weight", [False, True]),
    }


@hookimpl
def register_models(register) -> None:
    common = {"side": 32, "class_weight": True}
    register(GenericModel(
        name="logreg_pixels",
        description="no CNN: standardise + PCA + logistic regression on 32x32 pixels",
        defaults={**common, "pca_components": 100, "C": 0.01},
        search_space=_logreg_space, create=_logreg, image_size=64,
    ))
    register(GenericModel(
        name="svm_rbf_pixels",
        description="no CNN: standardise + PCA + RBF SVM (Platt-calibrated) on 32x32 pixels",
        defaults={**common, "pca_components": 50, "C": 3.0, "gamma": "scale"},
        search_space=_svm_space, create=_svm, image_size=64,
    ))
    register(GenericModel(
        name="random_forest_pixels",
        description="no CNN: random forest on 32x32 pixels",
        defaults={**common, "n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 2},
        search_space=_forest_space, create=_forest, image_size=64,
    ))
    register(GenericModel(
        name="hist_gradient_boosting_pixels",
        description="no CNN: histogram gradient boosting on 32x32 pixels",
        defaults={**common, "learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 31, "l2_regularization": 1e-3},
        search_space=_hgb_space, create=_hgb, image_size=64,
    ))
