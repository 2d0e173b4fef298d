"""A row's p tests the ΔAcc beside it: the exact McNemar test where both rows are one run each,
a paired bootstrap of the difference of means where a row has several seeds (before, such rows
showed the McNemar p of their lowest seeds, which tested another difference)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recordfactory import make_record

from xraybench import leaderboard as lb
from xraybench import stats
from xraybench.leaderboard.reference import BOOTSTRAP, MCNEMAR

ROOT = Path(__file__).resolve().parents[2]


def _rows(pairs):
    scores = {r["run_id"]: s for r, s in pairs}
    return {r.model: r for r in lb.build_rows([r for r, _ in pairs], scores_loader=scores.get)}


def _runs(model, shifts, n=300):
    return [make_record(model, seed, accuracy_shift=shift, n=n) for seed, shift in enumerate(shifts, 1)]


def test_rows_of_several_seeds_are_tested_on_their_means_not_their_lowest_seeds():
    """The two rows' seeds trade places: their means are close, their lowest seeds far apart."""
    ref, other = _runs("baseline_cnn", (0.0, -0.3)), _runs("other", (-0.3, 0.0))
    rows = _rows(ref + other)
    row = rows["other"]
    lowest_seeds = stats.compare_runs(ref[0][1], other[0][1], auc=False)["mcnemar"]["p_value"]
    assert lowest_seeds < 0.001  # what the row showed before, beside a ΔAcc near 0
    assert abs(row.delta_accuracy) < 0.02 and row.p_test == BOOTSTRAP and row.p_value > 0.2
    y = ref[0][1]["test_labels"]
    direct = stats.paired_mean_difference(y, [[(s["test_scores"], 0.5)] for _, s in ref],
                                          [[(s["test_scores"], 0.5)] for _, s in other])
    assert row.p_value == direct["p_value"] and direct["difference"] == pytest.approx(row.delta_accuracy, abs=1e-12)
    footer = lb.footnote(list(rows.values()))
    assert "paired bootstrap of the difference of their means" in footer and "McNemar" not in footer
    assert "conservative when both rows have several seeds" in footer
    written = {r["model"]: r for r in json.loads(lb.render_json(list(rows.values()), []))["rows"]}
    assert written["other"]["p_vs_baseline_test"] == BOOTSTRAP and written["other"]["p_vs_baseline"] == row.p_value
    assert written["baseline_cnn"]["p_vs_baseline_test"] is None


def test_rows_of_one_run_each_keep_the_exact_mcnemar_test():
    ref, other = _runs("baseline_cnn", (0.0,)), _runs("other", (-0.1,))
    rows = _rows(ref + other)
    exact = stats.compare_runs(ref[0][1], other[0][1], auc=False)["mcnemar"]["p_value"]
    assert rows["other"].p_test == MCNEMAR and rows["other"].p_value == exact
    assert rows["baseline_cnn"].p_test is None and lb.p_cell(rows["baseline_cnn"]) == "ref"
    footer = lb.footnote(list(rows.values()))
    assert "exact McNemar test of the two runs" in footer and "paired bootstrap" not in footer


def test_a_row_of_several_seeds_against_a_reference_of_one_is_bootstrapped_too():
    rows = _rows(_runs("baseline_cnn", (0.0,)) + _runs("other", (0.0, 0.05, 0.1)))
    assert rows["other"].p_test == BOOTSTRAP and rows["other"].p_value is not None


def test_a_row_of_repeats_of_one_seed_is_tested_on_their_mean():
    """Two runs of seed 1 (a row's ``run --force``, or runs whose scores differ): ΔAcc is their mean,
    so p is not the McNemar p of the first of them (review: ΔAcc -0.18 beside p 1.0)."""
    ref = _runs("baseline_cnn", (0.0,))
    first, second = make_record("other", 1, accuracy_shift=0.0, n=300), make_record("other", 1, accuracy_shift=-0.3, n=300)
    row = _rows(ref + [first, second])["other"]
    y = ref[0][1]["test_labels"]
    direct = stats.paired_mean_difference(y, [[(ref[0][1]["test_scores"], 0.5)]],
                                          [[(first[1]["test_scores"], 0.5), (second[1]["test_scores"], 0.5)]])
    assert row.p_test == BOOTSTRAP and row.p_value == direct["p_value"] < 0.01
    assert direct["difference"] == pytest.approx(row.delta_accuracy, abs=1e-12)


def test_a_reference_of_several_seeds_against_a_row_of_one_run_is_bootstrapped():
    rows = _rows(_runs("baseline_cnn", (0.0, 0.05, 0.1)) + _runs("other", (0.0,)))
    assert rows["other"].p_test == BOOTSTRAP and rows["other"].p_value is not None


def test_p_does_not_depend_on_the_order_a_row_stored_its_images_in():
    ref, other = _runs("baseline_cnn", (0.0, -0.1)), _runs("other", (-0.1, 0.0))
    before = _rows(ref + other)["other"].p_value
    for _, scores in other:
        for key in ("test_ids", "test_labels", "test_scores"):
            scores[key] = scores[key][::-1]
    assert _rows(ref + other)["other"].p_value == before


def test_scores_on_other_images_leave_p_out_and_say_why():
    ref, other = _runs("baseline_cnn", (0.0, 0.1)), _runs("other", (0.0, 0.1))
    other[1][1]["test_ids"] = [f"x{i}" for i in other[1][1]["test_ids"]]
    row = _rows(ref + other)["other"]
    assert row.p_value is None and row.p_note == "the row's and the reference row's runs were scored on different test images"


def test_a_clearly_better_row_is_significant_and_identical_rows_are_not():
    y = np.arange(400) % 2
    good = np.where(y == 1, 0.9, 0.1)
    noisy = np.where(np.arange(400) % 5 == 0, 1 - good, good)  # wrong on a fifth of the images
    better = stats.paired_mean_difference(y, [[(noisy, 0.5)], [(noisy, 0.5)]], [[(good, 0.5)], [(good, 0.5)]])
    assert better["difference"] == pytest.approx(0.2) and better["low"] > 0.1 and better["p_value"] == 2 / 1001
    same = stats.paired_mean_difference(y, [[(good, 0.5)]], [[(good, 0.5)]])
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_images_are_paired_so_identical_imperfect_rows_differ_by_nothing():
    """Rows with the same scores differ by exactly 0 on every resample only if both rows see the
    same image resample and the same seed draws (review: unpaired images or shared seed draws passed
    a test on a perfect classifier)."""
    y = np.arange(600) % 2
    good = np.where(y == 1, 0.9, 0.1)

    def wrong_on(k):
        s = good.copy()
        s[:k] = 1 - s[:k]
        return s

    one = stats.paired_mean_difference(y, [[(wrong_on(120), 0.5)]], [[(wrong_on(120), 0.5)]])
    assert one == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    # Each seed of B one point better than A's seed of the same number, the seeds ten points apart:
    # seeds are not paired across rows, so their spread, not the one point, decides p.
    a = [[(wrong_on(k), 0.5)] for k in (30, 90, 150)]
    b = [[(wrong_on(k - 6), 0.5)] for k in (30, 90, 150)]
    spread = stats.paired_mean_difference(y, a, b)
    assert spread["difference"] == pytest.approx(0.01) and spread["p_value"] > 0.3


def test_the_interval_follows_its_level_and_a_metric_without_a_bootstrap_is_refused():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    a, b = [[(rng.random(300), 0.5)] for _ in range(3)], [[(rng.random(300), 0.5)] for _ in range(3)]
    wide, narrow = stats.paired_mean_difference(y, a, b), stats.paired_mean_difference(y, a, b, level=0.5)
    assert wide["low"] < narrow["low"] <= narrow["high"] < wide["high"]
    assert wide["p_value"] == narrow["p_value"] and wide["difference"] == narrow["difference"]
    with pytest.raises(ValueError, match="bootstrapped registry metric"):
        stats.paired_mean_difference(y, a, b, key="no_such_metric")


def _null_rejections(ka, kb, seed_sd):
    """The committed calibration benchmark's simulation, small: how often p < 0.05 when both rows
    come from one process."""
    spec = importlib.util.spec_from_file_location("paired_test_calibration", ROOT / "benchmarks" / "paired_test_calibration.py")
    calibration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibration)
    return calibration.rates(ka, kb, seed_sd, sims=150, seed=7, n=300, resamples=200)[0]


def test_the_bootstrap_is_conservative_for_rows_of_several_seeds():
    """Its documented calibration (reference.PAIRED_TESTS): with three seeds a row, under the null,
    it rejects at most about as often as its level, with or without a seed effect."""
    assert _null_rejections(3, 3, seed_sd=0.0) <= 0.03
    assert _null_rejections(3, 3, seed_sd=0.3) <= 0.08


@settings(max_examples=40, deadline=None)
@given(st.integers(20, 120), st.integers(1, 4), st.integers(1, 4), st.integers(0, 10_000))
def test_the_difference_is_that_of_the_means_and_p_is_never_zero(n, k_a, k_b, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    seeds_a = [[(rng.random(n), 0.5)] for _ in range(k_a)]
    seeds_b = [[(rng.random(n), float(rng.uniform(0.3, 0.7)))] for _ in range(k_b)]
    out = stats.paired_mean_difference(y, seeds_a, seeds_b, resamples=200)

    def mean_accuracy(seeds):
        return np.mean([np.mean((s >= t) == y) for [(s, t)] in seeds])

    assert out["difference"] == pytest.approx(mean_accuracy(seeds_b) - mean_accuracy(seeds_a), abs=1e-12)
    assert 2 / 201 <= out["p_value"] <= 1.0 and out["low"] <= out["high"]
