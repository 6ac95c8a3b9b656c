"""A RabbitMQ consumer's channel, and the acknowledgements travelling on it."""

from __future__ import annotations

import heapq
from collections import deque

from .broker import Delivery

ACK, NACK = 0, 1


class RabbitDelivery(Delivery):
    """A basic.deliver: a Delivery that remembers the queue entry it came from, so that a requeue
    puts back the same entry (its publish order, expiry and delivery count)."""

    __slots__ = ("entry",)

    def __init__(self, entry, consumer, tag: int, delivered_s: float):
        super().__init__(entry.message, consumer, tag, delivered_s, entry.deliveries)
        self.entry = entry


class Channel:
    """One consumer's channel: the deliveries pushed to it that its worker has not started yet
    (``buffer``, in order), every delivery not yet acknowledged as far as the broker knows
    (``unacked``, by delivery tag, oldest first: buffered, in the worker's hands, or with an ack
    still on its way), the worker waiting for a delivery (``waiter``), whether the channel is open
    (the worker is alive), whether it sits in the broker's round-robin of consumers with room, and
    what its consumer added to the queue's prefetch count (``extra_prefetch``: basic.qos on this
    channel; a new channel starts without it).
    """

    __slots__ = ("consumer", "buffer", "unacked", "waiter", "open", "active", "extra_prefetch")

    def __init__(self, consumer):
        self.consumer = consumer
        self.buffer: deque = deque()
        self.unacked: dict = {}
        self.waiter = None
        self.open = False
        self.active = False
        self.extra_prefetch = 0

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.succeed()


class InTransit:
    """Acks and nacks on their way from consumers to the broker, which learns of each one
    ``latency()`` seconds after the consumer sent it (``latency`` None: at once).

    AMQP acknowledgements are asynchronous: the consumer goes on at once, and until the ack arrives
    the broker still counts the delivery as unacknowledged — so a connection that dies meanwhile
    gets it requeued although the work was done. Pending arrivals wait in a heap served by one
    timeout at a time (a callback, not a process), so a burst of acks costs heap operations, not a
    SimPy process each.
    """

    def __init__(self, env, latency, arrive):
        self.env = env
        self.latency = latency
        self.arrive = arrive
        self._heap: list = []
        self._n = 0
        self._wakeup = None

    def send(self, delivery, kind: int) -> None:
        if self.latency is None:
            self.arrive(delivery, kind)
            return
        delay = self.latency()
        at = self.env.now + delay
        self._n += 1
        heapq.heappush(self._heap, (at, self._n, delivery, kind))
        if self._wakeup is None or at < self._wakeup:
            self._wakeup = at
            self.env.timeout(delay, value=at).callbacks.append(self._wake)

    def _wake(self, event) -> None:
        due = max(self.env.now, event.value)
        if self._wakeup is not None and self._wakeup <= due:
            self._wakeup = None
        heap = self._heap
        while heap and heap[0][0] <= due:
            _, _, delivery, kind = heapq.heappop(heap)
            self.arrive(delivery, kind)
        if heap and (self._wakeup is None or heap[0][0] < self._wakeup):
            at = heap[0][0]
            self._wakeup = at
            self.env.timeout(max(at - self.env.now, 0.0), value=at).callbacks.append(self._wake)

    def __len__(self) -> int:
        return len(self._heap)
