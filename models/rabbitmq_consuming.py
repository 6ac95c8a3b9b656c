"""How a RabbitMQ queue hands messages to its consumers and takes them back.

RabbitMQ's documented behaviour (rabbitmq.com/docs: consumers, confirms, consumer-prefetch,
quorum-queues), for :class:`~models.rabbitmq.RabbitmqBroker`:

**Push delivery.** Each worker's connection is a :class:`~models.rabbitmq_channel.Channel`. The
queue pushes ready messages, oldest (or highest priority) first, round-robin over the channels with
room: with manual acks a channel has room while it has fewer than ``prefetch_count``
unacknowledged deliveries (basic.qos; 0 = unlimited, RabbitMQ's default); with automatic acks no
prefetch applies and the push is bounded only by the consumer's socket and client buffer, modelled
as ``socket_buffer_messages`` deliveries not yet started. A worker's ``receive`` takes the next
delivery of its own buffer, one at a time, in order, waiting for a push if it is empty.

**Manual acks** (``ack='manual'``): ``ack`` returns 0 at once (AMQP acks are asynchronous) and the
ack reaches the queue ``ack_latency`` later; until then the delivery is unacknowledged and holds its
prefetch slot. When a consumer's connection dies (``disconnect``) every delivery it had not got
acknowledged — buffered, in its hands, or with an ack on the way — is requeued at the head and
redelivered (redelivered=true), possibly to another consumer; one whose work was done is processed
twice (a duplicate). A failed attempt is nacked: requeued at once when ``requeue_on_error``, else
dead-lettered (or dropped, lost, without a dead-letter exchange). A delivery unacknowledged for
longer than ``consumer_timeout_s`` (checked once a minute) closes its channel — from 4.3, on quorum
queues only, cancels its consumer; either way "the messages are returned to the queue" — and
requeues all of that channel's deliveries; the worker keeps working on what it holds, its ack then
falls on a closed channel, and the requeued copy is processed again
(https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout, quorum-queues#consumer-timeout).
A consumer with an ``on_closed`` callback (a Celery worker) is told — ``cancelled``: whether its
consumer was cancelled (4.3, ``consumer_timeout_cancels``: basic.cancel) or its channel closed
(≤ 4.2: channel.close with PRECONDITION_FAILED), which a client may handle differently — and its
next ``receive`` opens a new channel; one without keeps consuming as if it had reconnected at once.
Simplification: a cancelled consumer's channel is treated as closed (its deliveries are returned
either way).

**Per-channel prefetch.** ``raise_prefetch(consumer, by)`` is basic.qos on one channel: its
prefetch count becomes ``prefetch_count`` + what its consumer added (Celery adds one for each ETA
task it holds, ``qos.increment_eventually``, and takes it back when the task is due); a new
channel starts at ``prefetch_count``. With ``prefetch_count`` 0 (unlimited) it changes nothing.

**Automatic acks** (``ack='auto'``): a message counts as delivered once written to the socket; a
consumer that dies loses what it holds and what is in its buffer; a failed attempt is lost.

**Delivery limit** (quorum queues): a message whose unsuccessful deliveries (nacks with requeue and
deaths of its consumer) exceed ``delivery_limit`` is dead-lettered, or dropped — so a poison message
is delivered ``delivery_limit + 1`` times. From RabbitMQ 4.3 a basic.nack no longer counts
(``nack_counts_toward_limit`` false: "unlimited explicit message returns (via nack ...) are now
allowed without counting towards the delivery limit"; basic.reject and a lost connection still
count, https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling), so a poison message
nacked with requeue loops until something else stops it. A quorum queue requeues at the head while
it has a delivery limit and at the back without one.

Simplification: a consumer timeout or a broker restart does not count as a failed delivery towards
the delivery limit (RabbitMQ counts returned deliveries; whether a node restart does has varied
between versions).
"""

from __future__ import annotations

from simpy import Interrupt

from .rabbitmq_channel import ACK, NACK, Channel, RabbitDelivery

CONSUMER_TIMEOUT_CHECK_S = 60.0
"""RabbitMQ evaluates the consumer acknowledgement timeout once a minute."""


class Consuming:
    """The consumer side of :class:`~models.rabbitmq.RabbitmqBroker` (see the module's docstring):
    pushes, receives, acks and nacks, disconnections, requeues and consumer timeouts, on the state
    the broker's ``__init__`` sets up (``ready``, ``channels``, ``active``, ``in_transit``)."""

    # --- pushing to consumers -------------------------------------------------------------------

    def _has_room(self, channel) -> bool:
        if self.auto_ack:
            return len(channel.buffer) < self.socket_buffer_messages
        return self.prefetch_count == 0 or len(channel.unacked) < self.prefetch_count + channel.extra_prefetch

    def raise_prefetch(self, consumer, by: int) -> None:
        """basic.qos on ``consumer``'s open channel: its prefetch count raised by ``by`` (negative:
        lowered); a channel with room again is pushed to."""
        channel = self.channels.get(consumer)
        if channel is None or not channel.open:
            return
        channel.extra_prefetch += by
        if channel.active and not self._has_room(channel):
            channel.active = False
            self.active.remove(channel)
        self._activate(channel, self.env.now)

    def _activate(self, channel, now: float) -> None:
        """Put ``channel`` back in the round-robin if it is open and has room, and push to it."""
        if channel.open and not channel.active and self._has_room(channel):
            channel.active = True
            self.active.append(channel)
            if self.ready:
                self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        """Push ready messages to channels with room, round-robin, until one or the other runs out."""
        if not self.up:
            return
        ready, active = self.ready, self.active
        boundary = self.boundary
        while ready and active:
            entry = ready.pop_head()
            boundary.leave(now, entry.since)
            if entry.expires_s is not None and now > entry.expires_s:
                self._expired(entry, now)
                continue
            channel = active.popleft()
            self._push(channel, entry, now)
            if self._has_room(channel):
                active.append(channel)
            else:
                channel.active = False

    def _push(self, channel, entry, now: float) -> None:
        entry.deliveries += 1
        counts = self.counts
        counts.add("deliveries")
        if entry.deliveries > 1:
            counts.add("redeliveries")
        if self.priority_of is not None:
            counts.add(f"pushes_priority_{entry.priority}")
            counts.add(f"wait_sum_priority_{entry.priority}", now - entry.since)
        self._tags += 1
        delivery = RabbitDelivery(entry, channel.consumer, self._tags, now)
        if not self.auto_ack:
            channel.unacked[self._tags] = delivery
            self.unacked_boundary.enter(now)
        channel.buffer.append(delivery)
        channel.wake()
    # --- consumers ------------------------------------------------------------------------------

    def receive(self, consumer):
        """The next delivery pushed to ``consumer``, waiting for one; its channel opens on first use
        (and again after the worker restarts)."""
        channel = self.channels.get(consumer)
        if channel is None:
            channel = self.channels[consumer] = Channel(consumer)
        if not channel.open:
            channel.open = True
            self._activate(channel, self.env.now)
        while not channel.buffer:
            waiter = channel.waiter = self.env.event()
            try:
                yield waiter
            except Interrupt:
                channel.waiter = None
                raise
        delivery = channel.buffer.popleft()
        consumer.held.append(delivery)
        if self.auto_ack and not channel.active:
            self._activate(channel, self.env.now)
        entry = delivery.entry
        if entry.paged:  # on disk: read back, and with disk_read the consumer waits for it
            entry.paged = False
            if self.disk_read is not None:
                self.counts.add("disk_reads")
                yield self.env.timeout(self.disk_read())
        return [delivery]

    def ack(self, delivery) -> float:
        """basic.ack: sent, not awaited; the queue learns of it ``ack_latency`` later."""
        if not self.auto_ack:
            self.in_transit.send(delivery, ACK)
        return 0.0

    def nack(self, delivery) -> float:
        """basic.nack after a failed attempt: requeue or dead-letter on arrival (manual acks); with
        automatic acks the message was already the consumer's, and is lost."""
        if self.auto_ack:
            self.counts.add("lost")
            self.fates.lost(delivery.message, self.env.now)
        else:
            self.in_transit.send(delivery, NACK)
        return 0.0

    def _settled(self, delivery, kind: int) -> None:
        """An ack or nack reaches the queue (ignored if its channel closed meanwhile)."""
        channel = self.channels[delivery.consumer]
        if channel.unacked.pop(delivery.tag, None) is None:
            return
        now = self.env.now
        self.unacked_boundary.leave(now, delivery.delivered_s)
        if kind == NACK:
            self.counts.add("nacks")
            if self.requeue_on_error:
                self._requeue([delivery.entry], now, failed=self.nack_counts_toward_limit)
            else:
                self._dead_letter(delivery.message, now)
        self._activate(channel, now)

    def disconnect(self, consumer, deliveries) -> None:
        """The consumer's connection died: requeue every delivery the queue still counts as
        unacknowledged (manual acks), or lose what it held and had buffered (automatic acks)."""
        channel = self.channels.get(consumer)
        now = self.env.now
        if channel is None:
            return
        if self.auto_ack:
            for delivery in (*deliveries, *channel.buffer):
                self.counts.add("lost")
                self.fates.lost(delivery.message, now)
            channel.buffer.clear()
            self._close(channel)
            return
        entries = self._release(channel, now)
        self._close(channel)
        self._requeue(entries, now, failed=True)

    def _release(self, channel, now: float) -> list:
        """Take every unacknowledged delivery off ``channel``; their entries, to requeue."""
        unacked = self.unacked_boundary
        entries = []
        for delivery in channel.unacked.values():
            unacked.leave(now, delivery.delivered_s)
            entries.append(delivery.entry)
        channel.unacked.clear()
        channel.buffer.clear()
        return entries

    def _close(self, channel) -> None:
        channel.open = False
        channel.extra_prefetch = 0
        if channel.active:
            channel.active = False
            self.active.remove(channel)

    def _requeue(self, entries: list, now: float, failed: bool) -> None:
        """Put ``entries`` back (redelivered later); ``failed`` deliveries count toward a quorum
        queue's delivery limit."""
        if not entries:
            return
        entries.sort(key=lambda e: e.seq)
        back = []
        limit = self.delivery_limit
        for entry in entries:
            if failed and limit is not None:
                entry.returns += 1
                if entry.returns > limit:
                    self.counts.add("delivery_limit_exceeded")
                    self._dead_letter(entry.message, now)
                    continue
            entry.since = now
            self.boundary.enter(now)
            back.append(entry)
        self.counts.add("requeued", len(back))
        self.ready.requeue(back, self.requeue_at_head)
        if self.max_length is not None and self.overflow == "drop-head":
            self._drop_over_limit(now)
        if self.active:
            self._dispatch(now)

    def _consumer_timeouts(self):
        """Once a minute, close the channels holding a delivery unacknowledged for too long."""
        env = self.env
        limit = self.consumer_timeout_s
        while True:
            yield env.timeout(CONSUMER_TIMEOUT_CHECK_S)
            if not self.up:
                continue
            now = env.now
            for channel in list(self.channels.values()):
                if not channel.unacked:
                    continue
                oldest = next(iter(channel.unacked.values()))
                if now - oldest.delivered_s > limit:
                    self.counts.add("consumer_timeouts")
                    entries = self._release(channel, now)
                    closed = channel.consumer.on_closed
                    if closed is not None:
                        self._close(channel)
                    self._requeue(entries, now, failed=False)
                    if closed is None:
                        self._activate(channel, now)
                    else:
                        closed(cancelled=self.consumer_timeout_cancels)
