"""How often the leaderboard's p falls below 0.05 when both rows come from one process (docs/results.md).

    python benchmarks/paired_test_calibration.py 300     # simulations per cell; a few minutes on 2 cores

Each simulated test set has 624 images (62.5% PNEUMONIA, the Kermany test split's share) of
shared difficulty; each run scores them through that difficulty plus its own seed effect (SD
``tau`` on the logit) and its own noise on each image (SD 0.7). Both rows are drawn from the same
process, so every rejection at 0.05 is a false one. Printed per cell: the rate for the paired
bootstrap of the difference of means (``stats.paired_mean_difference``, what rows of several
runs get) and for the exact McNemar test of the rows' lowest seeds (what they got before).
"""

import sys

import numpy as np

from xraybench import stats

N = 624


def rates(seeds_a: int, seeds_b: int, tau: float, sims: int, seed: int, n: int = N,
          resamples: int = 1000) -> tuple[float, float]:
    """(bootstrap, lowest-seed McNemar): the share of ``sims`` null pairs of rows each rejects at 0.05.
    ``tests/unit/test_paired_rows.py`` runs a small one."""
    rng = np.random.default_rng(seed)
    bootstrap = mcnemar = 0
    for _ in range(sims):
        y = (rng.random(n) < 0.625).astype(int)
        difficulty = rng.normal(1.2 * (2 * y - 1), 1.0)

        def run(difficulty: np.ndarray = difficulty) -> list[tuple[np.ndarray, float]]:
            return [(1 / (1 + np.exp(-(difficulty + rng.normal(0, tau) + rng.normal(0, 0.7, n)))), 0.5)]

        a, b = [run() for _ in range(seeds_a)], [run() for _ in range(seeds_b)]
        bootstrap += stats.paired_mean_difference(y, a, b, resamples=resamples)["p_value"] < 0.05
        right_a, right_b = (a[0][0][0] >= 0.5) == y, (b[0][0][0] >= 0.5) == y
        mcnemar += stats.mcnemar_exact(right_a.tolist(), right_b.tolist())["p_value"] < 0.05
    return bootstrap / sims, mcnemar / sims


def main(sims: int) -> None:
    for tau in (0.0, 0.3):
        for seeds_a, seeds_b in ((3, 3), (5, 5), (10, 10), (1, 3), (3, 1)):
            boot, mc = rates(seeds_a, seeds_b, tau, sims, 1000 * seeds_a + seeds_b)
            print(f"tau={tau} seeds {seeds_a} vs {seeds_b}: bootstrap P(p<0.05)={boot:.3f}  "
                  f"lowest-seed McNemar={mc:.3f}  ({sims} sims)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
