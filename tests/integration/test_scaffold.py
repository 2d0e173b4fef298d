"""`xraybench new-plugin` writes a package that installs, passes its own test and `xraybench check`."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("kind, checks", [("keras", "7 passed, 0 failed"), ("sklearn", "6 passed, 0 failed")])
def test_scaffold_installs_and_passes(tmp_path, kind, checks, xb):
    target = tmp_path / "xraybench-lung-net"
    made = xb("new-plugin", "lung_net", "--directory", str(target), "--kind", kind)
    assert made.code == 0, made.err
    models = (target / "xraybench_lung_net" / "models.py").read_text()
    assert ("xraybench.KerasModel(" in models) == (kind == "keras")
    assert ("xraybench.GenericModel(" in models and "def predict_proba(self, images)" in models) == (kind == "sklearn")
    site = tmp_path / "site"  # a temporary environment layered on this one
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(target)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Installed where only a fresh interpreter finds it (PYTHONPATH, read at start-up): processes from here on.
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "XRAYBENCH_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    listed = xb.process("models", env=env)
    assert "lung_net" in listed.out and "xraybench-lung-net" in listed.out
    own_test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=600, cwd=tmp_path)
    assert own_test.returncode == 0, own_test.stdout[-3000:]
    assert "2 passed" in own_test.stdout
    check = xb.process("check", "lung_net", env=env)
    assert check.code == 0, check.out[-3000:] + check.err[-2000:]
    assert checks in check.out


def test_scaffold_refuses_bad_names_and_non_empty_dirs(tmp_path, xb):
    bad = xb("new-plugin", "Bad-Name")
    assert bad.code == 2 and "must be lower case" in bad.err
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    busy = xb("new-plugin", "ok", "--directory", str(tmp_path / "x"))
    assert busy.code == 2 and "not empty" in busy.err
