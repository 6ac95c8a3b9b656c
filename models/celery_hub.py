"""Celery's rate limits as its worker's event loop runs them (Celery 5.x with kombu 5.x)."""

from __future__ import annotations

import heapq
from typing import Callable

MAX_TIMERS_PER_PASS = 10
"""``Hub.fire_timers(max_timers=10)``: timers fired in one pass of the loop."""
MIN_DELAY_S = 1.0
"""``fire_timers(min_delay=1)``: the poll timeout when no timer says otherwise."""
MAX_DELAY_S = 10.0
TIMER_MAX_INTERVAL_S = 2.0
"""``kombu.asynchronous.timer.DEFAULT_MAX_INTERVAL``: the longest wait the timer asks for."""


class TokenBucket:
    """``kombu.utils.limits.TokenBucket`` with Celery's capacity of 1: ``fill_rate`` tokens a
    second, at most one kept, refilled when read; ``contents`` the requests waiting for one."""

    __slots__ = ("env", "fill_rate", "tokens", "timestamp", "contents")

    def __init__(self, env, fill_rate: float):
        self.env = env
        self.fill_rate = fill_rate
        self.tokens = 1.0
        self.timestamp = env.now
        self.contents: list = []

    def _get_tokens(self) -> float:
        if self.tokens < 1.0:
            now = self.env.now
            self.tokens = min(1.0, self.tokens + self.fill_rate * (now - self.timestamp))
            self.timestamp = now
        return self.tokens

    def can_consume(self) -> bool:
        if self._get_tokens() >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def expected_time(self) -> float:
        tokens = self._get_tokens()
        return (max(1.0, tokens) - tokens) / self.fill_rate


class EventLoopLimiter:
    """A worker's rate limiting as the code does it (``celery/worker/consumer/consumer.py``:
    ``_limit_task``, ``_schedule_bucket_request``; ``kombu/asynchronous/hub.py``:
    ``fire_timers``, ``create_loop``; ``kombu/asynchronous/timer.py``).

    Each task type has a token bucket (capacity 1). A rate-limited task the worker receives joins
    its bucket's queue, and the bucket is tried at once: while a token is there, the oldest
    request goes to the pool (``release``); when none is, the request is put back at the head and
    a *timer entry* is added to fire when the next token is due. Every refusal adds an entry — each
    arrival, and each timer that fires and finds no token — so under sustained overload the
    entries pile up. The worker's event loop fires at most 10 due timers per pass, then polls its
    connections for up to a second (``min_delay``: the scheduler has no delay to give after 10
    entries); a message received ends the poll early (:meth:`poke`), nothing else does. A bucket
    holds one token at most, so after a second's sleep a pass moves one task, and its other
    timers find none and add more: a worker starts about one rate-limited task per pass, about
    one a second, whatever its limit. The requests held keep their prefetch slots, so with the
    prefetch window full no message comes to wake the loop.

    Simplifications: timers of other kinds (heartbeats, the Redis restore scans) and pool events
    are not modelled as wake-ups; a pass takes no time."""

    def __init__(self, env, release: Callable[[object], None]):
        self.env = env
        self.release = release
        self.buckets: dict = {}
        self.timers: list = []
        self._order = 0
        self._seq = 0
        self._wake = None
        self.process = env.process(self._loop())

    def limit(self, request, kind, rate_per_s: float) -> None:
        """``_limit_task``: a rate-limited request of ``kind`` joins its bucket, tried at once."""
        bucket = self.buckets.get(kind)
        if bucket is None:
            bucket = self.buckets[kind] = TokenBucket(self.env, rate_per_s)
        bucket.contents.append(request)
        self._schedule(bucket)

    def _schedule(self, bucket: TokenBucket) -> None:
        """``_schedule_bucket_request``."""
        while bucket.contents:
            if bucket.can_consume():
                self.release(bucket.contents.pop(0))
                continue
            self._order = (self._order + 1) % 10
            self._seq += 1
            heapq.heappush(self.timers, (self.env.now + bucket.expected_time(), self._order, self._seq, bucket))
            break

    def poke(self) -> None:
        """An event on a connection (a message received): the loop's poll returns."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def clear(self) -> list:
        """The connection was lost: timers and pending requests dropped; returns the requests."""
        dropped = [r for bucket in self.buckets.values() for r in bucket.contents]
        for bucket in self.buckets.values():
            bucket.contents.clear()
        self.timers.clear()
        return dropped

    def _loop(self):
        env = self.env
        timers = self.timers
        while True:
            delay = None
            for _ in range(MAX_TIMERS_PER_PASS):
                if not timers:
                    delay = None
                    break
                if timers[0][0] > env.now:
                    delay = min(timers[0][0] - env.now, TIMER_MAX_INTERVAL_S)
                    break
                delay = None
                self._schedule(heapq.heappop(timers)[3])
            self._wake = env.event()
            yield env.any_of([env.timeout(min(delay or MIN_DELAY_S, MAX_DELAY_S)), self._wake])
            self._wake = None
