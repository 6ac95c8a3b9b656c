"""The scenario file's schema: pydantic models, one per section, with units parsed on the way in.

Every model forbids unknown keys. Durations are seconds (``80ms`` → 0.08), rates are per second
(``12000/min`` → 200.0). Sections whose variants differ in kind are tagged unions: arrivals by
``process``, distributions by ``dist``, brokers by ``kind`` (each kind's spec lives with its
builder in :mod:`sim.kinds`). Cross-references between sections (``sends_to``, ``consumes``) are
checked by :mod:`sim.loading`, which knows the file's lines.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .axes import parse_axis
from .fields import RATE_SCHEMA, Crashes, CsvColumn, DistributionSpec, Duration, DurationOrDistribution, Errors, Name, PositiveDuration, Rate, Strict, non_negative
from .kinds import BrokerSpec
from .units import parse_rate


# --- arrivals -----------------------------------------------------------------------------------


class PoissonArrivals(Strict):
    """Exponential gaps at a constant ``rate``."""

    process: Literal["poisson"]
    rate: Rate

    def mean_rate(self) -> float:
        return self.rate

    def peak_rate(self) -> float:
        return self.rate


class DeterministicArrivals(Strict):
    """One arrival every 1/``rate`` seconds."""

    process: Literal["deterministic"]
    rate: Rate

    def mean_rate(self) -> float:
        return self.rate

    def peak_rate(self) -> float:
        return self.rate


class RenewalArrivals(Strict):
    """Independent gaps drawn from ``interarrival`` (a G/·/· arrival process)."""

    process: Literal["renewal"]
    interarrival: DistributionSpec

    def mean_rate(self) -> float:
        return 1.0 / self.interarrival.build().mean

    def peak_rate(self) -> float:
        return self.mean_rate()


class ScheduleStep(Strict):
    duration: PositiveDuration
    rate: Annotated[float, BeforeValidator(parse_rate), AfterValidator(non_negative), WithJsonSchema(RATE_SCHEMA)]


class ScheduleArrivals(Strict):
    """A Poisson process whose rate is piecewise constant: ``steps`` in order, then either the
    cycle again (``repeat: true``, e.g. a daily curve) or the last step's rate until the end."""

    process: Literal["schedule"]
    steps: Annotated[list[ScheduleStep], Field(min_length=1)]
    repeat: bool = False

    @model_validator(mode="after")
    def _some_traffic(self):
        if all(step.rate == 0 for step in self.steps):
            raise ValueError("every step has rate 0: the producer would send nothing")
        return self

    def mean_rate(self) -> float:
        if not self.repeat:
            return self.steps[-1].rate
        total = sum(step.duration for step in self.steps)
        return sum(step.rate * step.duration for step in self.steps) / total

    def peak_rate(self) -> float:
        return max(step.rate for step in self.steps)


class TraceArrivals(CsvColumn):
    """Arrival times read from a CSV column (seconds from the start unless ``unit`` says otherwise)."""

    process: Literal["trace"]

    def times_s(self):
        return np.sort(self.values_s())

    def mean_rate(self) -> float:
        times = self.times_s()
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else math.inf

    def peak_rate(self) -> float:
        return self.mean_rate()


ArrivalSpec = Annotated[
    Union[PoissonArrivals, DeterministicArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals],
    Field(discriminator="process"),
]


# --- clients: timeouts, retries, retry budgets ----------------------------------------------------


class NoRetrySpec(Strict):
    """``policy: none``: one attempt; a refusal or a timeout ends the request (rejected)."""

    policy: Literal["none"]

    @property
    def attempts(self) -> int:
        return 1


class FixedRetrySpec(Strict):
    """``policy: fixed``: wait ``base`` before each retry; at most ``max_attempts`` attempts in all
    (the first included)."""

    policy: Literal["fixed"]
    base: PositiveDuration
    max_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 3

    @property
    def attempts(self) -> int:
        return self.max_attempts


class BackoffRetrySpec(Strict):
    """Exponential backoff before retry n (from 0), capped at ``cap`` (20 s, the AWS SDKs'
    maximum backoff), without jitter (``exponential``: min(cap, base·2^n)) or with it
    (``full_jitter``, ``equal_jitter``, ``decorrelated_jitter``: the formulas of AWS's
    "Exponential Backoff and Jitter"); at most ``max_attempts`` attempts in all (3, the AWS SDKs'
    standard mode), the first included."""

    policy: Literal["exponential", "full_jitter", "equal_jitter", "decorrelated_jitter"]
    base: PositiveDuration
    cap: PositiveDuration = 20.0
    max_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 3

    @model_validator(mode="after")
    def _cap_above_base(self):
        if self.cap < self.base:
            raise ValueError(f"cap ({self.cap:g}s) must not be below base ({self.base:g}s)")
        return self

    @property
    def attempts(self) -> int:
        return self.max_attempts


RetrySpec = Annotated[Union[NoRetrySpec, FixedRetrySpec, BackoffRetrySpec], Field(discriminator="policy")]


class RetryBudgetSpec(Strict):
    """The AWS SDKs' retry quota: a bucket of ``tokens`` (500); a retry costs ``retry_cost`` (5),
    or ``timeout_retry_cost`` (10) after a timeout; each success refunds ``success_refund`` (1);
    a retry the bucket cannot pay is not made. ``retry_budget: true`` takes these defaults."""

    tokens: Annotated[int, Field(ge=1, strict=True)] = 500
    retry_cost: Annotated[int, Field(ge=0, strict=True)] = 5
    timeout_retry_cost: Annotated[int, Field(ge=0, strict=True)] = 10
    success_refund: Annotated[int, Field(ge=0, strict=True)] = 1


def _budget_shorthand(value):
    if value is True:
        return {}
    if value is False:
        return None
    return value


_BUDGET_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "tokens": {"type": "integer", "minimum": 1, "default": 500},
                "retry_cost": {"type": "integer", "minimum": 0, "default": 5},
                "timeout_retry_cost": {"type": "integer", "minimum": 0, "default": 10},
                "success_refund": {"type": "integer", "minimum": 0, "default": 1},
            },
        },
        {"type": "null"},
    ],
    "description": "the AWS SDKs' retry quota (true: 500 tokens, 5 a retry, 10 after a timeout, 1 back per success)",
}

RetryBudgetField = Annotated[Optional[RetryBudgetSpec], BeforeValidator(_budget_shorthand), WithJsonSchema(_BUDGET_SCHEMA)]


class SpikeSpec(Strict):
    """The producer's rate is multiplied by ``rate_multiplier`` from ``at`` for ``duration``."""

    at: Duration
    duration: PositiveDuration
    rate_multiplier: Annotated[float, Field(gt=0)]


class _ClientBehaviour(Strict):
    """What makes a sender a client: it waits ``timeout`` for each response (none: as long as it
    takes), retries refusals and timeouts by ``retry``, within a ``retry_budget``."""

    timeout: Optional[PositiveDuration] = None
    retry: Optional[RetrySpec] = None
    retry_budget: RetryBudgetField = None

    @model_validator(mode="after")
    def _budget_needs_retries(self):
        if self.retry_budget is not None and self.retry is None:
            raise ValueError("retry_budget limits retries, and there is no retry policy: add 'retry'")
        return self

    @property
    def is_client(self) -> bool:
        return self.timeout is not None or self.retry is not None


class ClientGroup(_ClientBehaviour):
    """``count`` closed-loop clients: each thinks for a ``think_time``, sends a request to
    ``sends_to``, waits for its outcome, and thinks again."""

    name: Name
    count: Annotated[int, Field(ge=1, strict=True)]
    think_time: DurationOrDistribution
    sends_to: Name

    @field_validator("think_time")
    @classmethod
    def _thinks(cls, think_time):
        if not think_time.build().mean > 0:
            raise ValueError("the mean think time must be above zero (a client that never pauses would loop at one instant)")
        return think_time


# --- triggers, elasticity and admission ---------------------------------------------------------

_WITH_FROM = {**Strict.model_config, "populate_by_name": True}


class SlowdownSpec(Strict):
    """Service that degrades with load: ``per_concurrent`` more for each other message in service
    in the pool when one starts, ``per_waiting`` more for each message waiting in its broker, and
    service times × ``factor`` from ``from`` until ``until``."""

    model_config = _WITH_FROM
    per_concurrent: Duration = 0.0
    per_waiting: Duration = 0.0
    from_: Optional[Duration] = Field(default=None, alias="from")
    until: Optional[PositiveDuration] = None
    factor: Optional[Annotated[float, Field(gt=0)]] = None

    @model_validator(mode="after")
    def _consistent(self):
        window = [self.from_ is not None, self.until is not None, self.factor is not None]
        if any(window) and not all(window):
            raise ValueError("a slowdown window takes from, until and factor together")
        if all(window) and self.until <= self.from_:
            raise ValueError(f"until ({self.until:g}s) must come after from ({self.from_:g}s)")
        if not any(window) and self.per_concurrent == 0 and self.per_waiting == 0:
            raise ValueError("give per_concurrent, per_waiting, or a window (from, until, factor)")
        return self


class CapacityLossSpec(Strict):
    """``workers`` of the pool are gone from ``from`` until ``until`` (each finishes its message)."""

    model_config = _WITH_FROM
    from_: Duration = Field(alias="from")
    until: PositiveDuration
    workers: Annotated[int, Field(ge=1, strict=True)]

    @model_validator(mode="after")
    def _ordered(self):
        if self.until <= self.from_:
            raise ValueError(f"until ({self.until:g}s) must come after from ({self.from_:g}s)")
        return self


class AutoscalingSpec(Strict):
    """Target tracking: every ``evaluation_interval`` (15 s, Kubernetes' HPA period) the pool
    wants ceil(messages waiting / ``target_backlog_per_worker``) workers (AWS's backlog per
    instance), or ceil(workers × utilisation over the interval / ``target_utilization``) (the
    HPA's rule), within ``min``..``max``. New workers start ``scale_out_delay`` (60 s) after the
    decision; workers removed finish their message first; after an action, none for ``cooldown``
    (300 s, EC2 Auto Scaling's default)."""

    target_backlog_per_worker: Optional[Annotated[float, Field(gt=0)]] = None
    target_utilization: Optional[Annotated[float, Field(gt=0, le=1)]] = None
    min: Annotated[int, Field(ge=1, strict=True)]
    max: Annotated[int, Field(ge=1, strict=True)]
    evaluation_interval: PositiveDuration = 15.0
    scale_out_delay: Duration = 60.0
    cooldown: Duration = 300.0

    @model_validator(mode="after")
    def _consistent(self):
        if (self.target_backlog_per_worker is None) == (self.target_utilization is None):
            raise ValueError("give one target: target_backlog_per_worker or target_utilization")
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must not be below min ({self.min})")
        return self


class RateLimitSpec(Strict):
    """A token bucket: ``rate`` admissions a second in the long run, ``burst`` at once."""

    rate: Rate
    burst: Annotated[int, Field(ge=1, strict=True)]


class AdmissionSpec(Strict):
    """Admission control in front of a broker (``in_front_of``: the broker, or a worker pool, for
    the broker it consumes): a message is refused (HTTP 429/503) when ``rate_limit`` has no token,
    when ``max_queue`` messages wait, or when the estimated wait — messages waiting × mean service
    time / workers — exceeds ``max_wait``."""

    name: Name
    in_front_of: Name
    max_queue: Optional[Annotated[int, Field(ge=0, strict=True)]] = None
    max_wait: Optional[PositiveDuration] = None
    rate_limit: Optional[RateLimitSpec] = None

    @model_validator(mode="after")
    def _something(self):
        if self.max_queue is None and self.max_wait is None and self.rate_limit is None:
            raise ValueError("give max_queue, max_wait or rate_limit: otherwise it admits everything")
        return self

    def bounds_queue(self) -> bool:
        return self.max_queue is not None or self.max_wait is not None


# --- components ---------------------------------------------------------------------------------


class Producer(_ClientBehaviour):
    """An open-loop source of messages: it sends whatever happens downstream. With a ``timeout``
    or a ``retry`` policy it is a client: it waits for each response, retries refusals and
    timeouts, and its requests end processed only when it got their response. ``spike``
    multiplies its rate for a while."""

    name: Name
    arrivals: ArrivalSpec
    sends_to: Name
    spike: Optional[SpikeSpec] = None

    @model_validator(mode="after")
    def _spike_needs_a_rate(self):
        if self.spike is not None and self.arrivals.process == "trace":
            raise ValueError("a spike multiplies a rate, and a trace has none: edit the trace's arrival times instead")
        return self


class WorkerPool(Strict):
    """``count`` identical workers taking messages from ``consumes``; when ``sends_to`` names a
    broker, each finished message goes on to it (a pipeline stage), otherwise it is done.
    ``delivery_latency`` is the time a receive (or a push) takes to bring a message to a worker."""

    name: Name
    consumes: Name
    count: Annotated[int, Field(ge=1, strict=True)]
    service_time: DistributionSpec
    sends_to: Optional[Name] = None
    delivery_latency: Optional[DurationOrDistribution] = None
    crashes: Optional[Crashes] = None
    errors: Optional[Errors] = None
    slowdown: Optional[SlowdownSpec] = None
    capacity_loss: Optional[CapacityLossSpec] = None
    autoscaling: Optional[AutoscalingSpec] = None
    shed_expired: bool = False

    @model_validator(mode="after")
    def _elastic_counts(self):
        if self.autoscaling is not None and not self.autoscaling.min <= self.count <= self.autoscaling.max:
            raise ValueError(f"count ({self.count}, the workers at the start) must lie within autoscaling min ({self.autoscaling.min}) and max ({self.autoscaling.max})")
        if self.capacity_loss is not None and self.capacity_loss.workers > self.count:
            raise ValueError(f"capacity_loss.workers ({self.capacity_loss.workers}) is more than the pool's count ({self.count})")
        return self

    @property
    def max_count(self) -> int:
        """The most workers the pool can have (its autoscaling max, or its count)."""
        return self.autoscaling.max if self.autoscaling is not None else self.count
    idempotent: bool = False  # a processed-ids table: copies of a processed message are skipped (suppressed)


# --- the transactional outbox and the dual write ------------------------------------------------


class DatabaseSpec(Strict):
    """A database behind a pool of ``connections``: a transaction waits for a free connection and
    holds it for its ``commit_time`` (statements and COMMIT). ``crashes`` roll back the open
    transactions; while it restarts, transactions are refused."""

    commit_time: DurationOrDistribution
    connections: Annotated[int, Field(ge=1, strict=True)] = 10
    crashes: Optional[Crashes] = None


class CrashBeforeMarkSpec(Strict):
    """The relay dies after publishing a batch and before marking it sent, with ``probability``
    per batch, and is down for ``restart_time``."""

    probability: Annotated[float, Field(ge=0, lt=1)]
    restart_time: DurationOrDistribution


class PollingRelaySpec(Strict):
    """A polling publisher: every ``poll_interval`` a query for at most ``batch_size`` unsent rows
    (``query_time``), a publication per row (``publish_time``), one mark-as-sent write
    (``mark_time``), in one transaction. ``relays`` instances; ``skip_locked`` (FOR UPDATE SKIP
    LOCKED) shares the rows out, without it relays can publish the same rows."""

    kind: Literal["polling"] = "polling"
    poll_interval: PositiveDuration = 0.5
    batch_size: Annotated[int, Field(ge=1, strict=True)] = 100
    query_time: DurationOrDistribution = Field(default="2ms", validate_default=True)
    publish_time: DurationOrDistribution = Field(default="1ms", validate_default=True)
    mark_time: DurationOrDistribution = Field(default="2ms", validate_default=True)
    relays: Annotated[int, Field(ge=1, strict=True)] = 1
    skip_locked: bool = True
    crashes: Optional[Crashes] = None
    crash_before_mark: Optional[CrashBeforeMarkSpec] = None

    def cycle_s(self) -> float:
        """Mean length of a poll with a full batch."""
        return self.query_time.build().mean + self.batch_size * self.publish_time.build().mean + self.mark_time.build().mean

    def capacity_per_s(self) -> float:
        """Rows per second the relays can publish at most (polls start at a fixed rate, or back
        to back when a full batch takes longer than the interval)."""
        return self.relays * self.batch_size / max(self.poll_interval, self.cycle_s())


class CdcRelaySpec(Strict):
    """Log tailing (CDC, as Debezium does): each committed event is published ``lag`` after its
    commit, in commit order; the connector records its offset every ``offset_flush_interval``
    and, after a crash, publishes again what it had published since."""

    kind: Literal["cdc"]
    lag: DurationOrDistribution
    offset_flush_interval: PositiveDuration = 60.0
    retry_interval: PositiveDuration = 0.1
    crashes: Optional[Crashes] = None

    def capacity_per_s(self) -> float:
        return math.inf


def _polling_by_default(value):
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "polling", **value}
    return value


RelaySpec = Annotated[Union[PollingRelaySpec, CdcRelaySpec], Field(discriminator="kind"), BeforeValidator(_polling_by_default)]


class OutboxSpec(Strict):
    """The transactional outbox: a request's business row and event row commit in one
    transaction of ``database``; a ``relay`` publishes the events to ``publishes_to``. The
    application can die as a dual write's does: ``crash_probability`` per request (inside the
    transaction, which rolls back) and ``crashes`` of the process."""

    name: Name
    database: DatabaseSpec
    relay: RelaySpec = Field(default_factory=PollingRelaySpec)
    publishes_to: Name
    crash_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    crashes: Optional[Crashes] = None


class DualWriteSpec(Strict):
    """Writing the database and the broker in two steps, in ``order``: a request can die between
    them (``crash_probability``, or the process's ``crashes``), the broker can refuse, and a
    publication can time out although it landed (``publish_timeout`` on a ``publish_time``
    distribution, or ``publish_timeout_probability``)."""

    name: Name
    database: DatabaseSpec
    publishes_to: Name
    order: Literal["commit-then-publish", "publish-then-commit"] = "commit-then-publish"
    publish_time: DurationOrDistribution = Field(default="1ms", validate_default=True)
    publish_timeout: Optional[PositiveDuration] = None
    publish_timeout_probability: Annotated[float, Field(ge=0, lt=1)] = 0.0
    publish_retries: Annotated[int, Field(ge=0, strict=True)] = 0
    crash_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    crashes: Optional[Crashes] = None


class Slo(Strict):
    """Service-level objectives the summary is checked against (all optional)."""

    latency_mean: Optional[PositiveDuration] = None
    latency_p50: Optional[PositiveDuration] = None
    latency_p95: Optional[PositiveDuration] = None
    latency_p99: Optional[PositiveDuration] = None
    latency_p999: Optional[PositiveDuration] = None
    max_loss_rate: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    max_rejection_rate: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    min_throughput: Optional[Rate] = None


class SweepSpec(Strict):
    """What ``asyncsim sweep`` varies when no ``--vary`` is given: each key of ``vary`` is a
    ``--set`` path, each value a range ``START..END[:STEP]`` (units allowed: ``10/s..50/s:10/s``),
    a comma list (``8,12,16``) or a list; several keys make a grid. ``metric`` is plotted."""

    vary: Annotated[dict[str, Union[int, float, str, list]], Field(min_length=1)]
    metric: str = "system.latency_s.p99"

    @field_validator("vary")
    @classmethod
    def _values(cls, vary: dict) -> dict:
        for path, values in vary.items():
            parse_axis(path, values)
        return vary


class Scenario(Strict):
    """A whole scenario file."""

    name: Annotated[str, Field(min_length=1)]
    description: Optional[str] = None
    seed: Annotated[int, Field(ge=0, strict=True)] = 1
    duration: PositiveDuration
    warmup: Duration = 0.0
    replications: Annotated[int, Field(ge=1, strict=True)] = 10
    producers: list[Producer]  # may be empty (``producers: []``) when ``clients`` send the requests
    brokers: list[BrokerSpec] = []
    workers: list[WorkerPool] = []
    clients: list[ClientGroup] = []
    admission: list[AdmissionSpec] = []
    outbox: list[OutboxSpec] = []
    dual_write: list[DualWriteSpec] = []
    slo: Optional[Slo] = None
    sweep: Optional[SweepSpec] = None

    @field_validator("warmup")
    @classmethod
    def _warmup_before_end(cls, warmup: float, info: ValidationInfo) -> float:
        duration = info.data.get("duration")
        if duration is not None and warmup >= duration:
            raise ValueError(f"the warm-up ({warmup:g}s) must end before the run does ({duration:g}s)")
        return warmup

    @model_validator(mode="after")
    def _some_source(self):
        if not self.producers and not self.clients:
            raise ValueError("producers is empty: a scenario needs at least one producer, or a group of closed-loop clients (clients:)")
        return self

    @property
    def window_s(self) -> float:
        """Length of the measurement window, after the warm-up."""
        return self.duration - self.warmup
