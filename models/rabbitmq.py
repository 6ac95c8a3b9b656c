"""A RabbitMQ queue, as its consumers, publishers and failures see it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from simpy import Interrupt

from .broker import BrokerBase
from .crashes import Crashes, crash_loop
from .rabbitmq_alarm import MemoryAlarm
from .rabbitmq_channel import ACK, NACK, Channel, InTransit, RabbitDelivery
from .rabbitmq_ready import FifoReady, PriorityReady, ReadyMessage

CONSUMER_TIMEOUT_CHECK_S = 60.0
"""RabbitMQ evaluates the consumer acknowledgement timeout once a minute."""


@dataclass
class RabbitmqOptions:
    """How a RabbitMQ queue is configured (see :class:`RabbitmqBroker`): samplers for the
    latencies, ``dead_letter()`` the dead-letter exchange's queue (looked up when first needed),
    ``priority_of(message)`` a message's priority, ``crashes`` the broker's restarts."""

    quorum: bool = False
    auto_ack: bool = False
    prefetch_count: int = 0
    socket_buffer_messages: int = 100
    ack_latency: Callable[[], float] | None = None
    requeue_on_error: bool = True
    consumer_timeout_s: float | None = 1800.0
    max_length: int | None = None
    overflow: str = "drop-head"
    publisher_confirms: bool = False
    confirm_latency: Callable[[], float] | None = None
    keeps_messages: bool = False
    message_ttl_s: float | None = None
    dead_letter: Callable[[], object] | None = None
    delivery_limit: int | None = None
    priority_of: Callable | None = None
    memory_limit_messages: int | None = None
    memory_monitor_interval_s: float = 2.5
    crashes: Crashes | None = None


class RabbitmqBroker(BrokerBase):
    """One RabbitMQ queue (classic or quorum) with push consumers — RabbitMQ's documented behaviour
    (rabbitmq.com/docs: consumers, confirms, consumer-prefetch, maxlength, ttl, dlx, priority,
    quorum-queues, alarms), with the simplifications listed at the end.

    **Push delivery.** Each worker's connection is a :class:`Channel`. The queue pushes ready
    messages, oldest (or highest priority) first, round-robin over the channels with room: with
    manual acks a channel has room while it has fewer than ``prefetch_count`` unacknowledged
    deliveries (basic.qos; 0 = unlimited, RabbitMQ's default); with automatic acks no prefetch
    applies and the push is bounded only by the consumer's socket and client buffer, modelled as
    ``socket_buffer_messages`` deliveries not yet started. A worker's ``receive`` takes the next
    delivery of its own buffer, one at a time, in order, waiting for a push if it is empty.

    **Manual acks** (``ack='manual'``): ``ack`` returns 0 at once (AMQP acks are asynchronous) and
    the ack reaches the queue ``ack_latency`` later; until then the delivery is unacknowledged and
    holds its prefetch slot. When a consumer's connection dies (``disconnect``) every delivery it
    had not got acknowledged — buffered, in its hands, or with an ack on the way — is requeued at
    the head and redelivered (redelivered=true), possibly to another consumer; one whose work was
    done is processed twice (a duplicate). A failed attempt is nacked: requeued at once when
    ``requeue_on_error``, else dead-lettered (or dropped, lost, without a dead-letter exchange). A
    delivery unacknowledged for longer than ``consumer_timeout_s`` (checked once a minute) closes
    its channel and requeues all of that channel's deliveries; the worker keeps working on what it
    holds, its ack then falls on a closed channel, and the requeued copy is processed again.

    **Automatic acks** (``ack='auto'``): a message counts as delivered once written to the socket;
    a consumer that dies loses what it holds and what is in its buffer; a failed attempt is lost.

    **Limits.** ``max_length`` counts ready messages only. ``overflow``: ``drop-head`` drops the
    oldest ready message (dead-lettered if there is a dead-letter exchange, else lost), also after
    requeues push the queue over the limit; ``reject-publish`` refuses the newest: with
    ``publisher_confirms`` the publisher gets a nack (``put`` returns False: rejected), without
    them the publisher never learns and the message is discarded (lost); ``reject-publish-dlx``
    refuses and dead-letters it (the publisher gets a nack with confirms on).

    **Publisher confirms.** Each published message is confirmed ``confirm_latency()`` after it
    arrives (for persistent messages on durable queues, once written to disk); the mean confirm
    latency and the number of nacked publishes are reported by :meth:`metrics`.

    **Memory alarm.** With ``memory_limit_messages``, a :class:`MemoryAlarm` blocks every publisher
    (``publish_gate``) while the queue holds more than the watermark, ready plus unacknowledged;
    producers keep what they make meanwhile in their backlog, consumers go on.

    **TTL.** A message expires ``message_ttl_s`` after it was published (a requeue keeps the expiry).
    Expired messages are never delivered; they are dropped — dead-lettered, else lost — when they
    reach the head of the queue: checked when a message is about to be pushed and at each publish.

    **Dead-lettering** (``dead_letter``: the target broker, looked up on first use) on a nack or
    reject without requeue, on TTL expiry, on overflow, and past a quorum queue's
    ``delivery_limit``: a message whose unsuccessful deliveries (nacks with requeue and deaths of
    its consumer) exceed the limit is dead-lettered, or dropped — so a poison message is delivered
    ``delivery_limit + 1`` times. A quorum queue requeues at the head while it has a delivery limit
    and at the back without one.

    **Priorities** (``priority_of``: a message's priority): a priority queue serves the highest
    priority first, in publish order within a priority.

    **Broker restarts** (``crashes``: a time to failure, a ``restart_time``): every connection closes. Ready and
    unacknowledged messages survive only in a durable queue, if persistent and already written to
    disk (``confirm_latency`` after publishing; a quorum queue keeps every message, once confirmed);
    the rest are lost. Survivors are requeued in publish order (redelivered=true). Work in progress
    in the workers goes on, and its ack falls on a closed channel: the requeued copy makes a
    duplicate. While the broker is down, ``put`` refuses (a nack with confirms on); consumers wait.

    **Boundaries.** ``boundary`` counts ready messages: each stay in the ready queue is one item, so
    a requeued message enters again (λ counts requeues, and ``wait_s`` is per stay, not per
    message). ``unacked_boundary`` counts deliveries from push to the arrival of their ack (or
    their requeue, loss or nack); automatic-ack deliveries never enter it.

    Simplifications:

    - A TTL'd message is checked at the head only (RabbitMQ's classic queues; quorum queues drop
      expired messages shortly after expiry wherever they are). With one TTL per queue the head is
      the first to expire anyway, so only the moment of the drop differs.
    - Memory is counted in messages (or bytes at a fixed size per message), not measured.
    - Clients reconnect transparently: after a restart, a consumer timeout or a crash of their own,
      consumers get a fresh channel at once (a dead worker when it restarts); producers whose
      ``put`` was refused do not retry, so a refused message is rejected.
    - A consumer timeout or a broker restart does not count as a failed delivery towards the
      delivery limit (RabbitMQ counts returned deliveries; whether a node restart does has varied
      between versions).
    - Only producers honour the memory alarm: a worker pool publishing into this queue as its next
      hop is not blocked.
    - Producers set no priority yet: ``priority_of`` derives one from a hash of the message id
      (the builder's ``priority_weights``), the same for a message wherever it goes.
    - A restart stops the whole queue for ``restart_time``; a replicated quorum queue would elect
      a new leader within seconds instead, so give it a short ``restart_time``.
    - A RabbitMQ queue that is another queue's dead-letter target keeps its dead letters aside
      (:meth:`accept_dead_letter`): counted, never delivered, outside its ready boundary.
    """

    def __init__(self, env, name, boundary, unacked_boundary, counts, fates, *, options: RabbitmqOptions, window_start_s=0.0):
        o = options
        quorum, auto_ack, consumer_timeout_s, delivery_limit = o.quorum, o.auto_ack, o.consumer_timeout_s, o.delivery_limit
        priority_of, memory_limit_messages = o.priority_of, o.memory_limit_messages
        self.env = env
        self.name = name
        self.boundary = boundary
        self.unacked_boundary = unacked_boundary
        self.counts = counts
        self.fates = fates
        self.window_start_s = window_start_s
        self.quorum = quorum
        self.auto_ack = auto_ack
        self.prefetch_count = o.prefetch_count
        self.socket_buffer_messages = o.socket_buffer_messages
        self.requeue_on_error = o.requeue_on_error
        self.consumer_timeout_s = consumer_timeout_s
        self.max_length = o.max_length
        self.overflow = o.overflow
        self.publisher_confirms = o.publisher_confirms
        self.confirm_latency = o.confirm_latency
        self.keeps_messages = o.keeps_messages
        self.message_ttl_s = o.message_ttl_s
        self._dead_letter_lookup = o.dead_letter
        self._dead_letter_target = None
        self.delivery_limit = delivery_limit
        self.requeue_at_head = not quorum or delivery_limit is not None
        self.priority_of = priority_of
        self.ready = PriorityReady() if priority_of is not None else FifoReady()
        self.channels: dict = {}
        self.active: deque = deque()
        self.in_transit = InTransit(env, o.ack_latency, self._settled)
        self.up = True
        self.dead_letters_held = 0
        self._seq = 0
        self._tags = 0
        self.alarm = None
        self.crashes = o.crashes
        if memory_limit_messages is not None:
            self.alarm = MemoryAlarm(env, self.messages, memory_limit_messages, o.memory_monitor_interval_s, self.window_start_s, self.counts)
        if o.crashes is not None:
            env.process(crash_loop(env, o.crashes, self._crash, self._restart))
        if consumer_timeout_s is not None and not auto_ack:
            env.process(self._consumer_timeouts())

    # --- publishers -----------------------------------------------------------------------------

    def put(self, message) -> bool:
        """basic.publish: False when refused (broker down, or reject-publish with confirms on)."""
        now = self.env.now
        counts = self.counts
        if not self.up:
            counts.add("refused")
            if self.publisher_confirms:
                counts.add("nacked_publishes")
            return False
        on_disk_s = None
        if self.confirm_latency is not None:
            latency = self.confirm_latency()
            if self.keeps_messages:
                on_disk_s = now + latency
            if self.publisher_confirms:
                counts.add("confirms")
                counts.add("confirm_latency_sum_s", latency)
        self._seq += 1
        entry = ReadyMessage(
            message,
            self._seq,
            self.priority_of(message) if self.priority_of is not None else 0,
            now,
            None if self.message_ttl_s is None else now + self.message_ttl_s,
            on_disk_s,
        )
        ready = self.ready
        if ready and self.message_ttl_s is not None:
            self._drop_expired_head(now)
        # with ready messages no consumer has room (they would have been pushed), so the new one
        # joins them, within max_length; with none ready it may go straight to a consumer
        if (ready or not self.active) and self.max_length is not None and len(ready) >= self.max_length:
            return self._overflow(entry, now)
        self.boundary.enter(now)
        ready.append(entry)
        if self.active:
            self._dispatch(now)
        return True

    def _overflow(self, entry, now: float) -> bool:
        counts = self.counts
        if self.overflow == "drop-head":
            self.boundary.enter(now)
            self.ready.append(entry)
            self._drop_over_limit(now)
            return True
        counts.add("refused")
        if self.publisher_confirms:
            counts.add("nacked_publishes")
        if self.overflow == "reject-publish-dlx":
            self._dead_letter(entry.message, now)
            return True
        if self.publisher_confirms:
            return False
        # reject-publish without confirms: the publisher never learns that the queue discarded it
        counts.add("lost")
        self.fates.lost(entry.message, now)
        return True

    def _drop_over_limit(self, now: float) -> None:
        ready = self.ready
        while len(ready) > self.max_length:
            entry = ready.pop_head()
            self.boundary.leave(now, entry.since)
            self.counts.add("overflow_dropped")
            self._dead_letter(entry.message, now)

    def publish_gate(self):
        """None while publishers may publish; during a memory alarm, an event that fires when it clears."""
        return self.alarm.blocked if self.alarm is not None else None

    # --- pushing to consumers -------------------------------------------------------------------

    def _has_room(self, channel) -> bool:
        if self.auto_ack:
            return len(channel.buffer) < self.socket_buffer_messages
        return self.prefetch_count == 0 or len(channel.unacked) < self.prefetch_count

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

    def _drop_expired_head(self, now: float) -> None:
        ready = self.ready
        while ready:
            entry = ready.head()
            if entry.expires_s is None or now <= entry.expires_s:
                return
            ready.pop_head()
            self.boundary.leave(now, entry.since)
            self._expired(entry, now)

    def _expired(self, entry, now: float) -> None:
        self.counts.add("expired")
        self._dead_letter(entry.message, now)

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
                self._requeue([delivery.entry], now, failed=True)
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
                    self._requeue(entries, now, failed=False)
                    self._activate(channel, now)

    # --- dead-lettering -------------------------------------------------------------------------

    def _dead_letter(self, message, now: float) -> None:
        """Route ``message`` to the dead-letter exchange's queue, or drop it (lost) without one —
        or when that queue refuses it (RabbitMQ's dead-lettering is at-most-once by default)."""
        target = self._dead_letter_target
        if target is None and self._dead_letter_lookup is not None:
            target = self._dead_letter_target = self._dead_letter_lookup()
        if target is not None:
            if target.accept_dead_letter(message):
                self.counts.add("dead_lettered")
                self.fates.dead_lettered(message, now)
                return
        self.counts.add("lost")
        self.fates.lost(message, now)

    def accept_dead_letter(self, message) -> bool:
        """This queue as another queue's dead-letter target: dead letters stay here for inspection,
        counted (``dead_letters_held``) but outside the ready boundary — nothing consumes them, so
        they would never leave it."""
        self.dead_letters_held += 1
        return True

    # --- broker restarts ------------------------------------------------------------------------

    def _survives(self, entry, now: float) -> bool:
        return self.keeps_messages and entry.on_disk_s is not None and entry.on_disk_s <= now

    def _crash(self, down_s: float) -> None:
        """The node stops for ``down_s``: connections close; what is not safely on disk in a
        durable queue is gone."""
        now = self.env.now
        self.up = False
        self.counts.add("restarts")
        counts, fates, boundary = self.counts, self.fates, self.boundary
        kept = []
        for entry in self.ready.drain():
            if self._survives(entry, now):
                kept.append(entry)
            else:
                boundary.leave(now, entry.since)
                counts.add("lost")
                fates.lost(entry.message, now)
        requeued = []
        for channel in self.channels.values():
            if not self.auto_ack:
                for entry in self._release(channel, now):
                    if self._survives(entry, now):
                        requeued.append(entry)
                    else:
                        counts.add("lost")
                        fates.lost(entry.message, now)
            channel.active = False
        self.active.clear()
        for entry in requeued:
            entry.since = now
            boundary.enter(now)
        kept.extend(requeued)
        kept.sort(key=lambda e: e.seq)
        self.ready.requeue(kept, at_head=False)
        self.counts.add("down_s", down_s)

    def _restart(self) -> None:
        now = self.env.now
        self.up = True
        for channel in self.channels.values():
            self._activate(channel, now)
        self._dispatch(now)

    # --- what it holds and reports --------------------------------------------------------------

    def messages(self) -> int:
        """Messages in the queue: ready and unacknowledged (what the memory alarm weighs)."""
        return len(self.ready) + sum(len(c.unacked) for c in self.channels.values())

    @property
    def waiting(self) -> int:
        """Ready messages (not yet pushed to a consumer)."""
        return len(self.ready)

    def held_ids(self):
        for entry in self.ready:
            yield entry.message.id
        for channel in self.channels.values():
            for delivery in channel.unacked.values():
                yield delivery.message.id
            if self.auto_ack:
                for delivery in channel.buffer:
                    yield delivery.message.id

    def metrics(self) -> dict[str, float]:
        counts = self.counts
        nan = float("nan")
        out = {
            "requeued": counts["requeued"],
            "expired": counts["expired"],
            "overflow_dropped": counts["overflow_dropped"],
            "nacks": counts["nacks"],
        }
        if not self.auto_ack:
            out["consumer_timeouts"] = counts["consumer_timeouts"]
        if self.publisher_confirms:
            confirmed = counts["confirms"]
            out["confirm_latency_s"] = counts["confirm_latency_sum_s"] / confirmed if confirmed else nan
            out["nacked_publishes"] = counts["nacked_publishes"]
        if self.alarm is not None:
            out["memory_alarm_s"] = self.alarm.alarm_s()
            out["memory_alarms"] = counts["memory_alarms"]
        if self.delivery_limit is not None:
            out["delivery_limit_exceeded"] = counts["delivery_limit_exceeded"]
        if self.crashes is not None:
            out["restarts"] = counts["restarts"]
        if self.priority_of is not None:
            levels = sorted(int(k.rsplit("_", 1)[1]) for k in counts if k.startswith("pushes_priority_"))
            for p in levels:
                out[f"priority_{p}_wait_s"] = counts[f"wait_sum_priority_{p}"] / counts[f"pushes_priority_{p}"]
        if self.dead_letters_held:
            out["dead_letters_held"] = self.dead_letters_held
        return out
