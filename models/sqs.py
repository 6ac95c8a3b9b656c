"""An Amazon SQS queue, standard or FIFO."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .broker import BrokerBase
from .sqs_clock import Clock
from .sqs_delete import Deleting
from .sqs_parts import (
    COMPACT_SLACK, DELAYED, GONE, IN_FLIGHT, VISIBLE, Alarm, DeduplicationWindow, Entry, TokenBucket, billed_requests,
)
from .sqs_receive import Receiving
from .sqs_visible import GroupedVisible, StandardVisible

DEDUPLICATION_WINDOW_S = 300.0
SHORT_POLL_SAMPLE = 0.01
"""The chance that a short poll finds a given visible message. AWS gives no figure, but says that
with fewer than 1,000 messages in the queue a receive of up to 10 "likely" returns fewer than
asked (API_ReceiveMessage): 1,000 × p ≲ 10, so p ≈ 0.01."""
EXTRA_EVENTS = (
    "send_calls", "receive_calls", "empty_receives", "delete_calls", "change_visibility_calls",
    "throttled", "throttled_sends", "throttled_receives", "throttled_deletes", "throttled_visibility_changes",
    "over_limit", "deduplicated", "visibility_timeouts", "redelivered_messages", "stale_deletes", "missed_deletes",
    "expired",
)


def message_group(message_id: int, groups: int) -> int:
    """The message group of a message: a multiplicative (Fibonacci) hash of its id, modulo ``groups``."""
    return ((((message_id + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32) % groups


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
    short_poll_sample: float = SHORT_POLL_SAMPLE
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
    send_batch_size: int = 1
    delete_batch: bool = False
    message_size_bytes: int | None = None
    price_per_million_requests: float | None = None


class SqsBroker(Receiving, Deleting, Clock, BrokerBase):
    """An SQS queue as the SQS Developer Guide documents it, with the simplifications listed here
    and in the modules of its parts: :mod:`models.sqs_receive` (ReceiveMessage: short and long
    polls, visibility timeouts, redrive, the in-flight limit), :mod:`models.sqs_delete`
    (DeleteMessage and ChangeMessageVisibility) and :mod:`models.sqs_clock` (delays, visibility
    timeouts expiring, retention). This module keeps the queue's state, SendMessage, the states a
    message goes through and what the queue reports.

    Standard queue (at-least-once): a message is received, hidden for a visibility timeout and
    deleted by its consumer, or received again once the timeout ends (a duplicate).

    FIFO queue (``fifo=True``): each message belongs to one of ``message_groups`` groups (a hash of
    its id); within a group messages are received in order: a receive returns as many consecutive
    messages of one group as it can, and a group with messages in flight is locked until every one
    is deleted or visible again (a message back from its timeout comes back at the front). A
    message id sent again within 5 minutes of its first send is accepted and dropped
    (deduplication). Each action (SendMessage, ReceiveMessage, DeleteMessage,
    ChangeMessageVisibility) is limited to ``api_calls_per_s`` calls a second (a token bucket of
    ``api_burst``): a throttled send is refused (the producer's retry policy decides what next), a
    throttled receive returns nothing after its latency, a throttled delete or visibility change is
    retried until it goes through (see :mod:`models.sqs_delete`).

    Batches: ``send_batch_size`` messages per SendMessageBatch (1–10) and ``delete_batch``
    (DeleteMessageBatch of what a receive returned) make each message cost a share of a call, for
    the throttle and in the call counts: 300 calls a second carry 3,000 messages.

    Dead-letter queue retention (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html):
    a message that a standard queue moves to its dead-letter queue keeps its original enqueue
    timestamp, so it expires there ``retention_s`` (the dead-letter queue's) after it was first
    sent; a FIFO queue's dead letter gets a new one, the time of the move.

    Billing (with ``message_size_bytes`` or ``price_per_million_requests``): every API call is
    billed one request per 64 KiB chunk of its payload, at least one — an empty receive too
    ("short polling is billed the same as long polling", best-practices-using-appropriate-polling-mode.html;
    the 64 KiB chunks are on AWS's SQS pricing page, https://aws.amazon.com/sqs/pricing/, not
    re-checked here). A receive's payload is the messages it returns; a delete or visibility change
    carries receipt handles only (one request per call, shared in a batch). ``billed_requests`` and,
    at a price, ``cost_usd`` are reported; no free tier, no data transfer.

    Simplifications: SendMessage is instantaneous (the protocol's ``put`` does not make the producer
    wait); a batch send groups messages without waiting for the batch to fill. Throttled calls are not retried
    (SDKs retry a few times with backoff).

    Boundaries (Little's law holds on each): ``visible`` counts messages that can be received
    (in a FIFO queue, also those queued behind a locked group head); a message enters it each time
    it becomes visible (sent, delay over, visibility timeout expired, released) and leaves it when
    received, deleted, expired or moved to the dead-letter queue, so a redelivered message makes
    several visits. ``in_flight`` counts received, undeleted messages: one visit per receive, left
    at delete, at its visibility timeout, at release or at expiry. ``delayed`` (when given) counts
    messages held by the queue delay.
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
        self.send_cost = 1.0 / options.send_batch_size
        self.delete_batch = options.delete_batch
        self.message_size_bytes = options.message_size_bytes or 0
        self.price_per_million_requests = options.price_per_million_requests
        self.billing = options.message_size_bytes is not None or options.price_per_million_requests is not None
        self.send_billed = billed_requests(options.send_batch_size, self.message_size_bytes) / options.send_batch_size

        self.visible = GroupedVisible() if fifo else StandardVisible()
        self.in_flight_count = 0
        self.delayed: deque = deque()  # (due_s, entry), in due order
        self.expiring: deque = deque()  # (due_s, entry, handle), in due order
        self.by_age: deque = deque()  # every entry not gone (and some gone ones), in sending order
        self.redriven: list = []  # (expiry_s, seq, entry): dead letters that kept their enqueue time, a heap
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
        counts.add("send_calls", self.send_cost)
        counts.add("billed_requests", self.send_billed)
        if self.send_limit is not None and not self.send_limit.take(now, self.send_cost):
            counts.add("throttled")
            counts.add("throttled_sends")
            counts.add("refused")
            return False
        if self.deduplication is not None and self.deduplication.seen(message.id, now):
            counts.add("deduplicated")
            return True
        self._enqueue(message, now, now)
        return True

    def accept_dead_letter(self, message) -> bool:
        """A dead letter from a queue that is not a standard SQS queue (or a FIFO queue's): its
        retention starts now, as a FIFO dead-letter queue resets the enqueue timestamp."""
        self._enqueue(message, self.env.now, self.env.now)
        return True

    def accept_redriven(self, message, enqueued_s: float) -> bool:
        """A message moved here by a standard queue's redrive policy: it keeps its original enqueue
        timestamp, so it expires ``retention_s`` after it was first sent ("For standard queues, the
        expiration of a message is always based on its original enqueue timestamp"); one already
        past that is deleted at once (expired, lost)."""
        now = self.env.now
        if enqueued_s + self.retention_s <= now:
            self.counts.add("expired")
            self.counts.add("lost")
            self.fates.lost(message, now)
            return True
        self._enqueue(message, now, enqueued_s)
        return True

    def _enqueue(self, message, now: float, enqueued_s: float) -> None:
        """A new entry, enqueued at ``enqueued_s`` (now, or earlier for a redriven message, which
        is kept in ``redriven`` by expiry since it breaks the sending order of ``by_age``)."""
        self._seq += 1
        entry = Entry(message, self._seq, enqueued_s, message_group(message.id, self.message_groups) if self.fifo else 0)
        entry.since_s = now
        self.by_age.append(entry)
        self.live += 1
        if len(self.by_age) > 2 * self.live + COMPACT_SLACK:
            self.by_age = deque(e for e in self.by_age if e.state != GONE)
        expiry_s = enqueued_s + self.retention_s
        if enqueued_s < now:
            heapq.heappush(self.redriven, (expiry_s, entry.seq, entry))
        self.alarm.at(expiry_s)
        if self.delay_s > 0:
            self.delayed.append((now + self.delay_s, entry))
            self.delayed_boundary.enter(now)
            self.alarm.at(now + self.delay_s)
        else:
            self._make_visible(entry, now, front=False)
            if self.active_waiters:
                self._serve_waiters()

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
        if self.billing:
            out["billed_requests"] = float(counts["billed_requests"])
            if self.price_per_million_requests is not None:
                out["cost_usd"] = out["billed_requests"] * self.price_per_million_requests / 1e6
        return out
