"""What a RabbitMQ queue does with what its publishers send, and with what it throws out.

RabbitMQ's documented behaviour (rabbitmq.com/docs: confirms, maxlength, ttl, dlx, priority,
alarms), for :class:`~models.rabbitmq.RabbitmqBroker`:

**Limits.** ``max_length`` counts ready messages only. ``overflow``: ``drop-head`` drops the oldest
ready message (dead-lettered if there is a dead-letter exchange, else lost), also after requeues push
the queue over the limit; ``reject-publish`` refuses the newest: with ``publisher_confirms`` the
publisher gets a nack (``put`` returns False: rejected), without them the publisher never learns and
the message is discarded (lost); ``reject-publish-dlx`` refuses and dead-letters it (the publisher
gets a nack with confirms on).

**Publisher confirms.** Each published message is confirmed ``confirm_latency()`` after it arrives
(for persistent messages on durable queues, once written to disk); the mean confirm latency and the
number of nacked publishes are reported by the broker's ``metrics``.

**Memory and disk alarms.** With ``memory_limit_messages``, a :class:`~models.rabbitmq_alarm.ResourceAlarm`
blocks every publisher (``publish_gate``) while the queue holds more than the watermark in memory,
ready plus unacknowledged; with ``disk_limit_messages``, another blocks them while more messages
than that are paged to disk. Producers keep what they make meanwhile in their backlog, consumers go on.

**TTL.** A message expires ``message_ttl_s`` after it was published (a requeue keeps the expiry).
Expired messages are never delivered; they are dropped — dead-lettered, else lost — when they reach
the head of the queue: checked when a message is about to be pushed and at each publish.

**Dead-lettering** (``dead_letter``: the target broker, looked up on first use) on a nack or reject
without requeue, on TTL expiry, on overflow, and past a quorum queue's ``delivery_limit`` (see
:mod:`models.rabbitmq_consuming`).

**Priorities** (``priority_of``: a message's priority): a classic priority queue delivers in
cycles, the highest priority first within a cycle, in publish order within a priority; messages
published during a cycle wait for the next one, so lower priorities are not starved (see
:class:`~models.rabbitmq_ready.PriorityReady`). A quorum queue's priorities are two levels served
2:1 (4.0–4.2, :class:`~models.rabbitmq_ready.TwoLevelReady`) or strict (4.3,
:class:`~models.rabbitmq_ready.StrictReady`), returned messages first.

**A quorum queue's write-ahead log** (``wal_messages``): each accepted publish goes into it; when it
fills it is flushed, and every message then waiting is on disk (see :class:`RabbitmqBroker`).

Simplifications:

- A TTL'd message is checked at the head only, as both classic and quorum queues do ("Quorum
  queues dead letter expired messages when they reach the head of the queue", and classic queues
  "when the message reaches the head of the queue", https://www.rabbitmq.com/docs/ttl). Expired
  messages stay counted until the next publish or dispatch reaches them.
- Memory is counted in messages (or bytes at a fixed size per message), not measured.
- Only producers honour the memory alarm: a worker pool publishing into this queue as its next hop
  is not blocked.
- Producers set no priority yet: ``priority_of`` derives one from a hash of the message id (the
  builder's ``priority_weights``), the same for a message wherever it goes.
- A RabbitMQ queue that is another queue's dead-letter target keeps its dead letters aside
  (:meth:`Publishing.accept_dead_letter`): counted, never delivered, outside its ready boundary.
"""

from __future__ import annotations

from .rabbitmq_ready import ReadyMessage


class Publishing:
    """The publisher side of :class:`~models.rabbitmq.RabbitmqBroker` (see the module's docstring):
    publishes, overflow, TTL expiry and dead-lettering, on the state the broker's ``__init__`` sets
    up (``ready``, ``alarm``, the dead-letter lookup)."""

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
        if self.flow is not None:
            self.flow.published(now)
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
        if self.pages and len(ready) >= self.messages_in_memory:
            entry.paged = True
        self.boundary.enter(now)
        ready.append(entry)
        if self.active:
            self._dispatch(now)
        if self.wal_messages is not None:
            self.wal_written()
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
        """None while publishers may publish; during a memory or disk alarm or a flow-control
        block, an event that fires when it clears (publishers check again then)."""
        for alarm in (self.alarm, self.disk_alarm, self.flow):
            if alarm is not None and alarm.blocked is not None:
                return alarm.blocked
        return None
    # --- TTL ------------------------------------------------------------------------------------

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
