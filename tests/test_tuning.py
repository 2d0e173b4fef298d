import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from xraybench import harness, tuning
from xraybench.data import load_dataset
from xraybench.plugins import load_registry

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_objective_never_receives_test_data(xray_data, monkeypatch):
    data = load_dataset(xray_data, image_size=16)
    seen = []
    real_fit = harness.fit

    def spy(spec, train, val, *args, **kwargs):
        seen.extend(train.ids + val.ids)
        return real_fit(spec, train, val, *args, **kwargs)

    monkeypatch.setattr(harness, "fit", spy)
    spec = load_registry().model("logreg_pixels")
    study, objective, _ = tuning.run_study(
        spec, data.splits.train, data.splits.val, f"sqlite:///{xray_data.parent / 't.db'}", "s", 3, None,
        "val_auc", "random", "none", {"side": "16"}, 0,
    )
    assert len(study.trials) == 3 and seen
    assert not [i for i in seen if i.startswith("test/")]
    assert "test" not in {f for f in vars(objective)}
    assert all(t.params and t.user_attrs.get("fixed:side") is None for t in study.trials)  # side is not searched


def test_keras_trial_gets_pruned_with_the_logged_key(xray_data):
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("baseline_cnn_bn")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    objective = tuning.Objective(spec, data.splits.train, data.splits.val, spec.all_defaults(),
                                 {"epochs": 5, "batch_size": 16}, "val_auc", 0, "float32")
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs"] == 1 and list(trial.intermediate_values) == [0]


def test_pruning_fails_loudly_on_a_wrong_key(xray_data):
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("baseline_cnn_bn")
    study = optuna.create_study(direction="maximize")
    objective = tuning.Objective(spec, data.splits.train, data.splits.val, spec.all_defaults(),
                                 {"epochs": 2, "batch_size": 16}, "val_auc", 0, "float32")
    tuning.EPOCH_KEYS["val_auc"], saved = "val_not_logged", tuning.EPOCH_KEYS["val_auc"]
    try:
        study.optimize(objective, n_trials=1, catch=(harness.PluginFailure,))
    finally:
        tuning.EPOCH_KEYS["val_auc"] = saved
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


def _xb(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "xraybench", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "250", **(env or {})})


def test_tune_cli_failures_resume_and_tuned_row(xray_data, test_plugins, xraybench_env):
    args = ["tune", "--model", "xb_tunable", "--data", str(xray_data), "--image-size", "16", "--trials", "6",
            "--sampler", "random", "--study", "s1"]
    first = _xb(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "failed" in first.stdout and "best trial" in first.stdout
    recorded = re.search(r"recorded (\S+\.json)", first.stdout)  # where its final run went
    assert recorded and Path(recorded.group(1)).is_file()
    storage = f"sqlite:///{xraybench_env / 'results' / 'tuning.sqlite3'}"
    study = optuna.load_study(study_name="s1", storage=storage)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    again = _xb(*args, "--no-final")
    assert again.returncode == 0
    assert len(optuna.load_study(study_name="s1", storage=storage).trials) == 12  # resumed, not restarted
    board = json.loads(_xb("leaderboard", "--format", "json").stdout)["rows"]
    tuned = [r for r in board if r["variant"] == "tuned"]
    assert len(tuned) == 1 and tuned[0]["model"] == "xb_tunable" and tuned[0]["study"] == "s1"
    listed = _xb("studies")
    assert "s1" in listed.stdout and "12" in listed.stdout
    shown = _xb("tune", "--show", "s1")
    assert shown.returncode == 0 and "optuna-dashboard" in shown.stdout


def test_untunable_model_is_a_clear_error(xray_data, test_plugins):
    out = _xb("tune", "--model", "xb_good", "--data", str(xray_data))
    assert out.returncode == 2 and "declares no search space" in out.stderr


def _worker(storage, results, data, study):
    return subprocess.Popen(
        [sys.executable, "-m", "xraybench", "tune", "--model", "xb_tunable", "--data", str(data), "--image-size", "16",
         "--trials", "5", "--storage", storage, "--study", study, "--no-final", "--sampler", "random"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "XRAYBENCH_RESULTS": str(results)},
    )


def test_two_workers_share_one_postgresql_study(xray_data, test_plugins, xraybench_env):
    url = os.environ.get("XRAYBENCH_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(".ci/run must start PostgreSQL and set XRAYBENCH_TEST_POSTGRES")
        pytest.skip("needs a PostgreSQL server: set XRAYBENCH_TEST_POSTGRES=postgresql://... (.ci/postgres.sh starts one)")
    study = f"two-workers-{os.getpid()}"
    workers = [_worker(url, xraybench_env / f"r{i}", xray_data, study) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    loaded = optuna.load_study(study_name=study, storage=url)
    numbers = [t.number for t in loaded.trials]
    assert len(numbers) == 10 and sorted(numbers) == list(range(10))  # none lost, none duplicated
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL) for t in loaded.trials)
    print(f"two workers, one study: {len(numbers)} trials, states "
          f"{sorted(str(t.state.name) for t in loaded.trials)}")
