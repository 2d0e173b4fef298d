import json
import os
import re
import subprocess
from pathlib import Path
from collections import Counter

import optuna
import pytest
from proctools import run_xb

from xraybench import harness, tuning
from xraybench.data import load_dataset
from xraybench.plugins import load_registry
from xraybench.training import recipes

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
        "val_auc", "random", "none", {"side": "16"}, 0, isolate=False,  # in this process, where the spy sees it
    )
    assert len(study.trials) == 3 and seen
    assert not [i for i in seen if i.startswith("test/")]
    assert "test" not in {f for f in vars(objective)}
    assert all(t.params and t.user_attrs.get("fixed:side") is None for t in study.trials)  # side is not searched


def _bn_params(**fixed):
    from xraybench import params as params_mod

    spec = load_registry().model("baseline_cnn_bn")
    return spec, params_mod.resolve(spec.all_defaults(), fixed, spec.name)


def test_keras_trial_gets_pruned_with_the_logged_key(xray_data):
    data = load_dataset(xray_data, image_size=16)
    spec, params = _bn_params(epochs=5, batch_size=16)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        tuning.evaluate_params(spec, data.splits.train, data.splits.val, params, "val_auc", 0, "float32", trial)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs"] == 1 and list(trial.intermediate_values) == [0]


def test_pruning_fails_loudly_on_a_wrong_key(xray_data):
    data = load_dataset(xray_data, image_size=16)
    spec, params = _bn_params(epochs=2, batch_size=16)
    study = optuna.create_study(direction="maximize")
    keys = recipes.EPOCH_KEYS  # the Keras trainer's epoch_keys
    keys["val_auc"], saved = "val_not_logged", keys["val_auc"]
    try:
        with pytest.raises(harness.PluginFailure):
            tuning.evaluate_params(spec, data.splits.train, data.splits.val, params, "val_auc", 0, "float32",
                                   study.ask())
    finally:
        keys["val_auc"] = saved


def _xb(*args, env=None, timeout=600):
    return run_xb(*args, env=env, timeout=timeout)


def _trained(study):
    """Trials that were really run: not the repeated parameter sets told a known value."""
    return [t for t in study.trials if "duplicate_of" not in t.user_attrs]


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
    resumed = optuna.load_study(study_name="s1", storage=storage)
    assert len(_trained(resumed)) == 12  # resumed, not restarted
    complete = [t for t in resumed.trials if t.state == optuna.trial.TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(complete) == 1  # the 'good' set was trained once; its repeats were told its value
    board = json.loads(_xb("leaderboard", "--format", "json").stdout)["rows"]
    tuned = [r for r in board if r["variant"] == "tuned"]
    assert len(tuned) == 1 and tuned[0]["model"] == "xb_tunable" and tuned[0]["study"] == "s1"
    listed = _xb("studies")
    assert "s1" in listed.stdout and str(len(resumed.trials)) in listed.stdout
    shown = _xb("tune", "--show", "s1")
    assert shown.returncode == 0 and "optuna-dashboard" in shown.stdout


def test_untunable_model_is_a_clear_error(xray_data, test_plugins):
    out = _xb("tune", "--model", "xb_good", "--data", str(xray_data))
    assert out.returncode == 2 and "declares no search space" in out.stderr


def _worker(spawn, storage, results, data, study, model="xb_tunable", trials=5, sampler="random"):
    return spawn("tune", "--model", model, "--data", str(data), "--image-size", "16", "--trials", str(trials),
                 "--storage", storage, "--study", study, "--no-final", "--sampler", sampler,
                 env={"XRAYBENCH_RESULTS": str(results)}, stderr=subprocess.STDOUT)


def test_two_workers_share_one_postgresql_study(xray_data, test_plugins, xraybench_env, spawn):
    url = os.environ.get("XRAYBENCH_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(".ci/run must start PostgreSQL and set XRAYBENCH_TEST_POSTGRES")
        pytest.skip("needs a PostgreSQL server: set XRAYBENCH_TEST_POSTGRES=postgresql://... (.ci/postgres.sh starts one)")
    study = f"two-workers-{os.getpid()}"
    workers = [_worker(spawn, url, xraybench_env / f"r{i}", xray_data, study) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    loaded = optuna.load_study(study_name=study, storage=url)
    numbers = [t.number for t in loaded.trials]
    assert sorted(numbers) == list(range(len(numbers)))  # none lost, none numbered twice
    assert len(_trained(loaded)) == 10
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL) for t in loaded.trials)
    print(f"two workers, one study: {len(numbers)} trials, states "
          f"{sorted(str(t.state.name) for t in loaded.trials)}")


def _param_sets(study):
    return [tuple(sorted(t.params.items())) for t in _trained(study)]


def test_resumes_and_concurrent_workers_never_repeat_a_parameter_set(xray_data, test_plugins, xraybench_env, spawn):
    """Issue 13.8: every resume and every worker used to seed its sampler with the same seed."""
    storage = f"sqlite:///{xraybench_env / 'wide.sqlite3'}"
    first = _worker(spawn, storage, xraybench_env / "r", xray_data, "wide", "xb_tunable_wide", 4, "random")
    text = first.communicate(timeout=600)[0]
    assert first.returncode == 0, text[-3000:]
    workers = [_worker(spawn, storage, xraybench_env / f"w{i}", xray_data, "wide", "xb_tunable_wide", 4, sampler)
               for i, sampler in enumerate(("random", "tpe"))]  # two resumes at once on one SQLite file
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[-3000:] for o in outputs]
    study = optuna.load_study(study_name="wide", storage=storage)
    sets = _param_sets(study)
    assert len(sets) == 12
    assert len(set(sets)) == 12, [s for s, n in Counter(sets).items() if n > 1]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 3  # one token per process


def test_a_sampled_repeat_is_not_trained_again_nor_counted(xray_data):
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("logreg_pixels")
    space = spec.search_space
    spec.search_space = lambda trial: {"C": trial.suggest_categorical("C", [0.1, 1.0])}  # two points only
    try:
        study, session, _ = tuning.run_study(
            spec, data.splits.train, data.splits.val, f"sqlite:///{xray_data.parent / 'd.db'}", "d", 2, None,
            "val_auc", "random", "none", {"side": "16"}, 0, isolate=False,
        )
    finally:
        spec.search_space = space
    trained = _trained(study)
    assert session.trials_run == 2 == len(trained)
    assert len({t.params["C"] for t in trained}) == 2  # both points, each trained once
    repeats = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) == session.duplicates
    for t in repeats:
        original = study.trials[t.user_attrs["duplicate_of"]]
        assert t.params == original.params and t.value == original.value


def test_a_hanging_trial_is_killed_recorded_and_the_study_goes_on(xray_data, test_plugins, xraybench_env):
    out = _xb("tune", "--model", "xb_tunable_wide", "--param", "mode=hang", "--data", str(xray_data),
              "--image-size", "16", "--trials", "2", "--trial-timeout", "3", "--study", "h", "--no-final")
    # every trial failed for the plugin's reasons: 1, as `run` exits (issue 24); 2 is for usage errors
    assert out.returncode == 1 and "no complete trial" in out.stderr, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="h", storage=f"sqlite:///{xraybench_env / 'results' / 'tuning.sqlite3'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2  # both tried, not just the first
    assert all("--trial-timeout 3" in t.user_attrs["fail_reason"] for t in study.trials)
    assert out.stdout.count("--trial-timeout 3") == 2


def test_run_trial_reports_through_the_storage_and_the_parent_tells_pruned(xray_data, monkeypatch):
    """The protocol a child (or a remote worker) follows: reopen the study by URL, rebuild the asked
    trial, report each epoch there; the asking process then tells the study the outcome."""
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("baseline_cnn_bn")
    url = f"sqlite:///{xray_data.parent / 'p.db'}"
    monkeypatch.setattr(tuning.trial, "make_pruner", lambda name: optuna.pruners.ThresholdPruner(upper=-1.0))
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    trial = study.ask()
    params = {**spec.all_defaults(), "epochs": 5, "batch_size": 16}
    task = tuning.TrialTask(spec.name, [], data.splits.train, data.splits.val, "val_auc", 0, "float32", "threshold")
    result = tuning.run_trial(url, "p", trial._trial_id, params, task)
    assert result["state"] == "pruned" and result["epochs"] == 1
    told = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert told.intermediate_values.keys() == {0} and told.value == told.intermediate_values[0]
    assert told.user_attrs["epochs"] == 1


def test_the_final_tuned_run_is_checkpointed_like_run(xray_data, test_plugins, xraybench_env, monkeypatch):
    from xraybench import runner
    from xraybench.cli import main

    def one_trial_study(spec, train, val, storage, name, *args, **kwargs):
        study = optuna.create_study(direction="maximize")
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
        return study, tuning.Session(), 0.0

    class Stop(Exception):
        pass

    requests = []

    def capture(prepared):
        requests.append(prepared.request)
        raise Stop

    monkeypatch.setattr(tuning, "run_study", one_trial_study)
    monkeypatch.setattr(runner, "run_isolated", capture)
    results = xraybench_env / "res"
    with pytest.raises(Stop):
        main(["tune", "--model", "xb_tunable", "--data", str(xray_data), "--image-size", "16",
              "--results", str(results), "--trials", "1"])
    assert [r.checkpoints for r in requests] == [str(results.resolve())]


def test_each_trial_is_sampled_inside_ask_by_the_sampler_seeded_for_its_number(xray_data, monkeypatch):
    data = load_dataset(xray_data, image_size=16)
    seen = []

    class Recording(optuna.samplers.RandomSampler):
        def __init__(self, seed):
            super().__init__(seed=seed)
            self.seed = seed

        def before_trial(self, study, trial):  # called inside study.ask(), where relative samplers sample
            seen.append((trial.number, self.seed))
            super().before_trial(study, trial)

    monkeypatch.setattr(tuning.study, "make_sampler", lambda name, seed: Recording(seed))
    spec = load_registry().model("logreg_pixels")
    tuning.run_study(spec, data.splits.train, data.splits.val, f"sqlite:///{xray_data.parent / 'q.db'}", "q", 3, None,
                     "val_auc", "random", "none", {"side": "16"}, 5, isolate=False)
    assert seen and all(seed == tuning.sampler_seed(5, number) for number, seed in seen), seen
