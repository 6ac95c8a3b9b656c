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

Tasks are taken from their iterable lazily and handed out as capacity frees: at most
:data:`AHEAD_PER_WORKER` per worker are submitted and not finished at any time, so a million
replications cost nothing before they run and a consumer that stops leaves little behind.

An executor is reusable: a capacity search submits many small batches to the same pool. Use it
as a context manager, or call :meth:`Executor.close`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator


CONNECT_TIMEOUT_S = 20.0
AHEAD_PER_WORKER = 2
"""Tasks submitted per worker and not yet finished: one running, one queued to start at once."""


class ExecutorError(RuntimeError):
    """The executor itself failed (a worker process died, a cluster is unreachable)."""


_progress_slots = None
_progress_slot = 0


def report_progress(share: float) -> None:
    """Told by a running replication: the share of its simulated time done (0 to 1). Written in
    this process's slot, where the executor that runs it reads it (:meth:`Executor.in_flight`)."""
    if _progress_slots is not None:
        _progress_slots[_progress_slot] = share


def use_progress_slot(slots, slot: int) -> None:
    """Report this process's progress in ``slots[slot]`` (None: report nowhere)."""
    global _progress_slots, _progress_slot
    _progress_slots, _progress_slot = slots, slot


class Executor:
    """Runs tasks and yields their results as they complete."""

    name = "executor"

    @property
    def workers(self) -> int:
        """How many tasks run at once."""
        return 1

    def map_unordered(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[tuple[int, Any]]:
        """Call ``fn(*task)`` for every task (taken as capacity frees); yield ``(index of the task,
        result)`` as each finishes.

        Closing the generator early (an exception in the consumer, Ctrl-C) cancels the tasks that
        have not started."""
        raise NotImplementedError

    def in_flight(self) -> float:
        """How much of the running tasks is done, in tasks: the sum of the shares of simulated
        time the replications running now have reported (0 where they cannot tell)."""
        return 0.0

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

    def __init__(self):
        self._slots = [0.0]

    def in_flight(self) -> float:
        return self._slots[0] if self._slots[0] < 1.0 else 0.0

    def map_unordered(self, fn, tasks):
        for index, task in enumerate(tasks):
            use_progress_slot(self._slots, 0)
            try:
                result = fn(*task)
            finally:
                use_progress_slot(None, 0)
                self._slots[0] = 0.0
            yield index, result

    def describe(self) -> str:
        return "this process"


def start_worker(slots, taken) -> None:
    """A worker process's initializer. Ctrl-C (SIGINT, sent by a terminal to every process of the
    foreground group) is for the parent, which stops the workers itself, without their tracebacks;
    the worker takes the next free slot of ``slots`` to report its replications' progress in."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with taken.get_lock():
        slot, taken.value = taken.value, taken.value + 1
    use_progress_slot(slots, slot % len(slots))


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
        self._slots = None

    @property
    def workers(self) -> int:
        return self.jobs

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' if self.jobs != 1 else ''}"

    def in_flight(self) -> float:
        # a slot at 1 is a replication finished (and counted) whose worker has not started the next
        return sum(share for share in self._slots if share < 1.0) if self._slots is not None and self._pool is not None else 0.0

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._slots = multiprocessing.Array("d", self.jobs, lock=False)
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=start_worker,
                                             initargs=(self._slots, multiprocessing.Value("i", 0)))
        return self._pool

    def map_unordered(self, fn, tasks):
        pool = self._get_pool()
        ahead = AHEAD_PER_WORKER * self.jobs
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
            # the pool's internals, for want of a public way: its processes, the pipe they send
            # results on, and the thread that reads it
            processes, results, manager = list((pool._processes or {}).values()), pool._result_queue, pool._executor_manager_thread
            # stop the pool's manager first (queued tasks cancelled), then end the workers and wait
            # for them: joining the manager after killing its workers can wait for ever
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
            # a worker killed while sending its result leaves the pool's manager thread waiting
            # for the rest of the message, and the interpreter joins that thread at exit: with
            # every worker gone, closing this process's end of the result pipe ends that wait.
            # The thread is waited for here, so that at exit nothing races it to its wake-up pipe
            results._writer.close()
            if manager is not None:
                manager.join()
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

        queue = iter(enumerate(tasks))
        running: dict = {}
        completed = as_completed()
        ahead = AHEAD_PER_WORKER * self.workers

        def feed() -> None:
            for index, task in itertools.islice(queue, max(0, ahead - len(running))):
                future = self.client.submit(fn, *task, pure=False)
                running[future] = index
                completed.add(future)

        try:
            feed()
            while running:
                future = next(completed)
                index = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    raise ExecutorError(f"a task failed on the Dask cluster: {type(exc).__name__}: {exc}") from None
                yield index, result
                feed()
        finally:
            if running:
                self.client.cancel(list(running))

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
