"""Celery's result backend, and the callers that wait for a task's result."""

from __future__ import annotations

import math
from collections import deque
from typing import Callable


class ResultBackend:
    """Where a task's outcome is stored (Redis, a database): a write takes ``write_time()``; a
    result (success, or FAILURE for a task that failed for good) is kept ``expires_s``
    (``result_expires``, one day by default; Celery's periodic ``backend_cleanup`` or Redis's key
    TTL removes it), whether or not anyone read it. The pool child that ran the task writes its
    state before it takes the next one (Celery 5.x, ``celery/app/trace.py``:
    ``backend.mark_as_done`` inside the traced call, ``mark_as_retry`` and ``mark_as_failure``
    in its error handling), so that write is the child's time
    (:meth:`~models.celery_worker.CeleryWorker`); the main process writes the FAILURE of a task
    its hard time limit killed (``Request.on_timeout``), with the latency only.

    ``stored`` is the boundary of the results kept (its mean is the backend's size in results);
    ``counts`` gets ``results_written`` (final states: RETRY states are not counted)."""

    def __init__(self, env, write_time: Callable[[], float], expires_s: float, stored, counts):
        self.env = env
        self.write_time = write_time
        self.expires_s = expires_s
        self.stored = stored
        self.counts = counts
        self.kept: deque[float] = deque()
        self._expiring = False

    def store(self, then: Callable[[float], None], written: bool = False) -> None:
        """Write a result now (``written``: it has just been written, by the child); ``then(written_s)``
        once it is written."""
        if written:
            self._written(then)
            return
        self.env.timeout(self.write_time()).callbacks.append(lambda _: self._written(then))

    def _written(self, then: Callable[[float], None]) -> None:
        now = self.env.now
        self.kept.append(now)
        self.stored.enter(now)
        self.counts.add("results_written")
        if not self._expiring:
            self._expiring = True
            self.env.process(self._expire())
        then(now)

    def _expire(self):
        """Results leave in the order they were written (they all live ``expires_s``)."""
        while self.kept:
            yield self.env.timeout(self.kept[0] + self.expires_s - self.env.now)
            self.stored.leave(self.env.now, self.kept.popleft())
        self._expiring = False


class ResultWait:
    """How the caller of ``delay()`` waits for the result: ``AsyncResult.get()`` blocking on the
    backend (``poll_interval_s`` None: it sees a result as soon as it is written, as Redis's
    pub/sub tells it), or polling every ``poll_interval_s`` from the call (``get(interval=…)`` on
    a backend without push, or the application's own loop). ``awaiting`` is the boundary of the
    callers waiting: its sojourn is the latency the caller sees, result delivery included;
    ``staleness`` (a :class:`~models.celery_reads.Staleness`, or None) gets the age of each
    successful result when its caller sees it (from the start of the run that computed it)."""

    def __init__(self, env, backend: ResultBackend, awaiting, poll_interval_s: float | None = None, staleness=None):
        self.env = env
        self.backend = backend
        self.awaiting = awaiting
        self.poll_interval_s = poll_interval_s
        self.staleness = staleness

    def seen_at(self, sent_s: float, written_s: float) -> float:
        """When a caller who called at ``sent_s`` sees a result written at ``written_s``."""
        interval = self.poll_interval_s
        if interval is None:
            return written_s
        return sent_s + math.ceil((written_s - sent_s) / interval - 1e-9) * interval

    def outcome(self, sent_s: float, stored: bool, then: Callable[[float], None] | None = None, data_s: float | None = None,
                written: bool = False) -> None:
        """The task has its outcome now: with a result (``stored``) the caller sees it once it is
        written (``written``: it just was, by the child) and found; without one (the task was
        lost) the caller stops waiting now (it would wait for ever, or until its own timeout).
        ``then(written_s)``: told when the result is written (now, without one); ``data_s``: when
        a successful run started."""
        if not stored:
            self.awaiting.leave(self.env.now, sent_s)
            if then is not None:
                then(self.env.now)
            return

        def written_by(written_s: float) -> None:
            if then is not None:
                then(written_s)
            seen = self.seen_at(sent_s, written_s)
            if seen <= written_s:
                self._seen(written_s, sent_s, data_s)
            else:
                self.env.timeout(seen - written_s).callbacks.append(lambda _: self._seen(seen, sent_s, data_s))

        self.backend.store(written_by, written)

    def _seen(self, now: float, sent_s: float, data_s: float | None) -> None:
        self.awaiting.leave(now, sent_s)
        if self.staleness is not None and data_s is not None:
            self.staleness.served(now, data_s)
