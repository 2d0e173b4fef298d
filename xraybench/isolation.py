"""Run plugin code in a child process that can be timed out, interrupted and never outlives us.

One mechanism for every command that calls plugin code (``run``, ``tune``'s trials,
``check``'s contract checks): a :class:`Child` runs calls one at a time in a
``spawn``-ed process and turns whatever happens into an :class:`Outcome`, whose status is the
run's (``records.RunStatus``):

- ``DONE``: the call returned; ``value`` is what it returned.
- ``ERROR``: it raised (``reason`` is one line, ``traceback`` the full text) or the
  process died (``reason`` names the exit code or signal).
- ``TIMEOUT``: no answer within the timeout; the process was killed.

Ctrl-C in the parent stops the child and re-raises ``KeyboardInterrupt``; SIGTERM (a
service manager, a batch scheduler, ``kill``) does the same through :class:`Terminated`, so
either way the run in flight is recorded as ``interrupted``. The child
ignores SIGINT (the parent owns Ctrl-C and stops it), and it dies with its parent on
every path: ``PR_SET_PDEATHSIG`` on Linux, plus a thread that polls the parent pid
everywhere, so a SIGKILL-ed ``xraybench`` leaves no training process behind holding
its output pipe. SIGINT and SIGTERM are blocked while the child starts, so a stop cannot
land between the fork and the moment its pid is known; it is delivered right after.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xraybench.records import RunStatus

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnProcess

POLL_SECONDS = 0.2
PAUSE_ENV = "XRAYBENCH_TEST_PAUSE"  # fault injection for tests: "phase[,phase...]=DIR"


@dataclass
class Outcome:
    status: RunStatus  # DONE, ERROR or TIMEOUT (INTERRUPTED where a worker was stopped)
    value: Any = None
    reason: str = ""
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.DONE


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # blocked while a child starts; both stop a run cleanly


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: a subclass, so every ``except
    KeyboardInterrupt`` handles it (Python's default, dying at once, would record nothing); its
    own type lets the record and the exit status (143) say which signal it was."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def stop_reason(exc: BaseException) -> str:
    """How a run was stopped, as its record says: ``stopped by SIGTERM`` or ``stopped by Ctrl-C``."""
    return "stopped by SIGTERM" if isinstance(exc, Terminated) else "stopped by Ctrl-C"


def stop_exit_code(exc: BaseException | None) -> int:
    """The shell's convention, 128 + the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + int(signal.SIGTERM) if isinstance(exc, Terminated) else 130


def interruptible() -> None:
    """Make SIGINT raise KeyboardInterrupt, and SIGTERM :class:`Terminated`, in this process,
    whatever we inherited: a process started with SIGINT ignored (a background job of a
    non-interactive shell, ``trap '' INT``, some CI runners) keeps it ignored, and Python then
    installs no KeyboardInterrupt handler. Commands that run plugin code call this first."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_terminated)


def checkpoint(phase: str) -> None:
    """Fault-injection hook for tests: where ``$XRAYBENCH_TEST_PAUSE`` is ``phase[,phase...]=DIR``
    and names ``phase``, write ``DIR/PHASE.ready`` (holding this pid) and wait until ``DIR/PHASE.go``
    exists, so a test can signal a process at a known point instead of sleeping. Inert otherwise."""
    phases, _, folder = os.environ.get(PAUSE_ENV, "").partition("=")
    if not folder or phase not in phases.split(","):
        return
    ready = os.path.join(folder, f"{phase}.ready")
    with open(ready + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(ready + ".tmp", ready)
    go = os.path.join(folder, f"{phase}.go")
    deadline = time.monotonic() + 600
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the child side ---------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the parent: the kernel's parent-death signal, and a polling thread."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    # The parent may have died before prctl took effect: we would already be adopted.
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:  # portable fallback (macOS has no PDEATHSIG)
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="xraybench-parent-watch", daemon=True).start()


def _reason(exc: BaseException, expected: tuple[type, ...]) -> str:
    from xraybench.errors import first_line
    from xraybench.training import one_line

    if isinstance(exc, expected):
        return first_line(exc)
    return f"unexpected {one_line(exc)}"


def _child_main(conn, parent_pid: int, expected: tuple[type, ...]) -> None:
    """Serve calls from the parent until it sends None or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # how the parent stops us, even if it was started with SIGTERM ignored
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))  # blocked while we were started
    _die_with_parent(parent_pid)
    checkpoint("start")
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError):
            return
        if call is None:
            return
        target, args = call
        try:
            message = Outcome(RunStatus.DONE, target(*args))
        except BaseException as exc:  # anything plugin code throws, even SystemExit
            message = Outcome(RunStatus.ERROR, reason=_reason(exc, expected), traceback=traceback.format_exc())
        checkpoint("saving")
        try:
            conn.send(message)
        except Exception as exc:  # an unpicklable result is the call's failure, not ours
            from xraybench.training import one_line

            conn.send(Outcome(RunStatus.ERROR, reason=f"cannot send the result back: {one_line(exc)}",
                              traceback=traceback.format_exc()))


# --- the parent side --------------------------------------------------------------------


DIED_GRACE_SECONDS = 10.0  # how long a child whose pipe closed gets to exit by itself before it is killed


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the model's process ended without a result"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"the model's process died with {name}{hint}"
    return f"the model's process exited with code {code} without a result"


class Child(contextlib.AbstractContextManager["Child"]):
    """A child process that runs calls one at a time; replaced after a timeout or a death.

    Reusing one child across calls keeps its imports and loaded data warm (a study's
    trials, a plugin's contract checks); :func:`run_once` uses a child for one call.
    """

    def __init__(self, expected: tuple[type, ...] = ()) -> None:
        self.expected = expected
        self._proc: SpawnProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(child_conn, os.getpid(), self.expected), daemon=True)
        can_block = hasattr(signal, "pthread_sigmask")
        if can_block:
            signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
        try:
            proc.start()
            self._proc, self._conn = proc, parent_conn
            checkpoint("spawned")
        finally:
            child_conn.close()
            if can_block:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))  # a pending Ctrl-C or SIGTERM lands here

    def call(self, target: Callable, args: tuple = (), timeout: float | None = None,
             on_tick: Callable[[], None] | None = None) -> Outcome:
        """Run ``target(*args)`` in the child (a picklable module-level function)."""
        try:
            if self._proc is None or not self._proc.is_alive():
                self._discard()
                self._start()
            proc, conn = self._proc, self._conn
            assert proc is not None and conn is not None  # both set by _start
            conn.send((target, args))
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if conn.poll(POLL_SECONDS):
                    try:
                        return conn.recv()
                    except (EOFError, OSError):  # the child closed the pipe by dying
                        return self._died()
                if not proc.is_alive():
                    if conn.poll(0.5):
                        continue
                    return self._died()
                if on_tick is not None:
                    on_tick()
                if deadline is not None and time.monotonic() > deadline:
                    self.stop()
                    return Outcome(RunStatus.TIMEOUT, reason=f"no result within {timeout:g}s; the process was killed")
        except BaseException:  # Ctrl-C or SIGTERM above all: the child is stopped before it propagates
            self.stop()
            raise

    def _died(self) -> Outcome:
        proc = self._proc
        assert proc is not None  # only a started child dies
        proc.join(timeout=DIED_GRACE_SECONDS)
        code = proc.exitcode
        self.stop()  # a child that closed its pipe but lives on is killed, not left behind
        return Outcome(RunStatus.ERROR, reason=describe_exit(code))

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def stop(self) -> None:
        """Terminate (then kill) the child, and wait for it."""
        proc = self._proc
        if proc is not None and proc.pid is not None:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self._discard()

    def close(self) -> None:
        """Ask the child to finish, then make sure it has."""
        proc, conn = self._proc, self._conn
        if proc is not None and conn is not None and proc.is_alive():
            try:
                conn.send(None)
                proc.join(timeout=10)
            except (OSError, ValueError):
                pass
        self.stop()

    def __exit__(self, *exc: Any) -> None:  # (AbstractContextManager's __enter__ gives self)
        self.close()


def run_once(target: Callable, args: tuple = (), timeout: float | None = None,
             expected: tuple[type, ...] = (), on_tick: Callable[[], None] | None = None) -> Outcome:
    """Run one call in a fresh child process that ends with it."""
    with Child(expected) as child:
        return child.call(target, args, timeout, on_tick)
