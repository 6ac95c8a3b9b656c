"""kombu's transports between Celery and a broker: Redis (acknowledgements emulated over a plain
list, and the scans that restore what stays unacknowledged too long) and SQS (its polling)."""

from __future__ import annotations

from simpy import Interrupt

KOMBU_REDIS_VISIBILITY_TIMEOUT_S = 3600.0
"""kombu 5.x's Redis ``visibility_timeout`` default (``kombu/transport/redis.py``: ``Channel.visibility_timeout``)."""

KOMBU_SQS_VISIBILITY_TIMEOUT_S = 1800.0
"""kombu 5.x's SQS default (``kombu/transport/SQS/__init__.py``: ``Channel.default_visibility_timeout``): the
``VisibilityTimeout`` attribute of a queue kombu creates (``_new_queue``), when the transport
options give none; a queue that exists keeps its own."""


class KombuTransport:
    """A kombu transport over ``broker``: what a subclass does not redefine (``put``,
    ``publish_gate``, ``waiting``, ``ack``, ``nack``, ``disconnect``, ``raise_prefetch``…) is the
    broker's own call, passed straight through."""

    def __init__(self, env, broker):
        self.env = env
        self.broker = broker
        self.name = broker.name

    def __getattr__(self, name: str):
        return getattr(self.broker, name)


class KombuSqsTransport(KombuTransport):
    """What Celery's workers talk to when the broker is SQS (kombu 5.x,
    ``kombu/transport/SQS/__init__.py``): each ReceiveMessage asks for ``WaitTimeSeconds`` =
    ``wait_time_seconds`` (10 s by default, whatever the queue's own setting: the component sets
    the broker's wait time), and after one that returns nothing the worker waits
    ``polling_interval_s`` (``polling_interval``, 1 s) before the next (``Channel._loop1`` via
    ``hub.call_later``): an idle queue is polled at most once every wait + interval. The queue's
    visibility timeout is the one kombu created it with (:data:`KOMBU_SQS_VISIBILITY_TIMEOUT_S`).
    Simplification: a receive asks for the broker's ``batch_size``, not for what the worker's
    prefetch window has room for (kombu's ``can_consume_max_estimate``, at most 10)."""

    def __init__(self, env, broker, polling_interval_s: float = 1.0):
        super().__init__(env, broker)
        self.polling_interval_s = polling_interval_s

    def receive(self, consumer):
        deliveries = yield from self.broker.receive(consumer)
        if not deliveries and self.polling_interval_s > 0:
            yield self.env.timeout(self.polling_interval_s)
        return deliveries


class KombuRedisTransport(KombuTransport):
    """What Celery's workers talk to when the broker is Redis (kombu 5.x,
    ``kombu/transport/redis.py``: ``QoS.append``, ``ack``, ``reject``, ``restore_visible``,
    ``MultiChannelPoller.on_poll_init``, ``Transport.register_with_event_loop``).

    kombu reads the queue with BRPOP (a plain list: ``broker``, any object answering the
    :class:`~models.broker.Broker` protocol) and emulates acknowledgements itself: each message it
    hands out is written to an *unacked* hash and to an index scored by the time of delivery, one
    of each per Redis database, shared by every worker on it (:attr:`unacked`). An ack deletes the
    entry — by delivery tag, which a restored copy keeps, so the ack of any copy deletes the entry
    of the latest. A reject with requeue deletes it and LPUSHes the message back (the back of the
    queue: BRPOP takes from the other end).

    **Restores.** ``restore_visible`` restores every entry delivered at least
    ``visibility_timeout_s`` ago (kombu's default 1 h) to the head of the queue (RPUSH: the end
    BRPOP takes, so it is the next one delivered; ``broker.restore``), and the message is delivered
    again; the worker that held it keeps its copy. A worker calls it when its event loop starts
    (``on_poll_init``) and then every ``restore_interval_s`` (``unacked_restore_interval``, 10 s),
    but only every ``restore_throttle``-th call scans (``unacked_restore_throttle``, 10): so a
    worker scans when it starts and every 100 s after, on its own clock (:meth:`scans`, one
    process per worker, restarted with it). A mutex keeps two scans from overlapping; scans here
    take no time.

    **A worker that dies** leaves its entries in the index (a clean shutdown would restore them at
    once; a killed worker cannot), so what it held comes back at the first scan at least the
    visibility timeout after its delivery.

    Simplification: ``unacked_restore_limit`` (no limit by default) is not modelled. ``counts`` gets ``restored``.
    """

    def __init__(self, env, broker, counts, visibility_timeout_s: float = 3600.0, restore_interval_s: float = 10.0, restore_throttle: int = 10):
        super().__init__(env, broker)
        self.counts = counts
        self.visibility_timeout_s = visibility_timeout_s
        self.scan_period_s = restore_interval_s * max(restore_throttle, 1)
        self.unacked: dict = {}
        """Message → time of its latest delivery: the unacked hash and its index."""

    def receive(self, consumer):
        deliveries = yield from self.broker.receive(consumer)
        self.received(deliveries)
        return deliveries

    def received(self, deliveries) -> None:
        """Index ``deliveries``, handed out now (``QoS.append``)."""
        now = self.env.now
        for delivery in deliveries:
            self.unacked[delivery.message] = now

    def ack(self, delivery) -> float:
        self.unacked.pop(delivery.message, None)
        return self.broker.ack(delivery)

    def disconnect(self, consumer, deliveries) -> None:
        """A killed worker: its copies are gone (for the list, BRPOP was the end of them) but
        their entries stay in the index, for a later scan to restore."""
        for delivery in deliveries:
            self.broker.ack(delivery)
        self.broker.disconnect(consumer, [])

    def scan(self) -> None:
        """``restore_visible``: restore every entry delivered a visibility timeout ago or more,
        newest first (ZREVRANGEBYSCORE), each RPUSHed to the head: the oldest ends up taken first."""
        ceiling = self.env.now - self.visibility_timeout_s
        for message, delivered_s in sorted(self.unacked.items(), key=lambda item: item[1], reverse=True):
            if delivered_s <= ceiling and self.broker.restore(message):
                del self.unacked[message]
                self.counts.add("restored")

    def scans(self):
        """One worker's scans (a SimPy process, interrupted when the worker dies): when its
        event loop starts, then every ``scan_period_s``."""
        try:
            while True:
                self.scan()
                yield self.env.timeout(self.scan_period_s)
        except Interrupt:
            return

    def held_ids(self):
        """Messages whose entry is in the unacked hash (restored copies are the broker's)."""
        return (message.id for message in self.unacked)
