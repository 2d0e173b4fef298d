"""Time estimates never read "~0s" (issue 14: "at most ~0s left")."""

import pytest

from xraybench.progress import about, run_eta, trial_eta


@pytest.mark.parametrize("seconds, expected", [(0.0, "under 1s"), (0.49, "under 1s"), (0.5, "under 1s"), (0.99, "under 1s"),
                                               (1.0, "~1s"), (9.6, "~10s"), (185, "~3m 05s")])
def test_about(seconds, expected):
    assert about(seconds) == expected


def test_fast_epochs_and_trials_say_under_a_second():
    assert run_eta(1, 2, 0.2, None) == "at most 1 epoch, under 1s left (early stopping may end sooner)"
    assert trial_eta(4, 5, 0.3).endswith("under 1s left")
    for text in (run_eta(1, 2, 0.2, None), trial_eta(4, 5, 0.3)):
        assert "~0s" not in text
