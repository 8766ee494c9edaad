"""Cluster executors for oracles and benchmark grids: Dask and Ray as ``concurrent.futures``.

Any :class:`concurrent.futures.Executor` can be given to an oracle (``executor=``); this
module adapts the two common cluster schedulers to that interface:

* :func:`dask_executor` — a Dask ``distributed.Client`` → an executor (``pip install -e
  ".[dask]"``); :func:`dask_client` opens a client from ``"local:N"`` (a ``LocalCluster``
  of N single-threaded worker processes) or a scheduler address;
* :class:`RayExecutor` — tasks through ``ray.remote`` (``pip install -e ".[ray]"``), with a
  default ``runtime_env`` that puts this project's source folder on the workers'
  ``PYTHONPATH``.

Guarantees, for both:

1. results are matched to their chunk by the oracle (one future per chunk, read in
   submission order), never by completion order;
2. a chunk whose job fails on the cluster becomes failed points with a reason that names
   the cause, never a silent NaN: the oracle base records ``"executor: <reason>"`` for each
   of the chunk's designs. A worker that dies while running the chunk (after the
   scheduler's retries) gives ``"executor: WorkerDied: worker died while running the job
   ..."``; a module the worker cannot import gives ``"executor: ModuleNotFoundError: No
   module named ..."``; other errors keep their type and message;
3. retries: ``retries=`` (Dask: re-runs of a job that raised on the worker; a job whose
   worker died is re-run by the scheduler up to its ``distributed.scheduler.allowed-failures``
   setting, default 3) and ``max_retries=`` (Ray: re-runs after a worker crash; with
   ``retry_exceptions=True`` also after an exception).

The designs' values themselves do not depend on the executor: the same chunks give the
same values as a serial run (``chunk_size`` fixes the chunks).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import os
import pickle
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "WorkerDied",
    "dask_executor",
    "dask_client",
    "parse_dask_spec",
    "RayExecutor",
    "project_root",
    "default_runtime_env",
]


class WorkerDied(RuntimeError):
    """The worker process running a job died (or was lost) before returning its result."""


def _require(module: str, extra: str) -> Any:
    """Import ``module`` or raise an ImportError with the one-line install instruction."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'this needs the optional dependency {extra}: pip install -e ".[{extra}]"'
        ) from exc


def _payload_runner() -> Callable[[bytes], Any]:
    """The job every worker runs: ``run_payload(cloudpickle.dumps((fn, args, kwargs)))``.

    A closure, so cloudpickle sends it by value: unpickling it needs only the standard library
    on the worker. The payload is unpickled inside the job, so a module the worker cannot
    import (the simulator's, or this project's own) fails that job with its
    ``ModuleNotFoundError`` instead of crashing the worker's connection (as it does when Dask
    unpickles a job's arguments itself).
    """

    def run_payload(payload: bytes) -> Any:
        fn, args, kwargs = pickle.loads(payload)
        return fn(*args, **kwargs)

    return run_payload


def _failed(exc: BaseException) -> cf.Future:
    """A finished future holding ``exc`` (a job that could not even be sent)."""
    fut: cf.Future = cf.Future()
    fut.set_exception(exc)
    return fut


def _job_name(fn: Callable[..., Any]) -> str:
    """A readable task-name prefix for schedulers' dashboards: the function's name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", getattr(fn, "__name__", "job")) or "job"


def _chain(inner: cf.Future, translate: Callable[[BaseException], BaseException]) -> cf.Future:
    """A future that takes ``inner``'s result, or its exception passed through ``translate``."""
    outer: cf.Future = cf.Future()

    def _copy(done: cf.Future) -> None:
        if outer.cancelled():
            return
        if done.cancelled():
            if outer.cancel():
                with contextlib.suppress(RuntimeError):  # wake as_completed / wait
                    outer.set_running_or_notify_cancel()
            return
        exc = done.exception()
        if exc is None:
            outer.set_result(done.result())
        else:
            outer.set_exception(translate(exc))

    def _cancel_inner(fut: cf.Future) -> None:
        if fut.cancelled():
            inner.cancel()

    outer.add_done_callback(_cancel_inner)
    inner.add_done_callback(_copy)
    return outer


# ---------------------------------------------------------------------------- Dask
def _translate_dask(exc: BaseException) -> BaseException:
    """Dask's KilledWorker → :class:`WorkerDied` (a short reason); anything else unchanged."""
    if type(exc).__name__ == "KilledWorker":
        tries = getattr(exc, "allowed_failures", None)
        worker = getattr(getattr(exc, "last_worker", None), "address", "?")
        attempts = "" if tries is None else f" on {int(tries) + 1} worker(s)"
        return WorkerDied(
            f"worker died while running the job{attempts} (Dask KilledWorker; last worker {worker})"
        )
    return exc


class _DaskExecutor(cf.Executor):
    """A ``concurrent.futures`` view of a Dask client whose futures name dead workers clearly."""

    def __init__(self, client: Any, retries: int, pure: bool, **submit_kwargs: Any) -> None:
        import cloudpickle  # optional: comes with the dask extra (Dask's own pickler)

        self.client = client
        self._pure = pure
        self._dumps = cloudpickle.dumps
        self._runner = _payload_runner()
        self._inner = client.get_executor(pure=pure, retries=retries, **submit_kwargs)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; a concurrent future of its result."""
        try:
            payload = self._dumps((fn, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - an unpicklable job fails its future
            return _failed(exc)
        # pure jobs get Dask's content key (equal jobs computed once); others a unique one
        key = {} if self._pure else {"key": f"{_job_name(fn)}-{uuid.uuid4().hex}"}
        return _chain(self._inner.submit(self._runner, payload, **key), _translate_dask)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs (the client stays open: its owner closes it)."""
        self._inner.shutdown(wait=wait and not cancel_futures)


def dask_executor(
    client: Any, *, retries: int = 0, pure: bool = False, **submit_kwargs: Any
) -> cf.Executor:
    """A ``concurrent.futures.Executor`` that runs jobs on a Dask ``distributed.Client``.

    Args:
        client: a connected ``distributed.Client``.
        retries: re-runs of a job that raised on the worker (Dask's ``retries``). Oracle
            chunks catch the simulator's own exceptions, so these are mostly deserialization
            errors; jobs of dead workers are re-run by the scheduler (``allowed-failures``).
        pure: Dask's ``pure`` (default False: two submissions of the same designs both run,
            as a noisy or stateful simulator needs).
        submit_kwargs: more ``Client.submit`` options (``workers``, ``resources``,
            ``allow_other_workers``).

    Returns:
        An executor; shutting it down leaves the client open.
    """
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    _require("distributed", "dask")
    return _DaskExecutor(client, retries=retries, pure=bool(pure), **submit_kwargs)


_LOCAL = re.compile(r"local:(\d+)")


def parse_dask_spec(spec: str) -> int | str:
    """``"local:N"`` → ``N`` (workers of a LocalCluster); any other text → a scheduler address."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("the Dask scheduler is empty; give an address or local:N")
    m = _LOCAL.fullmatch(spec)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"local:N needs N >= 1 workers, got {spec!r}")
        return n
    if spec.startswith("local"):
        raise ValueError(f"expected local:N with N an integer >= 1, got {spec!r}")
    return spec


@contextlib.contextmanager
def dask_client(spec: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``, closed (with its LocalCluster) on exit.

    ``spec``: ``"local:N"`` starts a ``LocalCluster`` of N worker processes with one thread
    each and no dashboard; anything else is a scheduler address (``tcp://host:8786``).
    """
    target = parse_dask_spec(spec)
    distributed = _require("distributed", "dask")
    if isinstance(target, int):
        cluster = distributed.LocalCluster(
            n_workers=target, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, distributed.Client(cluster) as client:
            yield client
    else:
        with distributed.Client(target) as client:
            yield client


# ---------------------------------------------------------------------------- Ray
def project_root() -> Path:
    """The folder that holds this project's packages (``oracles``, ``sqdf_bbo``, ``benchmarks``)."""
    return Path(__file__).resolve().parent.parent


def default_runtime_env() -> dict[str, Any]:
    """Ray ``runtime_env`` putting :func:`project_root` first on the workers' ``PYTHONPATH``.

    Enough on one machine or a cluster sharing the file system; for remote nodes without it,
    pass ``runtime_env={"py_modules": [...]}`` or a ``working_dir`` instead.
    """
    paths = [str(project_root())]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


def _translate_ray(exc: BaseException) -> BaseException:
    """Ray's crash errors → :class:`WorkerDied`; a task error → its cause (type and message)."""
    name = type(exc).__name__
    if any(key in name for key in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError")):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        return WorkerDied(f"worker died while running the job (Ray {name}: {first})")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and "RayTaskError" in name:
        return cause
    return exc


class RayExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` that runs each job as a Ray task.

    ``submit(fn, *args)`` returns the concurrent future ``ref.future()`` of one Ray task
    (``ray.remote(...).options(...).remote(...)``) that runs ``fn(*args)`` from a cloudpickled
    payload (see :func:`_payload_runner`), with crash errors renamed :class:`WorkerDied` and
    task errors unwrapped to their cause.

    Args:
        address: Ray cluster to connect to when Ray is not initialized yet (``None``: start a
            local one, ``"auto"``: the running cluster); ignored when it is.
        runtime_env: the tasks' ``runtime_env``; default :func:`default_runtime_env`.
        max_retries: Ray's ``max_retries`` (re-runs after a worker crash; default 0 here,
            where Ray's own default is 3: a simulator that kills its worker fails fast).
        retry_exceptions: also retry jobs that raised.
        num_cpus: CPUs reserved per job.
        init_kwargs: more ``ray.init`` arguments (``num_cpus``, ``include_dashboard``, ...).

    ``shutdown()`` calls ``ray.shutdown()`` only when this executor started Ray.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        runtime_env: Mapping[str, Any] | None = None,
        max_retries: int = 0,
        retry_exceptions: bool = False,
        num_cpus: float = 1,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(max_retries, int) or max_retries < -1:
            raise ValueError(f"max_retries must be an int >= -1 (-1: forever), got {max_retries!r}")
        if not num_cpus > 0:
            raise ValueError(f"num_cpus must be > 0, got {num_cpus!r}")
        self.ray = _require("ray", "ray")
        self.runtime_env = dict(runtime_env) if runtime_env is not None else default_runtime_env()
        self.options = {
            "max_retries": int(max_retries),
            "retry_exceptions": bool(retry_exceptions),
            "num_cpus": num_cpus,
            "runtime_env": self.runtime_env,
        }
        self._started = False
        if not self.ray.is_initialized():
            self.ray.init(address=address, **dict(init_kwargs or {}))
            self._started = True
        self._remote = self.ray.remote(_payload_runner())
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` as a Ray task; a concurrent future of its result."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        try:
            payload = self.ray.cloudpickle.dumps((fn, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - an unpicklable job fails its future
            return _failed(exc)
        ref = self._remote.options(name=_job_name(fn), **self.options).remote(payload)
        return _chain(ref.future(), _translate_ray)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; stop Ray when this executor started it."""
        self._shutdown = True
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
