"""``kind: sqs``: an Amazon SQS queue, standard (at-least-once) or FIFO."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from models.sqs import SHORT_POLL_SAMPLE, SqsBroker, SqsOptions

from ...distributions import Uniform
from ...fields import HOUR_S, NOT_A_BOOL, Duration, DurationOrDistribution, LognormalSpec, Name, Price, Rate, Strict
from ...units import format_duration
from ..base import DEAD_LETTER

DAY_S = 86400.0


def _between(low_s: float, high_s: float, low_text: str, high_text: str):
    """A duration within AWS's documented range, with an error message in its own units."""

    def check(value: float) -> float:
        if not low_s <= value <= high_s:
            raise ValueError(f"must be between {low_text} and {high_text} (the range AWS allows), got {format_duration(value)}")
        return value

    return AfterValidator(check)


def _call_latency() -> LognormalSpec:
    return LognormalSpec(dist="lognormal", mean=0.02, cv=0.5)


class SqsSpec(Strict):
    """An Amazon SQS queue. Defaults and ranges are AWS's (SQS Developer Guide); the call
    latencies and the short-poll sample are not documented and are parameters.

    - ``visibility_timeout`` (30 s; 0 s–12 h): how long a received message stays hidden; one not
      deleted by then is received again (a duplicate).
    - ``batch_size`` (1–10, default 1) messages per receive; ``wait_time`` (0–20 s): 0 is short
      polling (each visible message is found with probability ``short_poll_sample``, default 0.01:
      AWS samples a subset of its servers, and with fewer than 1,000 messages a receive of 10
      likely returns fewer than asked),
      more is long polling (wait until a message is visible or the time is up).
    - ``receive_latency``, ``delete_latency``: each call's duration (lognormal, mean 20 ms, cv 0.5
      unless given); ChangeMessageVisibility takes ``delete_latency`` too.
    - ``on_error``: ``wait`` (default: a failed message comes back when its visibility timeout
      ends) or ``release`` (ChangeMessageVisibility to 0: visible again at once).
    - ``stale_delete``: what a delete with an older receipt handle does to a copy received since:
      ``keep`` (default: it is not deleted) or ``delete``.
    - ``duplicate_probability`` (standard queues, default 0): the chance that a delete is missed by
      a server, so that the message comes back when its visibility timeout ends.
    - ``max_receive_count`` (1–1000; 10 when only ``dead_letter_queue`` is given): a message
      received that many times is dead-lettered instead of being delivered again: moved to the
      broker named by ``dead_letter_queue``, or, without one, to a dead-letter queue that is not
      modelled (the message's outcome is dead_lettered all the same).
    - ``retention`` (4 days; 60 s–14 days): older messages are deleted unseen (lost). ``delay``
      (0–15 min): each new message stays hidden that long. ``max_in_flight`` (120,000): beyond it
      receives return nothing.
    - ``fifo: true``: ``message_groups`` groups (required; a message's group is a hash of its id),
      strict order within a group (a receive returns as many consecutive messages of one group as
      it can; the group is locked while any is in flight), 5-minute deduplication by message id,
      and ``api_calls_per_s`` calls a second per action (300; with ``high_throughput`` 3,000 here,
      a conservative figure: AWS's high-throughput quota is far higher and varies by Region) with
      a burst of ``api_burst`` calls (one second's worth unless given): a throttled send is
      refused, a throttled receive returns nothing, a throttled delete or visibility change is
      retried until it goes through.
    - ``send_batch_size`` (1–10, default 1: SendMessage) messages per SendMessageBatch call, and
      ``delete_batch`` (default false: DeleteMessage) to delete what a receive returned with
      DeleteMessageBatch: each message costs a share of a call, in the call counts and against
      the FIFO limit (300 calls a second carry 3,000 messages).
    - ``message_size_bytes`` (up to 1 MiB) and ``price_per_million_requests`` (⚑ no default: AWS's
      price varies by Region and queue type): every call is billed one request per 64 KiB chunk of
      its payload (at least one: empty receives too); reports ``billed_requests`` and ``cost_usd``.
    """

    name: Name
    kind: Literal["sqs"]
    visibility_timeout: Annotated[Duration, _between(0.0, 12 * HOUR_S, "0s", "12h")] = 30.0
    wait_time: Annotated[Duration, _between(0.0, 20.0, "0s", "20s")] = 0.0
    batch_size: Annotated[int, Field(ge=1, le=10, strict=True)] = 1
    receive_latency: DurationOrDistribution = Field(default_factory=_call_latency)
    delete_latency: DurationOrDistribution = Field(default_factory=_call_latency)
    short_poll_sample: Annotated[float, Field(gt=0, le=1), NOT_A_BOOL] = SHORT_POLL_SAMPLE
    on_error: Literal["wait", "release"] = "wait"
    stale_delete: Literal["keep", "delete"] = "keep"
    duplicate_probability: Annotated[float, Field(ge=0, lt=1), NOT_A_BOOL] = 0.0
    dead_letter_queue: Annotated[Optional[Name], DEAD_LETTER] = None
    max_receive_count: Optional[Annotated[int, Field(ge=1, le=1000, strict=True)]] = None
    retention: Annotated[Duration, _between(60.0, 14 * DAY_S, "60s", "14d")] = 4 * DAY_S
    delay: Annotated[Duration, _between(0.0, 900.0, "0s", "15min")] = 0.0
    max_in_flight: Annotated[int, Field(ge=1, strict=True)] = 120_000
    fifo: bool = False
    message_groups: Optional[Annotated[int, Field(ge=1, strict=True)]] = None
    high_throughput: bool = False
    api_calls_per_s: Optional[Rate] = None
    api_burst: Optional[Annotated[int, Field(ge=1, strict=True)]] = None
    send_batch_size: Annotated[int, Field(ge=1, le=10, strict=True)] = 1
    delete_batch: bool = False
    message_size_bytes: Optional[Annotated[int, Field(ge=1, le=1_048_576, strict=True)]] = None
    price_per_million_requests: Optional[Price] = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.dead_letter_queue == self.name:
            raise ValueError("a queue cannot be its own dead_letter_queue")
        if self.fifo:
            if self.message_groups is None:
                raise ValueError("a FIFO queue needs message_groups (how many message groups its messages are spread over)")
            if self.duplicate_probability > 0:
                raise ValueError("duplicate_probability is for standard queues: FIFO queues do not introduce duplicates")
        else:
            given = [key for key in ("message_groups", "api_calls_per_s", "api_burst") if getattr(self, key) is not None]
            if self.high_throughput:
                given.append("high_throughput")
            if given:
                raise ValueError(f"{', '.join(given)}: for FIFO queues only (add 'fifo: true', or remove {'it' if len(given) == 1 else 'them'})")
        if self.wait_time == 0 and self.receive_latency.build().mean <= 0:
            raise ValueError("short polling (wait_time 0) needs a receive_latency above zero: "
                             "otherwise idle workers poll an empty queue endlessly at one instant")
        return self

    @property
    def max_receive_count_or_default(self) -> Optional[int]:
        if self.max_receive_count is None and self.dead_letter_queue is not None:
            return 10
        return self.max_receive_count

    @property
    def api_calls_per_s_or_default(self) -> Optional[float]:
        if not self.fifo:
            return None
        if self.api_calls_per_s is not None:
            return self.api_calls_per_s
        return 3000.0 if self.high_throughput else 300.0

    def consumer_capacity_per_s(self, server) -> tuple[float, str]:
        """What ``server`` can take from this queue a second: a worker waits for each
        DeleteMessage (``delete_latency``) and for each ReceiveMessage (``receive_latency``),
        shared by the ``batch_size`` messages a receive returns when the queue is never empty;
        and the overhead named ("" when none)."""
        delete_s = self.delete_latency.build().mean
        receive_s = self.receive_latency.build().mean / self.batch_size
        if server.busy_s <= 0 or delete_s + receive_s <= 0:
            return server.capacity_per_s, ""
        capacity = server.capacity_per_s * server.busy_s / (server.busy_s + delete_s + receive_s)
        return capacity, (f"each message also holds its worker {format_duration(delete_s)} deleting it and "
                          f"{format_duration(receive_s)} receiving it (receive_latency / batch_size {self.batch_size})")

    def bounds_queue(self) -> bool:
        return False

    def dead_letter_targets(self) -> list[str]:
        return [self.dead_letter_queue] if self.dead_letter_queue is not None else []


def build(spec: SqsSpec, context) -> SqsBroker:
    name = spec.name
    env = context.env

    # the dead-letter queue is looked up when first needed: it may be built after this queue
    dead_letter_queue = partial(context.broker, spec.dead_letter_queue) if spec.dead_letter_queue is not None else None

    options = SqsOptions(
        receive_latency=context.sampler(spec.receive_latency.build(), "receive_latency"),
        delete_latency=context.sampler(spec.delete_latency.build(), "delete_latency"),
        visibility_timeout_s=spec.visibility_timeout,
        wait_time_s=spec.wait_time,
        batch_size=spec.batch_size,
        short_poll_sample=spec.short_poll_sample,
        short_poll_draw=context.sampler(Uniform(0.0, 1.0), "short_poll"),
        on_error=spec.on_error,
        stale_delete=spec.stale_delete,
        duplicate_probability=spec.duplicate_probability,
        duplicate_draw=context.sampler(Uniform(0.0, 1.0), "missed_deletes"),
        retention_s=spec.retention,
        delay_s=spec.delay,
        max_in_flight=spec.max_in_flight,
        dead_letter_queue=dead_letter_queue,
        max_receive_count=spec.max_receive_count_or_default,
        fifo=spec.fifo,
        message_groups=spec.message_groups or 1,
        api_calls_per_s=spec.api_calls_per_s_or_default,
        api_burst=spec.api_burst,
        send_batch_size=spec.send_batch_size,
        delete_batch=spec.delete_batch,
        message_size_bytes=spec.message_size_bytes,
        price_per_million_requests=spec.price_per_million_requests,
    )
    return SqsBroker(
        env,
        name,
        context.counter(name),
        context.fates,
        visible=context.boundary(name),
        in_flight=context.boundary(f"{name}:in_flight", keep_sojourns=False),
        delayed=context.boundary(f"{name}:delayed", keep_sojourns=False) if spec.delay > 0 else None,
        options=options,
    )

Spec = SqsSpec
