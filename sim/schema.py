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

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .fields import _RATE_SCHEMA, Crashes, CsvColumn, DistributionSpec, Duration, DurationOrDistribution, Errors, Name, PositiveDuration, Rate, Strict, _non_negative
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
    rate: Annotated[float, BeforeValidator(parse_rate), AfterValidator(_non_negative), WithJsonSchema(_RATE_SCHEMA)]


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
        import numpy as np

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


# --- components ---------------------------------------------------------------------------------


class Producer(Strict):
    """An open-loop source of messages: it sends whatever happens downstream."""

    name: Name
    arrivals: ArrivalSpec
    sends_to: Name


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
        from .sweep import parse_axis  # the sweep module owns the syntax

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
    producers: Annotated[list[Producer], Field(min_length=1)]
    brokers: list[BrokerSpec] = []
    workers: list[WorkerPool] = []
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

    @property
    def window_s(self) -> float:
        """Length of the measurement window, after the warm-up."""
        return self.duration - self.warmup
