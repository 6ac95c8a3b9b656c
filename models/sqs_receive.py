"""How an SQS queue answers ReceiveMessage: short and long polls, visibility, redrive.

The SQS Developer Guide's behaviour, for :class:`~models.sqs.SqsBroker`:

- ReceiveMessage returns up to ``batch_size`` (1–10) messages and hides each for
  ``visibility_timeout_s`` from that moment, one clock per message: the later messages of a batch
  wait for the earlier ones' processing and are the most exposed. A message not deleted in time
  becomes visible again (at the front of the queue) and is received again, by anyone: the work is
  done twice (a duplicate). Each receive returns a new receipt handle.
- Short polling (``wait_time_s`` 0) samples "a weighted random set of machines", so only messages
  on those machines are returned: with fewer than 1,000 messages a receive likely returns fewer
  than asked, with very few none at all (API Reference, ReceiveMessage,
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).
  Here each visible message is found with probability ``short_poll_sample`` (default 0.01: AWS
  gives no figure, and 1,000 messages × 0.01 = 10, the most a receive asks for), so a queue of 100
  messages answers a receive of 10 with about one. Long polling waits up to ``wait_time_s`` and returns as soon as
  a message is visible, possibly fewer than ``batch_size``; a long poll that times out withdraws its
  registration. Every receive takes ``receive_latency()`` seconds: the messages are chosen (and
  their clocks start) when the call reaches the queue, and reach the consumer after the latency.
- Redrive policy: when a message's receive count would exceed ``max_receive_count`` it moves to
  ``dead_letter_queue`` (a callable giving another broker, or None for a dead-letter queue that is
  not modelled) instead of being delivered.
- At ``max_in_flight`` messages in flight, receives return nothing (short polling's OverLimit
  error; a long poll waits as if the queue were empty).
- FIFO queue: each group's messages are received in order; a receive takes as many consecutive
  messages of one group as it can, then of the next group (see
  :class:`~models.sqs_visible.GroupedVisible`), and the group stays locked while any of them is in
  flight. A throttled receive returns nothing after its latency (the consumer polls again).

Simplifications:

- The in-flight limit is the same for both queue types.
- A standard queue's best-effort order is modelled as oldest first (messages back from a
  visibility timeout go to the front); a short poll finds each visible message independently.
"""

from __future__ import annotations

from collections import deque

from simpy import Interrupt

from .broker import Delivery
from .sqs_parts import COMPACT_SLACK, IN_FLIGHT, billed_requests


class SqsDelivery(Delivery):
    """A received message; ``tag`` is its receipt handle, ``entry`` the queue's copy."""

    __slots__ = ("entry", "batch")

    def __init__(self, entry, consumer, handle: int, delivered_s: float, receive_count: int, batch: int = 1):
        super().__init__(entry.message, consumer, handle, delivered_s, receive_count)
        self.entry = entry
        self.batch = batch
        """How many messages the receive returned (a batched delete shares one call among them)."""


class _Waiter:
    """A long poll waiting for messages until ``due_s``."""

    __slots__ = ("event", "due_s", "cancelled")

    def __init__(self, event, due_s: float):
        self.event = event
        self.due_s = due_s
        self.cancelled = False


class Receiving:
    """ReceiveMessage for :class:`~models.sqs.SqsBroker` (see the module's docstring), on the state
    the broker's ``__init__`` sets up (``visible``, ``expiring``, ``waiters``, the alarm)."""

    def receive(self, consumer):
        """ReceiveMessage: a short poll, or a long poll of up to ``wait_time_s``."""
        env = self.env
        counts = self.counts
        counts.add("receive_calls")
        now = env.now
        chosen = []
        if self.receive_limit is not None and not self.receive_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_receives")
        else:
            room = self.max_in_flight - self.in_flight_count
            if room > 0:
                chosen = self._take(min(self.batch_size, room), short=self.wait_time_s == 0)
            elif self.wait_time_s == 0:
                counts.add("over_limit")
            if not chosen and self.wait_time_s > 0:
                chosen = yield from self._long_poll()
        latency = self.receive_latency()
        if latency > 0:
            yield env.timeout(latency)
        counts.add("billed_requests", billed_requests(len(chosen), self.message_size_bytes))
        if not chosen:
            counts.add("empty_receives")
            return []
        now = env.now
        batch = len(chosen)
        deliveries = [SqsDelivery(entry, consumer, handle, now, count, batch) for entry, handle, count in chosen]
        consumer.held.extend(deliveries)
        return deliveries

    def _long_poll(self):
        env = self.env
        due = env.now + self.wait_time_s
        waiter = _Waiter(env.event(), due)
        self.waiters.append(waiter)
        self.active_waiters += 1
        self.alarm.at(due)
        try:
            return (yield waiter.event)
        except Interrupt:
            # the worker crashed while polling: withdraw; messages already chosen for it stay in
            # flight and come back when their visibility timeouts end
            if not waiter.event.triggered:
                waiter.cancelled = True
                self.active_waiters -= 1
                if len(self.waiters) > 2 * self.active_waiters + 64:
                    self.waiters = deque(w for w in self.waiters if not w.cancelled)
            raise

    def _serve_waiters(self) -> None:
        """Hand visible messages to long polls, longest waiting first."""
        waiters = self.waiters
        while waiters and self.visible.live:
            waiter = waiters[0]
            if waiter.cancelled:
                waiters.popleft()
                continue
            room = self.max_in_flight - self.in_flight_count
            if room <= 0:
                return
            chosen = self._take(min(self.batch_size, room), short=False)
            if not chosen:
                return
            waiters.popleft()
            self.active_waiters -= 1
            waiter.event.succeed(chosen)

    def _take(self, n: int, short: bool) -> list:
        """Move up to ``n`` receivable messages in flight: [(entry, handle, receive count)]."""
        batch = self._batch = []
        if self.visible.live:
            self.visible.take(n, self._found if short else None, self._accept)
        return batch

    def _found(self) -> bool:
        return self.short_poll_draw() < self.short_poll_sample

    def _accept(self, entry) -> bool:
        """A receive found ``entry``: deliver it, or move it to the dead-letter queue."""
        now = self.env.now
        self.visible_boundary.leave(now, entry.since_s)
        if self.max_receive_count is not None and entry.receive_count >= self.max_receive_count:
            self._dead_letter(entry, now)
            return False
        counts = self.counts
        entry.receive_count += 1
        counts.add("deliveries")
        if entry.receive_count > 1:
            counts.add("redeliveries")
            if entry.receive_count == 2:
                counts.add("redelivered_messages")
        self._handles += 1
        entry.handle = handle = self._handles
        entry.state = IN_FLIGHT
        entry.since_s = now
        self.in_flight_boundary.enter(now)
        self.in_flight_count += 1
        due = now + self.visibility_timeout_s
        expiring = self.expiring
        expiring.append((due, entry, handle))
        if len(expiring) > 2 * self.in_flight_count + COMPACT_SLACK:
            self.expiring = deque(item for item in expiring if item[1].state == IN_FLIGHT and item[1].handle == item[2])
        self.alarm.at(due)
        self._batch.append((entry, handle, entry.receive_count))
        return True

    def _dead_letter(self, entry, now: float) -> None:
        self._gone(entry)
        message = entry.message
        if self.dead_letter_queue is None:
            moved = True
        else:
            queue = self.dead_letter_queue()
            if not self.fifo and isinstance(queue, type(self)):
                moved = queue.accept_redriven(message, entry.sent_s)
            else:
                moved = queue.accept_dead_letter(message)
        if moved:
            self.counts.add("dead_lettered")
            self.fates.dead_lettered(message, now)
        else:
            self.counts.add("lost")
            self.fates.lost(message, now)
