"""Run ``xraybench`` commands from tests: in this process (``run_cli``, ``one_line_error``), or
as processes, never leaving one behind.

Every process gets its own session (process group), so its children share a group
that can be killed as a whole: on a timeout, a failed assertion or any other exit
from the test, whatever is still running of that group is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``xraybench ARGS`` in this process: (exit code, stdout, stderr)."""
    from xraybench.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, out: str, err: str) -> str:
    """``err``, once the command failed as bad input does: exit code 2 and one ``error:`` line, no traceback."""
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def start_xb(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xraybench", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=kwargs.pop("stderr", subprocess.PIPE), text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "250", **(env or {})}, **kwargs,
    )


def run_xb(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Like subprocess.run, but a timeout or any error kills the whole process group."""
    proc = start_xb(*args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)  # the group outlives its leader while a child still runs
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``spawn(*xraybench_args, env=...)`` -> Popen; every group started is killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
        proc = start_xb(*args, env=env, **kwargs)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            kill_group(proc)


def wait_for(path: Path, proc: subprocess.Popen | None = None, deadline_s: float = 120) -> None:
    """Wait for a file to appear (a checkpoint's ``.ready``); fail if ``proc`` ends first or at the deadline."""
    end = time.monotonic() + deadline_s
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended (code {proc.returncode}) before {path.name}: {out[-2000:]}")
        if time.monotonic() > end:
            pytest.fail(f"{path.name} did not appear within {deadline_s:g}s")
        time.sleep(0.05)


def pid_gone(pid: int, deadline_s: float = 60) -> bool:
    """Poll until ``pid`` no longer exists (or is a zombie); False if it is still running at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
