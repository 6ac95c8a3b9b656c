"""A RabbitMQ queue, as its consumers, publishers and failures see it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from .broker import BrokerBase
from .crashes import Crashes, crash_loop
from .rabbitmq_alarm import CreditFlow, ResourceAlarm
from .rabbitmq_channel import InTransit
from .rabbitmq_consuming import Consuming
from .rabbitmq_publishing import Publishing
from .rabbitmq_ready import FifoReady, PriorityReady, StrictReady, TwoLevelReady

DISK_CHECK_INTERVAL_S = 10.0
"""RabbitMQ checks free disk space "normally every 10 seconds" (more often near the limit)."""
PRIORITY_QUEUES = {"cycles": PriorityReady, "two-levels": TwoLevelReady, "strict": StrictReady}
"""How a queue orders priorities: classic queues in cycles; quorum queues in two levels at 2:1
(4.0–4.2) or strictly (4.3)."""

@dataclass
class RabbitmqOptions:
    """How a RabbitMQ queue is configured (see :class:`RabbitmqBroker`): samplers for the
    latencies, ``dead_letter()`` the dead-letter exchange's queue (looked up when first needed),
    ``priority_of(message)`` a message's priority and ``priorities`` how the queue orders them (a
    key of ``PRIORITY_QUEUES``), ``crashes`` the broker's restarts."""

    quorum: bool = False
    auto_ack: bool = False
    prefetch_count: int = 0
    socket_buffer_messages: int = 100
    ack_latency: Callable[[], float] | None = None
    requeue_on_error: bool = True
    consumer_timeout_s: float | None = 1800.0
    consumer_timeout_cancels: bool = False
    max_length: int | None = None
    overflow: str = "drop-head"
    publisher_confirms: bool = False
    confirm_latency: Callable[[], float] | None = None
    keeps_messages: bool = False
    message_ttl_s: float | None = None
    dead_letter: Callable[[], object] | None = None
    delivery_limit: int | None = None
    priority_of: Callable | None = None
    priorities: str = "cycles"
    memory_limit_messages: int | None = None
    memory_monitor_interval_s: float = 2.5
    crashes: Crashes | None = None
    nack_counts_toward_limit: bool = True
    messages_in_memory: int | None = None
    disk_read: Callable[[], float] | None = None
    wal_messages: int | None = None
    disk_limit_messages: int | None = None
    publish_s: float | None = None


class RabbitmqBroker(Publishing, Consuming, BrokerBase):
    """One RabbitMQ queue (classic or quorum) with push consumers — RabbitMQ's documented behaviour
    (rabbitmq.com/docs: consumers, confirms, consumer-prefetch, maxlength, ttl, dlx, priority,
    quorum-queues, alarms), with the simplifications listed here and in the modules of its parts:
    :mod:`models.rabbitmq_publishing` (publishing, limits, confirms, the memory alarm, TTL,
    dead-lettering, priorities) and :mod:`models.rabbitmq_consuming` (push delivery, manual and
    automatic acks, requeues, consumer timeouts, the delivery limit). This module keeps the queue's
    state, its restarts and what it reports.

    **Broker restarts** (``crashes``: a time to failure, a ``restart_time``): every connection
    closes. Ready and unacknowledged messages survive only in a durable queue, if persistent and
    already written to disk (``confirm_latency`` after publishing; a quorum queue keeps every
    message, once confirmed); the rest are lost. Survivors are requeued in publish order
    (redelivered=true). Work in progress in the workers goes on, and its ack falls on a closed
    channel: the requeued copy makes a duplicate. While the broker is down, ``put`` refuses (a nack
    with confirms on); consumers wait.

    **Boundaries.** ``boundary`` counts ready messages: each stay in the ready queue is one item, so
    a requeued message enters again (λ counts requeues, and ``wait_s`` is per stay, not per
    message). ``unacked_boundary`` counts deliveries from push to the arrival of their ack (or
    their requeue, loss or nack); automatic-ack deliveries never enter it.

    Simplifications:

    - Clients reconnect transparently: after a restart, a consumer timeout or a crash of their own,
      consumers get a fresh channel at once (a dead worker when it restarts); producers whose
      ``put`` was refused do not retry, so a refused message is rejected.
    - A restart stops the whole queue for ``restart_time``; a replicated quorum queue would elect
      a new leader within seconds instead, so give it a short ``restart_time``.

    **Memory and paging** (``messages_in_memory``: classic queues since 3.12 keep "up to 2048
    messages in memory, depending on the consumer delivery rate", and write the rest to disk,
    https://www.rabbitmq.com/docs/classic-queues#memory): the memory alarm weighs at most
    ``messages_in_memory`` ready messages plus the unacknowledged ones, so a long classic queue
    does not by itself trip it. With ``disk_read``, a message published while ``messages_in_memory``
    or more wait is written to disk (paged), and the consumer that takes it waits ``disk_read()``
    for it to be read back (counted ``disk_reads``): once a backlog spills, each delivery pays a
    disk read and the consumers' throughput falls. With ``publish_s``, credit-based flow control
    (:class:`~models.rabbitmq_alarm.CreditFlow`) slows publishers down to what the queue process
    can take in. With ``disk_limit_messages`` (how many paged
    messages fit before free disk space falls to ``disk_free_limit``), the disk alarm blocks every
    publisher while more are on disk, checked every 10 s. Simplifications: the cap is fixed (RabbitMQ sizes
    it to about a second of deliveries); no read-ahead (a paged message stays on disk until it is
    delivered, then stays in memory if requeued); reads of different consumers overlap (the queue
    process, a single reader, is not a bottleneck); message size does not change the read time.

    **Quorum queues** keep message bodies on disk and "only keep a small metadata record of each
    message in memory" (RMQ 3.13/quorum-queues; "Keeps messages in memory: never", 4.x); recent
    ones are also in the node's write-ahead log, in memory until it reaches ``raft.wal_max_size_bytes``
    (512 MiB) and is flushed to segment files (RMQ quorum-queues, "How Memory, WAL and Segments Files
    Interact"). With ``wal_messages`` (the log's size over the message size) the log is flushed
    after every ``wal_messages`` publishes: every message then still ready is on disk, read with
    ``disk_read`` when delivered, and the memory alarm weighs the ready messages still in the log.
    With a steady backlog of B messages, delivered in order, a fraction min(1, B / wal_messages) of
    deliveries pays the read. Simplifications: the log holds this queue's publishes only (a node's
    queues share it; acks and other commands are small), and its memory is released at once.
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
        self.consumer_timeout_cancels = o.consumer_timeout_cancels
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
        self.ready = PRIORITY_QUEUES[o.priorities]() if priority_of is not None else FifoReady()
        self.channels: dict = {}
        self.active: deque = deque()
        self.in_transit = InTransit(env, o.ack_latency, self._settled)
        self.up = True
        self.dead_letters_held = 0
        self._seq = 0
        self._tags = 0
        self.alarm = None
        self.flow = CreditFlow(env, o.publish_s, self.counts) if o.publish_s is not None else None
        self.crashes = o.crashes
        self.nack_counts_toward_limit = o.nack_counts_toward_limit
        self.messages_in_memory = o.messages_in_memory
        self.disk_read = o.disk_read
        self.pages = o.messages_in_memory is not None and (o.disk_read is not None or o.disk_limit_messages is not None)
        """Whether classic-queue paging is modelled: messages beyond ``messages_in_memory`` are marked as on disk."""
        self.wal_messages = o.wal_messages
        """A quorum queue's write-ahead log: flushed every ``wal_messages`` publishes (None: not modelled)."""
        self._wal_written = 0
        if memory_limit_messages is not None:
            self.alarm = ResourceAlarm(env, self.messages, memory_limit_messages, o.memory_monitor_interval_s, self.window_start_s, self.counts)
        self.disk_alarm = None
        if o.disk_limit_messages is not None:
            self.disk_alarm = ResourceAlarm(env, self.paged_messages, o.disk_limit_messages, DISK_CHECK_INTERVAL_S,
                                            self.window_start_s, self.counts, "disk_alarms")
        if o.crashes is not None:
            env.process(crash_loop(env, o.crashes, self._crash, self._restart))
        if consumer_timeout_s is not None and not auto_ack:
            env.process(self._consumer_timeouts())

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

    def wal_written(self) -> None:
        """A publish went into the write-ahead log; when that fills it, the log is flushed and every
        ready message is on disk from then on."""
        self._wal_written += 1
        if self._wal_written >= self.wal_messages:
            self._wal_written = 0
            self.counts.add("wal_flushes")
            for entry in self.ready:
                entry.paged = True

    # --- what it holds and reports --------------------------------------------------------------

    def messages(self) -> int:
        """Messages the queue holds in memory (what the memory alarm weighs): ready ones, at most
        ``messages_in_memory`` of them, and unacknowledged ones."""
        ready = len(self.ready)
        if self.messages_in_memory is not None:
            ready = min(ready, self.messages_in_memory)
        elif self.wal_messages is not None:
            ready -= self.paged_messages()
        return ready + sum(len(c.unacked) for c in self.channels.values())

    def paged_messages(self) -> int:
        """Ready messages written to disk (what the disk alarm weighs)."""
        return sum(1 for entry in self.ready if entry.paged)

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
                out[f"priority_{p}_deliveries"] = counts[f"pushes_priority_{p}"]
        if self.dead_letters_held:
            out["dead_letters_held"] = self.dead_letters_held
        if self.disk_read is not None:
            out["disk_reads"] = counts["disk_reads"]
        if self.wal_messages is not None:
            out["wal_flushes"] = counts["wal_flushes"]
        if self.disk_alarm is not None:
            out["disk_alarm_s"] = self.disk_alarm.alarm_s()
            out["disk_alarms"] = counts["disk_alarms"]
        if self.flow is not None:
            out["flow_blocks"] = counts["flow_blocks"]
        return out
