"""Cluster executors: Dask LocalCluster runs equal serial runs; dead workers and import errors are reasons.

The Dask tests share one ``LocalCluster`` of 2 single-threaded worker processes whose
scheduler gives up on a job after its first dead worker (``allowed-failures: 0``), so the
killed-worker test costs one worker restart, not four. The Ray test is ``slow`` (run by hand:
``pytest -m slow tests/test_cluster.py``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest
import torch

from oracles import CallableOracle
from oracles.cluster import RayExecutor, WorkerDied, dask_executor, parse_dask_spec

distributed = pytest.importorskip("distributed")

N, CHUNK = 12, 2  # 6 chunks


# ---------------------------------------------------------------------------- worker functions
def square_norm(v: torch.Tensor) -> float:
    """A design's squared norm; sleeps longer for earlier chunks so they finish out of order."""
    time.sleep(0.02 * float(v[1]))
    return float((v**2).sum())


def square_or_die(folder: str, n_others: int, v: torch.Tensor) -> float:
    """``square_norm``, except a design marked ``v[0] == 99`` kills its worker process.

    The killing design first waits (≤ 30 s) until the ``n_others`` other designs have left a
    file in ``folder``, so that no other job is queued on its worker when it dies.
    """
    if float(v[0]) == 99.0:
        deadline = time.monotonic() + 30
        while len(os.listdir(folder)) < n_others and time.monotonic() < deadline:
            time.sleep(0.02)
        os._exit(1)
    value = square_norm(v)
    Path(folder, uuid.uuid4().hex).touch()
    return value


def designs() -> torch.Tensor:
    """12 designs; the second coordinate decreases, so early chunks sleep longest."""
    x = torch.rand(N, 2, generator=torch.Generator().manual_seed(3))
    x[:, 1] = torch.linspace(3.0, 0.0, N)
    return x


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    with cluster, distributed.Client(cluster) as c:
        yield c


# ---------------------------------------------------------------------------- Dask
def test_dask_run_equals_the_serial_run_bit_for_bit(client) -> None:
    x = designs()
    serial = CallableOracle(square_norm, (2,), chunk_size=CHUNK, noise_std=0.1, seed=4)
    cluster = CallableOracle(
        square_norm,
        (2,),
        chunk_size=CHUNK,
        noise_std=0.1,
        seed=4,
        executor=dask_executor(client),
    )
    expected = serial(x)
    got = cluster(x)
    # same chunks, same noise stream: identical bits, in the designs' order
    assert torch.equal(got, expected)
    assert cluster.failures == {} and serial.failures == {}
    assert torch.isfinite(got).all()


def test_import_error_on_the_worker_is_a_reason(client, tmp_path: Path, monkeypatch) -> None:
    """A simulator module that only the client can import: every point fails, naming it."""
    src = tmp_path / "sim_only_on_the_client.py"
    src.write_text("def value(v):\n    return float(v.sum())\n")
    spec = importlib.util.spec_from_file_location("sim_only_on_the_client", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # importable here (sys.modules) but never on a worker (not on any sys.path)
    monkeypatch.setitem(sys.modules, "sim_only_on_the_client", module)
    x = designs()
    oracle = CallableOracle(
        module.value, (2,), chunk_size=CHUNK, executor=dask_executor(client, retries=1)
    )
    y = oracle(x)
    assert torch.isnan(y).all()
    assert set(oracle.failures) == set(range(N))
    assert set(oracle.failures.values()) == {
        "executor: ModuleNotFoundError: No module named 'sim_only_on_the_client'"
    }
    # the workers survived: the next batch is evaluated
    ok = CallableOracle(square_norm, (2,), chunk_size=CHUNK, executor=dask_executor(client))
    assert torch.isfinite(ok(x)).all()


def test_unpicklable_job_is_a_reason(client) -> None:
    lock = threading.Lock()
    oracle = CallableOracle(
        lambda v: float(v.sum()) + (0.0 if lock else 1.0),
        (2,),
        chunk_size=CHUNK,
        executor=dask_executor(client),
    )
    y = oracle(designs()[:4])
    assert torch.isnan(y).all()
    assert all(r.startswith("executor: TypeError: cannot pickle") for r in oracle.failures.values())


def test_worker_killed_mid_batch_fails_only_its_chunk(client, tmp_path: Path) -> None:
    x = designs()
    x[N - 1, 0] = 99.0  # the last chunk (designs 10, 11) kills its worker
    fn = functools.partial(square_or_die, str(tmp_path), N - CHUNK)
    oracle = CallableOracle(fn, (2,), chunk_size=CHUNK, executor=dask_executor(client))
    y = oracle(x)
    expected = CallableOracle(square_norm, (2,), chunk_size=CHUNK)(x[: N - CHUNK])
    assert torch.equal(y[: N - CHUNK], expected)
    assert torch.isnan(y[N - CHUNK :]).all()
    assert set(oracle.failures) == {N - 2, N - 1}
    for reason in oracle.failures.values():
        assert reason.startswith("executor: WorkerDied: worker died while running the job")


def stuck_until(flag: str, v: torch.Tensor) -> float:
    """A job that never returns for designs with ``v[0] < 0`` (until ``flag`` exists, ≤ 60 s)."""
    if float(v[0]) < 0:
        deadline = time.monotonic() + 60
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
        return math.nan
    return float((v**2).sum())


def warm(client: distributed.Client) -> None:
    """Import what the jobs need on every worker first (a worker restarted by an earlier
    test would spend its first seconds importing torch: longer than the 1 s timeouts)."""
    for module in ("torch", "oracles.base"):
        client.run(importlib.import_module, module)


def check_timed_out(oracle: CallableOracle, y: torch.Tensor, x: torch.Tensor) -> set[int]:
    """Every point has its value or timed out (transient, with the reason); the timed out."""
    timed_out = {i for i in range(len(x)) if math.isnan(float(y[i]))}
    assert oracle.transient_failures == timed_out == set(oracle.failures)
    for i in timed_out:
        assert "no result within 1 s (chunk_timeout)" in oracle.failures[i]
    ok = sorted(set(range(len(x))) - timed_out)
    assert torch.equal(y[ok], (x[ok] ** 2).sum(1).double())
    return timed_out


def test_a_job_that_never_returns_times_out(client, tmp_path: Path) -> None:
    x = designs()[:6]
    x[4, 0] = -1.0  # chunk 2 (designs 4, 5) never returns
    flag = tmp_path / "release"
    fn = functools.partial(stuck_until, str(flag))
    warm(client)
    oracle = CallableOracle(
        fn, (2,), chunk_size=CHUNK, executor=dask_executor(client), chunk_timeout=1.0
    )
    try:
        y = oracle(x)
    finally:
        flag.touch()  # the stuck job returns; its worker is free for the next tests
    assert check_timed_out(oracle, y, x) == {4, 5}


def test_a_stopped_worker_fails_its_chunks_as_transient(client) -> None:
    """SIGSTOP one of the two workers mid-use: its chunks time out, the others are told."""
    x = designs()
    warm(client)
    pids = client.run(os.getpid)
    stopped = sorted(pids.values())[0]
    oracle = CallableOracle(
        square_norm, (2,), chunk_size=CHUNK, executor=dask_executor(client), chunk_timeout=1.0
    )
    os.kill(stopped, signal.SIGSTOP)
    try:
        y = oracle(x)
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert len(check_timed_out(oracle, y, x)) >= CHUNK, "the stopped worker held a chunk"
    # resumed, the cluster evaluates everything again (a generous timeout: a loaded machine
    # may take more than the 1 s above to let the resumed worker catch up)
    again = CallableOracle(
        square_norm, (2,), chunk_size=CHUNK, executor=dask_executor(client), chunk_timeout=120.0
    )
    assert torch.isfinite(again(x)).all(), "resumed, the cluster evaluates everything again"


def test_dask_spec_parsing() -> None:
    assert parse_dask_spec("local:3") == 3
    assert parse_dask_spec(" tcp://10.0.0.5:8786 ") == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:two", "local", ""):
        with pytest.raises(ValueError):
            parse_dask_spec(bad)


def test_dask_executor_rejects_negative_retries(client) -> None:
    with pytest.raises(ValueError, match="retries"):
        dask_executor(client, retries=-1)


# ---------------------------------------------------------------------------- benchmark grid
TIMING_COLUMNS = {"ask_s", "oracle_s", "wall_s"}


def test_frontier_on_dask_equals_the_local_run(tmp_path: Path, capsys) -> None:
    """``--dask local:2`` writes the same rounds.csv values (timings aside) as a local run."""
    from benchmarks.frontier import FRONTIER_SUITES, main
    from benchmarks.layout import is_done, run_dir

    local, remote = tmp_path / "local", tmp_path / "dask"
    common = ["--suite", "smoke", "--no-progress", "--threads", "1"]
    threads = torch.get_num_threads()
    try:  # the Dask workers run with 1 torch thread: so does the reference
        assert main([*common, "--out", str(local), "--workers", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*common, "--out", str(remote), "--dask", "local:2"]) == 0
    out = capsys.readouterr().out
    assert '"rings"' in out.strip().splitlines()[-1]
    cells = FRONTIER_SUITES["smoke"].cells()
    assert len(cells) == 10
    for cell in cells:
        a, b = run_dir(local, *cell), run_dir(remote, *cell)
        assert is_done(b), cell
        ra, rb = pd.read_csv(a / "rounds.csv"), pd.read_csv(b / "rounds.csv")
        keep = [c for c in ra.columns if c not in TIMING_COLUMNS]
        assert list(ra.columns) == list(rb.columns)
        pd.testing.assert_frame_equal(ra[keep], rb[keep], check_exact=True)
    frontier_a = pd.read_csv(local / "frontier.csv")
    frontier_b = pd.read_csv(remote / "frontier.csv")
    pd.testing.assert_frame_equal(frontier_a, frontier_b, check_exact=True)


@pytest.mark.skipif(
    "bench" not in {ep.name for ep in entry_points(group="sqdf_bbo.commands")},
    reason="the benchmarks commands' entry points are not installed (pip install -e .)",
)
def test_bench_cli_on_a_scheduler_address(client, tmp_path: Path, capsys) -> None:
    """``sqdf-bbo bench --dask ADDRESS``: runs land in OUT, a second call resumes (runs none)."""
    from benchmarks.layout import is_done, run_dir
    from sqdf_bbo.cli import main

    argv = ["bench", "--suite", "smoke", "--tasks", "rings", "--methods", "prior,gp-bo"]
    argv += ["--out", str(tmp_path), "--no-progress", "--dask", client.scheduler.address]
    assert main(argv) == 0
    assert "Dask tcp://" in capsys.readouterr().out
    for method in ("prior", "gp-bo"):
        assert is_done(run_dir(tmp_path, "rings", method, 0))
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert suite["runs_done_in_this_invocation"] == 2
    assert main(argv) == 0
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert suite["runs_done_in_this_invocation"] == 0
    assert main([*argv[:-1], "local:0"]) == 2
    assert "local:N needs N >= 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_executor(tmp_path: Path, monkeypatch) -> None:
    """Ray: equal to serial, a dead worker and an import error are reasons (by hand: slow)."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    x = designs()
    ex = RayExecutor(max_retries=0, init_kwargs={"num_cpus": 2, "include_dashboard": False})
    try:
        serial = CallableOracle(square_norm, (2,), chunk_size=CHUNK, noise_std=0.1, seed=4)(x)
        ray_run = CallableOracle(
            square_norm, (2,), chunk_size=CHUNK, noise_std=0.1, seed=4, executor=ex
        )
        assert torch.equal(ray_run(x), serial)

        xk = x.clone()
        xk[N - 1, 0] = 99.0
        fn = functools.partial(square_or_die, str(tmp_path), N - CHUNK)
        killed = CallableOracle(fn, (2,), chunk_size=CHUNK, executor=ex)
        y = killed(xk)
        expected = CallableOracle(square_norm, (2,), chunk_size=CHUNK)(x[: N - CHUNK])
        assert torch.equal(y[: N - CHUNK], expected)
        assert torch.isnan(y[N - CHUNK :]).all()
        assert set(killed.failures) == {N - 2, N - 1}
        assert all(
            r.startswith(f"executor: {WorkerDied.__name__}: worker died")
            for r in killed.failures.values()
        )

        src = tmp_path / "ray_sim_only_here.py"
        src.write_text("def value(v):\n    return float(v.sum())\n")
        spec = importlib.util.spec_from_file_location("ray_sim_only_here", src)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setitem(sys.modules, "ray_sim_only_here", module)
        missing = CallableOracle(module.value, (2,), chunk_size=CHUNK, executor=ex)
        assert torch.isnan(missing(x)).all()
        assert set(missing.failures.values()) == {
            "executor: ModuleNotFoundError: No module named 'ray_sim_only_here'"
        }
    finally:
        ex.shutdown()
