"""RabbitMQ's ready messages: what a queue holds that no consumer has been given yet."""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from itertools import accumulate

_MASK64 = (1 << 64) - 1


class ReadyMessage:
    """A message in a queue, with what the queue remembers of it across deliveries.

    ``seq`` is its place in publish order (a requeued message keeps it); ``since`` when its current
    stay in the ready queue began; ``expires_s`` its expiry (publish time + TTL, kept on requeue, as
    RabbitMQ keeps "the original expiry time" of a requeued message); ``on_disk_s`` when it is
    safely written (None: never, a transient message); ``deliveries`` how many times it was pushed
    to a consumer; ``returns`` how many deliveries came back unsuccessful (a quorum queue's
    ``x-delivery-count``).
    """

    __slots__ = ("message", "seq", "priority", "since", "expires_s", "on_disk_s", "deliveries", "returns", "cycle", "paged")

    def __init__(self, message, seq: int, priority: int, since: float, expires_s, on_disk_s):
        self.message = message
        self.seq = seq
        self.priority = priority
        self.since = since
        self.expires_s = expires_s
        self.on_disk_s = on_disk_s
        self.deliveries = 0
        self.returns = 0
        self.cycle = 0
        self.paged = False
        """Written to disk (published behind a full in-memory part): its delivery pays a disk read."""


class FifoReady(deque):
    """A classic or quorum queue without priorities: a ``deque``, oldest first. A requeued message
    goes back to the head (RabbitMQ puts it back "in its original position if possible, or closer to
    the head"; every message behind it was published later, unless itself requeued, so the head is
    where most requeued messages belong) — or to the back, for a quorum queue without a delivery
    limit."""

    __slots__ = ()

    pop_head = deque.popleft

    def head(self) -> ReadyMessage:
        return self[0]

    def requeue(self, entries: list, at_head: bool) -> None:
        """Put ``entries`` (in publish order) back, at the head or at the back."""
        if at_head:
            self.extendleft(reversed(entries))
        else:
            self.extend(entries)

    def drain(self) -> list:
        entries = list(self)
        self.clear()
        return entries


class PriorityReady:
    """A classic priority queue (x-max-priority) that delivers in cycles, as RabbitMQ documents
    ("Low Message Priority and the Resource Starvation Problem", https://www.rabbitmq.com/docs/priority#resource-starvation,
    4.0–4.3): each delivery cycle drains the highest-priority sub-queue first, then the next, down to
    the lowest, and "high-priority messages enqueued during a delivery cycle will be delivered during
    the next cycle", so lower priorities are never starved.

    A heap ordered by (cycle, −priority, publish order): a message published joins the next cycle
    (the one after the cycle being delivered); a cycle begins when the first of its messages is
    delivered. Within a cycle the head is the oldest message of the highest priority present. A
    requeued message keeps its cycle and publish order and so goes back exactly to its original
    place. Like RabbitMQ's priority queue, overflow (drop-head) drops from the head.

    Simplification: the 3.13 documentation does not describe cycles (it says nothing of starvation);
    the same cycles are used for every version.
    """

    __slots__ = ("_heap", "cycle")

    def __init__(self):
        self._heap: list = []
        self.cycle = 0
        """The cycle being delivered."""

    def __len__(self) -> int:
        return len(self._heap)

    def append(self, entry: ReadyMessage) -> None:
        entry.cycle = self.cycle + 1
        heapq.heappush(self._heap, (entry.cycle, -entry.priority, entry.seq, entry))

    def requeue(self, entries: list, at_head: bool) -> None:
        for entry in entries:
            heapq.heappush(self._heap, (entry.cycle, -entry.priority, entry.seq, entry))

    def head(self) -> ReadyMessage:
        return self._heap[0][3]

    def pop_head(self) -> ReadyMessage:
        entry = heapq.heappop(self._heap)[3]
        if entry.cycle > self.cycle:
            self.cycle = entry.cycle
        return entry

    def drain(self) -> list:
        entries = [item[3] for item in sorted(self._heap)]
        self._heap.clear()
        return entries

    def __iter__(self):
        return (item[3] for item in self._heap)


def unit_hash(n: int) -> float:
    """A number in [0, 1) that depends only on ``n`` (splitmix64's finaliser): well mixed, and
    independent of the multiplicative hash that picks poison messages in the worker pools."""
    x = (n + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return x / 2.0**64


class PriorityOf:
    """A message's priority, 0 to ``len(weights) − 1``, chosen with probability proportional to
    ``weights`` by a hash of its id: the same message has the same priority every time.

    A simplification: producers do not set priorities yet, so the queue derives them."""

    __slots__ = ("_cumulative",)

    def __init__(self, weights):
        total = float(sum(weights))
        self._cumulative = [w / total for w in accumulate(weights)][:-1]

    def __call__(self, message) -> int:
        return bisect_right(self._cumulative, unit_hash(message.id))
