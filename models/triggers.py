"""What pushes a system into overload: arrival spikes, service that slows down, workers lost.

These are the *triggers* of metastable failures (Bronson et al., HotOS 2021): a load spike or a
capacity loss that lasts a few seconds. Whether the system comes back when the trigger ends
depends on what sustains the overload afterwards (retries, timeouts), not on the trigger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class SpikedArrivals:
    """An arrival process whose rate is multiplied by ``multiplier`` from ``at_s`` for
    ``duration_s`` seconds (a flash crowd, a batch job, clients reconnecting at once).

    The inner process runs on a clock that goes ``multiplier`` times faster during the spike: a
    Poisson process of rate λ becomes exactly a Poisson process of rate λ·multiplier during the
    spike and λ again after it, a deterministic one has its gaps divided by the multiplier, a
    schedule has each rate multiplied. After the spike the inner process is ahead by
    (multiplier − 1)·duration of its own time (what it would have sent later it sent during the
    spike), which for a stationary process changes nothing.
    """

    def __init__(self, inner, at_s: float, duration_s: float, multiplier: float):
        self.inner = inner
        self.at_s = at_s
        self.end_s = at_s + duration_s
        self.multiplier = multiplier
        self.shift_s = (multiplier - 1.0) * duration_s  # inner time gained by the end of the spike

    def _inner_time(self, t: float) -> float:
        if t <= self.at_s:
            return t
        if t < self.end_s:
            return self.at_s + (t - self.at_s) * self.multiplier
        return t + self.shift_s

    def _real_time(self, v: float) -> float:
        if v <= self.at_s:
            return v
        if v < self.at_s + (self.end_s - self.at_s) * self.multiplier:
            return self.at_s + (v - self.at_s) / self.multiplier
        return v - self.shift_s

    def next_arrival(self, now: float) -> float | None:
        v = self.inner.next_arrival(self._inner_time(now))
        return None if v is None else max(now, self._real_time(v))


@dataclass
class Slowdown:
    """How a pool's service time grows with load (see :class:`LoadDependentServiceTime`)."""

    per_concurrent_s: float = 0.0
    per_waiting_s: float = 0.0
    from_s: float | None = None
    until_s: float | None = None
    factor: float = 1.0


class LoadDependentServiceTime:
    """A service time that grows with load: the ``base`` draw, times ``factor`` while
    ``from_s ≤ now < until_s`` (a slowdown window: a noisy neighbour, a cold cache, a degraded
    disk), plus ``per_concurrent_s`` for every other message in service in the pool when this one
    starts (contention for CPU, locks, connections), plus ``per_waiting_s`` for every message
    waiting in the broker (a queue grown beyond memory: cache misses, swapping, GC).

    ``in_service`` is the pool's ``{consumer: start}`` of messages in service and ``broker`` the
    broker it consumes (its ``waiting`` count), both read at each draw.

    Simplification: the load is read when the service starts and fixes its length (a processor
    shared by the concurrent requests would stretch a service already under way as the load
    grew).
    """

    def __init__(self, env, base, slowdown: Slowdown, in_service: dict, broker):
        self.env = env
        self.base = base
        self.per_concurrent_s = slowdown.per_concurrent_s
        self.per_waiting_s = slowdown.per_waiting_s
        self.from_s = slowdown.from_s if slowdown.from_s is not None else math.inf
        self.until_s = slowdown.until_s if slowdown.until_s is not None else math.inf
        self.factor = slowdown.factor
        self.in_service = in_service
        self.broker = broker

    def __call__(self) -> float:
        duration = self.base()
        if self.from_s <= self.env.now < self.until_s:
            duration *= self.factor
        if self.per_concurrent_s:
            duration += self.per_concurrent_s * max(len(self.in_service) - 1, 0)
        if self.per_waiting_s:
            duration += self.per_waiting_s * self.broker.waiting
        return duration


class CapacityLoss:
    """``workers`` of a pool become unavailable from ``from_s`` to ``until_s`` (a host lost, a
    zone down, a deploy taking instances out): each finishes the message in hand and takes no
    more; at ``until_s`` as many workers come back."""

    def __init__(self, env, pool, from_s: float, until_s: float, workers: int):
        self.env = env
        self.pool = pool
        self.from_s = from_s
        self.until_s = until_s
        self.workers = workers
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        yield env.timeout(self.from_s - env.now)
        removed = self.pool.retire_workers(self.workers)
        yield env.timeout(self.until_s - env.now)
        self.pool.add_workers(removed)
