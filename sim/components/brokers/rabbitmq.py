"""``kind: rabbitmq``: a RabbitMQ queue with push consumers, acks, limits, alarms and restarts.

Defaults are RabbitMQ's documented ones (consumers, confirms, maxlength, ttl, quorum-queues,
alarms pages); where the documentation leaves a value open (⚑) it is a parameter with a default
chosen and said here.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator

from models.rabbitmq import RabbitmqBroker, RabbitmqOptions
from models.rabbitmq_ready import PriorityOf

from ...distributions import Deterministic, Uniform
from ...fields import (
    NOT_A_BOOL,
    Crashes,
    Duration,
    DurationOrDistribution,
    Name,
    PositiveDuration,
    Price,
    Strict,
)
from ...units import format_duration
from ..base import DEAD_LETTER

QUORUM_DELIVERY_LIMIT = 20
"""Quorum queues' default delivery limit since RabbitMQ 4.0 (none in 3.13)."""

VERSIONS = ("3.13", "4.0", "4.1", "4.2", "4.3")
"""The RabbitMQ versions whose documented behaviour differs here (https://www.rabbitmq.com/docs/<version>/...)."""

QUORUM_PREFETCH_CAP = 2000
"""Quorum queues cap a consumer's prefetch at 2,000, unlimited included (docs: confirms#channel-qos-prefetch)."""

CLASSIC_MESSAGES_IN_MEMORY = 2048
"""Classic queues keep up to 2048 messages in memory since 3.12 (docs: classic-queues#memory)."""

WAL_MAX_SIZE_BYTES = 536_870_912
"""``raft.wal_max_size_bytes``: a node's quorum queues share a write-ahead log, kept in memory and on
disk, flushed to per-queue segment files when it reaches 512 MiB (RMQ 3.13–4.3/quorum-queues,
"How Memory, WAL and Segments Files Interact"; 4.3's table: 536870912)."""
DISK_FREE_LIMIT_BYTES = 50_000_000
"""The disk alarm's default free-space limit, 50 MB (docs: disk-alarms)."""

DEFAULT_CONFIRM_LATENCY_TRANSIENT = Deterministic(0.001)
"""⚑ A transient message is confirmed once routed to the queue: about a network round trip."""

DEFAULT_CONFIRM_LATENCY_ON_DISK = Uniform(0.0, 0.2)
"""⚑ A persistent message on a durable queue (every message of a quorum queue) is confirmed once
on disk; the message store batches its fsyncs (about every 200 ms under load), so a confirm waits
for the next batch: uniform on 0–200 ms."""

PositiveInt = Annotated[int, Field(ge=1, strict=True)]


class RabbitmqSpec(Strict):
    """A RabbitMQ queue (classic or quorum) consumed by push, with manual or automatic acks.

    - ``prefetch_count`` (basic.qos): unacknowledged deliveries per consumer, 0 = unlimited
      (RabbitMQ's default; clients often set 1 or 100–300). Manual acks only: with ``ack: auto``
      no prefetch applies and ``socket_buffer_messages`` (⚑ default 100) bounds the deliveries
      pushed into a consumer's socket and client buffer ahead of its work.
    - ``ack_latency`` (⚑ default 0): time for an ack or nack to reach the broker; a consumer that
      dies meanwhile gets the delivery requeued although the work was done (a duplicate).
    - ``requeue_on_error`` (default true, as basic.nack's requeue flag): a failed attempt is
      requeued, else dead-lettered (or dropped without ``dead_letter_exchange``).
      ``failure_return`` (``nack``, default, or ``reject``): the call that returns it, which from
      4.3 decides whether the return counts towards a quorum queue's delivery limit.
    - ``version`` (``"3.13"``, ``"4.0"``, ``"4.1"``, ``"4.2"``, ``"4.3"``; default ``"4.3"``, the
      current release): what changed between them — 4.3 enforces the consumer timeout on quorum
      queues only (the consumer is cancelled and its deliveries returned) and no longer counts a
      basic.nack towards the delivery limit; 3.13's quorum queues have no delivery limit by default.
    - ``consumer_timeout`` (default 30 min, at least 1 min; null disables it): a delivery
      unacknowledged for longer closes its channel (4.3, quorum queues: cancels the consumer) and
      requeues its deliveries. With ``version: "4.3"`` classic queues have none.
    - ``max_length`` (ready messages only) with ``overflow``: ``drop-head`` (default),
      ``reject-publish`` (a nack with ``publisher_confirms``, a silent discard without),
      ``reject-publish-dlx``.
    - ``publisher_confirms`` (default false) with ``confirm_latency`` (⚑ default: 1 ms for
      transient messages, uniform 0–200 ms when written to disk).
    - ``prefetch_count`` on a quorum queue is capped at 2,000 (0, unlimited, included).
    - ``memory_high_watermark`` in messages, or ``memory_high_watermark_bytes`` with
      ``message_size_bytes``: above it, the memory alarm blocks every publisher until it clears,
      checked every ``memory_monitor_interval`` (RabbitMQ's default 2.5 s). A classic queue keeps
      at most ``messages_in_memory`` (2048) ready messages in memory, the rest on disk, so a long
      classic queue alone weighs no more than that.
    - ``disk_read`` (a duration or distribution; default none: not modelled): a classic queue's
      message published while ``messages_in_memory`` wait is paged to disk, and its delivery
      makes the consumer wait this long for the read. A quorum queue keeps message bodies only in
      its write-ahead log ("Keeps messages in memory: never", beyond it): with
      ``message_size_bytes``, every ``wal_max_size_bytes`` (512 MiB) of messages published the log
      is flushed to segment files, and each message still waiting then is read from disk when
      delivered; the memory alarm weighs only the messages still in the log.
    - ``disk_free_bytes`` (classic queues, with ``message_size_bytes``; default none: not modelled):
      the free disk space when the run starts; the disk alarm blocks every publisher while the
      paged messages leave less than ``disk_free_limit_bytes`` (RabbitMQ's default 50 MB), checked
      every 10 s.
    - ``publish_time`` (⚑ default none: not modelled): the queue process's work per publish;
      credit-based flow control then blocks publishers once 400 publishes wait for it and lets
      them go on at 200 (``credit_flow_default_credit``, {400, 200}), so publishers get through at
      most one message per ``publish_time``.
    - ``message_ttl`` (x-message-ttl): expired messages are never delivered; dropped at the head.
    - ``dead_letter_exchange``: the broker receiving messages rejected without requeue, expired,
      dropped by overflow, or past ``delivery_limit`` (quorum queues: default 20, -1 for none).
    - ``max_priority`` (1–255, 2–4 advised) with ``priority_weights``: the share of messages at each
      priority 0..max_priority (default equal), drawn from a hash of the message id; a classic
      queue delivers them in cycles. A quorum queue has no ``max_priority`` (it takes priorities as
      published): ``priority_weights`` alone, priorities 0..n−1, from 4.0. 4.0–4.2 have two levels,
      normal (0–4) and high (above 4), delivered 2:1; 4.3 is strict over 0–31 (RMQ
      ``quorum-queues#priorities``). Returned messages go first, whatever their priority.
    - ``durable`` (default true) and ``persistent`` (default false, AMQP's delivery mode 1): what
      survives ``crashes`` of the broker (a quorum queue keeps every confirmed message).
    - ``price_per_hour`` (⚑ no default): what the broker costs an hour (its node or nodes: Amazon MQ
      bills a broker by its instance type and deployment), counted for the whole window in the
      run's ``cost``.

    Settings that do nothing in a combination are accepted and ignored, as RabbitMQ accepts them
    (so that one ``--set`` can switch, say, ``ack`` to ``auto``): ``prefetch_count``,
    ``ack_latency``, ``requeue_on_error`` and ``consumer_timeout`` with automatic acks,
    ``socket_buffer_messages`` with manual ones, ``overflow`` without ``max_length``.
    Contradictions are refused.
    """

    name: Name
    kind: Literal["rabbitmq"]
    version: Literal[VERSIONS] = "4.3"
    queue_type: Literal["classic", "quorum"] = "classic"
    durable: bool = True
    persistent: bool = False
    ack: Literal["manual", "auto"] = "manual"
    prefetch_count: Annotated[int, Field(ge=0, le=65535, strict=True)] = 0
    socket_buffer_messages: PositiveInt = 100
    ack_latency: Optional[DurationOrDistribution] = None
    requeue_on_error: bool = True
    failure_return: Literal["nack", "reject"] = "nack"
    consumer_timeout: Optional[Duration] = 1800.0
    max_length: Optional[Annotated[int, Field(ge=0, strict=True)]] = None
    overflow: Literal["drop-head", "reject-publish", "reject-publish-dlx"] = "drop-head"
    publisher_confirms: bool = False
    confirm_latency: Optional[DurationOrDistribution] = None
    memory_high_watermark: Optional[PositiveInt] = None
    memory_high_watermark_bytes: Optional[PositiveInt] = None
    message_size_bytes: Optional[PositiveInt] = None
    memory_monitor_interval: PositiveDuration = 2.5
    message_ttl: Optional[Duration] = None
    dead_letter_exchange: Annotated[Optional[Name], DEAD_LETTER] = None
    delivery_limit: Optional[Annotated[int, Field(ge=-1, strict=True)]] = None
    max_priority: Optional[Annotated[int, Field(ge=1, le=255, strict=True)]] = None
    priority_weights: Optional[Annotated[list[Annotated[float, Field(ge=0), NOT_A_BOOL]], Field(min_length=2)]] = None
    crashes: Optional[Crashes] = None
    messages_in_memory: PositiveInt = CLASSIC_MESSAGES_IN_MEMORY
    disk_read: Optional[DurationOrDistribution] = None
    wal_max_size_bytes: PositiveInt = WAL_MAX_SIZE_BYTES
    disk_free_bytes: Optional[PositiveInt] = None
    disk_free_limit_bytes: PositiveInt = DISK_FREE_LIMIT_BYTES
    publish_time: Optional[PositiveDuration] = None
    price_per_hour: Optional[Price] = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value):
        """YAML reads 4.0 as a number: take it as the version it spells."""
        if isinstance(value, float) and not isinstance(value, bool):
            return f"{value:.2f}".rstrip("0") if value != int(value) else f"{value:.1f}"
        return value

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.consumer_timeout is not None and self.consumer_timeout < 60:
            problems.append(
                f"consumer_timeout must be at least 1 minute (RabbitMQ checks it once a minute; "
                f"lower values are not supported), got {self.consumer_timeout:g}s"
            )
        if self.version == "4.3" and self.queue_type == "classic" and "consumer_timeout" in self.model_fields_set \
                and self.consumer_timeout is not None:
            problems.append("consumer_timeout: RabbitMQ 4.3 enforces delivery acknowledgement timeouts on quorum queues only "
                            "(set queue_type: quorum, or version: \"4.2\")")
        if self.queue_type == "quorum":
            if {"messages_in_memory", "disk_free_bytes"} & self.model_fields_set:
                problems.append("messages_in_memory and disk_free_bytes model classic-queue paging; a quorum queue keeps no message "
                                "bodies in memory once its write-ahead log is flushed (wal_max_size_bytes)")
            if not self.durable:
                problems.append("quorum queues are always durable: durable: false is not allowed")
            if self.overflow == "reject-publish-dlx":
                problems.append("quorum queues support overflow drop-head and reject-publish, not reject-publish-dlx")
            if self.max_priority is not None:
                problems.append("max_priority (x-max-priority) applies to classic queues only (quorum queues ignore it); a quorum "
                                "queue takes each message's priority as published: give priority_weights alone")
            if self.priority_weights is not None and self.version == "3.13":
                problems.append("quorum queues support message priorities from RabbitMQ 4.0 (version is 3.13)")
        else:
            if self.delivery_limit is not None:
                problems.append("delivery_limit is a quorum-queue feature (set queue_type: quorum)")
            if "wal_max_size_bytes" in self.model_fields_set:
                problems.append("wal_max_size_bytes: the write-ahead log of quorum queues (set queue_type: quorum)")
        if self.memory_high_watermark is not None and self.memory_high_watermark_bytes is not None:
            problems.append("give the memory watermark in messages (memory_high_watermark) or in bytes (memory_high_watermark_bytes), not both")
        sized = self.memory_high_watermark_bytes is not None or self.disk_free_bytes is not None or self.pages_from_wal()
        if sized != (self.message_size_bytes is not None):
            problems.append("memory_high_watermark_bytes, disk_free_bytes or a quorum queue's disk_read, and message_size_bytes, "
                            "go together (the bytes a message takes)")
        if self.disk_free_bytes is not None and self.disk_free_bytes <= self.disk_free_limit_bytes:
            problems.append(f"disk_free_bytes ({self.disk_free_bytes}) must be above disk_free_limit_bytes ({self.disk_free_limit_bytes}): "
                            "the disk alarm would block publishers from the start")
        if self.priority_weights is not None:
            if self.max_priority is None and self.queue_type == "classic":
                problems.append("priority_weights applies only with max_priority")
            elif self.max_priority is not None and len(self.priority_weights) != self.max_priority + 1:
                problems.append(
                    f"priority_weights needs one weight per priority 0..{self.max_priority} "
                    f"({self.max_priority + 1} weights), got {len(self.priority_weights)}"
                )
            elif sum(self.priority_weights) <= 0:
                problems.append("priority_weights must not all be zero")
        if self.dead_letter_exchange == self.name:
            problems.append("a queue cannot be its own dead-letter queue")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def keeps_messages(self) -> bool:
        """Whether messages survive a restart once on disk: quorum queues, or persistent messages on durable queues."""
        return self.queue_type == "quorum" or (self.durable and self.persistent)

    def pages_from_wal(self) -> bool:
        """Whether a quorum queue's reads from disk are modelled: its messages leave memory when the
        write-ahead log holding them is flushed to segment files."""
        return self.queue_type == "quorum" and self.disk_read is not None

    def wal_messages(self) -> Optional[int]:
        """How many messages fill the write-ahead log (at least one), when its flushes are modelled."""
        if not self.pages_from_wal() or self.message_size_bytes is None:
            return None
        return max(1, self.wal_max_size_bytes // self.message_size_bytes)

    def memory_limit_messages(self) -> Optional[int]:
        if self.memory_high_watermark is not None:
            return self.memory_high_watermark
        if self.memory_high_watermark_bytes is not None and self.message_size_bytes is not None:
            return self.memory_high_watermark_bytes // self.message_size_bytes
        return None

    def disk_limit_messages(self) -> Optional[int]:
        """How many messages can be paged to disk before free space falls to the limit."""
        if self.disk_free_bytes is None or self.message_size_bytes is None:
            return None
        return (self.disk_free_bytes - self.disk_free_limit_bytes) // self.message_size_bytes

    def priority_order(self) -> str:
        """How the queue orders priorities: a classic queue in cycles; a quorum queue in two levels at
        2:1 (4.0–4.2), strictly (4.3)."""
        if self.queue_type == "classic":
            return "cycles"
        return "strict" if self.version == "4.3" else "two-levels"

    def effective_delivery_limit(self) -> Optional[int]:
        if self.queue_type != "quorum":
            return None
        default = -1 if self.version == "3.13" else QUORUM_DELIVERY_LIMIT
        limit = default if self.delivery_limit is None else self.delivery_limit
        return None if limit < 0 else limit

    def effective_consumer_timeout(self) -> Optional[float]:
        """None for a classic queue from 4.3 on (quorum queues only)."""
        if self.version == "4.3" and self.queue_type == "classic":
            return None
        return self.consumer_timeout

    def effective_prefetch_count(self) -> int:
        if self.queue_type == "quorum" and (self.prefetch_count == 0 or self.prefetch_count > QUORUM_PREFETCH_CAP):
            return QUORUM_PREFETCH_CAP
        return self.prefetch_count

    def consumer_capacity_per_s(self, server) -> tuple[float, str]:
        """What ``server`` can take from this queue a second, and the overhead that lowers it.
        With manual acks and a prefetch of p, a delivery holds one of its consumer's p slots from
        the push until its ack reaches the queue ``ack_latency`` after the work: a worker finishes
        at most p / (its time per message + the ack latency) a second, and never more than
        1 / its time per message."""
        prefetch = self.effective_prefetch_count()
        ack_s = self.ack_latency.build().mean if self.ack_latency is not None else 0.0
        if self.ack == "auto" or prefetch == 0 or ack_s <= 0 or server.busy_s <= 0:
            return server.capacity_per_s, ""
        share = min(1.0, prefetch * server.busy_s / (server.busy_s + ack_s))
        if share == 1.0:
            return server.capacity_per_s, ""
        return server.capacity_per_s * share, (f"each message holds one of a worker's {prefetch} prefetch slot(s) for its work and "
                                               f"{format_duration(ack_s)} more until its ack reaches the queue (ack_latency)")

    def bounds_queue(self) -> bool:
        """A max_length bounds the ready messages; a TTL bounds how long they wait (expired ones
        are dropped as they reach the head), so the queue cannot grow without bound either way."""
        return self.max_length is not None or self.message_ttl is not None

    def dead_letter_targets(self) -> list[str]:
        return [self.dead_letter_exchange] if self.dead_letter_exchange is not None else []


def build(spec: RabbitmqSpec, context) -> RabbitmqBroker:
    keeps = spec.keeps_messages()
    confirm_latency = None
    if spec.publisher_confirms or keeps:
        if spec.confirm_latency is not None:
            distribution = spec.confirm_latency.build()
        else:
            distribution = DEFAULT_CONFIRM_LATENCY_ON_DISK if keeps else DEFAULT_CONFIRM_LATENCY_TRANSIENT
        confirm_latency = context.sampler(distribution, "confirm_latency")
    ack_latency = None
    if spec.ack_latency is not None:
        distribution = spec.ack_latency.build()
        if not (isinstance(distribution, Deterministic) and distribution.mean == 0):
            ack_latency = context.sampler(distribution, "ack_latency")
    dead_letter = None
    if spec.dead_letter_exchange is not None:
        target = spec.dead_letter_exchange
        dead_letter = lambda: context.broker(target)
    priority_of = None
    if spec.max_priority is not None or spec.priority_weights is not None:
        priority_of = PriorityOf(spec.priority_weights or [1.0] * (spec.max_priority + 1))
    options = RabbitmqOptions(
        quorum=spec.queue_type == "quorum",
        auto_ack=spec.ack == "auto",
        prefetch_count=spec.effective_prefetch_count(),
        socket_buffer_messages=spec.socket_buffer_messages,
        ack_latency=ack_latency,
        requeue_on_error=spec.requeue_on_error,
        consumer_timeout_s=spec.effective_consumer_timeout(),
        consumer_timeout_cancels=spec.version == "4.3",
        max_length=spec.max_length,
        overflow=spec.overflow,
        publisher_confirms=spec.publisher_confirms,
        confirm_latency=confirm_latency,
        keeps_messages=keeps,
        message_ttl_s=spec.message_ttl,
        dead_letter=dead_letter,
        delivery_limit=spec.effective_delivery_limit(),
        priority_of=priority_of,
        priorities=spec.priority_order(),
        memory_limit_messages=spec.memory_limit_messages(),
        memory_monitor_interval_s=spec.memory_monitor_interval,
        crashes=context.crashes(spec.crashes, spec.name),
        nack_counts_toward_limit=spec.version != "4.3" or spec.failure_return == "reject",
        messages_in_memory=spec.messages_in_memory if spec.queue_type == "classic" else None,
        wal_messages=spec.wal_messages(),
        disk_read=context.sampler(spec.disk_read.build(), "disk_read") if spec.disk_read is not None else None,
        disk_limit_messages=spec.disk_limit_messages(),
        publish_s=spec.publish_time,
    )
    return RabbitmqBroker(
        context.env,
        spec.name,
        context.boundary(spec.name),
        context.boundary(f"{spec.name}:unacked", keep_sojourns=False),
        context.counter(spec.name),
        context.fates,
        options=options,
        window_start_s=context.window_start_s,
    )

Spec = RabbitmqSpec
