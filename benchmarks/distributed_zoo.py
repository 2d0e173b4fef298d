"""The classical zoo three ways, back to back: the sequential runner, `--workers 2` (a local
Dask cluster), and a loopback `dask scheduler` + two `dask worker` processes (`--scheduler`).

Prints each way's wall time, the ratios to the sequential runner, and whether the three give
identical metrics for every (model, seed). Every way runs the real `xraybench run` command on
the same data, with its own results folder and one shared decode cache warmed beforehand, so
no way pays for decoding images and none reads another's records.

    python benchmarks/distributed_zoo.py --data /work/shared/datasets/chest_xray --seeds 1 2 3

The loopback cluster is started before its clock starts (a cluster that already runs is the
case `--scheduler` serves); the local cluster's start-up is inside its clock (it is part of
that command). Needs `pip install "xraybench[dask]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSICAL = ["logreg_pixels", "svm_rbf_pixels", "random_forest_pixels", "hist_gradient_boosting_pixels"]
METRIC_KEYS = ("metrics", "metrics_at_val_threshold", "val_metrics")


def xraybench(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run one xraybench command; returns its wall seconds (fails loudly on a bad exit)."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "xraybench", *args], env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: `xraybench {' '.join(args)}` exited {proc.returncode}; see {log}")
    return seconds


class LoopbackCluster:
    def __init__(self, root: Path, env: dict[str, str], workers: int) -> None:
        self.root, self.env, self.n = root, env, workers
        self.file = root / "scheduler.json"
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(subprocess.Popen([sys.executable, "-m", *args], env=self.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def __enter__(self) -> LoopbackCluster:
        self._spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(self.file)])
        deadline = time.monotonic() + 120
        while not self.file.is_file():
            if time.monotonic() > deadline:
                raise SystemExit("error: the dask scheduler did not start; see its log")
            time.sleep(0.2)
        for i in range(self.n):
            self._spawn(f"worker-{i}", ["distributed.cli.dask_worker", "--scheduler-file", str(self.file),
                                        "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                                        "--no-dashboard", "--name", f"w{i}"])
        from distributed import Client

        with Client(scheduler_file=str(self.file), set_as_default=False) as client:
            client.wait_for_workers(self.n, timeout=180)
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=15)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


def records(results: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in (results / "runs").glob("*.json"):
        if path.name.endswith(".scores.json") or path.name.startswith("."):
            continue
        r = json.loads(path.read_text())
        key = (r["model"], r["seed"])
        if key in out:
            raise SystemExit(f"error: {key} recorded twice in {results}")
        out[key] = r
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("XRAYBENCH_DATA"), help="the data set (default $XRAYBENCH_DATA)")
    parser.add_argument("--models", nargs="+", default=CLASSICAL)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", help="folder for results, cache and logs (default: a new temporary folder)")
    args = parser.parse_args()
    if not args.data:
        raise SystemExit("error: give --data PATH or set XRAYBENCH_DATA")
    work = Path(args.work or tempfile.mkdtemp(prefix="xb-distributed-zoo-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XRAYBENCH_CACHE": str(work / "cache"), "XRAYBENCH_DATA": str(args.data)}
    run = ["run", "--data", str(args.data), "--image-size", str(args.image_size), "--seeds", *map(str, args.seeds)]
    for model in args.models:
        run += ["--model", model]
    print(f"work folder {work}; {len(args.models)} models x {len(args.seeds)} seeds at {args.image_size}px; "
          f"{os.cpu_count()} CPU cores", flush=True)
    xraybench(["data", "--data", str(args.data), "--image-size", str(args.image_size)], env, work / "warm.log")

    ways = {}
    ways["sequential"] = xraybench([*run, "--results", str(work / "sequential")], env, work / "sequential.log")
    print(f"sequential: {ways['sequential']:.1f}s", flush=True)
    ways["local"] = xraybench([*run, "--results", str(work / "local"), "--workers", str(args.workers)], env,
                              work / "local.log")
    print(f"--workers {args.workers}: {ways['local']:.1f}s", flush=True)
    cluster_root = work / "cluster"
    cluster_root.mkdir(exist_ok=True)
    with LoopbackCluster(cluster_root, env, args.workers) as cluster:
        ways["scheduler"] = xraybench([*run, "--results", str(work / "scheduler"), "--scheduler", str(cluster.file)],
                                      env, work / "scheduler.log")
    print(f"--scheduler (dask scheduler + {args.workers} dask worker): {ways['scheduler']:.1f}s", flush=True)

    got = {way: records(work / way) for way in ways}
    expected = {(m, s) for m in args.models for s in args.seeds}
    print()
    print(f"{'way':<44} {'wall s':>8} {'vs sequential':>14}")
    for way, label in (("sequential", "sequential runner"), ("local", f"--workers {args.workers} (LocalCluster)"),
                       ("scheduler", f"--scheduler (dask scheduler + {args.workers} dask worker)")):
        print(f"{label:<44} {ways[way]:>8.1f} {ways['sequential'] / ways[way]:>13.2f}x")
    print()
    print(f"{'model':<32} {'seed':>4} {'accuracy':>9} {'AUC':>7}  identical across the three ways")
    all_same = True
    for model, seed in sorted(expected):
        rows = [got[way].get((model, seed)) for way in ways]
        if any(r is None or r["status"] != "done" for r in rows):
            print(f"{model:<32} {seed:>4}  missing or not done: {[r and r['status'] for r in rows]}")
            all_same = False
            continue
        same = all(all(r[k] == rows[0][k] for k in METRIC_KEYS) for r in rows[1:])
        all_same &= same
        m = rows[0]["metrics"]
        print(f"{model:<32} {seed:>4} {m['accuracy']:>9.4f} {m['roc_auc']:>7.4f}  {'yes' if same else 'NO'}")
    workers = sorted({r["executor"]["worker"] for way in ("local", "scheduler") for r in got[way].values()})
    print(f"\nworkers that ran tasks: {', '.join(workers)}")
    print(f"every (model, seed) recorded once per way, metrics identical: {'yes' if all_same else 'NO'}")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
