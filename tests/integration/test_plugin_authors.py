"""The rough edges a plugin author met (issue 24): where ``--disable-plugin`` goes and what it
accepts, what a model of a plugin that failed to import is called, ``tune``'s exit status when
every trial fails, ``check_model``'s timeout, ``--traceback`` everywhere, and ``tune --timeout``
bounding a hanging trial."""

from __future__ import annotations

import time

import pytest

from xraybench import GenericModel, hookimpl
from xraybench.cli import build_parser, main
from xraybench.testing import check_model, registered_plugin

PLUGINS = "xb_test_models,xb_hostile"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# --- a: --disable-plugin before and after the command; unknown names ----------------------------

def test_disable_plugin_is_accepted_before_and_after_the_command(monkeypatch, capsys):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", PLUGINS)
    assert main(["--disable-plugin", "xb_hostile", "models", "--disable-plugin", "xb_test_models"]) == 0
    out = capsys.readouterr().out
    assert "xb_good" not in out and "xb_markup_fails" not in out  # both disabled: neither list replaced the other
    assert "(xb_test_models)" in out and "(xb_hostile)" in out
    args = build_parser().parse_args(["data", "download", "--disable-plugin", "zoo", "pneumoniamnist"])
    assert args.disable_plugin_after == ["zoo"]  # nested commands take it too


def test_disable_plugin_after_run_takes_effect(monkeypatch, capsys, xray_data, xraybench_env):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", PLUGINS)
    assert main(["run", "--disable-plugin", "xb_test_models", "--model", "xb_good", "--data", str(xray_data),
                 "--image-size", "16"]) == 2
    assert "'xb_good'" in _error_line(capsys)


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_an_unknown_plugin_name_is_a_one_line_error_listing_the_known_ones(where, monkeypatch, capsys):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", PLUGINS)
    argv = {"before": ["--disable-plugin", "xb_tset_models", "models"],
            "after": ["models", "--disable-plugin", "xb_tset_models"], "env": ["models"]}[where]
    if where == "env":
        monkeypatch.setenv("XRAYBENCH_DISABLE_PLUGINS", "xb_tset_models")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "'xb_tset_models'" in line and "no installed plugin or distribution has that name" in line
    assert "xb_test_models" in line and "cnn" in line and "xraybench" in line  # plugins and distributions
    assert ("$XRAYBENCH_DISABLE_PLUGINS" if where == "env" else "--disable-plugin") in line


# --- b, e: a model whose plugin failed to import --------------------------------------------------

def test_a_model_of_a_plugin_that_failed_to_import_says_so(monkeypatch, capsys, xray_data, xraybench_env):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", "xb_import_fails,xb_test_models")
    base = ["run", "--model", "xb_from_the_broken_plugin", "--data", str(xray_data), "--image-size", "16"]
    assert main(base) == 2
    line = _error_line(capsys)
    assert "unknown model" not in line
    assert "plugin xb_import_fails (local 0) failed to import (ImportError: this plugin cannot be imported)" in line
    assert main([*base, "--traceback"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'xb_from_the_broken_plugin' is not registered")
    assert "Traceback (most recent call last)" in err and "xb_import_fails.py" in err
    for command in (["models", "--traceback"], ["plugins", "--traceback"]):
        assert main(command) == 0
        err = capsys.readouterr().err
        assert "--- plugin xb_import_fails" in err and 'raise ImportError("this plugin cannot be imported")' in err
    assert main(["models"]) == 0 and "Traceback" not in capsys.readouterr().err  # only on request


# --- c, e, h: tune's exit status, tracebacks and --timeout ----------------------------------------

def _tune(data, *extra: str) -> list[str]:
    return ["tune", "--model", "xb_tunable", "--data", str(data), "--image-size", "16", "--no-final", *extra]


def test_tune_exits_1_when_every_trial_fails_for_the_plugin_s_reasons(test_plugins, xray_data, xraybench_env, capsys):
    assert main(_tune(xray_data, "--trials", "2", "--param", "mode=fit_raises")) == 1
    line = _error_line(capsys)
    assert "has no complete trial; first failure: fitting xb_tunable failed: RuntimeError: boom in fit" in line
    assert main(_tune(xray_data, "--trials", "1", "--param", "mode=fit_raises", "--traceback")) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "boom in fit" in err and "xb_test_models.py" in err
    assert main(["tune", "--data", str(xray_data)]) == 2  # usage errors stay 2
    assert "tune needs --model" in _error_line(capsys)


def test_tune_timeout_bounds_a_hanging_trial(test_plugins, xray_data, xraybench_env, capsys):
    import optuna

    start = time.monotonic()
    assert main(_tune(xray_data, "--trials", "3", "--param", "mode=hang", "--timeout", "4", "--study", "h")) == 1
    assert time.monotonic() - start < 120, "a hanging trial ran past --timeout"  # was: until the 6 h default
    capsys.readouterr()
    study = optuna.load_study(study_name="h", storage=f"sqlite:///{xraybench_env / 'results' / 'tuning.sqlite3'}")
    assert len(study.trials) == 1
    assert "left of --timeout 4s; the process was killed" in study.trials[0].user_attrs["fail_reason"]


def test_tuning_trial_limit_takes_the_sooner_of_the_two():
    from xraybench.tuning import trial_limit

    assert trial_limit(None, None, 0) == (None, "")
    assert trial_limit(30.0, None, 100) == (30.0, "--trial-timeout 30s")
    assert trial_limit(30.0, 100.0, 10) == (30.0, "--trial-timeout 30s")
    assert trial_limit(30.0, 100.0, 80) == (20.0, "the 20s left of --timeout 100s")
    assert trial_limit(None, 100.0, 150)[0] == 1.0  # a trial that starts gets a moment


# --- d, e: check_model's timeout, check --traceback ---------------------------------------------

class _Mean:
    def __init__(self, params, seed):
        pass

    def fit(self, train, val):
        return self

    def predict_proba(self, images):
        import numpy as np

        return np.full(len(images), 0.5)


def _make_mean(params, seed):
    return _Mean(params, seed)


class _InProcess:
    """A plugin registered in this process only: its spec pickles, so check_model's child gets it as it is."""

    @staticmethod
    @hookimpl
    def register_models(register):
        register(GenericModel(name="xb_in_process_only", description="constant 0.5", create=_make_mean, image_size=16))


def test_check_model_times_out_a_hanging_model_and_goes_on(test_plugins):
    from xraybench import load_registry

    start = time.monotonic()
    rows = check_model(load_registry().model("xb_hang"), size=16, timeout=20)
    assert time.monotonic() - start < 200
    fit = next(row for row in rows if row[0].startswith("fits"))
    assert fit[1] is False and fit[2] == "timeout: no result within check_model's timeout 20s; the check was killed"
    assert rows[0][1] is True  # the checks before it ran and passed

    with registered_plugin(_InProcess(), "xb_in_process"):
        from xraybench import load_registry as load

        rows = check_model(load().model("xb_in_process_only"), size=16)  # the default timeout
    assert all(ok for _, ok, _ in rows), rows


def test_check_traceback_prints_each_failed_check_s(test_plugins, capsys):
    assert main(["check", "xb_fit_raises", "--image-size", "16", "--timeout", "120"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["check", "xb_fit_raises", "--image-size", "16", "--timeout", "120", "--traceback"]) == 1
    err = capsys.readouterr().err
    assert "--- fits one short epoch on tiny generated data ---" in err
    assert "Traceback (most recent call last)" in err and "boom in fit" in err
