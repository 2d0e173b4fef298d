import numpy as np
import pytest

from xraybench.metric_registry import expected_calibration_error
from xraybench.metrics import check_scores, evaluate, youden_threshold


def test_metrics_match_hand_computation():
    # 4 NORMAL, 6 PNEUMONIA; at 0.5: TN=3 FP=1 FN=2 TP=4
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.45, 0.6, 0.8, 0.9, 0.95])
    m = evaluate(y, p, 0.5)
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["per_class"]["PNEUMONIA"]["precision"] == pytest.approx(4 / 5)
    assert m["per_class"]["NORMAL"]["precision"] == pytest.approx(3 / 5)
    f1_p = 2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    f1_n = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    assert m["per_class"]["PNEUMONIA"]["f1"] == pytest.approx(f1_p)
    assert m["macro_f1"] == pytest.approx((f1_p + f1_n) / 2)
    assert m["balanced_accuracy"] == pytest.approx((4 / 6 + 3 / 4) / 2)
    # AUC by counting: pairs (pos, neg) with pos score > neg score
    pos, neg = p[y == 1], p[y == 0]
    auc = np.mean([[1.0 if a > b else 0.5 if a == b else 0.0 for b in neg] for a in pos])
    assert m["roc_auc"] == pytest.approx(auc)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["per_class"]["NORMAL"]["support"] == 4


def test_threshold_is_recorded_and_used():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.6, 0.65, 0.9])
    assert evaluate(y, p, 0.5)["accuracy"] == pytest.approx(0.75)
    m = evaluate(y, p, 0.62)
    assert m["accuracy"] == 1.0 and m["threshold"] == 0.62


def test_youden_threshold_separates():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    t = youden_threshold(y, p)
    assert 0.3 < t <= 0.35


def test_ece():
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    assert expected_calibration_error(np.array([0, 0]), np.array([0.95, 0.95])) == pytest.approx(0.95)


@pytest.mark.parametrize(
    "scores, message",
    [
        ([0.1, float("nan"), 0.3], "NaN"),
        ([0.1, 1.5, 0.3], "probabilities in [0, 1]"),
        ([[0.1, 0.9]] * 3, "shape (3, 2)"),
        ([0.1, 0.2], "shape (2,)"),
        ("abc", "not numeric"),
    ],
)
def test_check_scores_rejects_garbage(scores, message):
    with pytest.raises(ValueError) as err:
        check_scores(scores, 3)
    assert message in str(err.value)


def test_check_scores_accepts_column():
    assert check_scores([[0.1], [0.2], [0.9]], 3).shape == (3,)


def test_mcc_npv_ppv_match_scikit_learn_and_the_hand_computation():
    from sklearn.metrics import matthews_corrcoef

    # TN=3 FP=1 FN=2 TP=4 (as above)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.45, 0.6, 0.8, 0.9, 0.95])
    m = evaluate(y, p, 0.5)
    assert m["mcc"] == pytest.approx((4 * 3 - 1 * 2) / np.sqrt(5 * 6 * 4 * 5))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, p >= 0.5))
    assert m["npv"] == pytest.approx(3 / 5) and m["ppv"] == pytest.approx(4 / 5)
    assert evaluate(np.array([0, 1, 1]), np.array([0.9, 0.8, 0.7]), 0.5)["mcc"] == 0.0  # empty margin, as scikit-learn
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.random(200)
    assert evaluate(y, p, 0.4)["mcc"] == pytest.approx(matthews_corrcoef(y, p >= 0.4))
