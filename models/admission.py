"""Admission control in front of a broker: a rate limiter and a bound on the queue, answering busy.

A server that applies back pressure refuses work it cannot do in time rather than queueing it:
an API gateway's token bucket (HTTP 429) and a bounded queue or a bound on the expected wait
(HTTP 503, "server busy, try later"). Whoever sent the message sees ``put`` return False and
decides: an open-loop producer without retries rejects the message, a client backs off and
retries. Deadline shedding — a worker skipping work whose client has given up — lives with the
workers (:class:`~models.workers.WorkerPool`, ``shed_expired``).
"""

from __future__ import annotations

import math
from typing import Callable

from .broker import BrokerBase


class TokenBucket:
    """A token bucket of ``burst`` tokens refilled at ``rate_per_s`` (continuously), full at the
    start: it admits at most ``rate_per_s`` a second in the long run and ``burst`` at once."""

    __slots__ = ("rate_per_s", "burst", "tokens", "last_s")

    def __init__(self, rate_per_s: float, burst: int):
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_s = 0.0

    def _refill(self, now: float) -> None:
        if now > self.last_s:
            self.tokens = min(self.burst, self.tokens + (now - self.last_s) * self.rate_per_s)
            self.last_s = now

    def has_token(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


class AdmissionGate(BrokerBase):
    """Stands in front of ``broker`` and takes its ``put``: a message is refused when the
    ``rate_limiter`` (a :class:`TokenBucket`) has no token ("throttled", HTTP 429), when
    ``max_queue`` messages are waiting, or when the estimated wait of a newcomer — messages
    waiting / the consumers' service capacity, i.e. queue length × mean service time / workers —
    exceeds ``max_wait_s`` ("busy", HTTP 503); otherwise the broker decides (it may refuse too,
    e.g. a full ``capacity``). A token is spent only by an admitted message.

    The queue length is the broker's ``waiting``; ``capacity_per_s()`` gives the consumers'
    current service capacity (workers present / mean service time, summed over the pools
    consuming the broker), so that the bound follows worker losses and autoscaling. With no worker present the estimated wait is infinite unless nothing
    waits.

    Everything but ``put`` goes straight to the broker (a worker pool may consume through the
    gate: ``receive``, ``ack``... are the broker's); the broker's messages are its own
    (``held_ids`` is empty).

    Simplification: the estimate uses the configured mean service time, not a measured one (a
    real server would estimate it from recent requests, and would see a slowdown).
    """

    def __init__(self, env, name, broker, counts, capacity_per_s: Callable[[], float],
                 max_queue=None, max_wait_s=None, rate_limiter: TokenBucket | None = None):
        self.env = env
        self.name = name
        self.broker = broker
        self.counts = counts
        self.capacity_per_s = capacity_per_s
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.rate_limiter = rate_limiter

    @property
    def waiting(self) -> int:
        return self.broker.waiting

    def estimated_wait_s(self) -> float:
        waiting = self.broker.waiting
        if waiting <= 0:
            return 0.0
        capacity = self.capacity_per_s()
        return waiting / capacity if capacity > 0 else math.inf

    def put(self, message) -> bool:
        now = self.env.now
        limiter = self.rate_limiter
        if limiter is not None and not limiter.has_token(now):
            self.counts.add("throttled")
            return False
        if self.max_queue is not None and self.broker.waiting >= self.max_queue:
            self.counts.add("busy")
            return False
        if self.max_wait_s is not None and self.estimated_wait_s() > self.max_wait_s:
            self.counts.add("busy")
            return False
        if not self.broker.put(message):
            self.counts.add("refused_by_broker")
            return False
        if limiter is not None:
            limiter.take(now)
        self.counts.add("admitted")
        return True

    def receive(self, consumer):
        return self.broker.receive(consumer)

    def ack(self, delivery) -> float:
        return self.broker.ack(delivery)

    def nack(self, delivery) -> float:
        return self.broker.nack(delivery)

    def disconnect(self, consumer, deliveries) -> None:
        self.broker.disconnect(consumer, deliveries)

    def publish_gate(self):
        return self.broker.publish_gate()

    def accept_dead_letter(self, message) -> bool:
        return self.broker.accept_dead_letter(message)

    def held_ids(self):
        return ()
