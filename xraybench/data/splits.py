"""Validation splits carved from train, stratified by class and grouped by patient."""

from __future__ import annotations

import numpy as np

from xraybench.records import DEFAULT_SEED, DEFAULT_VAL_FRACTION  # noqa: F401  (re-exported)
from xraybench.specs import ImageSet


def carve_validation(train: ImageSet, fraction: float = DEFAULT_VAL_FRACTION,
                     seed: int = DEFAULT_SEED) -> tuple[ImageSet, ImageSet]:
    """Split ``train`` into (train, val) so that no patient has images on both sides.

    Uses scikit-learn's StratifiedGroupKFold with ``round(1 / fraction)`` folds and
    keeps the first fold as validation, so the class ratio of both parts stays close
    to the original and the split is fixed by ``seed``.
    """
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"validation fraction must be in (0, 0.5), got {fraction}")
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1.0 / fraction))
    groups = np.asarray(train.groups)
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"only {len(np.unique(groups))} patients in train: too few for a {fraction:.0%} validation split")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, val = next(splitter.split(np.zeros(len(train)), train.labels, groups))
    return train.subset(np.sort(keep)), train.subset(np.sort(val))
