"""`xraybench run` on Dask: a real `dask scheduler` and two `dask worker` processes on loopback.

The cluster is started once for the module (its processes killed, by process group, whatever
happens); a test that kills a worker gets a fresh one started before the next test. Runs use
the test plugins on tiny generated data, so each task is a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from proctools import alive, kill_group, pid_gone, start_xb, wait_until  # noqa: E402
from xraybench.testing import make_kaggle_tree  # noqa: E402

# One xdist worker runs this module (README: --dist loadgroup), so its loopback clusters start once,
# never two at a time beside the other worker's timing-bound tests.
pytestmark = pytest.mark.xdist_group("dask")
WORKERS = 2


class LoopbackCluster:
    """`dask scheduler` + `dask worker` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.scheduler_file = root / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}  # worker command's pid -> the worker's --name
        self.extra: list[subprocess.Popen] = []  # workers a test starts beside the WORKERS
        self._logs = []

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", *args], env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)

    def start(self) -> None:
        self.scheduler = self._spawn("scheduler", [
            "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(self.scheduler_file)])
        wait_until(self.scheduler_file.is_file, "the scheduler file", proc=self.scheduler)
        self.ensure_workers()

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def ensure_workers(self) -> None:
        """Start workers until WORKERS live ones are connected."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < WORKERS:
            self.workers.append(self.start_worker())
        wait_until(lambda: len(self.worker_addresses()) == WORKERS, f"{WORKERS} workers", proc=self.scheduler)

    def start_worker(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        n = len(list(self.root.glob("worker-*.log")))
        proc = self._spawn(f"worker-{n}", [
            "distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file), "--host", "127.0.0.1",
            "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"w{n}",
            "--local-directory", str(self.root / "dask-worker-space"), *extra], env)
        self.names[proc.pid] = f"w{n}"
        return proc

    def worker_addresses(self) -> dict[str, str]:
        """Connected workers: address -> name."""
        from distributed import Client

        with Client(self.address, timeout="20s", set_as_default=False) as client:
            return {a: w.get("name") for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}

    def worker_owning(self, pid: int) -> subprocess.Popen:
        """The `dask worker` command whose process group holds ``pid``."""
        group = os.getpgid(pid)
        return next(w for w in self.workers if w.pid == group)

    def stop(self) -> None:
        for proc in [*self.workers, *self.extra, self.scheduler]:
            if proc is not None:
                kill_group(proc, graceful=True)
        for log in self._logs:
            log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.root.glob("*.log")))


@pytest.fixture(scope="module")
def data_a(tmp_path_factory) -> Path:
    return make_kaggle_tree(tmp_path_factory.mktemp("data-a") / "chest_xray", seed=0)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, data_a) -> dict[str, str]:
    """Environment shared by the workers and the clients: test plugins, one decode cache."""
    root = tmp_path_factory.mktemp("dask-env")
    (root / "block").mkdir()
    return {
        **os.environ,
        "XRAYBENCH_PLUGINS": "xb_test_models",
        "XRAYBENCH_DATA": str(data_a),
        "XRAYBENCH_CACHE": str(root / "cache"),
        "XB_BLOCK_DIR": str(root / "block"),
        "COLUMNS": "200",
    }


@pytest.fixture(scope="module")
def _cluster(tmp_path_factory, shared):
    cluster = LoopbackCluster(tmp_path_factory.mktemp("dask-cluster"), shared)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(_cluster, shared) -> LoopbackCluster:
    _cluster.ensure_workers()
    block = Path(shared["XB_BLOCK_DIR"])
    for marker in block.iterdir():
        marker.unlink()
    return _cluster


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "results"


_CLIENTS: list[subprocess.Popen] = []  # every client a test starts: its process group is killed after the test


@pytest.fixture(autouse=True)
def _no_client_left():
    yield
    while _CLIENTS:
        kill_group(_CLIENTS.pop(), graceful=True)


def _client(args: list[str], shared: dict, results: Path, sigint=signal.SIG_DFL, command: str = "run",
            stderr: int = subprocess.STDOUT, **env: str | None) -> subprocess.Popen:
    # SIGINT set to a known disposition (its default unless a test asks for it ignored), whatever
    # the one this test process inherited (CI may run with SIGINT ignored). A session of its own,
    # so that its local cluster or trial processes go with it if the test fails.
    size = ["--image-size", "16"] if command in ("run", "tune") else []
    proc = start_xb(command, *size, *args, env={**shared, "XRAYBENCH_RESULTS": str(results), **env},
                    stderr=stderr, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    _CLIENTS.append(proc)
    return proc


def _finish(proc: subprocess.Popen, limit: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_group(proc, graceful=True)
        out, _ = proc.communicate()
        raise AssertionError(f"client still running after {limit}s:\n{out[-4000:]}") from None
    return out


def _records(results: Path) -> list[dict]:
    runs = results / "runs"
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*.json")) if not p.name.endswith(".scores.json")]


def _started(block: Path) -> list[tuple[int, int]]:
    """(pid, parent pid) of each xb_block run that has started."""
    found = []
    for marker in block.glob("started-*"):
        text = marker.read_text().split()
        if len(text) == 2:
            found.append((int(text[0]), int(text[1])))
    return found


def _environ(pid: int) -> dict[str, str]:
    """A running process's environment, as it started."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _share(workers: int) -> int:
    """The BLAS/OpenMP threads each run gets with ``workers`` one-thread workers on this machine."""
    from dask.system import CPU_COUNT

    return max(1, CPU_COUNT // workers)


def _trial_processes(cluster: LoopbackCluster) -> list[int]:
    """The child processes of the worker processes (each `dask worker` command is a nanny whose
    worker process is its child; what that worker spawns is a run's or a trial's process)."""
    leaders = {w.pid for w in [*cluster.workers, *cluster.extra]}
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid, group = fields[0], int(fields[1]), int(fields[2])
        if group in leaders and ppid not in leaders and b"spawn_main" in cmdline and state != "Z":
            found.append(int(stat.parent.name))
    return found


def test_each_task_recorded_once_with_its_worker_and_isolated(cluster, shared, results, test_plugins):
    """Good, hanging, crashing and raising plugins: four records, each once, with its worker."""
    proc = _client(["--scheduler", cluster.address, "--timeout", "12", "--model", "xb_good", "--model", "xb_hang",
                    "--model", "xb_crash", "--model", "xb_fit_raises", "--seed", "1"], shared, results)
    out = _finish(proc)
    assert proc.returncode == 1, out[-4000:] + cluster.logs()
    records = _records(results)
    assert sorted(r["model"] for r in records) == ["xb_crash", "xb_fit_raises", "xb_good", "xb_hang"], out[-4000:]
    status = {r["model"]: r for r in records}
    assert status["xb_good"]["status"] == "done", status["xb_good"]["reason"]
    assert status["xb_hang"]["status"] == "timeout" and "--timeout 12" in status["xb_hang"]["reason"]
    assert status["xb_crash"]["status"] == "error" and "exited with code 13" in status["xb_crash"]["reason"]
    assert status["xb_fit_raises"]["status"] == "error" and "boom in fit" in status["xb_fit_raises"]["reason"]
    workers = cluster.worker_addresses()
    from xraybench.distributed import worker as distributed
    from xraybench.plugins import load_registry

    ours = distributed.code_digests(distributed.code_files(load_registry().model("xb_good")))
    for r in records:
        assert r["executor"]["engine"] == "dask" and r["executor"]["worker"] in workers, r["executor"]
        assert r["executor"]["device"] == "cpu" and r["executor"]["host"]
        assert r["attempts"] == 1
        # each run's threads: this machine's cores over the two one-thread workers; the code the client's
        assert r["environment"]["thread_limit"] == _share(WORKERS), r["environment"]
        code = r["environment"]["code"]  # the hashes the worker checked against the client's
        assert set(code) == {"xraybench", "xb_test_models"} and code["xb_test_models"] == ours["xb_test_models"]
        assert code == records[0]["environment"]["code"] and len(code["xraybench"]) == 64
    assert f"on {status['xb_good']['executor']['worker']}" in out  # the live view names the workers
    # the done run's model sits beside its record, as hashed, and nothing staged is left (the bytes path itself:
    # test_saved_model.py::test_a_model_staged_on_a_worker_travels_as_bytes_and_is_kept_only_as_hashed)
    import hashlib

    model = status["xb_good"]["model_file"]
    assert model, status["xb_good"].get("model_note")
    kept = results / model["path"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == model["sha256"]
    assert not [p for p in (results / "runs").iterdir() if ".staged" in p.name]


def test_local_cluster_matches_the_sequential_runner(shared, results, tmp_path, data_a):
    """--workers 2 (a LocalCluster of processes) gives the same metrics as the default runner."""
    seq = _client(["--data", str(data_a), "--model", "xb_good", "--seeds", "1"], shared, tmp_path / "seq")
    seq_out = _finish(seq)
    assert seq.returncode == 0, seq_out[-3000:]
    local = _client(["--data", str(data_a), "--model", "xb_good", "--model", "xb_fit_raises", "--seeds", "1",
                     "--workers", "2"], shared, results)
    out = _finish(local)
    assert local.returncode == 1, out[-3000:]
    assert "engine: local Dask cluster of 2 worker processes" in out
    by_model = {r["model"]: r for r in _records(results)}
    assert sorted(by_model) == ["xb_fit_raises", "xb_good"]
    assert by_model["xb_fit_raises"]["status"] == "error"
    (sequential,) = _records(tmp_path / "seq")
    assert by_model["xb_good"]["metrics"] == sequential["metrics"]
    assert by_model["xb_good"]["executor"]["worker"].startswith("tcp://127.0.0.1:")
    assert by_model["xb_good"]["environment"]["thread_limit"] == _share(2)
    assert "executor" not in sequential and "thread_limit" not in sequential["environment"]


def test_a_worker_killed_mid_task_is_retried_elsewhere(cluster, shared, results):
    """SIGKILL the worker (and its whole process group) running xb_block: the scheduler gives the
    task to the other worker, and every task is still recorded exactly once."""
    block = Path(shared["XB_BLOCK_DIR"])
    proc = _client(["--scheduler", cluster.address, "--model", "xb_block", "--model", "xb_good", "--seeds", "1"],
                   shared, results)
    try:
        (pid, worker_pid), = wait_until(lambda: _started(block), "xb_block to start", proc=proc)
        limits = {name: _environ(pid).get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        assert set(limits.values()) == {str(_share(WORKERS))}, limits  # the run's own process, not only its record
        victim = cluster.worker_owning(worker_pid)
        victim_address = next(a for a, name in cluster.worker_addresses().items() if name == cluster.names[victim.pid])
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        # the same task starts again on the surviving worker
        wait_until(lambda: [s for s in _started(block) if s[0] != pid], "xb_block to restart elsewhere", proc=proc)
        (block / "release").write_text("")
        out = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out)
    assert proc.returncode == 0, out[-4000:] + cluster.logs()
    records = _records(results)
    assert sorted((r["model"], r["seed"], r["status"]) for r in records) == [
        ("xb_block", 1, "done"), ("xb_good", 1, "done")]
    retried = next(r for r in records if r["model"] == "xb_block")
    assert retried["executor"]["worker_name"] != cluster.names[victim.pid]
    assert retried["executor"]["worker"] in cluster.worker_addresses()
    assert retried["attempts"] == 2 and next(r for r in records if r["model"] == "xb_good")["attempts"] == 1
    lost = [line for line in out.splitlines() if "was lost" in line]
    assert lost == [f"lost worker: worker {victim_address} was lost while running xb_block seed 1 (attempt 1): "
                    f"Dask runs it again on another worker"], out[-3000:]
    assert not alive(pid), "the killed worker's run kept going"


def test_fingerprint_mismatch_is_a_one_line_error(cluster, shared, results, tmp_path, data_a, monkeypatch):
    """The client's data (here $XRAYBENCH_DATA=B) differs from what the workers load (A)."""
    from xraybench.data import load_dataset

    data_b = make_kaggle_tree(tmp_path / "other" / "chest_xray", seed=1, n_train=(20, 30))
    proc = _client(["--scheduler", cluster.address, "--model", "xb_good"], shared, results,
                   XRAYBENCH_DATA=str(data_b))
    out = _finish(proc)
    assert proc.returncode == 1, out[-3000:]
    monkeypatch.setenv("XRAYBENCH_CACHE", shared["XRAYBENCH_CACHE"])
    theirs = load_dataset(data_a, image_size=16, channels=1).fingerprint[:12]
    ours = load_dataset(data_b, image_size=16, channels=1).fingerprint[:12]
    assert theirs != ours
    (record,) = _records(results)
    assert record["status"] == "error" and "\n" not in record["reason"]
    assert f"data fingerprint {theirs} on worker" in record["reason"]
    assert f"the client's {ours}" in record["reason"]
    assert record["data"]["fingerprint"].startswith(ours)


@pytest.mark.parametrize("disposition, presses", [(signal.SIG_DFL, 1), (signal.SIG_IGN, 3)], ids=["once", "ignored-thrice"])
def test_ctrl_c_cancels_running_and_queued_tasks_and_records_them(cluster, shared, results, disposition, presses):
    """Three blocking runs on two workers: two run, one waits. SIGINT to the client: all three
    recorded as interrupted, the running ones' processes stopped, the workers still serving.
    Also for a client started with SIGINT ignored and pressed three times in a row: further
    presses land while it stops the runs, and must not break that (they only set its event)."""
    block = Path(shared["XB_BLOCK_DIR"])
    proc = _client(["--scheduler", cluster.address, "--model", "xb_block", "--seeds", "1", "2", "3"], shared, results,
                   sigint=disposition)
    try:
        started = wait_until(lambda: len(_started(block)) == 2 and _started(block), "two runs to start", proc=proc)
        for press in range(presses):
            if press:
                time.sleep(0.2)  # not a timing assert: the later presses spread over the clean-up
            proc.send_signal(signal.SIGINT)
        out = _finish(proc, limit=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out)
    assert proc.returncode == 130, out[-4000:]
    records = _records(results)
    assert sorted(r["seed"] for r in records) == [1, 2, 3]
    assert {r["status"] for r in records} == {"interrupted"}
    reasons = sorted(r["reason"] for r in records)
    assert reasons == ["cancelled by Ctrl-C before it started", "stopped by Ctrl-C", "stopped by Ctrl-C"], reasons
    for pid, _ in started:
        assert pid_gone(pid, 30), f"run process {pid} did not stop"
    assert not [p for p in (results / "runs").iterdir() if p.name.endswith(".tmp")]
    assert len(cluster.worker_addresses()) == WORKERS


def test_ctrl_c_keeps_a_keras_runs_epochs_and_checkpoint_and_it_resumes(shared, results, tmp_path, data_a):
    """Ctrl-C once a Keras run on a local cluster has checkpointed its first epoch (its training
    process paused there): the record is the worker's own, with its epochs, history and wall time,
    under the run_id its checkpoint folder is named by (a record the client made up had a new id,
    no checkpoint, and `run --resume` answered "has no checkpoint"); the resume finishes it."""
    pause = tmp_path / "pause"
    pause.mkdir()
    train = ["--model", "baseline_cnn", "--epochs", "2", "--param", "patience=10", "--seeds", "7"]
    proc = _client(["--data", str(data_a), *train, "--workers", "1"], shared, results,
                   XRAYBENCH_TEST_PAUSE=f"epoch1={pause}")
    try:
        wait_until((pause / "epoch1.ready").is_file, "the first epoch's checkpoint", deadline_s=300, proc=proc)
        proc.send_signal(signal.SIGINT)  # the training process stays paused: the worker must stop it
        out = _finish(proc, limit=120)
    finally:
        (pause / "epoch1.go").touch()
    assert proc.returncode == 130, out[-4000:]
    (record,) = _records(results)
    assert record["status"] == "interrupted" and record["reason"] == "stopped by Ctrl-C", record
    assert record["epochs_run"] == 1 and len(record["history"]["loss"]) == 1, record
    assert record["checkpoint"] == f"checkpoints/{record['run_id']}", record
    assert (results / record["checkpoint"]).is_dir()
    assert record["wall_seconds"] > 0 and record["executor"]["engine"] == "dask"
    # The resume marks each epoch it trains (the marks are open: nothing waits): epoch 2 only, so it
    # continued from the checkpoint rather than training again from epoch 0 (epochs_run is 2 either way).
    marks = tmp_path / "marks"
    marks.mkdir()
    for phase in ("epoch1", "epoch2"):
        (marks / f"{phase}.go").touch()
    resumed = _client(["--resume", record["run_id"]], shared, results, XRAYBENCH_TEST_PAUSE=f"epoch1,epoch2={marks}")
    out = _finish(resumed)
    assert resumed.returncode == 0, out[-4000:]
    assert sorted(p.name for p in marks.glob("*.ready")) == ["epoch2.ready"], out[-4000:]
    done = [r for r in _records(results) if r["status"] == "done"]
    assert len(done) == 1 and done[0]["resumed_from"] == record["run_id"] and done[0]["epochs_run"] == 2, done
    assert done[0]["history"]["loss"][0] == record["history"]["loss"][0]  # the interrupted epoch's, carried over


def test_a_client_that_dies_leaves_no_run_behind(cluster, shared, results):
    """SIGKILL the client while its two runs block on both workers: Dask cannot stop a running
    task whose client is gone, so the worker does (its key was released): the runs' processes
    stop and the workers serve the next client at once, instead of holding their only thread
    until --timeout (a tune session queued behind such runs hung in CI)."""
    block = Path(shared["XB_BLOCK_DIR"])
    proc = _client(["--scheduler", cluster.address, "--model", "xb_block", "--seeds", "1", "2", "3"], shared, results)
    try:
        started = wait_until(lambda: len(_started(block)) == 2 and _started(block), "two runs to start", proc=proc)
    finally:
        proc.kill()
        proc.communicate()
    for pid, _ in started:
        assert pid_gone(pid, 60), f"the dead client's run {pid} did not stop"
    assert not (block / "release").exists()  # stopped, not released
    nxt = _client(["--scheduler", cluster.address, "--model", "xb_good", "--seeds", "1", "2"], shared,
                  results.parent / "next")
    try:
        out = _finish(nxt, limit=120)
    finally:
        if nxt.poll() is None:
            nxt.kill()
    assert nxt.returncode == 0, out[-3000:] + cluster.logs()
    assert [r["status"] for r in _records(results.parent / "next")] == ["done", "done"]


def test_tune_splits_one_study_over_two_workers_and_resumes_without_repeats(cluster, shared, tmp_path):
    """Two `tune --scheduler` sessions, one after the other, on one study: every trial trained on
    one of the two workers, no parameter set twice, the second session resuming the first."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    for _session in range(2):
        proc = _client(["--model", "xb_tunable_wide", "--trials", "3", "--sampler", "random", "--storage", storage,
                        "--study", "wide", "--no-final", "--scheduler", cluster.address], shared, tmp_path / "results",
                       command="tune")
        out = _finish(proc)
        assert proc.returncode == 0, out[-4000:] + cluster.logs()
    study = optuna.load_study(study_name="wide", storage=storage)
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    sets = {tuple(sorted(t.params.items())) for t in trained}
    assert len(sets) == 6
    workers = {t.user_attrs["dask_worker"] for t in trained}
    assert workers <= set(cluster.worker_addresses()) and len(workers) == 2, workers
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # one asking session each
    print(f"tune over two workers: {len(study.trials)} trials, {len(sets)} distinct parameter sets, "
          f"best {study.best_value:.4f} (trial {study.best_trial.number}); trials per worker "
          f"{ {w: sum(t.user_attrs['dask_worker'] == w for t in trained) for w in sorted(workers)} }")
    # their clients have left: the trial processes the workers kept for them end too
    wait_until(lambda: not _trial_processes(cluster), "the trial processes to end after their clients", deadline_s=60)


def test_trial_processes_end_when_their_tune_client_is_killed(cluster, shared, tmp_path):
    """SIGKILL a `tune --scheduler` client between two trials (paused right after telling one,
    with the process that trained it idle on its worker): every trial process on the workers
    ends, instead of holding its memory for as long as the worker lives."""
    pause = tmp_path / "pause"
    pause.mkdir()
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    proc = _client(["--model", "xb_tunable_wide", "--trials", "2", "--sampler", "random", "--storage", storage,
                    "--study", "killed", "--no-final", "--scheduler", cluster.address], shared, tmp_path / "results",
                   command="tune", XRAYBENCH_TEST_PAUSE=f"dask-told={pause}")
    wait_until((pause / "dask-told.ready").is_file, "the client to tell a trial", proc=proc)
    trial_processes = _trial_processes(cluster)
    assert trial_processes, "no trial process found on the workers"
    os.killpg(proc.pid, signal.SIGKILL)  # no goodbye to the scheduler: it only sees the connection drop
    proc.wait(timeout=30)
    for pid in trial_processes:
        assert pid_gone(pid, 60), f"trial process {pid} did not end"


def test_gpu_tasks_go_only_to_a_worker_with_gpu_resources(cluster, shared, results):
    """`--gpu`: each task asks Dask for one GPU, so only the worker started with
    `--resources GPU=1` runs them (no CUDA needed: Dask's resources are labels)."""
    gpu = cluster.start_worker("--resources", "GPU=1")
    cluster.extra.append(gpu)
    try:
        wait_until(lambda: len(cluster.worker_addresses()) == WORKERS + 1, "the GPU worker", proc=gpu)
        name = cluster.names[gpu.pid]
        proc = _client(["--scheduler", cluster.address, "--gpu", "--model", "xb_good", "--seeds", "1", "2"],
                       shared, results)
        out = _finish(proc)
        assert proc.returncode == 0, out[-3000:] + cluster.logs()
    finally:
        kill_group(gpu, graceful=True)
    records = _records(results)
    assert len(records) == 2
    for r in records:
        assert r["executor"]["worker_name"] == name and r["executor"]["resources"] == {"GPU": 1}, r["executor"]


def test_a_worker_with_other_code_refuses_the_task(cluster, shared, results, tmp_path):
    """A worker whose plugin file differs from the client's (same name, same version string)
    refuses in one line naming the worker and the file, instead of training other code as `done`."""
    import xb_test_models

    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "xb_test_models.py").write_text(Path(xb_test_models.__file__).read_text() + "\n# edited on one worker\n")
    env = {**shared, "PYTHONPATH": os.pathsep.join([str(edited), shared.get("PYTHONPATH", "")])}
    other = cluster.start_worker("--resources", "GPU=1", env=env)  # --gpu sends the task there and nowhere else
    cluster.extra.append(other)
    try:
        wait_until(lambda: len(cluster.worker_addresses()) == WORKERS + 1, "the edited worker", proc=other)
        address = next(a for a, name in cluster.worker_addresses().items() if name == cluster.names[other.pid])
        proc = _client(["--scheduler", cluster.address, "--gpu", "--model", "xb_good"], shared, results)
        out = _finish(proc)
    finally:
        kill_group(other, graceful=True)
    assert proc.returncode == 1, out[-3000:] + cluster.logs()
    (record,) = _records(results)
    assert record["status"] == "error" and not record.get("metrics")
    assert record["reason"] == (f"worker {address} runs other code than the client: xb_test_models (xb_test_models.py) "
                                f"differ; install the same xraybench and plugin files on every worker "
                                f"(docs/distributed.md)"), record["reason"]


def test_code_files_name_what_differs(test_plugins):
    """The hashes cover xraybench and the plugin's own package; a difference names its files."""
    from xraybench.distributed import worker as distributed
    from xraybench.plugins import load_registry

    files = distributed.code_files(load_registry().model("xb_good"))
    assert set(files) == {"xraybench", "xb_test_models"} and list(files["xb_test_models"]) == ["xb_test_models.py"]
    assert "distributed/worker.py" in files["xraybench"] and "cli/run.py" in files["xraybench"]
    assert distributed.code_difference(files, files) is None
    other = {**files, "xraybench": {**files["xraybench"], "runner.py": "0" * 16, "added.py": "1" * 16}}
    assert distributed.code_difference(files, other) == "xraybench (added.py, runner.py)"
    other["xraybench"] = {name: "2" * 16 for name in files["xraybench"]}
    assert distributed.code_difference(other, files).endswith(f" and {len(files['xraybench']) - 3} more)")
    digests = distributed.code_digests(files)
    assert digests != distributed.code_digests(other) and len(digests["xraybench"]) == 64


def test_killed_worker_exception_becomes_an_error_record(xray_data, xraybench_env):
    """After `allowed-failures` worker deaths Dask raises KilledWorker: recorded, never dropped."""
    from distributed.scheduler import KilledWorker

    from xraybench.distributed import cluster, runs
    from xraybench.records import RunStatus
    from xraybench.runner import RunRequest, prepare, start_record

    prepared = prepare(RunRequest(model="logreg_pixels", data=str(xray_data), image_size=16))
    last = type("WorkerState", (), {"address": "tcp://10.0.0.9:4000"})()
    reason = cluster.failure_reason(KilledWorker("k", last, 3))
    record = runs.placed(start_record(prepared).finish(RunStatus.ERROR, reason), {}, "tcp://10.0.0.1:8786", 4)
    record = record.to_dict()
    assert record["status"] == "error" and record["model"] == "logreg_pixels" and record["attempts"] == 4
    assert record["reason"] == ("the workers running it died 3 times (last tcp://10.0.0.9:4000); Dask gave up "
                                "(distributed.scheduler.allowed-failures)")
    assert record["executor"]["scheduler"] == "tcp://10.0.0.1:8786" and record["executor"]["worker"] is None


@pytest.mark.parametrize("command", ["run", "tune"])
@pytest.mark.parametrize("flags, expected", [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--scheduler"], "--scheduler without an address needs Dask's config"),
    (["--workers", "1", "--gpu"], "--gpu needs workers started with `dask worker --resources GPU=1`"),
    (["--scheduler", "notahost:xx"], "--scheduler 'notahost:xx' is not a Dask scheduler address (invalid literal"),
    (["--scheduler", "tcp://"], "--scheduler 'tcp://' is not a Dask scheduler address (missing port number"),
    (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler tcp://127.0.0.1:1: Connection refused"),
], ids=["workers-0", "no-config", "gpu-local", "malformed", "no-port", "unreachable"])
def test_bad_cluster_options_are_one_line_before_any_data(flags, expected, command, data_a, shared, tmp_path):
    """Checked first: one line on stderr (no `Client.__del__` traceback at exit), and no data
    loaded (its brief, with the fingerprint, would be on stdout)."""
    no_dask_config = {k: None for k in os.environ | shared if k.startswith("DASK_")}
    model = "xb_tunable_wide" if command == "tune" else "xb_good"
    proc = _client(["--model", model, "--data", str(data_a), *flags], shared, tmp_path, command=command,
                   stderr=subprocess.PIPE, **no_dask_config)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.startswith("error: ") and expected in err, err
    assert err.count("\n") == 1, err
    assert "fingerprint" not in out, out


def test_ctrl_c_latch_only_sets_an_event_and_restores_the_handler():
    """In-process: inside CtrlC, SIGINT raises nothing (it sets the event the client's loop
    polls), even where SIGINT was ignored before; the handler before is restored on a normal exit."""
    from xraybench.distributed import cluster as distributed

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a CI job may start us
    try:
        with distributed.CtrlC() as ctrl_c:
            assert not ctrl_c.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        with distributed.CtrlC() as ctrl_c:
            os.kill(os.getpid(), signal.SIGINT)
            wait_until(ctrl_c.is_set, "the event", deadline_s=10)
            os.kill(os.getpid(), signal.SIGINT)  # a second press: still no exception
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # stopping: a further press changes nothing
    finally:
        signal.signal(signal.SIGINT, before)


def test_bounded_cluster_calls_give_up_instead_of_hanging():
    import threading

    from xraybench.distributed import cluster as distributed

    never = threading.Event()
    assert distributed.bounded(lambda: never.wait(60) or "late", 0.2, default="gave up") == "gave up"
    assert distributed.bounded(lambda: 1 / 0, 5, default="failed") == "failed"
    assert distributed.bounded(lambda: "ok", 5) == "ok"
    never.set()
