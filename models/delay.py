"""Infinite-server delay stations: network transit, think times, services with room for everyone."""

from __future__ import annotations


class DelayStation:
    """Holds each message it is given for a delay of its own, all at once and independently (an
    infinite-server station, M/G/∞: nobody waits for anybody), then passes it on to ``next_hop``
    (a :class:`~models.broker.Sender`) or, at the end of a path, has it processed.

    It imitates what costs time but not capacity: a network hop (the latency of a request, a
    publication, a push), a user's think time, a downstream service sized so that it never
    queues, or a fan-out to ``fan_out`` recipients delivered in parallel, where the message leaves
    at the last delivery (the tweet reaching the last of its followers). ``delay`` draws one
    delivery's time; with ``fan_out`` N the stay is the largest of N draws.

    Two ways in: :meth:`put` hands the message over and forgets it (a Sender: never refuses), and
    :meth:`call` returns an event that fires when the message leaves, for a caller that waits (a
    synchronous handler calling a downstream service keeps its thread until then); a called
    message goes nowhere after its stay.

    ``boundary`` counts messages inside: by Little's law its mean is λ·E[stay], and each stay is
    the delay drawn. Simplification: no capacity, no ordering (a later message can overtake), no
    failures; a message the next hop refuses is rejected.
    """

    def __init__(self, env, name, delay, boundary, fates, next_hop=None, fan_out: int = 1):
        self.env = env
        self.name = name
        self.delay = delay
        self.boundary = boundary
        self.fates = fates
        self.next_hop = next_hop
        self.fan_out = fan_out
        self.inside: dict[int, int] = {}  # message id → copies inside (a message may be called twice)

    def publish_gate(self):
        return None

    def stay_s(self) -> float:
        """One stay: a delivery's delay, or the last of ``fan_out`` parallel deliveries."""
        if self.fan_out == 1:
            return self.delay()
        return max(self.delay() for _ in range(self.fan_out))

    def _enter(self, message):
        now = self.env.now
        self.boundary.enter(now)
        self.inside[message.id] = self.inside.get(message.id, 0) + 1
        return self.env.timeout(self.stay_s(), value=now)

    def _leave(self, message, entered_s: float) -> None:
        self.boundary.leave(self.env.now, entered_s)
        left = self.inside[message.id] - 1
        if left:
            self.inside[message.id] = left
        else:
            del self.inside[message.id]

    def put(self, message) -> bool:
        """Take ``message``; after its stay it goes to the next hop, or is processed."""
        self._enter(message).callbacks.append(lambda event: self._passed(message, event.value))
        return True

    def _passed(self, message, entered_s: float) -> None:
        self._leave(message, entered_s)
        now = self.env.now
        if self.next_hop is None:
            self.fates.processed(message, now)
        elif not self.next_hop.put(message):
            self.fates.rejected(message, now, admitted=True)

    def call(self, message):
        """An event that fires when ``message`` has stayed its time here (the caller waits for it)."""
        done = self.env.event()

        def returned(event) -> None:
            self._leave(message, event.value)
            done.succeed()

        self._enter(message).callbacks.append(returned)
        return done

    def held_ids(self):
        """Messages inside now."""
        return self.inside.keys()
