"""Text from plugins, users and paths is shown literally: never read as rich markup."""

import json
import os
import subprocess
import sys

import pytest

from xraybench.testing import make_kaggle_tree

MARKUP = "[/x] [link=https://evil.example]click[/link] [bold red]x[/]"
PLUGINS = "xb_test_models,xb_hostile,xb_hostile_broken,xb_import_fails"


def _xb(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "xraybench", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "400", **(env or {})})


@pytest.fixture
def hostile(monkeypatch):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", PLUGINS)


def test_models_lists_every_plugin_and_prints_markup_literally(hostile):
    out = _xb("models")
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("xb_good", "xb_tunable", "xb_markup[/x]", "xb_markup_fails", "xb_sabotage"):
        assert name in out.stdout, name
    assert f"a description with markup: {MARKUP}" in out.stdout  # the link and the style are text
    assert f"import failed: ImportError: cannot import {MARKUP}" in out.stdout
    assert "this plugin cannot be imported" in out.stdout
    assert "\x1b]8;" not in out.stdout  # no terminal hyperlink


def test_plugins_prints_errors_literally(hostile):
    out = _xb("plugins")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"error: import failed: ImportError: cannot import {MARKUP}" in out.stdout
    assert "xb_hostile" in out.stdout and "xb_test_models" in out.stdout


def test_a_plugin_name_with_markup(monkeypatch, capsys):
    """A plugin's own name (here registered in-process) reaches the tables as text, too."""
    import types

    from xraybench import GenericModel, hookimpl
    from xraybench.cli import main
    from xraybench.testing import registered_plugin

    plugin = types.SimpleNamespace(register_models=hookimpl(lambda register: register(GenericModel(
        name="xb_named", description="d", create=lambda params, seed: None))))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("XRAYBENCH_PLUGINS", raising=False)
    with registered_plugin(plugin, name="evil[/x][bold]plugin"):
        assert main(["plugins"]) == 0
        assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "evil[/x][bold]plugin" in out and "xb_named" in out


def test_check_prints_a_failing_plugins_error_literally(hostile):
    out = _xb("check", "xb_markup_fails", "--image-size", "16")
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert MARKUP in out.stdout and "Traceback" not in out.stderr


def test_multi_seed_run_with_markup_in_param_and_path_runs_every_seed(hostile, tmp_path):
    data = make_kaggle_tree(tmp_path / "d[/x][bold]" / "chest", n_train=(12, 18), n_test=(6, 8), size=24)
    env = {"XRAYBENCH_RESULTS": str(tmp_path / "results"), "XRAYBENCH_CACHE": str(tmp_path / "cache")}
    out = _xb("run", "--model", "xb_markup[/x]", "--model", "xb_markup_fails", "--seeds", "1", "2",
              "--param", "label=[/x][link=https://evil.example]v", "--data", str(data), env=env)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]  # the failing model fails; nothing crashes
    assert "Traceback" not in out.stderr and "MarkupError" not in out.stdout + out.stderr
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")
            if not p.name.startswith(".") and not p.name.endswith(".scores.json")]
    assert sorted((r["model"], r["seed"], r["status"]) for r in runs) == [
        ("xb_markup[/x]", 1, "done"), ("xb_markup[/x]", 2, "done"),
        ("xb_markup_fails", 1, "error"), ("xb_markup_fails", 2, "error")]
    assert str(data) in out.stdout  # the data line shows the path as it is
    assert "refusing label '[/x][link=https://evil.example]v'" in out.stdout


def test_leaderboard_and_data_with_markup_in_paths(tmp_path):
    results = tmp_path / "r[/x][bold]"
    board = _xb("leaderboard", "--results", str(results))
    assert board.returncode == 0 and str(results / "runs") in board.stdout, board.stderr[-2000:]
    data = make_kaggle_tree(tmp_path / "d[/x]" / "chest", n_train=(8, 8), n_test=(4, 4), size=24)
    summary = _xb("data", "--data", str(data), "--image-size", "16", env={"XRAYBENCH_CACHE": str(tmp_path / "c[/x]")})
    assert summary.returncode == 0, summary.stderr[-2000:]
    flat = "".join(summary.stdout.split())  # the table title may wrap
    assert str(data) in flat and str(tmp_path / "c[/x]") in summary.stdout


def test_an_error_quoting_a_url_keeps_its_password_hidden(tmp_path):
    out = _xb("studies", "--storage", "postgresql://alice:Hunter2Err@127.0.0.1:1/xb?sslpassword=K3yErr")
    assert out.returncode == 2 and out.stderr.startswith("error: cannot open storage postgresql://alice:***@")
    assert "Hunter2Err" not in out.stderr + out.stdout and "K3yErr" not in out.stderr + out.stdout
