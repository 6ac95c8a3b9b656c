"""A plain first-in first-out broker."""

from __future__ import annotations

from collections import deque


class FifoBroker:
    """A queue that hands each message to exactly one consumer, oldest first, and forgets it.

    Messages wait in a ``deque`` (SimPy's ``Store`` pops from the head of a list, which turns a deep
    backlog quadratic). Consumers that find it empty wait in arrival order; a new message goes
    straight to the one that has waited longest, as Redis serves blocked BRPOP clients.

    ``capacity`` bounds the messages waiting (those in a worker's hands do not count): a message
    that finds ``capacity`` waiting is refused, so ``capacity=0`` refuses unless a consumer is
    idle. ``None`` means no bound. The broker tells its :class:`~sim.recorder.Boundary` when a
    message starts and stops waiting; delivery is instantaneous and nothing is lost or redelivered.
    """

    def __init__(self, env, name, boundary, capacity=None):
        self.env = env
        self.name = name
        self.boundary = boundary
        self.capacity = capacity
        self.ready: deque = deque()
        self.waiting_consumers: deque = deque()
        self.accepted = 0
        self.refused = 0

    def put(self, message) -> bool:
        """Offer a message; False if it is refused because the queue is full."""
        now = self.env.now
        if self.waiting_consumers:
            self.accepted += 1
            self.boundary.enter(now)
            self.boundary.leave(now, now)
            self.waiting_consumers.popleft().succeed(message)
            return True
        if self.capacity is not None and len(self.ready) >= self.capacity:
            self.refused += 1
            return False
        self.accepted += 1
        message.stage_entered_s = now
        self.boundary.enter(now)
        self.ready.append(message)
        return True

    def take(self):
        """The oldest waiting message, or None when none waits (does not block)."""
        if not self.ready:
            return None
        message = self.ready.popleft()
        self.boundary.leave(self.env.now, message.stage_entered_s)
        return message

    def get(self):
        """An event that succeeds with the next message; call :meth:`take` first."""
        event = self.env.event()
        self.waiting_consumers.append(event)
        return event

    def cancel(self, event) -> None:
        """Withdraw a pending :meth:`get` (a consumer that stops waiting) so it swallows nothing."""
        if not event.triggered:
            self.waiting_consumers.remove(event)

    def held(self) -> int:
        """Messages the broker holds now."""
        return len(self.ready)
