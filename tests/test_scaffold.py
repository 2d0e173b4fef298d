"""`xraybench new-plugin` writes a package that installs, passes its own test and `xraybench check`."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("kind, checks", [("keras", "7 passed, 0 failed"), ("sklearn", "6 passed, 0 failed")])
def test_scaffold_installs_and_passes(tmp_path, kind, checks):
    target = tmp_path / "xraybench-lung-net"
    made = subprocess.run([sys.executable, "-m", "xraybench", "new-plugin", "lung_net", "--directory", str(target),
                           "--kind", kind], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "XRAYBENCH_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    listed = subprocess.run([sys.executable, "-m", "xraybench", "models"], capture_output=True, text=True, env=env)
    assert "lung_net" in listed.stdout and "xraybench-lung-net" in listed.stdout
    own_test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
                              capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert own_test.returncode == 0, own_test.stdout[-3000:]
    assert "2 passed" in own_test.stdout
    check = subprocess.run([sys.executable, "-m", "xraybench", "check", "lung_net"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert checks in check.stdout


def test_scaffold_refuses_bad_names_and_non_empty_dirs(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "xraybench", "new-plugin", "Bad-Name"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be lower case" in bad.stderr
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    busy = subprocess.run([sys.executable, "-m", "xraybench", "new-plugin", "ok", "--directory", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert busy.returncode == 2 and "not empty" in busy.stderr
