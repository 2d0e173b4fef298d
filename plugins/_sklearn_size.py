"""Counting the learned numbers of a fitted scikit-learn model, for the leaderboard's size column."""

from __future__ import annotations

from typing import Any

import numpy as np


def count_parameters(model: Any) -> int | None:
    steps = getattr(model, "steps", None)
    if steps:
        counts = [count_parameters(step) for _, step in steps]
        return sum(c for c in counts if c) or None
    total = 0
    for attr in ("coef_", "intercept_", "components_", "mean_", "scale_", "dual_coef_", "support_vectors_"):
        value = getattr(model, attr, None)
        if value is not None:
            total += int(np.size(value))
    for tree_holder in getattr(model, "estimators_", []) or []:
        tree = getattr(tree_holder, "tree_", None)
        if tree is not None:
            total += int(tree.node_count)
    predictors = getattr(model, "_predictors", None)
    if predictors:
        total += sum(len(p.nodes) for group in predictors for p in group)
    return total or None
