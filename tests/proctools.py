"""Run ``xraybench`` commands from tests (the ``xb`` fixture in conftest.py): in this process
(``run_cli``, ``one_line_error``), or as processes, never leaving one behind.

Every process gets its own session (process group), so its children share a group
that can be killed as a whole: on a timeout, a failed assertion or any other exit
from the test, whatever is still running of that group is SIGKILLed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple, TextIO, TypeVar

import pytest

Env = Mapping[str, str | None]  # None removes the variable
T = TypeVar("T")


class Result(NamedTuple):
    """What one ``xraybench`` command gave: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def run_cli(capture: pytest.CaptureFixture[str], *args: str, env: Env | None = None) -> Result:
    """``xraybench ARGS`` in this process, as typed at a prompt: ``sys.argv`` (recorded with a run)
    and ``env`` hold for this call only, and a ``SystemExit`` (argparse's usage errors, ``--help``)
    becomes the exit code a process would have had. What the test printed before is dropped, and
    what the command set in ``os.environ`` itself (``TF_CPP_MIN_LOG_LEVEL``, ``KERAS_BACKEND``) is
    undone, as a process's would be: it never reaches a later test or its child processes. Warnings
    and log records that a process would print on stderr are in ``err`` too (``stderr_as_a_process``)."""
    from xraybench.cli import main

    capture.readouterr()
    before = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp, stderr_as_a_process():
        mp.setattr(sys, "argv", ["xraybench", *args])
        for name, value in (env or {}).items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exc:
            if not isinstance(exc.code, int | None):  # sys.exit("message"): printed, exit code 1
                print(exc.code, file=sys.stderr)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    os.environ.clear()
    os.environ.update(before)
    out = capture.readouterr()
    return Result(code, out.out, out.err)


@contextmanager
def stderr_as_a_process() -> Iterator[None]:
    """Print on ``sys.stderr`` what a process would print there and pytest takes instead: warnings
    (pytest records them for its summary and ``recwarn``) and log records that reach no handler but
    Python's last-resort one (pytest's logging plugin handles them for ``caplog``). So ``err`` shows
    them, and a test of "one line" or "no secret in the output" sees them."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:  # warnings.showwarning's own
        (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))

    last_resort = _LastResort(pytests=list(logging.root.handlers))
    with warnings.catch_warnings():
        warnings.resetwarnings()  # then the filters a fresh interpreter starts with, not pytest's
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category, append=True)
        warnings.showwarning = show
        logging.root.addHandler(last_resort)
        try:
            yield
        finally:
            logging.root.removeHandler(last_resort)


class _LastResort(logging.Handler):
    """``logging.lastResort`` as a process has it: a record's bare message on stderr, WARNING and up,
    only where its logger's chain has no handler of its own (one with a ``NullHandler`` stays quiet; one
    with a stream handler prints once, through it). Put on the root logger; pytest's handlers there
    (``pytests``) do not count, since a process has none."""

    def __init__(self, pytests: list[logging.Handler]) -> None:
        super().__init__(logging.WARNING)
        self.pytests = pytests

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self and h not in self.pytests for h in logger.handlers):
                return  # handled, as in a process
            logger = logger.parent if logger.propagate else None
        sys.stderr.write(record.getMessage() + "\n")


class XB:
    """``xb(*args, env=...)`` runs ``xraybench ARGS`` in this process (``run_cli``): quick, and an
    unexpected exception fails the test with its traceback. ``xb.process(*args, env=..., timeout=...)``
    runs it as a process of its own, for the tests where the process is what is tested: signals
    and exit codes, pipes, what a fresh interpreter imports (``python_args=("-X", "importtime")``)."""

    def __init__(self, capture: pytest.CaptureFixture[str]) -> None:
        self._capture = capture

    def __call__(self, *args: str, env: Env | None = None) -> Result:
        return run_cli(self._capture, *args, env=env)

    def process(self, *args: str, env: Env | None = None, timeout: float = 600,
                python_args: Sequence[str] = ()) -> Result:
        done = run_xb(*args, env=env, timeout=timeout, python_args=python_args)
        return Result(done.returncode, done.stdout, done.stderr)


def one_line_error(code: int, out: str, err: str) -> str:
    """``err``, once the command failed as bad input does: exit code 2 and one ``error:`` line, no traceback."""
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def kill_group(proc: subprocess.Popen, graceful: bool = False) -> None:
    """SIGKILL ``proc``'s process group (its session) and reap ``proc``. ``graceful``: SIGTERM first, with
    10 s to exit, for processes that stop their own children on it (a Dask nanny its worker process)."""
    for sig in (signal.SIGTERM, signal.SIGKILL)[0 if graceful else 1:]:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # the group outlives its leader while a child still runs
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def start_xb(*args: str, env: Env | None = None, python_args: Sequence[str] = (), **kwargs) -> subprocess.Popen:
    """``python [PYTHON_ARGS] -m xraybench ARGS``, 250 columns wide unless ``env`` says otherwise."""
    merged = {**os.environ, "COLUMNS": "250", **(env or {})}
    return subprocess.Popen(
        [sys.executable, *python_args, "-m", "xraybench", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=kwargs.pop("stderr", subprocess.PIPE), text=True, start_new_session=True,
        env={k: v for k, v in merged.items() if v is not None}, **kwargs,
    )


def run_xb(*args: str, env: Env | None = None, timeout: float = 600,
           python_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Like subprocess.run, but a timeout or any error kills the whole process group."""
    proc = start_xb(*args, env=env, python_args=python_args)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``spawn(*xraybench_args, env=...)`` -> Popen; every group started is killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: Env | None = None, **kwargs) -> subprocess.Popen:
        proc = start_xb(*args, env=env, **kwargs)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            kill_group(proc)


def wait_until(condition: Callable[[], T], what: str, proc: subprocess.Popen | None = None,
               deadline_s: float = 120) -> T:
    """Poll until ``condition()`` is truthy and return its value; fail if ``proc`` ends first (with the tail of its
    output) or at the deadline, which is there only so that a broken run fails instead of hanging."""
    end = time.monotonic() + deadline_s
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended (code {proc.returncode}) while waiting for {what}:\n{out[-5000:]}")
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what} after {deadline_s:g}s")
        time.sleep(0.05)
    return value


def wait_for(path: Path, proc: subprocess.Popen | None = None, deadline_s: float = 120) -> None:
    """Wait for a file to appear (a checkpoint's ``.ready``); fail if ``proc`` ends first or at the deadline."""
    wait_until(path.exists, path.name, proc, deadline_s)


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs: a zombie (ended, its parent has not reaped it yet) does not."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def pid_gone(pid: int, deadline_s: float = 60) -> bool:
    """Poll until ``pid`` no longer runs (``alive``); False if it is still running at the deadline."""
    end = time.monotonic() + deadline_s
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True
