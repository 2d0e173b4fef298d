"""The resolution study of issue 14, item 2: what image size buys on this test set, and at what cost.

    python benchmarks/resolution_study.py run --data ../shared/datasets/chest_xray --results study
    python benchmarks/resolution_study.py table --results study [--also leaderboards]

``run`` trains every (model, size, seed) cell, one ``xraybench run`` each, one after the other,
so each record's wall and CPU time are those of a lone run on the machine (the load average at
each start is printed beside it; it is not stored). Cells that already have a finished record in
``--results`` are skipped, so an interrupted study continues where it stopped. ``--models``,
``--sizes`` and ``--seeds`` narrow the grid (default: ``baseline_cnn`` and its two closest
variants, 32/64/96/150 px, seeds 1-3).

``table`` prints one markdown row per (model, size) from the records (``xraybench.leaderboard.
build_rows``, the leaderboard's own grouping: never pooled across data fingerprints): accuracy,
NORMAL recall and AUC as mean ± SD over the seeds with the bootstrap 95% interval of the
lowest-seed run, epochs, and wall and CPU seconds per run (mean, min-max). ``--also DIR`` adds the
matching rows of another results folder (the published runs), marked with their hardware, since
a wall time is only comparable on the same machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xraybench.leaderboard import Row

MODELS = ("baseline_cnn", "baseline_cnn_weighted", "baseline_cnn_bn")
SIZES = (32, 64, 96, 150)
SEEDS = (1, 2, 3)


def _records(results: Path) -> list:
    from xraybench.results import ResultStore

    return ResultStore(results).load().records


def _done(results: Path) -> set[tuple[str, int, int]]:
    from xraybench.records import RunStatus

    if not (results / "runs").is_dir():
        return set()
    return {(r.model, r.image_size, r.seed) for r in _records(results) if r.status is RunStatus.DONE}


def run(args: argparse.Namespace) -> int:
    done = _done(args.results)
    cells = [(m, s, k) for s in args.sizes for k in args.seeds for m in args.models if (m, s, k) not in done]
    print(f"{len(cells)} cells to run ({len(done)} already done in {args.results})", flush=True)
    for model, size, seed in cells:
        load = os.getloadavg()[0]
        cmd = [sys.executable, "-m", "xraybench", "run", "--model", model, "--image-size", str(size),
               "--seed", str(seed), "--results", str(args.results)]
        if args.data:
            cmd += ["--data", args.data]
        print(f"{model} {size} px seed {seed} (load {load:.2f})", flush=True)
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
        if rc == 130:
            return 130
        if rc:
            print(f"  exit {rc}; its record (if any) says why: xraybench leaderboard --results {args.results}")
    return 0


def _fmt(mean, sd, digits: int = 3) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def _ci(row: Row, metric: str) -> str:
    iv = (row.intervals or {}).get(metric) or {}
    return "-" if iv.get("low") is None else f"{iv['low']:.3f}-{iv['high']:.3f}"


def _seconds(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    return f"{mean:.0f} ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else f"{mean:.0f}"


def table_rows(results: Path, models: tuple[str, ...], sizes: list[int] | None = None) -> list[str]:
    from xraybench.leaderboard import build_rows

    rows = [r for r in build_rows(_records(results)) if r.model in models and r.variant == "default"
            and (not sizes or r.image_size in sizes)]
    rows.sort(key=lambda r: (models.index(r.model), r.image_size or 0))
    lines = []
    for r in rows:
        lines.append(" | ".join([
            "", r.model, str(r.image_size), r.runs_text,
            *(cell for key in ("accuracy", "normal_recall", "roc_auc")
              for cell in (_fmt(r.estimates[key], r.sds[key]), _ci(r, key))),
            f"{r.epochs:.1f}" if r.epochs is not None else "-",
            _seconds(r.wall_seconds_per_run), _seconds(r.cpu_seconds_per_run),
            f"{results.name}: " + "; ".join(h.split(" / ", 1)[-1] for h in r.hardware), "",
        ]).strip())
    return lines


def table(args: argparse.Namespace) -> int:
    header = ("| model | px | runs | accuracy (mean ± SD) | acc. 95% CI | NORMAL recall | NORMAL rec. 95% CI | AUC | AUC 95% CI "
              "| epochs | wall s per run | CPU s per run | records: backend, device |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for line in table_rows(args.results, tuple(args.models)):
        print(line)
    for other in args.also:
        for line in table_rows(other, tuple(args.models), args.also_sizes):
            print(line)
    print("\nMean ± SD over seeds; the 95% CIs are percentile bootstraps of the lowest-seed run's test "
          "predictions; threshold 0.5.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "table"):
        p = sub.add_parser(name)
        p.add_argument("--results", type=Path, required=True, help="the study's results folder")
        p.add_argument("--models", nargs="+", default=list(MODELS))
        if name == "run":
            p.add_argument("--data", help="the full download (default: as `xraybench run` finds it)")
            p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
            p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
        else:
            p.add_argument("--also", nargs="*", type=Path, default=[],
                           help="other results folders whose matching rows to add (e.g. leaderboards)")
            p.add_argument("--also-sizes", nargs="*", type=int, default=[],
                           help="only these image sizes from the --also folders")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
