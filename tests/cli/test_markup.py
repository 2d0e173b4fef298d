"""Text from plugins, users and paths is shown literally: never read as rich markup."""

import json

import pytest

from xraybench.testing import make_kaggle_tree

MARKUP = "[/x] [link=https://evil.example]click[/link] [bold red]x[/]"
PLUGINS = "xb_test_models,xb_hostile,xb_hostile_broken,xb_import_fails"


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def hostile(monkeypatch):
    monkeypatch.setenv("XRAYBENCH_PLUGINS", PLUGINS)


def test_models_lists_every_plugin_and_prints_markup_literally(hostile, xb):
    out = xb("models")
    assert out.code == 0, out.err[-2000:]
    for name in ("xb_good", "xb_tunable", "xb_markup[/x]", "xb_markup_fails", "xb_sabotage"):
        assert name in out.out, name
    assert f"a description with markup: {MARKUP}" in out.out  # the link and the style are text
    assert f"import failed: ImportError: cannot import {MARKUP}" in out.out
    assert "this plugin cannot be imported" in out.out
    assert "\x1b]8;" not in out.out  # no terminal hyperlink


def test_plugins_prints_errors_literally(hostile, xb):
    out = xb("plugins")
    assert out.code == 0, out.err[-2000:]
    assert f"error: import failed: ImportError: cannot import {MARKUP}" in out.out
    assert "xb_hostile" in out.out and "xb_test_models" in out.out


def test_a_plugin_name_with_markup(monkeypatch, xb):
    """A plugin's own name (here registered in-process) reaches the tables as text, too."""
    import types

    from xraybench import GenericModel, hookimpl
    from xraybench.testing import registered_plugin

    plugin = types.SimpleNamespace(register_models=hookimpl(lambda register: register(GenericModel(
        name="xb_named", description="d", create=lambda params, seed: None))))
    monkeypatch.delenv("XRAYBENCH_PLUGINS", raising=False)
    with registered_plugin(plugin, name="evil[/x][bold]plugin"):
        plugins, models = xb("plugins"), xb("models")
    assert plugins.code == models.code == 0
    out = plugins.out + models.out
    assert "evil[/x][bold]plugin" in out and "xb_named" in out


def test_check_prints_a_failing_plugins_error_literally(hostile, xb):
    out = xb("check", "xb_markup_fails", "--image-size", "16")
    assert out.code == 1, out.out[-2000:] + out.err[-2000:]
    assert MARKUP in out.out and "Traceback" not in out.err


def test_multi_seed_run_with_markup_in_param_and_path_runs_every_seed(hostile, tmp_path, xb):
    data = make_kaggle_tree(tmp_path / "d[/x][bold]" / "chest", n_train=(12, 18), n_test=(6, 8), size=24)
    env = {"XRAYBENCH_RESULTS": str(tmp_path / "results"), "XRAYBENCH_CACHE": str(tmp_path / "cache")}
    out = xb("run", "--model", "xb_markup[/x]", "--model", "xb_markup_fails", "--seeds", "1", "2",
              "--param", "label=[/x][link=https://evil.example]v", "--data", str(data), env=env)
    assert out.code == 1, out.out[-3000:] + out.err[-3000:]  # the failing model fails; nothing crashes
    assert "Traceback" not in out.err and "MarkupError" not in out.out + out.err
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")
            if not p.name.startswith(".") and not p.name.endswith(".scores.json")]
    assert sorted((r["model"], r["seed"], r["status"]) for r in runs) == [
        ("xb_markup[/x]", 1, "done"), ("xb_markup[/x]", 2, "done"),
        ("xb_markup_fails", 1, "error"), ("xb_markup_fails", 2, "error")]
    assert str(data) in out.out  # the data line shows the path as it is
    assert "refusing label '[/x][link=https://evil.example]v'" in out.out


def test_leaderboard_and_data_with_markup_in_paths(tmp_path, xb):
    results = tmp_path / "r[/x][bold]"
    board = xb("leaderboard", "--results", str(results))
    assert board.code == 0 and str(results / "runs") in board.out, board.err[-2000:]
    data = make_kaggle_tree(tmp_path / "d[/x]" / "chest", n_train=(8, 8), n_test=(4, 4), size=24)
    summary = xb("data", "--data", str(data), "--image-size", "16", env={"XRAYBENCH_CACHE": str(tmp_path / "c[/x]")})
    assert summary.code == 0, summary.err[-2000:]
    flat = "".join(summary.out.split())  # the table title may wrap
    assert str(data) in flat and str(tmp_path / "c[/x]") in summary.out


def test_an_error_quoting_a_url_keeps_its_password_hidden(tmp_path, xb):
    out = xb("studies", "--storage", "postgresql://alice:Hunter2Err@127.0.0.1:1/xb?sslpassword=K3yErr")
    assert out.code == 2 and out.err.startswith("error: cannot open storage postgresql://alice:***@")
    shown = out.err + out.out  # warnings and log records too, as a process prints them
    assert "Hunter2Err" not in shown and "K3yErr" not in shown
