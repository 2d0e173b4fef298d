"""Live progress: the words and ETAs, the bar, the held-back backend noise, and the loop's early-stopping state."""

import io
import os
import sys

import pytest

from xraybench import progress
from xraybench.progress import StopState, epoch_line, format_seconds, plural, run_eta, trial_eta


def test_plurals_and_durations():
    assert plural(1, "epoch") == "1 epoch" and plural(2, "epoch") == "2 epochs" and plural(0, "trial") == "0 trials"
    assert format_seconds(7.4) == "7s" and format_seconds(185) == "3m 05s" and format_seconds(3720) == "1h 02m"
    assert format_seconds(-3) == "0s"


@pytest.mark.parametrize(
    "epoch, epochs, stop, expected",
    [
        (20, 20, None, "last epoch done"),
        (1, 1, StopState(3, 0, 1), "last epoch done"),
        (2, 2, StopState(3, 1, 1), "last epoch done: best epoch 1, restoring its weights"),  # what is evaluated
        (5, 20, StopState(3, 3, 2, stopping=True), "early stopping: best epoch 2"),
        (5, 20, None, "at most 15 epochs, ~2m 30s left (early stopping may end sooner)"),
        (18, 20, StopState(3, 0, 18), "2 epochs, ~20s left"),  # patience outlasts the cap
        (19, 20, StopState(3, 1, 18), "1 epoch, ~10s left"),
        (5, 20, StopState(3, 1, 4), "~20s left if validation stops improving (2 epochs of patience left, best epoch 4); "
                                    "at most 15 epochs, ~2m 30s"),
    ],
)
def test_run_eta_reads_the_early_stopping_state(epoch, epochs, stop, expected):
    text = run_eta(epoch, epochs, 10.0, stop)
    assert text.startswith(expected)
    assert "~0s" not in text and "1 epochs" not in text


def test_epoch_line_prefers_the_measured_epoch_time():
    logs = {"loss": 0.5, "val_loss": 0.4, "val_auc": 0.9, "val_accuracy": 0.8,
            **StopState(3, 0, 2, epoch_seconds=5.0).as_logs()}
    line = epoch_line("m", 2, 10, logs, elapsed=60.0)  # 60s includes start-up; an epoch takes 5s
    assert line.startswith("  m epoch 2/10: loss 0.5000 val_loss 0.4000 val_auc 0.9000 val_acc 0.8000; 1m 00s elapsed")
    assert "~15s left if validation stops improving" in line and "at most 8 epochs, ~40s" in line
    assert "es_" not in line


def test_trial_eta():
    assert trial_eta(1, 1, 30) == "trial 1/1, 30s"
    assert trial_eta(2, 5, 60) == "trial 2/5, 1m 00s elapsed, ~1m 30s left"
    assert trial_eta(3, None, 61) == "3 trials in 1m 01s"


def test_live_only_on_a_terminal_unless_told(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert not progress.live()
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    assert progress.live()
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")
    assert not progress.live()


def test_epoch_bar_shows_batches_rate_eta_and_loss():
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    bar = progress.EpochBar("[red]m", epochs=3, steps=4, batch_size=8, console=console)
    bar.start(1)
    bar.advance(2, 0.6931)
    bar._progress.refresh()
    bar.advance(4, float("nan"))
    bar._progress.refresh()
    bar.stop()
    bar.stop()  # twice is harmless
    text = out.getvalue()
    assert "[red]m 1/3" in text  # a plugin's name is shown, not interpreted as markup
    assert "batch 2/4" in text and "img/s" in text and "loss 0.6931" in text and "left" in text
    assert "batch 4/4" in text and "validating" in text and "loss -" in text
    assert all(len(line) <= 80 for line in text.replace("\r", "\n").splitlines())


@pytest.mark.parametrize("verbose", [False, True])
def test_backend_startup_noise_is_held_back_unless_verbose(verbose, monkeypatch, capfd):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")  # what it sets: undone after the test
    monkeypatch.setenv(progress.VERBOSE_ENV, "1" if verbose else "")
    with progress.quiet_backend_startup():
        os.write(2, b"I0000 absl chatter\n")  # native code writes to the descriptor, not to sys.stderr
    os.write(2, b"after\n")
    with pytest.raises(ImportError), progress.quiet_backend_startup():
        os.write(2, b"real import error detail\n")
        raise ImportError("boom")
    err = capfd.readouterr().err
    assert ("absl chatter" in err) == verbose
    assert "after" in err and "real import error detail" in err  # a failure is never hidden


def test_keras_loop_sends_early_stopping_state_and_draws_the_bar(xray_data, monkeypatch, capsys):
    """One tiny epoch through fit_keras with the bar forced on (stdout is captured, not a terminal)."""
    from xraybench.data import load_dataset
    from xraybench.training.keras import fit_keras
    from xraybench.plugins import load_registry

    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    data = load_dataset(xray_data, image_size=16)
    spec = load_registry().model("baseline_cnn")
    seen = []
    params = {**spec.all_defaults(), "epochs": 1, "batch_size": 16}
    fit_keras(spec, data.splits.train, data.splits.val, params, 0, "float32",
              on_epoch=lambda e, n, logs: seen.append((e, n, logs)))
    (epoch, epochs, logs), = seen
    assert (epoch, epochs) == (1, 1) and {"loss", "val_loss"} <= set(logs)
    stop = StopState.from_logs(logs)
    assert stop.patience == params["patience"] and stop.best_epoch == 1 and stop.epoch_seconds > 0
    assert "batch " in capsys.readouterr().out


def test_run_in_a_pipe_prints_epoch_lines_only_and_no_backend_noise(xray_data, xb):
    """What CI and logs see: no bar, no per-batch lines, none of TensorFlow's start-up messages (a fresh
    interpreter, so that TensorFlow starts in it, writing to a pipe)."""
    env = {"TF_CPP_MIN_LOG_LEVEL": None, progress.PROGRESS_ENV: None, progress.VERBOSE_ENV: None,
           "XRAYBENCH_DATA": str(xray_data), "COLUMNS": "200"}
    out = xb.process("run", "--model", "baseline_cnn", "--image-size", "16", "--epochs", "1", env=env)
    assert out.code == 0, out.err[-2000:]
    assert "baseline_cnn epoch 1/1: loss" in out.out and "last epoch done" in out.out
    assert "batch " not in out.out and "1 epochs" not in out.out and "~0s" not in out.out
    for noise in ("absl", "oneDNN", "cuda", "I0000", "E0000"):
        assert noise not in out.err, out.err[-2000:]
