"""A plain first-in first-out broker."""

from __future__ import annotations

from collections import deque

from simpy import Interrupt

from .broker import BrokerBase, Delivery


class FifoBroker(BrokerBase):
    """A queue that hands each message to exactly one consumer, oldest first, and forgets it.

    Messages wait in a ``deque`` (SimPy's ``Store`` pops from the head of a list, which turns a deep
    backlog quadratic). Consumers that find it empty wait in arrival order; a new message goes
    straight to the one that has waited longest, as Redis serves blocked BRPOP clients.

    ``capacity`` bounds the messages waiting (those in a worker's hands do not count): a message
    that finds ``capacity`` waiting is refused, so ``capacity=0`` refuses unless a consumer is
    idle. ``None`` means no bound. Delivery is instantaneous and there are no acknowledgements:
    once taken, a message is the consumer's, so a consumer that dies or fails holding it loses it.
    """

    def __init__(self, env, name, boundary, counts, fates, capacity=None):
        self.env = env
        self.name = name
        self.boundary = boundary
        self.counts = counts
        self.fates = fates
        self.capacity = capacity
        self.ready: deque = deque()
        self.waiting_consumers: deque = deque()
        self.dead_letters = 0
        self._tags = 0

    def put(self, message) -> bool:
        """Offer a message; False if it is refused because the queue is full."""
        now = self.env.now
        if self.waiting_consumers:
            self.boundary.enter(now)
            self.boundary.leave(now, now)
            self.waiting_consumers.popleft().succeed(message)
            return True
        if self.capacity is not None and len(self.ready) >= self.capacity:
            self.counts.add("refused")
            return False
        self.boundary.enter(now)
        self.ready.append((message, now))
        return True

    def receive(self, consumer):
        """Take the oldest message, waiting for one if none is ready (a blocking pop)."""
        env = self.env
        if self.ready:
            message, since = self.ready.popleft()
            now = env.now
            self.boundary.leave(now, since)
        else:
            event = env.event()
            self.waiting_consumers.append(event)
            try:
                message = yield event
            except Interrupt:
                if event.triggered:
                    consumer.held.append(self._deliver(event.value, consumer, env.now))
                else:
                    self.waiting_consumers.remove(event)
                raise
            now = env.now
        delivery = self._deliver(message, consumer, now)
        consumer.held.append(delivery)
        return [delivery]

    def _deliver(self, message, consumer, now: float) -> Delivery:
        self._tags += 1
        self.counts.add("deliveries")
        return Delivery(message, consumer, self._tags, now)

    def ack(self, delivery) -> float:
        return 0.0

    def nack(self, delivery) -> float:
        """A failed message is gone: a plain queue has no redelivery."""
        self.counts.add("lost")
        self.fates.lost(delivery.message, self.env.now)
        return 0.0

    def disconnect(self, consumer, deliveries) -> None:
        """A consumer died holding ``deliveries``: they were taken, so they are lost."""
        now = self.env.now
        for delivery in deliveries:
            self.counts.add("lost")
            self.fates.lost(delivery.message, now)

    def accept_dead_letter(self, message) -> bool:
        """This queue as another broker's dead-letter queue: dead letters are kept for inspection
        (``capacity`` still bounds them), outside the waiting boundary."""
        if self.capacity is not None and self.dead_letters >= self.capacity:
            self.counts.add("refused")
            return False
        self.dead_letters += 1
        return True

    @property
    def waiting(self) -> int:
        return len(self.ready)

    def held_ids(self):
        return (message.id for message, _ in self.ready)
