"""Fault injection at each phase of a model child's life, with Ctrl-C and with SIGKILL of the parent.

The processes pause at named checkpoints (``XRAYBENCH_TEST_PAUSE``) and say so through a
file, so every signal lands at a known point; nothing here sleeps for a guessed time.
Phases: ``spawned`` (the parent, right after starting the child, while SIGINT is blocked),
``start`` (the child, before it runs anything), ``training`` (inside the plugin's fit) and
``saving`` (the child, result in hand, before sending it back).
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from proctools import pid_gone, wait_for

from xraybench import isolation
from xraybench.records import RunStatus


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _start_paused(spawn, phase, data, env_dir, model="xb_good"):
    pause = env_dir / "pause"
    pause.mkdir()
    proc = spawn("run", "--data", str(data), "--image-size", "16", "--model", model,
                 env={"XRAYBENCH_TEST_PAUSE": f"{phase}={pause}"}, stderr=subprocess.STDOUT)
    wait_for(pause / f"{phase}.ready", proc)
    return proc, pause


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


@pytest.mark.parametrize("phase", ["spawned", "start", "saving"])
def test_ctrl_c_at_each_phase_stops_the_child_and_records_interrupted(phase, xray_data, test_plugins,
                                                                      xraybench_env, spawn):
    proc, pause = _start_paused(spawn, phase, xray_data, xraybench_env)
    children = _descendants(proc.pid)
    assert children, "the model's child process should exist at this phase"
    proc.send_signal(signal.SIGINT)
    if phase == "spawned":  # SIGINT is blocked there: it must be delivered, not lost, once the pid is known
        (pause / "spawned.go").touch()
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-2000:]
    runs = xraybench_env / "results" / "runs"
    records = [json.loads(p.read_text()) for p in runs.glob("*.json") if not p.name.startswith(".")]
    assert [(r["model"], r["status"]) for r in records] == [("xb_good", "interrupted")]
    assert all(pid_gone(pid) for pid in children), "a child outlived the interrupted run"


@pytest.mark.parametrize("phase", ["spawned", "start", "training", "saving"])
def test_sigkill_of_the_parent_takes_the_child_with_it(phase, xray_data, test_plugins, xraybench_env, spawn):
    proc, pause = _start_paused(spawn, phase, xray_data, xraybench_env)
    children = _descendants(proc.pid)
    assert children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if phase == "spawned":  # nothing left to wait for this file; the child must notice on its own
        (pause / "spawned.go").touch()
    # no timing asserted: each orphan must end, and the deadline only bounds a broken run
    assert all(pid_gone(pid, deadline_s=60) for pid in children), "a child outlived its SIGKILLed parent"
    proc.stdout.read()  # the output pipe is closed: nobody holds it open


def _raise_value_error():
    raise ValueError("boom in a child")


def _close_the_pipe_and_live_on(pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    import gc
    from multiprocessing.connection import Connection

    for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
        conn.close()  # the pipe to the parent: it sees EOF while this process lives on
    isolation.time.sleep(120)


def test_a_child_that_closes_its_pipe_but_lives_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation, "DIED_GRACE_SECONDS", 0.5)
    pid_file = tmp_path / "pid"
    child = isolation.Child()
    try:
        out = child.call(_close_the_pipe_and_live_on, (str(pid_file),), timeout=60)
        assert out.status is RunStatus.ERROR and out.reason == "the model's process ended without a result"
        assert pid_gone(int(pid_file.read_text()))
    finally:
        child.stop()


def test_child_outcomes_in_process():
    with isolation.Child() as child:
        first_pid = None
        out = child.call(os.getpid)
        assert out.status is RunStatus.DONE and out.value != os.getpid()
        first_pid = out.value
        out = child.call(_raise_value_error)
        assert out.status is RunStatus.ERROR and out.reason == "unexpected ValueError: boom in a child"
        assert "Traceback" in out.traceback and "boom in a child" in out.traceback
        assert child.call(os.getpid).value == first_pid  # the same child serves the next call
        out = child.call(isolation.time.sleep, (60,), timeout=1)
        assert out.status is RunStatus.TIMEOUT
        assert pid_gone(first_pid)
        assert child.call(os.getpid).value not in (first_pid, None)  # a fresh child after a kill
        out = child.call(os._exit, (7,))
        assert out.status is RunStatus.ERROR and "exited with code 7" in out.reason


def test_traceback_is_stored_and_printed_only_on_request(xray_data, test_plugins, xraybench_env):
    from proctools import run_xb

    base = ("run", "--data", str(xray_data), "--image-size", "16", "--model", "xb_fit_raises")
    quiet = run_xb(*base)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stdout + quiet.stderr
    for extra in ([], ["--no-isolation"]):
        loud = run_xb(*base, "--traceback", *extra)
        assert loud.returncode == 1
        assert "Traceback (most recent call last)" in loud.stderr and "boom in fit" in loud.stderr, (extra, loud.stderr)
        assert "xb_test_models.py" in loud.stderr  # the plugin's own frame, for its author
    records = [json.loads(p.read_text()) for p in (xraybench_env / "results" / "runs").glob("*.json")
               if not p.name.startswith(".")]
    assert len(records) == 3
    assert all("boom in fit" in r["traceback"] and "\n" not in r["reason"] for r in records)


def test_ctrl_c_during_a_trial_stops_it_and_leaves_no_trial_running(xray_data, test_plugins, xraybench_env, spawn):
    import optuna

    pause = xraybench_env / "pause"
    pause.mkdir()
    proc = spawn("tune", "--model", "xb_tunable_wide", "--data", str(xray_data), "--image-size", "16", "--trials", "3",
                 "--study", "c", "--no-final", env={"XRAYBENCH_TEST_PAUSE": f"training={pause}"},
                 stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for(pause / "training.ready", proc)
    child = int((pause / "training.ready").read_text())
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in output, output[-2000:]
    assert pid_gone(child)
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{xraybench_env / 'results' / 'tuning.sqlite3'}")
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in study.trials] == [
        (optuna.trial.TrialState.FAIL, "interrupted by Ctrl-C")]


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["inherited-default", "inherited-ignored"])
def test_sigterm_mid_run_records_interrupted_and_leaves_no_child(inherited, xray_data, test_plugins, xraybench_env, spawn):
    """SIGTERM (a service manager, a batch scheduler, ``kill``) is handled like Ctrl-C: the run in
    flight is recorded as ``interrupted``, its child is stopped, the exit status is 143. The
    dispositions the process inherits are set explicitly, so the test holds whatever CI runs with."""
    pause = xraybench_env / "pause"
    pause.mkdir()

    def inherit() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, inherited)

    proc = spawn("run", "--data", str(xray_data), "--image-size", "16", "--model", "xb_good",
                 env={"XRAYBENCH_TEST_PAUSE": f"training={pause}"}, stderr=subprocess.STDOUT, preexec_fn=inherit)
    wait_for(pause / "training.ready", proc)
    children = _descendants(proc.pid) | {int((pause / "training.ready").read_text())}
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    runs = xraybench_env / "results" / "runs"
    records = [json.loads(p.read_text()) for p in runs.glob("*.json") if not p.name.startswith(".")]
    assert [(r["model"], r["status"], r["reason"]) for r in records] == [("xb_good", "interrupted", "stopped by SIGTERM")]
    assert all(pid_gone(pid) for pid in children), "a child outlived the terminated run"
