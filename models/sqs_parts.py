"""Small parts of the SQS model: a message's entry and its states, a lazy alarm, the FIFO
throughput limit and deduplication window, and how many requests a call is billed."""

from __future__ import annotations

import heapq
import math
from collections import deque

DELAYED, VISIBLE, IN_FLIGHT, GONE = 0, 1, 2, 3  # the states of an Entry
COMPACT_SLACK = 1024
"""How many gone entries a lazily cleaned queue may hold beyond twice its live ones before it is
compacted."""


BILLING_CHUNK_BYTES = 64 * 1024


def billed_requests(messages: int, message_size_bytes: int) -> int:
    """Requests billed for one API call carrying ``messages`` of ``message_size_bytes``: one per
    64 KiB chunk of its payload, and at least one (an empty receive is billed too)."""
    return max(1, math.ceil(messages * message_size_bytes / BILLING_CHUNK_BYTES))


class Entry:
    """One copy of a message in the queue, from SendMessage until it is deleted, expires or moves
    to the dead-letter queue: its state (delayed, visible, in flight, gone), when it entered that
    state, its latest receipt handle and how many times it was received."""

    __slots__ = ("message", "seq", "sent_s", "since_s", "state", "handle", "receive_count", "group")

    def __init__(self, message, seq: int, sent_s: float, group: int):
        self.message = message
        self.seq = seq
        self.sent_s = sent_s
        self.since_s = sent_s
        self.state = DELAYED
        self.handle = 0
        self.receive_count = 0
        self.group = group


class Alarm:
    """Calls ``ring(now)`` at (or before) every time asked for with :meth:`at`, with one bare SimPy
    timeout per distinct wake-up and no process.

    A broker keeps its timed work (visibility timeouts, delays, retention) in queues sorted by due
    time and asks to be woken at the earliest due time; most due times are cancelled before they
    come (a message deleted before its visibility timeout), so the alarm is not cancelled but
    ignored: on waking the broker skips whatever is no longer due and asks again for its next due
    time. A request later than a pending wake-up costs nothing.
    """

    __slots__ = ("env", "ring", "pending")

    def __init__(self, env, ring):
        self.env = env
        self.ring = ring
        self.pending: list[float] = []

    def at(self, when: float) -> None:
        pending = self.pending
        if pending and pending[0] <= when:
            return
        heapq.heappush(pending, when)
        self.env.timeout(max(0.0, when - self.env.now)).callbacks.append(self._rang)

    def _rang(self, _event) -> None:
        heapq.heappop(self.pending)
        self.ring(self.env.now)


class TokenBucket:
    """A per-action API limit (SQS FIFO queues: 300 calls/s per action before throttling).

    Tokens refill continuously at ``rate_per_s`` up to ``burst``; a call takes ``cost`` tokens (1,
    or a share of one for a message sent or deleted in a batch of ten) or, with too few left, is
    throttled (:meth:`take`). :meth:`reserve` is a call retried until it goes through: it takes its
    tokens at once, possibly into debt, and says how long the debt takes to refill — when the
    retried call succeeds. AWS documents the rate, not the burst: the bucket starts full and holds
    ``burst`` tokens (one second of calls unless told otherwise).
    """

    __slots__ = ("rate_per_s", "burst", "tokens", "last_s")

    def __init__(self, rate_per_s: float, burst: float | None = None):
        self.rate_per_s = rate_per_s
        self.burst = float(burst if burst is not None else max(1.0, rate_per_s))
        self.tokens = self.burst
        self.last_s = 0.0

    def _refill(self, now: float) -> float:
        tokens = min(self.burst, self.tokens + (now - self.last_s) * self.rate_per_s)
        self.last_s = now
        return tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        tokens = self._refill(now)
        if tokens >= cost - 1e-12:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens now; the seconds until the bucket is out of debt (0: at once)."""
        self.tokens = self._refill(now) - cost
        return 0.0 if self.tokens >= -1e-12 else -self.tokens / self.rate_per_s


class DeduplicationWindow:
    """SQS FIFO deduplication: a message sent with a deduplication id already sent successfully in
    the last ``window_s`` (5 minutes) is accepted and dropped. The window runs from the first
    successful send; a duplicate does not extend it. Here the id is the message id (a retrying
    producer, or a pipeline stage processing a message twice, sends the same id again)."""

    __slots__ = ("window_s", "first_s", "order")

    def __init__(self, window_s: float = 300.0):
        self.window_s = window_s
        self.first_s: dict[int, float] = {}
        self.order: deque = deque()

    def seen(self, key: int, now: float) -> bool:
        """True if ``key`` was sent within the window (drop this copy); else remember it."""
        order, first = self.order, self.first_s
        horizon = now - self.window_s
        while order and order[0][0] <= horizon:
            sent, old = order.popleft()
            if first.get(old) == sent:
                del first[old]
        if key in first:
            return True
        first[key] = now
        order.append((now, key))
        return False
