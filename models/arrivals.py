"""Arrival processes: each answers "when is the next arrival after ``now``?".

An arrival process returns absolute times, so that a rate that changes with the clock (a
schedule) and a recorded trace fit the same interface as a constant-rate process. ``None`` means
no more arrivals.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence


def arrival_events(env, arrivals):
    """The timeouts a process waits on, one to each arrival of ``arrivals`` (whose
    ``next_arrival(now)`` gives the next arrival time, or None when there are no more): a
    process runs ``for arrival in arrival_events(env, arrivals): yield arrival`` and acts at
    each arrival."""
    while True:
        at = arrivals.next_arrival(env.now)
        if at is None:
            return
        yield env.timeout(at - env.now)


class PoissonArrivals:
    """Exponential gaps of mean 1/rate (``gap`` draws them): a Poisson process."""

    def __init__(self, gap: Callable[[], float]):
        self.gap = gap

    def next_arrival(self, now: float) -> float | None:
        return now + self.gap()


class RenewalArrivals(PoissonArrivals):
    """Independent, identically distributed gaps from any distribution."""


class DeterministicArrivals:
    """One arrival every ``1 / rate_per_s`` seconds, the first one gap after the start."""

    def __init__(self, rate_per_s: float):
        self.gap_s = 1.0 / rate_per_s

    def next_arrival(self, now: float) -> float | None:
        return now + self.gap_s


class ScheduleArrivals:
    """A Poisson process whose rate is piecewise constant over time.

    ``steps`` is a list of ``(duration_s, rate_per_s)``. With ``repeat`` the steps form a cycle
    (a daily curve); without it, the last step's rate holds after the steps end. Gaps are drawn as
    unit exponentials divided by the current rate; a gap that would cross into the next step is
    discarded and drawn again from the step's start, which is exact for a Poisson process because
    it has no memory.
    """

    def __init__(self, steps: Sequence[tuple[float, float]], repeat: bool, unit_gap: Callable[[], float]):
        self.rates = [rate for _, rate in steps]
        self.ends: list[float] = []
        total = 0.0
        for duration, _ in steps:
            total += duration
            self.ends.append(total)
        self.cycle_s = total
        self.repeat = repeat
        self.unit_gap = unit_gap

    def _step(self, t: float) -> tuple[float, float]:
        """(rate, end of its step) at time ``t``."""
        if self.repeat:
            cycle = math.floor(t / self.cycle_s)
            offset = cycle * self.cycle_s
        elif t >= self.cycle_s:
            return self.rates[-1], math.inf
        else:
            offset = 0.0
        i = bisect.bisect_right(self.ends, t - offset)
        while i == len(self.ends) or offset + self.ends[i] <= t:
            i += 1
            if i >= len(self.ends):
                offset += self.cycle_s
                i = 0
        return self.rates[i], offset + self.ends[i]

    def next_arrival(self, now: float) -> float | None:
        t = now
        while True:
            rate, end = self._step(t)
            if rate > 0:
                candidate = t + self.unit_gap() / rate
                if candidate < end:
                    return candidate
            if math.isinf(end):
                return None
            t = end


class TraceArrivals:
    """Arrivals at recorded times (sorted, in seconds from the start); none after the last."""

    def __init__(self, times_s: Sequence[float]):
        self.times_s = list(times_s)
        self._next = 0

    def next_arrival(self, now: float) -> float | None:
        times = self.times_s
        i = self._next
        while i < len(times) and times[i] < now:
            i += 1
        if i == len(times):
            return None
        self._next = i + 1
        return times[i]
