"""Pruning on against pruning off, same trial budget, on the real data at a small size.

Target: the median pruner saves at least 30% of the epochs at no worse best validation
metric. Set XRAYBENCH_BENCH_TRIALS / XRAYBENCH_BENCH_EPOCHS / XRAYBENCH_BENCH_SIZE to scale.
"""

import os
import time

import pytest

from conftest import report

pytestmark = pytest.mark.training
TRIALS = int(os.environ.get("XRAYBENCH_BENCH_TRIALS", "10"))
EPOCHS = int(os.environ.get("XRAYBENCH_BENCH_EPOCHS", "6"))
SIZE = int(os.environ.get("XRAYBENCH_BENCH_SIZE", "32"))
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def splits(real_data, bench_cache):
    from xraybench.data import load_dataset

    return load_dataset(real_data, image_size=SIZE).splits


@pytest.mark.parametrize("pruner", ["none", "median"])
def test_pruning(benchmark, splits, pruner, tmp_path):
    import optuna

    from xraybench import tuning
    from xraybench.plugins import load_registry

    spec = load_registry().model("baseline_cnn")

    def study():
        start = time.perf_counter()
        s, session, _ = tuning.run_study(
            spec, splits.train, splits.val, f"sqlite:///{tmp_path / 'p.db'}", f"prune-{pruner}", TRIALS, None,
            "val_auc", "tpe", pruner, {"epochs": str(EPOCHS)}, seed=0, precision="float32",
        )
        return s, sum(session.epochs_trained), time.perf_counter() - start

    s, epochs, seconds = benchmark.pedantic(study, rounds=1, iterations=1)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in s.trials)
    RESULTS[pruner] = {"epochs": epochs, "seconds": seconds, "best": s.best_value, "pruned": pruned}
    figures = {"pruner": pruner, "trials": TRIALS, "epochs_trained": epochs, "wall_s": seconds,
               "best_val_auc": s.best_value, "pruned_trials": pruned}
    if len(RESULTS) == 2:
        off, on = RESULTS["none"], RESULTS["median"]
        figures["epochs_saved_share"] = 1 - on["epochs"] / off["epochs"]
        figures["best_val_auc_difference"] = on["best"] - off["best"]
    report(benchmark, **figures)
