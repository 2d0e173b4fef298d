import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from xraybench.harness import choose_threshold
from xraybench.stats import bootstrap_intervals, compare_runs, mcnemar_exact, paired_auc_bootstrap


def _data(n=624, seed=0, noise=0.7):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.625).astype(int)
    s = np.clip(y * 0.4 + rng.random(n) * noise, 0, 1)
    return y, s


def test_point_estimates_match_scikit_learn():
    y, s = _data()
    s = np.round(s, 2)  # force ties: the weighted Mann-Whitney AUC must still agree
    iv = bootstrap_intervals(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert iv["roc_auc"]["estimate"] == pytest.approx(roc_auc_score(y, s))
    assert iv["accuracy"]["estimate"] == pytest.approx((pred == y).mean())
    assert iv["normal_f1"]["estimate"] == pytest.approx(f1_score(y, pred, pos_label=0))
    assert iv["macro_f1"]["estimate"] == pytest.approx(f1_score(y, pred, average="macro"))
    for m in ("accuracy", "roc_auc", "sensitivity", "specificity", "pneumonia_f1"):
        assert iv[m]["low"] < iv[m]["estimate"] < iv[m]["high"]


def test_interval_width_is_about_what_theory_says():
    # accuracy near 0.88 on 624 images: +-2.6 points (normal approximation)
    rng = np.random.default_rng(1)
    y = (rng.random(624) < 0.625).astype(int)
    correct = rng.random(624) < 0.88
    s = np.where(correct, y, 1 - y).astype(float)
    iv = bootstrap_intervals(y, s, 0.5, resamples=2000)["accuracy"]
    half = (iv["high"] - iv["low"]) / 2
    assert 0.020 < half < 0.032


def test_seeded_and_reproducible():
    y, s = _data()
    assert bootstrap_intervals(y, s, seed=3) == bootstrap_intervals(y, s, seed=3)
    assert bootstrap_intervals(y, s, seed=3) != bootstrap_intervals(y, s, seed=4)


def test_mcnemar_exact_by_hand():
    # 10 discordant pairs, 8 vs 2: p = 2 * P(X <= 2), X ~ Bin(10, 0.5) = 2 * 56/1024
    a = np.array([True] * 8 + [False] * 2 + [True] * 20)
    b = np.array([False] * 8 + [True] * 2 + [True] * 20)
    result = mcnemar_exact(a, b)
    assert (result["only_a"], result["only_b"]) == (8, 2)
    assert result["p_value"] == pytest.approx(2 * 56 / 1024)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_paired_auc_detects_a_real_difference_and_not_a_null_one():
    y, s = _data(noise=0.9)
    better = np.clip(s + 0.3 * y, 0, 1)
    real = paired_auc_bootstrap(y, s, better)
    assert real["difference"] > 0 and real["low"] > 0 and real["p_value"] < 0.01
    assert real["p_value"] == 2 / 1001  # every resample on one side: the smallest p 1,000 resamples can give, never 0
    same = paired_auc_bootstrap(y, s, s)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_compare_runs_aligns_by_image_id():
    y, s = _data(n=50)
    a = {"test_ids": [str(i) for i in range(50)], "test_labels": y.tolist(), "test_scores": s.tolist()}
    order = np.random.default_rng(0).permutation(50)
    b = {"test_ids": [str(i) for i in order], "test_labels": y[order].tolist(), "test_scores": s[order].tolist()}
    result = compare_runs(a, b)
    assert result["mcnemar"]["p_value"] == 1.0 and result["auc"]["difference"] == pytest.approx(0.0)
    c = {**b, "test_ids": [f"x{i}" for i in range(50)]}
    with pytest.raises(ValueError, match="different test images"):
        compare_runs(a, c)


def test_operating_points_come_from_validation_scores():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99])
    target = choose_threshold(y, s, 0.9)
    assert ((s[y == 1] >= target["value"]).mean()) >= 0.9
    assert target["method"] == "sensitivity>=0.9_on_validation"
    assert choose_threshold(y, s, None)["method"] == "youden_j_on_validation"
