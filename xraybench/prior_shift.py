"""A third operating point: the threshold moved to the test set's estimated class prior.

Models are trained on train (about 26% NORMAL) and their validation split is carved from train,
but the Kermany test set is 37.5% NORMAL: the class prior shifts between validation and test
while the images of each class look alike (label shift). A threshold chosen on validation is
tuned to validation's prior. Under label shift the Bayes decision on test only needs the test
prior, and that can be estimated from the *unlabeled* test scores:

1. Calibrate on validation (Platt scaling: a 1-D logistic regression of the validation labels on
   logit(score)). EM below treats scores as posteriors P(PNEUMONIA | image); label smoothing,
   augmentation, early stopping on a loss and class imbalance leave raw network scores far from
   calibrated, and EM on uncalibrated scores converges to a wrong prior.
2. Estimate the test prior by EM (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs
   of a classifier to new a priori probabilities: a simple procedure", Neural Computation 14),
   starting from the validation prior.
3. Cross-check with Black-Box Shift Estimation (Lipton, Wang & Smola 2018, "Detecting and
   correcting for label shift with black box predictors", ICML): the validation confusion matrix
   at 0.5 and the test predicted-class rates. Recorded beside EM, never used to decide.
4. Decide "prior-adjusted posterior >= 0.5" and express it as a threshold on the raw score, so
   that ``metrics.evaluate(test_labels, test_scores, threshold)`` reads the metrics there.

This operating point is *transductive*: it reads the unlabeled test scores (never the test
labels: ``estimate`` has no parameter for them), so it is reported on its own, never mixed with
the validation-chosen threshold. numpy only; nothing here imports Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "platt_calibration+em_prior_on_unlabeled_test"  # Saerens et al. 2002; transductive
EPS = 1e-7  # scores are clipped to [EPS, 1 - EPS] before logit: float32 sigmoids saturate at 0 and 1
TOLERANCE = 1e-8  # EM stops when the prior moves less than this in one step
MAX_ITERATIONS = 10_000
_NEWTON_STEPS = 100


@dataclass(frozen=True)
class PriorShift:
    """The estimate and the operating point it gives. Priors are P(PNEUMONIA)."""

    estimated_prior: float  # EM on the calibrated test posteriors: the one used
    bbse_prior: float | None  # Black-Box Shift Estimation, clipped to [0, 1]; None when undefined (TPR == FPR)
    validation_prior: float
    threshold: float  # on the raw score: predict PNEUMONIA when score >= threshold
    method: str
    iterations: int  # EM iterations
    converged: bool

    def to_record(self, true_prior: float | None) -> dict[str, Any]:
        """The run record's ``prior_shift`` field; ``true_prior`` (the test set's real PNEUMONIA
        share) is stored beside the estimate for the reader, never used to choose anything."""
        return {"estimated_prior": self.estimated_prior, "bbse_prior": self.bbse_prior,
                "validation_prior": self.validation_prior, "true_prior": true_prior, "threshold": self.threshold,
                "method": self.method, "iterations": self.iterations, "converged": self.converged}


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Platt:
    """P(PNEUMONIA | score) = sigmoid(slope * logit(score) + intercept), fitted on validation."""

    slope: float
    intercept: float

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return _sigmoid(self.slope * _logit(scores) + self.intercept)


def fit_platt(labels: np.ndarray, scores: np.ndarray) -> Platt:
    """Platt scaling by Newton's method with step halving (convex, so deterministic and exact).

    Targets are Platt's (1999) smoothed ones, (n+ + 1)/(n+ + 2) and 1/(n- + 2): with validation
    classes separable by the score the plain maximum likelihood slope is infinite; these keep it
    finite and matter little at hundreds of images."""
    y = np.asarray(labels).astype(int).reshape(-1)
    x = _logit(np.asarray(scores, dtype=np.float64).reshape(-1))
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    features = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])

    def loss(w: np.ndarray) -> float:
        z = features @ w
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    current = loss(w)
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(features @ w)
        grad = features.T @ (p - t)
        hess = (features * (p * (1 - p))[:, None]).T @ features + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-10:
            trial = w - size * step
            value = loss(trial)
            if value <= current:
                break
            size /= 2
        else:
            break
        w, current = trial, value
        if float(np.max(np.abs(size * step))) < 1e-10:
            break
    return Platt(float(w[0]), float(w[1]))


def em_prior(posteriors: np.ndarray, prior_of_posteriors: float, tol: float = TOLERANCE,
             max_iterations: int = MAX_ITERATIONS) -> tuple[float, int, bool]:
    """Saerens et al.'s EM: (test prior, iterations, converged), from posteriors made under
    ``prior_of_posteriors`` (here: the validation prior), starting there. Each step re-weights
    every posterior by new prior / old prior and takes their mean as the new prior."""
    q = np.asarray(posteriors, dtype=np.float64)
    base = min(max(prior_of_posteriors, EPS), 1 - EPS)
    prior = base
    for i in range(1, max_iterations + 1):
        pos = q * (prior / base)
        neg = (1 - q) * ((1 - prior) / (1 - base))
        total = pos + neg
        new = float(np.mean(np.divide(pos, total, out=np.full_like(q, prior), where=total > 0)))
        if abs(new - prior) < tol:
            return new, i, True
        prior = new
    return prior, max_iterations, False


def bbse_prior(val_labels: np.ndarray, val_scores: np.ndarray, test_scores: np.ndarray,
               cut: float = 0.5) -> float | None:
    """Black-Box Shift Estimation for two classes: with the validation confusion matrix of the
    hard classifier "score >= cut", solve C w = mu for the test prior; binary, that is
    (test positive rate - FPR) / (TPR - FPR). Clipped to [0, 1]; None when TPR == FPR (the
    confusion matrix is singular) or validation lacks a class."""
    y = np.asarray(val_labels).astype(int).reshape(-1)
    hard = np.asarray(val_scores, dtype=np.float64).reshape(-1) >= cut
    if not (y == 1).any() or not (y == 0).any():
        return None
    tpr, fpr = float(hard[y == 1].mean()), float(hard[y == 0].mean())
    if math.isclose(tpr, fpr, abs_tol=1e-12):
        return None
    rate = float(np.mean(np.asarray(test_scores, dtype=np.float64) >= cut))
    return min(max((rate - fpr) / (tpr - fpr), 0.0), 1.0)


def raw_threshold(platt: Platt, validation_prior: float, test_prior: float) -> float | None:
    """The raw score at which the posterior adjusted to ``test_prior`` crosses 0.5:
    slope * logit(s) + intercept + logit(test prior) - logit(validation prior) = 0, solved for s
    (clipped to [EPS, 1 - EPS], where the raw and the clipped decisions agree). None when the
    calibration slope is not positive: then no "score >= t" rule is that decision."""
    if not platt.slope > 0:
        return None
    shift = float(_logit(test_prior) - _logit(validation_prior))
    z = -(platt.intercept + shift) / platt.slope
    return float(min(max(float(_sigmoid(z)), EPS), 1 - EPS))


def estimate(val_labels: Any, val_scores: Any, test_scores: Any, tol: float = TOLERANCE,
             max_iterations: int = MAX_ITERATIONS) -> PriorShift:
    """The prior-shift operating point from validation labels and scores and the *unlabeled* test
    scores (there is no parameter for test labels). Deterministic: no randomness anywhere.

    A validation split with one class, or scores that do not rank the classes (calibration slope
    <= 0), leaves nothing to estimate with: the threshold stays at 0.5 and ``method`` says why."""
    y = np.asarray(val_labels).astype(int).reshape(-1)
    v = np.asarray(val_scores, dtype=np.float64).reshape(-1)
    s = np.asarray(test_scores, dtype=np.float64).reshape(-1)
    if y.shape != v.shape:
        raise ValueError(f"{len(y)} validation labels but {len(v)} validation scores")
    validation_prior = float(y.mean()) if len(y) else 0.5
    bbse = bbse_prior(y, v, s)
    if len(np.unique(y)) < 2 or len(s) == 0:
        return PriorShift(validation_prior, bbse, validation_prior, 0.5,
                          f"{METHOD}: not estimated (validation has one class or no test scores); threshold 0.5", 0, False)
    platt = fit_platt(y, v)
    prior, iterations, converged = em_prior(platt(s), validation_prior, tol, max_iterations)
    threshold = raw_threshold(platt, validation_prior, prior)
    if threshold is None:
        return PriorShift(prior, bbse, validation_prior, 0.5,
                          f"{METHOD}: calibration slope {platt.slope:.3g} <= 0; threshold 0.5", iterations, converged)
    return PriorShift(prior, bbse, validation_prior, threshold, METHOD, iterations, converged)


def record_fields(val_labels: Any, val_scores: Any, test_labels: Any, test_scores: Any,
                  seed: int = 0, resamples: int = 1000) -> dict[str, Any]:
    """The three run-record fields of this operating point: ``prior_shift`` (the estimate, with the
    true test prior beside it), ``metrics_at_prior_shift`` and ``intervals_at_prior_shift``. The
    test labels only score the threshold and fill ``true_prior``; the estimate never sees them."""
    from xraybench.metrics import evaluate
    from xraybench.stats import bootstrap_intervals

    shift = estimate(val_labels, val_scores, test_scores)
    labels = np.asarray(test_labels).astype(int).reshape(-1)
    true_prior = float(labels.mean()) if len(labels) else None
    return {
        "metrics_at_prior_shift": evaluate(labels, test_scores, shift.threshold),
        "intervals_at_prior_shift": bootstrap_intervals(labels, test_scores, shift.threshold, resamples=resamples,
                                                        seed=seed),
        "prior_shift": shift.to_record(true_prior),
    }
