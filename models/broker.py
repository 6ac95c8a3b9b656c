"""What every broker offers its publishers and consumers, and what it tells the Recorder.

Publishers call ``put(message) -> bool`` (False: refused). Consumers — one per worker — talk to a
broker through four calls, whatever its kind:

- ``receive(consumer)``: a generator (``deliveries = yield from broker.receive(consumer)``) that
  waits as the broker's protocol does (a blocking pop, a long poll, a push) and returns a list of
  :class:`Delivery` (possibly empty: a short poll that found nothing);
- ``ack(delivery) -> float``: the work is done (DEL, XACK, DeleteMessage, basic.ack); returns the
  seconds the consumer spends on the call (0 when it does not wait for it);
- ``nack(delivery) -> float``: the work failed without a crash; the broker redelivers, dead-letters
  or drops the message by its own rules;
- ``disconnect(consumer, deliveries)``: the consumer died holding ``deliveries`` (received, not
  acknowledged); the broker requeues, keeps or loses them by its own rules.

A broker also says which messages it holds (``held_ids``), so that the conservation check can
verify that every message without an outcome is somewhere. A broker used as another's dead-letter
queue may offer ``accept_dead_letter(message) -> bool``: dead letters stay there for inspection,
outside its waiting boundary (nothing consumes them, so they would never leave it);
:func:`send_to_dead_letter` uses it, or ``put`` where a broker has no such method (an SQS queue,
whose dead letters expire with its retention).
"""

from __future__ import annotations

from collections import Counter


def send_to_dead_letter(target, message) -> bool:
    """Hand ``message`` to a dead-letter queue; False if the queue refuses it."""
    accept = getattr(target, "accept_dead_letter", None)
    return accept(message) if accept is not None else target.put(message)


class Delivery:
    """One handing of a message to a consumer; a message redelivered gets a new Delivery."""

    __slots__ = ("message", "consumer", "tag", "delivered_s", "receive_count")

    def __init__(self, message, consumer, tag: int, delivered_s: float, receive_count: int = 1):
        self.message = message
        self.consumer = consumer
        self.tag = tag
        self.delivered_s = delivered_s
        self.receive_count = receive_count

    @property
    def redelivered(self) -> bool:
        return self.receive_count > 1


class WindowCounter(Counter):
    """Event counts that only count inside the measurement window (``open`` sets it going)."""

    def __init__(self, open_now: bool = False):
        super().__init__()
        self.open = open_now

    def add(self, event: str, n: int = 1) -> None:
        if self.open:
            self[event] += n


class Consumer:
    """One worker's connection to a broker: the deliveries it holds (received, not yet acknowledged
    or rejected). A broker's ``receive`` adds to ``held``; the worker removes what it finishes."""

    __slots__ = ("name", "held")

    def __init__(self, name: str):
        self.name = name
        self.held: list[Delivery] = []

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, holding {len(self.held)})"
