"""An Amazon SQS queue, standard or FIFO."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from simpy import Interrupt

from .broker import BrokerBase, Delivery
from .sqs_parts import Alarm, DeduplicationWindow, TokenBucket
from .sqs_visible import VISIBLE, GroupedVisible, StandardVisible

DELAYED, IN_FLIGHT, GONE = 0, 2, 3  # with VISIBLE = 1: the states of an Entry
DEDUPLICATION_WINDOW_S = 300.0
EPSILON_S = 1e-9
COMPACT_SLACK = 1024
EXTRA_EVENTS = (
    "send_calls", "receive_calls", "empty_receives", "delete_calls", "change_visibility_calls",
    "throttled", "throttled_sends", "throttled_receives", "throttled_deletes", "throttled_visibility_changes",
    "over_limit", "deduplicated", "visibility_timeouts", "redelivered_messages", "stale_deletes", "missed_deletes",
    "expired",
)


def message_group(message_id: int, groups: int) -> int:
    """The message group of a message: a multiplicative (Fibonacci) hash of its id, modulo ``groups``."""
    return ((((message_id + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32) % groups


class Entry:
    """One copy of a message in the queue, from SendMessage until it is deleted, expires or moves
    to the dead-letter queue: its state (delayed, visible, in flight, gone), when it entered that
    state, its latest receipt handle and how many times it was received."""

    __slots__ = ("message", "seq", "sent_s", "since_s", "state", "handle", "receive_count", "group")

    def __init__(self, message, seq: int, sent_s: float, group: int):
        self.message = message
        self.seq = seq
        self.sent_s = sent_s
        self.since_s = sent_s
        self.state = DELAYED
        self.handle = 0
        self.receive_count = 0
        self.group = group


class SqsDelivery(Delivery):
    """A received message; ``tag`` is its receipt handle, ``entry`` the queue's copy."""

    __slots__ = ("entry",)

    def __init__(self, entry, consumer, handle: int, delivered_s: float, receive_count: int):
        super().__init__(entry.message, consumer, handle, delivered_s, receive_count)
        self.entry = entry


class _Waiter:
    """A long poll waiting for messages until ``due_s``."""

    __slots__ = ("event", "due_s", "cancelled")

    def __init__(self, event, due_s: float):
        self.event = event
        self.due_s = due_s
        self.cancelled = False


@dataclass
class SqsOptions:
    """How an SQS queue is configured and what its calls cost (see :class:`SqsBroker`);
    ``receive_latency`` and ``delete_latency`` are samplers of the calls' latencies,
    ``short_poll_draw`` and ``duplicate_draw`` uniform draws, ``dead_letter_queue()`` the
    dead-letter queue (looked up when first needed)."""

    receive_latency: Callable[[], float]
    delete_latency: Callable[[], float]
    visibility_timeout_s: float = 30.0
    wait_time_s: float = 0.0
    batch_size: int = 1
    short_poll_sample: float = 0.5
    short_poll_draw: Callable[[], float] | None = None
    on_error: str = "wait"
    stale_delete: str = "keep"
    duplicate_probability: float = 0.0
    duplicate_draw: Callable[[], float] | None = None
    retention_s: float = 4 * 86400.0
    delay_s: float = 0.0
    max_in_flight: int = 120_000
    dead_letter_queue: Callable[[], object] | None = None
    max_receive_count: int | None = None
    fifo: bool = False
    message_groups: int = 1
    api_calls_per_s: float | None = None
    api_burst: int | None = None


class SqsBroker(BrokerBase):
    """An SQS queue as the SQS Developer Guide documents it.

    Standard queue (at-least-once):

    - ReceiveMessage returns up to ``batch_size`` (1–10) messages and hides each for
      ``visibility_timeout_s`` from that moment, one clock per message: the later messages of a
      batch wait for the earlier ones' processing and are the most exposed. A message not deleted
      in time becomes visible again (at the front of the queue) and is received again, by anyone:
      the work is done twice (a duplicate). Each receive returns a new receipt handle.
    - DeleteMessage with the latest handle deletes the message (even if its timeout has expired,
      provided nobody received it since). With an older handle the call succeeds but, by default
      (``stale_delete="keep"``), does not delete the copy received since ("a delete with an older
      handle may succeed without deleting the message"); ``"delete"`` deletes it anyway.
    - With ``duplicate_probability`` p, a delete is missed by a server holding a copy: the call
      succeeds but the message stays in flight and comes back visible when its visibility timeout
      ends, to be received and processed again (SQS's "occasionally a second copy").
    - No negative acknowledgement: a failed message is left to its visibility timeout
      (``on_error="wait"``) or released at once with ChangeMessageVisibility to 0
      (``on_error="release"``, a call that takes ``delete_latency``). A consumer that dies holds
      nothing the queue knows of: its messages come back when their timeouts end.
    - Short polling (``wait_time_s`` 0) samples a subset of the servers: each visible message is
      found with probability ``short_poll_sample`` (AWS documents no figure), so with few messages
      a receive returns fewer than asked or none. Long polling waits up to ``wait_time_s`` and
      returns as soon as a message is visible, possibly fewer than ``batch_size``; a long poll that
      times out withdraws its registration. Every receive takes ``receive_latency()`` seconds: the
      messages are chosen (and their clocks start) when the call reaches the queue, and reach the
      consumer after the latency. Every delete takes ``delete_latency()``; it takes effect when
      made and the worker waits for its answer.
    - Redrive policy: when a message's receive count would exceed ``max_receive_count`` it moves to
      ``dead_letter_queue`` (a callable giving another broker, or None for a dead-letter queue that
      is not modelled) instead of being delivered.
    - Retention: a message ``retention_s`` after it was sent is deleted, whatever its state, and is
      lost if nothing processed it. ``delay_s`` holds each new message hidden before its first
      visibility. At ``max_in_flight`` messages in flight, receives return nothing (short polling's
      OverLimit error; a long poll waits as if the queue were empty).

    FIFO queue (``fifo=True``): each message belongs to one of ``message_groups`` groups (a hash of
    its id); within a group messages are received in order, one at a time: a group whose head is in
    flight is locked until the head is deleted or visible again, and its head comes back at the
    front. A message id sent again within 5 minutes of its first send is accepted and dropped
    (deduplication). Each action (SendMessage, ReceiveMessage, DeleteMessage,
    ChangeMessageVisibility) is limited to ``api_calls_per_s`` calls a second (a token bucket of
    ``api_burst``): a throttled send is refused, a throttled receive returns nothing after its
    latency, a throttled delete deletes nothing (the message comes back after its timeout).

    Simplifications:

    - A FIFO receive takes at most one message per group (AWS fills a batch with consecutive
      messages of one group); so a group never has two messages in flight.
    - SendMessage is instantaneous (the protocol's ``put`` does not make the producer wait); the
      dead-letter queue's retention counts from the move. Throttled calls are not retried (SDKs
      retry a few times with backoff).
    - Retention and delay are per queue; the in-flight limit is the same for both queue types.
    - A standard queue's best-effort order is modelled as oldest first (messages back from a
      visibility timeout go to the front); a short poll finds each visible message independently.
    - ChangeMessageVisibility with a stale handle does nothing. A message in a worker's hands when
      its retention ends is deleted from the queue (counted ``expired`` and ``lost`` here); if the
      worker then finishes it, it is processed all the same (the Recorder's rule for survivors).

    Boundaries (Little's law holds on each): ``visible`` counts messages that can be received
    (in a FIFO queue, also those queued behind a locked group head); a message enters it each time
    it becomes visible (sent, delay over, visibility timeout expired, released) and leaves it when
    received, deleted, expired or moved to the dead-letter queue, so a redelivered message makes
    several visits. ``in_flight`` counts received, undeleted messages: one visit per receive, left
    at delete, at its visibility timeout, at release or at expiry. ``delayed`` (when given) counts
    messages held by the queue delay.

    Visibility timeouts, delays and retention cost no SimPy event per message: each is a queue
    sorted by due time (the timeouts and delays are constant, so arrival order is due order) that
    an :class:`~models.sqs_parts.Alarm` looks at when the earliest item falls due; deleted
    messages are skipped there, so a healthy queue wakes about once a visibility timeout.
    """

    def __init__(self, env, name, counts, fates, visible, in_flight, delayed=None, *, options: SqsOptions):
        self.env = env
        self.name = name
        self.counts = counts
        self.fates = fates
        self.visible_boundary = visible
        self.in_flight_boundary = in_flight
        self.delayed_boundary = delayed
        self.receive_latency = options.receive_latency
        self.delete_latency = options.delete_latency
        self.visibility_timeout_s = options.visibility_timeout_s
        self.wait_time_s = options.wait_time_s
        self.batch_size = options.batch_size
        self.short_poll_sample = options.short_poll_sample
        self.short_poll_draw = options.short_poll_draw
        self.release_on_error = options.on_error == "release"
        self.stale_delete_deletes = options.stale_delete == "delete"
        self.duplicate_probability = options.duplicate_probability
        self.duplicate_draw = options.duplicate_draw
        self.retention_s = options.retention_s
        self.delay_s = options.delay_s
        self.max_in_flight = options.max_in_flight
        self.dead_letter_queue = options.dead_letter_queue
        self.max_receive_count = options.max_receive_count
        self.fifo = fifo = options.fifo
        self.message_groups = options.message_groups

        self.visible = GroupedVisible() if fifo else StandardVisible()
        self.in_flight_count = 0
        self.delayed: deque = deque()  # (due_s, entry), in due order
        self.expiring: deque = deque()  # (due_s, entry, handle), in due order
        self.by_age: deque = deque()  # every entry not gone (and some gone ones), in sending order
        self.live = 0
        self.waiters: deque = deque()
        self.active_waiters = 0
        self.alarm = Alarm(env, self._wake)
        self._seq = 0
        self._handles = 0
        self._batch: list = []
        if fifo:
            self.deduplication = DeduplicationWindow(DEDUPLICATION_WINDOW_S)
            rate = options.api_calls_per_s
            self.send_limit, self.receive_limit, self.delete_limit, self.change_limit = (
                TokenBucket(rate, options.api_burst) for _ in range(4)
            )
        else:
            self.deduplication = None
            self.send_limit = self.receive_limit = self.delete_limit = self.change_limit = None

    # --- sending --------------------------------------------------------------------------------

    def put(self, message) -> bool:
        """SendMessage: False when throttled (FIFO); a FIFO duplicate is accepted and dropped."""
        now = self.env.now
        counts = self.counts
        counts.add("send_calls")
        if self.send_limit is not None and not self.send_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_sends")
            counts.add("refused")
            return False
        if self.deduplication is not None and self.deduplication.seen(message.id, now):
            counts.add("deduplicated")
            return True
        self._seq += 1
        entry = Entry(message, self._seq, now, message_group(message.id, self.message_groups) if self.fifo else 0)
        self.by_age.append(entry)
        self.live += 1
        if len(self.by_age) > 2 * self.live + COMPACT_SLACK:
            self.by_age = deque(e for e in self.by_age if e.state != GONE)
        self.alarm.at(now + self.retention_s)
        if self.delay_s > 0:
            self.delayed.append((now + self.delay_s, entry))
            self.delayed_boundary.enter(now)
            self.alarm.at(now + self.delay_s)
        else:
            self._make_visible(entry, now, front=False)
            if self.active_waiters:
                self._serve_waiters()
        return True

    # --- receiving ------------------------------------------------------------------------------

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
        if not chosen:
            counts.add("empty_receives")
            return []
        now = env.now
        deliveries = [SqsDelivery(entry, consumer, handle, now, count) for entry, handle, count in chosen]
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
        if self.dead_letter_queue is None or self.dead_letter_queue().accept_dead_letter(message):
            self.counts.add("dead_lettered")
            self.fates.dead_lettered(message, now)
        else:
            self.counts.add("lost")
            self.fates.lost(message, now)

    # --- acknowledging --------------------------------------------------------------------------

    def ack(self, delivery) -> float:
        """DeleteMessage with the delivery's receipt handle; returns the call's latency."""
        now = self.env.now
        counts = self.counts
        counts.add("delete_calls")
        latency = self.delete_latency()
        if self.delete_limit is not None and not self.delete_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_deletes")
            return latency
        entry = delivery.entry
        if entry.state == GONE:
            return latency
        if delivery.tag != entry.handle:
            counts.add("stale_deletes")
            if not self.stale_delete_deletes:
                return latency
        elif self.duplicate_probability > 0 and entry.state == IN_FLIGHT and self.duplicate_draw() < self.duplicate_probability:
            counts.add("missed_deletes")
            return latency
        self._remove(entry, now)
        return latency

    def nack(self, delivery) -> float:
        """No nack in SQS: wait for the visibility timeout, or ChangeMessageVisibility to 0."""
        if not self.release_on_error:
            return 0.0
        now = self.env.now
        counts = self.counts
        counts.add("change_visibility_calls")
        latency = self.delete_latency()
        if self.change_limit is not None and not self.change_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_visibility_changes")
            return latency
        entry = delivery.entry
        if entry.state == IN_FLIGHT and delivery.tag == entry.handle:
            self._leave_in_flight(entry, now)
            self._make_visible(entry, now, front=True)
            if self.active_waiters:
                self._serve_waiters()
        return latency

    def disconnect(self, consumer, deliveries) -> None:
        """SQS knows no connections: what a dead consumer held comes back after its timeouts."""

    # --- states ---------------------------------------------------------------------------------

    def _make_visible(self, entry, now: float, front: bool) -> None:
        entry.state = VISIBLE
        entry.since_s = now
        self.visible_boundary.enter(now)
        if front:
            self.visible.push_front(entry)
        else:
            self.visible.push(entry)

    def _leave_in_flight(self, entry, now: float) -> None:
        self.in_flight_boundary.leave(now, entry.since_s)
        self.in_flight_count -= 1
        if self.fifo:
            self.visible.unlock(entry.group)

    def _gone(self, entry) -> None:
        entry.state = GONE
        self.live -= 1

    def _remove(self, entry, now: float) -> None:
        """Delete ``entry`` from the queue (a delete, or retention), whatever its state."""
        state = entry.state
        self._gone(entry)
        if state == IN_FLIGHT:
            self._leave_in_flight(entry, now)
            if self.active_waiters:
                self._serve_waiters()
        elif state == VISIBLE:
            self.visible_boundary.leave(now, entry.since_s)
            self.visible.discard(entry)
        elif state == DELAYED:
            self.delayed_boundary.leave(now, entry.since_s)

    # --- the clock ------------------------------------------------------------------------------

    def _wake(self, now: float) -> None:
        """Whatever fell due: delays over, visibility timeouts expired, retention reached."""
        horizon = now + EPSILON_S
        delayed = self.delayed
        while delayed and delayed[0][0] <= horizon:
            _, entry = delayed.popleft()
            if entry.state == DELAYED:
                self.delayed_boundary.leave(now, entry.since_s)
                self._make_visible(entry, now, front=False)
        expiring = self.expiring
        returning = []
        while expiring and expiring[0][0] <= horizon:
            _, entry, handle = expiring.popleft()
            if entry.state == IN_FLIGHT and entry.handle == handle:
                self.counts.add("visibility_timeouts")
                self._leave_in_flight(entry, now)
                returning.append(entry)
        for entry in reversed(returning):  # back to the front, in the order they were received
            self._make_visible(entry, now, front=True)
        by_age = self.by_age
        retention_s = self.retention_s
        while by_age:
            entry = by_age[0]
            if entry.state != GONE:
                if entry.sent_s + retention_s > horizon:
                    break
                self._remove(entry, now)
                self.counts.add("expired")
                self.counts.add("lost")
                self.fates.lost(entry.message, now)
            by_age.popleft()
        if self.active_waiters:
            self._serve_waiters()
            waiters = self.waiters
            while waiters and (waiters[0].cancelled or waiters[0].due_s <= horizon):
                waiter = waiters.popleft()
                if not waiter.cancelled:
                    self.active_waiters -= 1
                    waiter.event.succeed([])
        self._rearm()

    def _rearm(self) -> None:
        expiring = self.expiring
        while expiring and not (expiring[0][1].state == IN_FLIGHT and expiring[0][1].handle == expiring[0][2]):
            expiring.popleft()
        at = self.alarm.at
        if expiring:
            at(expiring[0][0])
        if self.delayed:
            at(self.delayed[0][0])
        if self.by_age:
            at(self.by_age[0].sent_s + self.retention_s)
        waiters = self.waiters
        while waiters and waiters[0].cancelled:
            waiters.popleft()
        if waiters:
            at(waiters[0].due_s)

    # --- reporting ------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Messages that can be received (in a FIFO queue, also those behind a locked group head)."""
        return self.visible.live

    def held_ids(self):
        """Messages the queue holds: delayed, visible or in flight."""
        return (entry.message.id for entry in self.by_age if entry.state != GONE)

    def metrics(self) -> dict[str, float]:
        """API calls by action, throttled and empty ones, deduplicated sends, visibility timeouts,
        stale and missed deletes, retention expiries, and the fraction of messages received more
        than once (all counted in the measurement window)."""
        counts = self.counts
        out = {event: float(counts[event]) for event in EXTRA_EVENTS}
        out["api_calls"] = out["send_calls"] + out["receive_calls"] + out["delete_calls"] + out["change_visibility_calls"]
        calls = out["receive_calls"]
        out["empty_receive_fraction"] = out["empty_receives"] / calls if calls else float("nan")
        first = counts["deliveries"] - counts["redeliveries"]
        out["redelivered_fraction"] = out["redelivered_messages"] / first if first else float("nan")
        return out
