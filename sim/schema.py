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
