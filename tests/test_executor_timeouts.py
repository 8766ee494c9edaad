"""Executor jobs that never return (issue 16, item 3): with ``chunk_timeout`` a stuck job is
cancelled after that many seconds and its points fail with a reason, as transient failures;
the other chunks keep their values. Dask workers stopped or stuck: tests/test_cluster.py."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from oracles import CallableOracle
from tests.test_optimizer_contract import GaussianSearch

RELEASE = threading.Event()  # set at the end of each test: stuck threads then return


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    RELEASE.clear()
    executor = ThreadPoolExecutor(max_workers=4)
    try:
        yield executor
    finally:
        RELEASE.set()
        executor.shutdown(wait=True)


def stuck_if_negative(v: torch.Tensor) -> float:
    """A simulator that hangs on designs whose first coordinate is negative."""
    if float(v[0]) < 0:
        RELEASE.wait(60)
        return 0.0
    return float(v.sum())


def test_a_stuck_chunk_becomes_transient_failures(pool: ThreadPoolExecutor) -> None:
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0], [-2.0, 0.0], [3.0, 1.0], [0.5, 0.5]])
    oracle = CallableOracle(stuck_if_negative, (2,), executor=pool, chunk_size=2, chunk_timeout=0.5)
    t0 = time.monotonic()
    y = oracle(x)
    waited = time.monotonic() - t0
    assert torch.equal(y[[0, 1, 4, 5]], torch.tensor([2.0, 2.0, 4.0, 1.0], dtype=torch.float64))
    assert torch.isnan(y[[2, 3]]).all()
    assert oracle.transient_failures == {2, 3}
    assert set(oracle.failures) == {2, 3}
    assert oracle.failures[2].startswith("executor: ChunkTimeout: no result within 0.5 s")
    assert waited < 30, "the call returned without waiting for the stuck job"


def test_run_tells_timed_out_points_as_transient(pool: ThreadPoolExecutor) -> None:
    opt = GaussianSearch(batch_size=6, seed=0)
    oracle = CallableOracle(stuck_if_negative, (2,), executor=pool, chunk_timeout=0.3)
    opt.run(oracle, budget=6, progress=False)
    h = opt.history
    x0 = opt.x[:, 0]
    assert opt.pending == [] and bool((x0 < 0).any()) and bool((x0 >= 0).any())
    assert h["state"].tolist() == ["failed" if v < 0 else "complete" for v in x0.tolist()]
    assert h["transient"].tolist() == [v < 0 for v in x0.tolist()]
    assert all("chunk_timeout" in r for r in h.loc[h["transient"], "reason"])


def test_a_job_raising_its_own_timeout_error_is_a_design_failure(pool) -> None:
    def slow(v: torch.Tensor) -> float:
        raise TimeoutError("solver gave up")

    oracle = CallableOracle(slow, (2,), executor=pool, chunk_timeout=5.0)
    y = oracle(torch.zeros(2, 2))
    assert torch.isnan(y).all()
    assert oracle.failures == {0: "TimeoutError: solver gave up", 1: "TimeoutError: solver gave up"}
    assert oracle.transient_failures == set()


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"chunk_timeout": 0.0}, ValueError, "finite number > 0"),
        ({"chunk_timeout": math.inf}, ValueError, "finite number > 0"),
        ({"chunk_timeout": "5"}, TypeError, "must be a number"),
        ({"chunk_timeout": True}, TypeError, "must be a number"),
    ],
)
def test_chunk_timeout_is_checked(kwargs: dict, error: type, fragment: str, pool) -> None:
    with pytest.raises(error, match=fragment):
        CallableOracle(stuck_if_negative, (2,), executor=pool, **kwargs)


def test_chunk_timeout_needs_an_executor() -> None:
    with pytest.raises(ValueError, match="chunk_timeout needs an executor"):
        CallableOracle(stuck_if_negative, (2,), chunk_timeout=1.0)
