"""What a user sees while a model trains: a live bar inside each epoch, honest ETAs, no backend noise.

Why a module of its own: the run happens in a child process (``runner``), the Keras loop
lives in ``training/keras.py`` and the CLI owns the flags; the wording and the arithmetic live
here once. Everything is plain Python until a bar is drawn (rich is imported lazily), so
importing it costs nothing on commands that do not train.

- The bar (rich's own columns: batches, images/s, ETA from the measured step rate, running loss) is drawn only
  when stdout is a terminal; in pipes, CI and captured test output there is one line per
  epoch and nothing per batch. ``XRAYBENCH_PROGRESS=0`` turns the bar off, ``=1`` forces it.
- The run-level ETA reads the early-stopping state: how many epochs until patience runs out
  if validation loss stops improving, and the cap if it keeps improving.
- TensorFlow's and absl's start-up chatter (written to the process's stderr before any log
  level applies) is held back unless ``--verbose`` (``XRAYBENCH_VERBOSE=1``); if the import
  fails, what was held back is shown.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

VERBOSE_ENV = "XRAYBENCH_VERBOSE"
PROGRESS_ENV = "XRAYBENCH_PROGRESS"


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_seconds(seconds: float) -> str:
    """``8s``, ``3m 05s``, ``1h 02m``: short and fixed for durations people read at a glance."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def about(seconds: float) -> str:
    """An estimate: ``~3m 05s``, or ``under 1s`` where rounding would say the nonsense ``~0s``."""
    return "under 1s" if seconds < 1 else f"~{format_seconds(seconds)}"


# --- verbosity and the backend's start-up noise ----------------------------------------


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """``--verbose``: child processes inherit it through the environment."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_backend_startup() -> Iterator[None]:
    """Hold back what native code writes to stderr while the backend is imported.

    TensorFlow's absl messages ("All log messages before absl::InitializeLog()...", the CUDA
    probes, oneDNN notes) are written by C++ straight to file descriptor 2 before any log level
    applies, so only a descriptor-level redirect keeps them off the user's screen. On failure
    the held-back text is written out, so a real import error is never hidden.
    """
    if verbose():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (some embedders)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                text = held.read().decode("utf-8", "replace")
                if text:
                    sys.stderr.write(text)
    with contextlib.suppress(Exception):
        from absl import logging as absl_logging  # comes with TensorFlow

        absl_logging.set_verbosity(absl_logging.ERROR)


# --- ETAs -------------------------------------------------------------------------------


@dataclass
class StopState:
    """Early stopping as Keras' EarlyStopping sees it after an epoch."""

    patience: int
    wait: int  # epochs since validation loss last improved
    best_epoch: int  # 1-based
    stopping: bool = False  # EarlyStopping has just ended training
    epoch_seconds: float | None = None  # mean measured epoch time (training + validation)

    def as_logs(self) -> dict[str, float]:
        """Passed to ``on_epoch`` beside Keras' logs, under names no metric uses."""
        logs = {"es_patience": float(self.patience), "es_wait": float(self.wait),
                "es_best_epoch": float(self.best_epoch), "es_stopping": float(self.stopping)}
        if self.epoch_seconds is not None:
            logs["epoch_seconds"] = float(self.epoch_seconds)
        return logs

    @classmethod
    def from_logs(cls, logs: dict[str, float]) -> StopState | None:
        if "es_patience" not in logs:
            return None
        return cls(int(logs["es_patience"]), int(logs["es_wait"]), int(logs["es_best_epoch"]),
                   bool(logs.get("es_stopping")), logs.get("epoch_seconds"))


def run_eta(epoch: int, epochs: int, seconds_per_epoch: float, stop: StopState | None) -> str:
    """What is left of a training run, after ``epoch`` of at most ``epochs``.

    With the early-stopping state: the epochs until patience runs out if validation loss does
    not improve again (the likely end) and, when later, the cap; without it, the cap alone.
    """
    left = max(0, epochs - epoch)
    if stop is not None and stop.stopping:
        return f"early stopping: best epoch {stop.best_epoch}, restoring its weights"
    if left == 0:  # EarlyStopping restores its best epoch at the end of training, cap or not
        best = stop.best_epoch if stop is not None else epoch
        return "last epoch done" if best >= epoch else f"last epoch done: best epoch {best}, restoring its weights"
    cap = f"{plural(left, 'epoch')}, {about(left * seconds_per_epoch)}"
    if stop is None:
        return f"at most {cap} left (early stopping may end sooner)"
    until_stop = max(1, stop.patience - stop.wait)
    if until_stop >= left:
        return f"{cap} left"
    return (f"{about(until_stop * seconds_per_epoch)} left if validation stops improving "
            f"({plural(until_stop, 'epoch')} of patience left, best epoch {stop.best_epoch}); at most {cap}")


EPOCH_KEYS = {"loss": "loss", "val_loss": "val_loss", "val_auc": "val_auc", "val_accuracy": "val_acc"}


def epoch_line(model: str, epoch: int, epochs: int, logs: dict[str, float], elapsed: float) -> str:
    """One line per epoch: metrics, time so far and the run-level ETA. Plain text (no markup).

    The ETA uses the measured epoch time when the training loop sends it (start-up excluded),
    else the elapsed time per epoch.
    """
    parts = " ".join(f"{short} {logs[k]:.4f}" for k, short in EPOCH_KEYS.items() if k in logs)
    stop = StopState.from_logs(logs)
    per_epoch = stop.epoch_seconds if stop is not None and stop.epoch_seconds else elapsed / max(epoch, 1)
    eta = run_eta(epoch, epochs, per_epoch, stop)
    return f"  {model} epoch {epoch}/{epochs}: {parts}; {format_seconds(elapsed)} elapsed; {eta}"


# --- the bar inside an epoch -------------------------------------------------------------


def live() -> bool:
    """Draw a bar? Only on a terminal, unless XRAYBENCH_PROGRESS says otherwise."""
    flag = os.environ.get(PROGRESS_ENV, "")
    if flag in ("0", "1"):
        return flag == "1"
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class EpochBar:
    """A rich bar for one epoch's batches: done/total (``MofNCompleteColumn``), images/s, the time
    left from rich's measured step rate (``TimeRemainingColumn``), loss.

    ``start(epoch)``, ``advance(batches_done, loss)``, ``stop()``; transient, so what stays on
    screen is the epoch line printed after it. The bar graphic is left out below 100 columns.
    """

    def __init__(self, label: str, epochs: int, steps: int, batch_size: int, console=None) -> None:
        self.label, self.epochs, self.steps, self.batch_size = label, epochs, steps, batch_size
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, epoch: int) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.stop()
        console = self.console or Console(force_terminal=os.environ.get(PROGRESS_ENV) == "1" or None)
        # The bar itself only where there is room: at 80 columns the counts say as much.
        bar = [BarColumn(bar_width=16)] if console.width >= 100 else []
        self._progress = progress = Progress(
            TextColumn("  {task.description}"), *bar, TextColumn("batch"), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(compact=True, elapsed_when_finished=True),
            TextColumn("{task.fields[phase]}  {task.fields[loss]}"),
            console=console, transient=True, refresh_per_second=4,
        )
        self._task = progress.add_task(f"{escape(self.label)} {epoch}/{self.epochs}", total=self.steps,
                                       rate="- img/s", phase="left", loss="loss -")
        progress.start()

    def advance(self, done: int, loss: float | None) -> None:
        if self._progress is None or self._task is None:  # (set together by start)
            return
        elapsed = self._progress.tasks[0].elapsed or 0.0
        self._progress.update(
            self._task, completed=min(done, self.steps),
            rate=f"{done * self.batch_size / elapsed:.0f} img/s" if elapsed > 0 else "- img/s",
            phase="left" if done < self.steps else "validating",  # the time then is the elapsed time
            loss="loss -" if loss is None or not math.isfinite(loss) else f"loss {loss:.4f}",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def trial_eta(done: int, total: int | None, elapsed: float) -> str:
    """For ``tune``: trials done and, when the count is fixed, the time left at the mean trial time."""
    if not total:
        return f"{plural(done, 'trial')} in {format_seconds(elapsed)}"
    left = max(0, total - done)
    if not left or not done:
        return f"trial {done}/{total}, {format_seconds(elapsed)}"
    return f"trial {done}/{total}, {format_seconds(elapsed)} elapsed, {about(elapsed / done * left)} left"
