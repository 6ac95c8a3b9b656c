"""``producers:`` open-loop sources of messages and their arrival processes."""

from __future__ import annotations

import math
from typing import Annotated, Iterable, Literal, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from models import arrivals as models
from models.clients import OpenLoopClient
from models.producer import Producer as ProducerModel
from models.triggers import SpikedArrivals

from ..distributions import Exponential, Sampler
from ..fields import NOT_A_BOOL, CsvColumn, DistributionSpec, Duration, Name, NonNegativeRate, PositiveDuration, Rate, Strict
from .base import BROKER_OR_WRITER, Finding, Kind, Source
from .clients import ClientBehaviour, make_client, measure_client


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
    rate: NonNegativeRate


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


class SpikeSpec(Strict):
    """The producer's rate is multiplied by ``rate_multiplier`` from ``at`` for ``duration``."""

    at: Duration
    duration: PositiveDuration
    rate_multiplier: Annotated[float, Field(gt=0), NOT_A_BOOL]


class Producer(ClientBehaviour):
    """An open-loop source of messages: it sends whatever happens downstream. With a ``timeout``
    or a ``retry`` policy it is a client: it waits for each response, retries refusals and
    timeouts, and its requests end processed only when it got their response. ``spike``
    multiplies its rate for a while."""

    name: Name
    arrivals: ArrivalSpec
    sends_to: Annotated[Name, BROKER_OR_WRITER]
    spike: Optional[SpikeSpec] = None

    @model_validator(mode="after")
    def _spike_needs_a_rate(self):
        if self.spike is not None and self.arrivals.process == "trace":
            raise ValueError("a spike multiplies a rate, and a trace has none: edit the trace's arrival times instead")
        return self


def arrival_process(spec, streams, producer: str):
    """The model of an arrival spec, drawing from the producer's own stream ``arrivals``
    (``streams.rng``: the random streams, or a build context)."""
    rng = streams.rng(producer, "arrivals")
    if isinstance(spec, PoissonArrivals):
        return models.PoissonArrivals(Sampler(Exponential(1.0 / spec.rate), rng))
    if isinstance(spec, DeterministicArrivals):
        return models.DeterministicArrivals(spec.rate)
    if isinstance(spec, RenewalArrivals):
        return models.RenewalArrivals(Sampler(spec.interarrival.build(), rng))
    if isinstance(spec, ScheduleArrivals):
        steps = [(step.duration, step.rate) for step in spec.steps]
        return models.ScheduleArrivals(steps, spec.repeat, Sampler(Exponential(1.0), rng))
    return models.TraceArrivals(spec.times_s())


class Producers(Kind):
    section = "producers"
    noun = "a producer"
    Spec = Producer
    build_order = 5

    def flow(self, spec: Producer) -> Source:
        return Source(spec.name, spec.sends_to, spec.arrivals.mean_rate(), spec.timeout is not None)

    def build(self, spec: Producer, context):
        """An open-loop producer: plain, or a client when it has a ``timeout`` or a ``retry`` policy."""
        arrivals = arrival_process(spec.arrivals, context, spec.name)
        if spec.spike is not None:
            arrivals = SpikedArrivals(arrivals, spec.spike.at, spec.spike.duration, spec.spike.rate_multiplier)
        if not spec.is_client:
            return ProducerModel(context.env, spec.name, arrivals, context.target(spec.sends_to), context.fates)
        return OpenLoopClient(context.env, spec.name, arrivals, make_client(spec, context))

    def measure(self, spec: Producer, producer, context, measures) -> None:
        if spec.is_client:
            measure_client(spec.name, producer.client, measures)

    def models(self, spec: Producer, producer) -> Iterable[tuple[type, str]]:
        """The producer (or client), its arrival process and, with a spike, the spike's wrapper."""
        yield type(producer), f"producer {spec.name}"
        arrivals = producer.arrivals
        if isinstance(arrivals, SpikedArrivals):
            yield type(arrivals), f"spike of {spec.name}"
            arrivals = arrivals.inner
        yield type(arrivals), f"arrivals of {spec.name}"

    def problems(self, spec: Producer, scenario) -> Iterable[Finding]:
        writers = {w.name for w in (*scenario.outbox, *scenario.dual_write)}
        if spec.is_client and spec.sends_to in writers:
            yield Finding("sends_to", f"a producer with a timeout or a retry policy is a client and sends to a broker; '{spec.sends_to}' is not one")
        if spec.spike is not None and spec.spike.at >= scenario.duration:
            yield Finding("spike.at", f"the spike starts at {spec.spike.at:g}s, after the run ends ({scenario.duration:g}s)")
