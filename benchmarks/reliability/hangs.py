"""Stuck and stopped executor workers (issue 16, item 3): ``opt.run(oracle, budget=4)`` with
``chunk_timeout`` on a thread pool and on a Dask cluster of worker processes, where the jobs
of some designs never return, a worker is stopped (SIGSTOP) or a job kills its own worker.
``run`` must return within about (stuck jobs) × ``chunk_timeout``, with the stuck points
failed as transient failures with a reason and every other value told bit-exactly — or, for
a job queued behind stuck ones on a worker that never freed up, failed as transient too;
nothing may stay pending.

Which designs misbehave is decided by the design itself (``x[0] < x[1]``), so that a job
knows it without knowing its place in the batch; a probe whose batch holds none of them
says so (an unexpected outcome) instead of passing unexercised.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.reliability.common import Probe, Sizes, new_sqdf, read_study, same_value
from oracles import CallableOracle
from oracles.cluster import dask_executor
from sqdf_bbo.optimizers.base import Optimizer

TIMEOUT = 2.0  # chunk_timeout of every probe (seconds)
RELEASE = threading.Event()  # the thread pool's stuck jobs return once it is set


def misbehaves(v: torch.Tensor) -> bool:
    """The designs whose jobs hang, stop or crash."""
    return float(v[0]) < float(v[1])


def value(v: torch.Tensor) -> float:
    """What a design that behaves is worth."""
    return float((v.double() ** 2).sum())


def hang_in_thread(v: torch.Tensor) -> float:
    """Never returns for misbehaving designs (until the probe ends)."""
    if misbehaves(v):
        RELEASE.wait(600)
        return math.nan
    return value(v)


def hang_on_worker(flag: str, v: torch.Tensor) -> float:
    """Never returns for misbehaving designs (until ``flag`` exists, at most 600 s)."""
    if misbehaves(v):
        deadline = time.monotonic() + 600
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
        return math.nan
    return value(v)


def kill_worker(v: torch.Tensor) -> float:
    """Kills the worker process running it for misbehaving designs."""
    if misbehaves(v):
        os._exit(1)
    return value(v)


@dataclass(frozen=True)
class HangCase:
    """``fn`` evaluated on ``executor_of(context)``; ``stop``: SIGSTOP one Dask worker first."""

    name: str
    dask: bool
    fn: Callable[[Path], Callable[[torch.Tensor], float]]
    stop: bool = False


def hang_cases() -> list[HangCase]:
    """A thread pool's stuck jobs; a Dask cluster's stuck jobs, stopped worker, dying workers."""
    return [
        HangCase("thread pool: jobs that never return", False, lambda w: hang_in_thread),
        HangCase(
            "Dask processes: jobs that never return",
            True,
            lambda w: functools.partial(hang_on_worker, str(w / "release")),
        ),
        HangCase("Dask processes: one worker stopped (SIGSTOP)", True, lambda w: value, stop=True),
        HangCase("Dask processes: jobs that kill their worker", True, lambda w: kill_worker),
    ]


HANG_CASES = tuple(c.name for c in hang_cases())


@contextlib.contextmanager
def dask_cluster() -> Iterator[Any]:
    """A LocalCluster of 2 single-threaded worker processes and its client (Dask's default
    retries of jobs whose worker died: a user's setting)."""
    import distributed  # optional: the dask extra

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    with cluster, distributed.Client(cluster) as client:
        for module in ("torch", "oracles.base"):  # imported before the clock runs
            client.run(__import__, module)
        yield client


def hang_probe(case: HangCase, executor: Executor, client: Any, folder: Path) -> Probe:
    """``run`` with ``chunk_timeout``; judge the time it took and what was stored."""
    folder.mkdir(parents=True)
    opt = new_sqdf(folder / "s")
    oracle = CallableOracle(
        case.fn(folder), (2,), executor=executor, chunk_size=1, chunk_timeout=TIMEOUT
    )
    stopped = None
    if case.stop:
        stopped = sorted(client.run(os.getpid).values())[0]
        os.kill(stopped, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        opt.run(oracle, budget=4, progress=False)
    finally:
        seconds = time.monotonic() - t0
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        (folder / "release").touch()
        RELEASE.set()
        x = opt.x
        opt.close()
    return judge(case, folder / "s", x, seconds)


def judge(case: HangCase, study: Path, x: torch.Tensor, seconds: float) -> Probe:
    """Every misbehaving design failed transient with a reason; every other point told its
    exact value or — queued behind stuck jobs on a busy worker, where it could not run — a
    transient failure too; none pending; ``run`` returned in time."""
    stored = read_study(study)
    h = Optimizer.load(study, attach=False).history.set_index("id")
    problems: list[str] = []
    lost = transient = queued = 0
    for i in range(4):
        state = stored.states[i]
        failed = state == "failed" and bool(h.loc[i, "transient"]) and bool(h.loc[i, "reason"])
        bad = misbehaves(x[i]) and not case.stop
        if failed:
            transient += 1
            queued += not bad and not case.stop
        elif bad or state != "complete" or not same_value(stored.values[i], value(x[i])):
            lost += state == "complete"
            problems.append(f"id {i}: {state}, transient {h.loc[i, 'transient']}")
    if transient == 0:
        problems.append("no job misbehaved in this batch (the probe exercised nothing)")
    limit = 4 * TIMEOUT + 5.0
    if seconds > limit:
        problems.append(f"run took {seconds:.1f} s (limit {limit:.0f} s)")
    note = f" ({queued} queued behind stuck jobs)" if queued else ""
    return Probe(
        "stuck workers",
        case.name,
        f"returned: {4 - transient} told, {transient} transient failures{note}"
        if not problems
        else "WRONG",
        checked=4 - transient,
        lost=lost,
        ok=not problems,
        detail="; ".join([f"{seconds:.1f} s", *problems[:3]]),
    )


def hang_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Every hang case (or those named in ``sizes.hang_cases``)."""
    cases = [c for c in hang_cases() if sizes.hang_cases is None or c.name in sizes.hang_cases]
    probes = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        RELEASE.clear()
        for k, case in enumerate(c for c in cases if not c.dask):
            probes.append(hang_probe(case, pool, None, work / f"case-{k:02d}"))
    dask_cases = [c for c in cases if c.dask]
    if dask_cases and importlib.util.find_spec("distributed") is None:
        probes += [
            Probe("stuck workers", c.name, "not run: dask is not installed") for c in dask_cases
        ]
    elif dask_cases:
        with dask_cluster() as client:
            for k, case in enumerate(dask_cases):
                folder = work / f"dask-{k:02d}"
                probes.append(hang_probe(case, dask_executor(client), client, folder))
    log(f"  {len(probes)} stuck-worker probes")
    return probes
