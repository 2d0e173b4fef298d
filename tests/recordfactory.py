"""Run records for tests: fake but well-formed ones for store and leaderboard tests
(``make_record``), and real done runs with saved models, trained on tiny generated data
(``train_runs``, behind conftest's session fixture ``trained``)."""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from xraybench.metrics import evaluate
from xraybench.stats import bootstrap_intervals
from xraybench.results import new_run_id, now_iso


def make_record(model="m", seed=1, accuracy_shift=0.0, fingerprint="f" * 64, status="done", tuned=False, n=60,
                reference=None):
    """``reference``: whether the model's spec declares itself the reference (default: the
    tests' reference model is the one named "baseline_cnn")."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 != 0).astype(int)
    p = np.clip(y * 0.6 + rng.random(n) * 0.5 - 0.05 + accuracy_shift, 0, 1)
    m = evaluate(y, p, 0.5)
    record = {
        "run_id": new_run_id(model), "created_at": now_iso(), "status": status, "reason": "",
        "model": model, "distribution": "d", "version": "1", "kind": "generic", "params": {}, "seed": seed,
        "image_size": 32, "spec_image_size": 32, "channels": 1,
        "reference": model == "baseline_cnn" if reference is None else reference,
        "data": {"fingerprint": fingerprint}, "tags": {"tuned": tuned},
        "train_seconds": 1.0, "epochs_run": 2, "param_count": 10,
    }
    if status == "done":
        iv = bootstrap_intervals(y, p, 0.5, resamples=200, seed=seed)
        record.update(metrics=m, metrics_at_val_threshold=m, intervals=iv, intervals_at_val_threshold=iv)
    return record, {"test_ids": [str(i) for i in range(n)], "test_labels": y.tolist(), "test_scores": p.tolist()}


TRAINED_MODELS = ("baseline_cnn", "logreg_pixels")  # one Keras CNN, one scikit-learn estimator: both model formats
TRAINED_SIZE = 32  # pixels a side


class TrainedRuns(NamedTuple):
    """Done runs with their models kept: the generated data folder, the results folder, {model: run id}."""

    data: Path
    results: Path
    ids: dict[str, str]


def train_runs(root: Path) -> TrainedRuns:
    """Every ``TRAINED_MODELS`` model trained for one epoch at ``TRAINED_SIZE`` px on
    ``make_kaggle_tree`` data under ``root``, through the CLI as a user runs it."""
    from xraybench.cli import main
    from xraybench.synthetic import make_kaggle_tree

    data = make_kaggle_tree(root / "chest_xray")
    results = root / "results"
    code = main(["run", *(a for m in TRAINED_MODELS for a in ("--model", m)), "--data", str(data), "--image-size",
                 str(TRAINED_SIZE), "--epochs", "1", "--results", str(results)])
    assert code == 0
    runs = read_runs(root)
    assert set(runs.ids) == set(TRAINED_MODELS)
    (root / TRAINED_MARK).touch()  # last: another xdist worker reuses only a complete set
    return runs


TRAINED_MARK = "trained.ok"


def read_runs(root: Path) -> TrainedRuns:
    """The runs ``train_runs`` made under ``root``."""
    from xraybench.results import ResultStore

    return TrainedRuns(root / "chest_xray", root / "results",
                       {r["model"]: r["run_id"] for r in ResultStore(root / "results").records() if r["status"] == "done"})
