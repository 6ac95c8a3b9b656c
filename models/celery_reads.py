"""Reading what a periodic task precomputed, and how old it is: precompute against on demand."""

from __future__ import annotations

from array import array

from .arrivals import arrival_events


class Staleness:
    """The ages of the data served (seconds between the moment the data was computed from — the
    start of the run that produced it — and the moment it is read), for reads at or after
    ``window_start_s``."""

    def __init__(self, window_start_s: float):
        self.window_start_s = window_start_s
        self.ages_s = array("d")

    def served(self, now: float, data_s: float) -> None:
        if now >= self.window_start_s:
            self.ages_s.append(now - data_s)


class Reader:
    """Requests that read what a periodic task (``task_type``, sent by beat) last produced — a
    dashboard served from a table an aggregation refreshes — at each arrival of ``arrivals``. A
    read is answered at once from the data of the latest run that succeeded (its start:
    ``task_type.snapshot_s``); before the first one there is nothing to serve (``misses``). The
    latency is nil, the price is the age of the data (``staleness``); computing on request instead
    is a task with a result backend, whose caller waits (:class:`~models.celery_results.ResultWait`)
    for data as old as the run. ``counts``: ``reads``, ``misses``. Simplification: reading the
    stored data takes no time."""

    def __init__(self, env, task_type, arrivals, staleness: Staleness, counts):
        self.env = env
        self.task_type = task_type
        self.arrivals = arrivals
        self.staleness = staleness
        self.counts = counts
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        for arrival in arrival_events(env, self.arrivals):
            yield arrival
            self.counts.add("reads")
            data_s = self.task_type.snapshot_s
            if data_s is None:
                self.counts.add("misses")
            else:
                self.staleness.served(env.now, data_s)

    def held_ids(self):
        return ()
