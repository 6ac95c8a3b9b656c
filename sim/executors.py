"""Executors: where the replications of runs, sweeps, capacity searches and reports run.

An executor maps a function over tasks (tuples of arguments) and yields ``(task index, result)``
as each task finishes, in whatever order they finish:

- :class:`SerialExecutor` runs them one after the other in this process (``jobs=1``);
- :class:`ProcessExecutor` on local processes (``concurrent.futures``; all cores by default);
- :class:`DaskExecutor` on a Dask distributed cluster (``--cluster tcp://scheduler:8786``), or on
  a local Dask cluster it starts itself (``--cluster local``).

The work asyncsim gives them is ``sim.runner.safe_replication(scenario, replication, seed)``, a
pure function of its arguments, so results do not depend on the executor, the number of workers
or the order tasks finish in. On a remote cluster every worker needs asyncsim installed (the same
version), since tasks refer to its functions by name.

An executor is reusable: a capacity search submits many small batches to the same pool. Use it
as a context manager, or call :meth:`Executor.close`.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence


CONNECT_TIMEOUT_S = 20.0


class ExecutorError(RuntimeError):
    """The executor itself failed (a worker process died, a cluster is unreachable)."""


class Executor:
    """Runs tasks and yields their results as they complete."""

    name = "executor"

    @property
    def workers(self) -> int:
        """How many tasks run at once."""
        return 1

    def map_unordered(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Call ``fn(*task)`` for every task; yield ``(index of the task, result)`` as each finishes.

        Closing the generator early (an exception in the consumer, Ctrl-C) cancels the tasks that
        have not started."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SerialExecutor(Executor):
    """One task after the other, in this process (no pickling; the easiest to debug)."""

    name = "serial"

    def map_unordered(self, fn, tasks):
        for index, task in enumerate(tasks):
            yield index, fn(*task)

    def describe(self) -> str:
        return "this process"


def ignore_interrupts() -> None:
    """A worker process's initializer: Ctrl-C (SIGINT, sent by a terminal to every process of the
    foreground group) is for the parent, which stops the workers itself, without their tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor(Executor):
    """Local processes (``concurrent.futures.ProcessPoolExecutor``), started on first use.

    Tasks are handed to the pool a few at a time beyond the number of processes, so that a
    consumer that stops early leaves little queued work behind. The workers ignore Ctrl-C; when
    the consumer stops while tasks still run (Ctrl-C, an error), the workers are ended at once,
    in the middle of their tasks, and the next map starts a new pool."""

    name = "processes"

    def __init__(self, jobs: int | None = None):
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self.jobs

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' if self.jobs != 1 else ''}"

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=ignore_interrupts)
        return self._pool

    def map_unordered(self, fn, tasks):
        if not tasks:
            return
        pool = self._get_pool()
        ahead = 2 * self.jobs
        queue = iter(enumerate(tasks))
        running: dict = {}

        def feed() -> None:
            while len(running) < ahead:
                item = next(queue, None)
                if item is None:
                    return
                index, task = item
                running[pool.submit(fn, *task)] = index

        try:
            feed()
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        self._pool = None
                        raise ExecutorError(f"a local worker process died ({exc})") from None
                    yield index, result
                feed()
        finally:
            if running:
                self._stop_workers()

    def _stop_workers(self) -> None:
        """End the pool now: queued tasks cancelled, running ones killed with their processes.
        A second Ctrl-C meanwhile is ignored (it would leave the pool's threads half stopped)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for process in list((pool._processes or {}).values()):  # no public way before Python 3.14
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """A Dask distributed cluster: ``address`` of its scheduler (``tcp://host:8786``), or ``local``
    (or ``local:N``) to start a :class:`distributed.LocalCluster` of N single-threaded processes.

    Every task is a separate Dask task (``client.submit(..., pure=False)``), gathered with
    ``distributed.as_completed``."""

    name = "dask"

    def __init__(self, address: str, jobs: int | None = None, timeout_s: float | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - declared as a dependency
            raise ExecutorError(f"--cluster needs dask.distributed: {exc}") from None
        self.address = address
        self._cluster = None
        try:
            if address == "local" or address.startswith("local:"):
                n = int(address.partition(":")[2] or jobs or os.cpu_count() or 1)
                if n < 1:
                    raise ValueError(f"a local cluster needs at least one worker, got '{address}'")
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
                self.client = Client(self._cluster)
            else:
                self.client = Client(address, timeout=f"{timeout_s or CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise ExecutorError(f"cannot connect to the Dask scheduler at '{address}': {exc}") from None

    @property
    def workers(self) -> int:
        info = self.client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def describe(self) -> str:
        return f"the Dask cluster at {self.client.scheduler.address} ({self.workers} worker thread(s))"

    def map_unordered(self, fn, tasks):
        from distributed import as_completed

        if not tasks:
            return
        futures = {}
        for index, task in enumerate(tasks):
            futures[self.client.submit(fn, *task, pure=False)] = index
        pending = set(futures)
        try:
            for future in as_completed(list(futures)):
                pending.discard(future)
                try:
                    result = future.result()
                except Exception as exc:
                    raise ExecutorError(f"a task failed on the Dask cluster: {type(exc).__name__}: {exc}") from None
                yield futures[future], result
        finally:
            if pending:
                self.client.cancel(list(pending))

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(jobs: int | None = None, cluster: str | None = None, tasks: int | None = None) -> Executor:
    """The executor for ``--jobs``/``--cluster``: Dask when a cluster is named, else ``jobs``
    local processes (all cores by default, no more than ``tasks`` when given), in this process
    when that makes one."""
    if cluster:
        return DaskExecutor(cluster, jobs=jobs)
    if tasks is not None:
        jobs = max(1, min(jobs or os.cpu_count() or 1, tasks))
    if jobs == 1:
        return SerialExecutor()
    return ProcessExecutor(jobs)
