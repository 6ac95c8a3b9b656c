"""Drives broker models in a bare ``simpy.Environment``: samplers that return set values, actions
at set times, and a consumer that reads, logs what it gets and acknowledges, fails or dies on cue."""

from __future__ import annotations

import math

from simpy import Interrupt

from models.broker import Consumer


def constant(value):
    """A sampler that always returns ``value``."""
    return lambda: value


def draws(*values):
    """A sampler returning ``values`` in turn (a further draw fails the test)."""
    it = iter(values)
    return lambda: next(it)


def at(env, time_s, action):
    """Call ``action()`` at ``time_s``."""
    env.timeout(time_s - env.now).callbacks.append(lambda _: action())


def ack_after(seconds):
    """What a consumer does with a delivery: works ``seconds``, then acknowledges it."""
    def handle(reader, delivery):
        yield reader.env.timeout(seconds)
        yield reader.env.timeout(reader.ack(delivery))
    return handle


def nack_after(seconds):
    """What a consumer does with a delivery: works ``seconds``, then fails it."""
    def handle(reader, delivery):
        yield reader.env.timeout(seconds)
        yield reader.env.timeout(reader.nack(delivery))
    return handle


class Reader:
    """A consumer of ``broker`` that starts reading at ``start_s`` (now by default) and makes ``receives`` receive
    calls (for ever by default). It logs each delivery as ``(message id, time, receive count)`` in
    ``got`` and hands it to ``handle(reader, delivery)``, a generator (None: keep it and read on).
    :meth:`die` crashes it: a receive in progress is abandoned and the broker is told that the
    consumer disconnected holding what it had not acknowledged."""

    def __init__(self, env, broker, name, handle=None, start_s=None, receives=math.inf):
        self.env = env
        self.broker = broker
        self.consumer = Consumer(name)
        self.handle = handle
        self.got: list[tuple[int, float, int]] = []
        self.empty_s: list[float] = []
        """When a receive returned nothing."""
        self.process = env.process(self._run(start_s, receives))

    def _run(self, start_s, receives):
        env = self.env
        try:
            if start_s is not None:
                yield env.timeout(start_s - env.now)
            while receives > 0:
                receives -= 1
                deliveries = yield from self.broker.receive(self.consumer)
                if not deliveries:
                    self.empty_s.append(env.now)
                for delivery in deliveries:
                    self.got.append((delivery.message.id, env.now, delivery.receive_count))
                    if self.handle is not None:
                        yield from self.handle(self, delivery)
        except Interrupt:
            self._disconnect()

    def _disconnect(self) -> None:
        held = list(self.consumer.held)
        self.consumer.held.clear()
        self.broker.disconnect(self.consumer, held)

    def ids(self) -> list[int]:
        return [message_id for message_id, _, _ in self.got]

    def ack(self, delivery) -> float:
        self.consumer.held.remove(delivery)
        return self.broker.ack(delivery)

    def nack(self, delivery) -> float:
        self.consumer.held.remove(delivery)
        return self.broker.nack(delivery)

    def die(self) -> None:
        if self.process.is_alive:
            self.process.interrupt()
        else:
            self._disconnect()
