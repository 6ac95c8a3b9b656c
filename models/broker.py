"""What every broker offers its publishers and consumers: the :class:`Broker` protocol.

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

A broker also says how many messages wait in it for a consumer (``waiting``: what admission gates,
autoscalers and load-dependent service times read) and which messages it holds (``held_ids``), so
that the conservation check can verify that every message without an outcome is somewhere. A
broker used as another's dead-letter queue takes dead letters through ``accept_dead_letter(message)
-> bool``, and reports what it counts beyond the standard events through ``metrics()``;
:class:`BrokerBase` gives defaults for them and for ``publish_gate`` (``put`` the dead letter, no extra metrics).

Optional calls for a client library layered over a broker (Celery's kombu), with defaults in
:class:`BrokerBase`: ``restore(message) -> bool`` puts a message back where it is taken next
(default: ``put``, the back); ``raise_prefetch(consumer, by)`` raises (or, negative, lowers) one
consumer's prefetch count (default: nothing, a broker without one). A consumer whose channel the
broker closes learns of it through its ``on_closed`` callback, if it set one.

What producers and clients send to — a broker, an admission gate, an outbox, a dual write — is a
:class:`Sender`: ``put``, and ``publish_gate()``, None while publishers may publish, or an event
that fires when a broker that blocks its publishers (RabbitMQ's memory alarm) lets them through.

Brokers tell what happens to messages through a :class:`~models.fates.Fates` router.
"""

from __future__ import annotations

from typing import Iterable, Protocol


class Sender(Protocol):
    """What producers, clients and worker pools put messages into."""

    def put(self, message) -> bool: ...

    def publish_gate(self): ...


class Broker(Protocol):
    """The calls every broker answers (see the module's docstring)."""

    name: str

    def put(self, message) -> bool: ...

    def publish_gate(self): ...

    def receive(self, consumer): ...

    def ack(self, delivery) -> float: ...

    def nack(self, delivery) -> float: ...

    def disconnect(self, consumer, deliveries) -> None: ...

    def held_ids(self) -> Iterable[int]: ...

    @property
    def waiting(self) -> int:
        """Messages waiting for a consumer (not those in a consumer's hands)."""

    def accept_dead_letter(self, message) -> bool: ...

    def metrics(self) -> dict[str, float]: ...

    def restore(self, message) -> bool: ...

    def raise_prefetch(self, consumer, by: int) -> None: ...


class BrokerBase:
    """Defaults of the optional parts of :class:`Broker`."""

    def accept_dead_letter(self, message) -> bool:
        """Take a dead letter from another broker: as any message (an SQS queue, whose dead
        letters wait there until they expire with its retention)."""
        return self.put(message)

    def metrics(self) -> dict[str, float]:
        """What this broker counts beyond the standard broker events: nothing."""
        return {}

    def publish_gate(self):
        """Publishers are never blocked (they may be refused)."""
        return None

    def restore(self, message) -> bool:
        """Put ``message`` back where it is taken next: here, as any message (the back)."""
        return self.put(message)

    def raise_prefetch(self, consumer, by: int) -> None:
        """Raise ``consumer``'s prefetch count by ``by`` (negative: lower it): no prefetch here."""


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


class Consumer:
    """One worker's connection to a broker: the deliveries it holds (received, not yet acknowledged
    or rejected). A broker's ``receive`` adds to ``held``; the worker removes what it finishes.
    ``on_closed``: called (``cancelled``: True when the broker cancelled the consumer rather than
    closing its channel) when the broker closes the consumer's channel while the worker lives
    (RabbitMQ's consumer timeout), or None."""

    __slots__ = ("name", "held", "on_closed")

    def __init__(self, name: str, on_closed=None):
        self.name = name
        self.held: list[Delivery] = []
        self.on_closed = on_closed

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, holding {len(self.held)})"
