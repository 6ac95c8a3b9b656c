"""Open-loop producers."""

from __future__ import annotations

from collections import deque


class Producer:
    """Sends a new message at each arrival to ``target``, whatever happens to earlier ones (an open
    loop: a slow or full downstream does not slow the producer). A message the target refuses is
    rejected; retries belong to client policies, not to this producer.

    ``target`` is a :class:`~models.broker.Sender`. A target may block its publishers (RabbitMQ's
    memory alarm): when its ``publish_gate()`` returns an event, the producer
    keeps its new messages in a local backlog, in order, and publishes them once the event has
    fired and the gate is open again. A message in the backlog is already in the system (its
    latency runs from its creation, so Little's law on the system counts it from then too), and
    it is the producer's (``held_ids``).
    """

    def __init__(self, env, name, arrivals, target, fates):
        self.env = env
        self.name = name
        self.arrivals = arrivals
        self.target = target
        self.fates = fates
        self.sent = 0
        self.backlog: deque = deque()
        self._gate = target.publish_gate
        self._draining = False
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        fates = self.fates
        next_arrival = self.arrivals.next_arrival
        gate = self._gate
        timeout = env.timeout
        now = env.now
        while True:
            at = next_arrival(now)
            if at is None:
                return
            yield timeout(at - now)
            now = env.now
            message = fates.new_message(now)
            self.sent += 1
            if self.backlog or gate() is not None:
                fates.admitted(message, now)
                self.backlog.append(message)
                if not self._draining:
                    self._draining = True
                    env.process(self._drain())
            else:
                self._publish(message, now)

    def _publish(self, message, now: float, admitted: bool = False) -> None:
        if self.target.put(message):
            if not admitted:
                self.fates.admitted(message, now)
        else:
            self.fates.rejected(message, now, admitted=admitted)

    def _drain(self):
        """Publish the backlog in order whenever the target lets publishers through."""
        while self.backlog:
            blocked = self._gate()
            if blocked is not None:
                yield blocked
                continue
            self._publish(self.backlog.popleft(), self.env.now, admitted=True)
        self._draining = False

    def held_ids(self):
        """Messages made but not yet published (blocked publishers)."""
        return (message.id for message in self.backlog)
