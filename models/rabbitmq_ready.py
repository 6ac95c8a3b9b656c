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


class QuorumReady:
    """A quorum queue's ready messages with message priorities (RabbitMQ 4.0 and later): what the
    two kinds below share. Messages returned to the queue (a requeue, with a delivery limit) wait in
    a queue of their own, delivered before any other "in the exact order they were returned,
    regardless of their priority" (RMQ 4.3/quorum-queues#returned-messages; the returns queue is
    taken first in 4.0 too: rabbit_fifo's take_next_msg). A requeue to the back (a quorum queue
    without a delivery limit) joins its priority again, behind what waits there. Drop-head and TTL
    take the next message to be delivered."""

    __slots__ = ("returns",)

    def __init__(self):
        self.returns: deque = deque()

    def requeue(self, entries: list, at_head: bool) -> None:
        if at_head:
            self.returns.extend(entries)
        else:
            for entry in entries:
                self.append(entry)

    def head(self) -> ReadyMessage:
        return self.returns[0] if self.returns else self._next()

    def pop_head(self) -> ReadyMessage:
        return self.returns.popleft() if self.returns else self._take()

    def drain(self) -> list:
        entries = sorted(self, key=lambda entry: entry.seq)
        self._clear()
        self.returns.clear()
        return entries


class TwoLevelReady(QuorumReady):
    """A quorum queue's priorities in RabbitMQ 4.0–4.2 (RMQ 4.2/quorum-queues#priorities): two
    levels, normal (priority 0–4, or none) and high (above 4); "for every 2 high priority message
    the queue will deliver 1 normal priority message (if available)", and "if a high priority
    message was published before a normal priority one, the high priority message will always be
    delivered first even if it is the normal priority's turn".

    As rabbit_fifo_q does it: a counter of deliveries 0, 1, 2, 0, …; at 2, with both levels
    waiting, the normal head goes unless the high head is older (published first)."""

    __slots__ = ("high", "normal", "counter")

    HIGH_ABOVE = 4
    WEIGHT = 2

    def __init__(self):
        super().__init__()
        self.high: deque = deque()
        self.normal: deque = deque()
        self.counter = 0

    def __len__(self) -> int:
        return len(self.returns) + len(self.high) + len(self.normal)

    def __iter__(self):
        yield from self.returns
        yield from self.high
        yield from self.normal

    def append(self, entry: ReadyMessage) -> None:
        (self.high if entry.priority > self.HIGH_ABOVE else self.normal).append(entry)

    def _level(self) -> deque:
        high, normal = self.high, self.normal
        if high and normal and self.counter == self.WEIGHT:
            return high if high[0].seq < normal[0].seq else normal
        return high or normal

    def _next(self) -> ReadyMessage:
        return self._level()[0]

    def _take(self) -> ReadyMessage:
        level = self._level()
        self.counter = 0 if self.counter == self.WEIGHT else self.counter + 1
        return level.popleft()

    def _clear(self) -> None:
        self.high.clear()
        self.normal.clear()


class StrictReady(QuorumReady):
    """A quorum queue's priorities in RabbitMQ 4.3 (RMQ 4.3/quorum-queues#priorities): strict, 32
    levels (0–31, higher priorities clamped to 31): the oldest message of the highest priority
    present goes first, so a steady stream of high priorities starves the lower ones."""

    __slots__ = ("_heap",)

    TOP = 31

    def __init__(self):
        super().__init__()
        self._heap: list = []

    def __len__(self) -> int:
        return len(self.returns) + len(self._heap)

    def __iter__(self):
        yield from self.returns
        yield from (item[2] for item in self._heap)

    def append(self, entry: ReadyMessage) -> None:
        heapq.heappush(self._heap, (-min(entry.priority, self.TOP), entry.seq, entry))

    def _next(self) -> ReadyMessage:
        return self._heap[0][2]

    def _take(self) -> ReadyMessage:
        return heapq.heappop(self._heap)[2]

    def _clear(self) -> None:
        self._heap.clear()


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
