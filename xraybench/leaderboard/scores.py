"""The per-image test scores of a row's runs, as the row's intervals (``build.row_intervals``) and
its paired test against the reference row (``reference``) read them: grouped by seed, each run at
its own threshold, in one order of the test images. Nothing on disk is written."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from xraybench.records import FIXED_THRESHOLD, RunRecord, Threshold

ScoresLoader = Callable[[str], dict | None]
SeedScores = list[list[tuple[list, float]]]  # one entry per distinct seed: (test scores, threshold) of its runs


class Unusable(Exception):
    """Why a row's scores cannot be resampled (missing or damaged, other images): a row's note, never a failure."""


def read_once(loader: ScoresLoader) -> ScoresLoader:
    """``loader`` remembering what it returned for the length of one ``build_rows`` (nothing on
    disk); a file it cannot read is None, as the paired tests treat it."""
    @functools.cache
    def read(run_id: str) -> dict | None:
        try:
            return loader(run_id)
        except (OSError, ValueError):
            return None

    return read


def by_seed(runs: Sequence[RunRecord], t: Threshold, loader: ScoresLoader,
            order: tuple[list, list] | None = None, whose: str = "its runs") -> tuple[list, list, SeedScores]:
    """(test image ids, labels, scores by seed) of ``runs``, in the images' ``order`` (ids,
    labels) where given, else in the first run's; raises ``Unusable`` with the reason, which
    names the runs as ``whose``."""
    ids, labels = order if order is not None else (None, None)
    seeds: dict[Any, list[tuple[list, float]]] = {}
    for run in runs:
        scores = loader(run.run_id)
        if not scores:
            raise Unusable("per-image scores missing or damaged")
        values, ys = scores["test_scores"], scores["test_labels"]
        if ids is None:
            ids, labels = scores["test_ids"], ys
        elif scores["test_ids"] != ids:  # the same images in another order are put in the first one's
            where = {image: k for k, image in enumerate(scores["test_ids"])}
            if len(where) != len(ids) or any(image not in where for image in ids):
                raise Unusable(f"{whose} were scored on different test images")
            values, ys = [values[where[i]] for i in ids], [ys[where[i]] for i in ids]
        if ys != labels:
            raise Unusable(f"{whose}' test labels differ")
        threshold = (run.metrics_at(t) or {}).get("threshold", FIXED_THRESHOLD)
        seeds.setdefault(run.seed, []).append((values, threshold))
    assert ids is not None and labels is not None  # a row has at least one run
    return ids, labels, list(seeds.values())
