"""``admission:`` gates in front of a broker: rate limits (429) and load shedding (503)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

from pydantic import Field, model_validator

from models.admission import AdmissionGate, TokenBucket

from ..fields import Name, PositiveDuration, Rate, Strict
from .base import Kind, Refers

GATE_EVENTS = ("admitted", "throttled", "busy", "refused_by_broker")


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
    in_front_of: Annotated[Name, Refers(("brokers", "workers"))]
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


class Admission(Kind):
    section = "admission"
    noun = "an admission gate"
    Spec = AdmissionSpec
    build_order = 3

    def keeps_bounded(self, spec: AdmissionSpec, scenario, flows: dict) -> str | None:
        """Its broker, when it refuses beyond a queue length or a wait (max_queue, max_wait), or
        limits the rate below what the broker's consumers can do."""
        pools = {p.name: p for p in scenario.workers}
        broker = pools[spec.in_front_of].consumes if spec.in_front_of in pools else spec.in_front_of
        capacity = flows[broker].service_capacity_per_s if broker in flows else 0.0
        if spec.bounds_queue() or (spec.rate_limit is not None and spec.rate_limit.rate < capacity):
            return broker
        return None

    def build(self, spec: AdmissionSpec, context) -> AdmissionGate:
        """The gate, put in front of its broker: senders to the broker put into the gate. Its wait
        estimate uses the configured mean service time and the workers present in the pools
        that consume the broker (or in the one pool it is in front of)."""
        scenario = context.scenario
        pools = {p.name: p for p in scenario.workers}
        if spec.in_front_of in pools:
            broker, consumers = pools[spec.in_front_of].consumes, [pools[spec.in_front_of]]
        else:
            broker = spec.in_front_of
            consumers = [p for p in scenario.workers if p.consumes == broker]
        means = {p.name: p.service_time.build().mean for p in consumers}
        built = context.network.parts["workers"]

        def capacity_per_s() -> float:
            return sum(built[name].present / mean for name, mean in means.items() if name in built)

        limiter = TokenBucket(spec.rate_limit.rate, spec.rate_limit.burst) if spec.rate_limit is not None else None
        gate = AdmissionGate(context.env, spec.name, context.target(broker), context.counter(spec.name), capacity_per_s,
                             max_queue=spec.max_queue, max_wait_s=spec.max_wait, rate_limiter=limiter)
        context.network.targets[broker] = gate
        return gate

    def measure(self, spec: AdmissionSpec, gate: AdmissionGate, context, measures) -> None:
        counted = context.recorder.counters[spec.name]
        offered = sum(counted[e] for e in GATE_EVENTS)
        measures.counts(f"admission.{spec.name}", counted, GATE_EVENTS)
        measures.proportion(f"admission.{spec.name}.refused_rate", offered - counted["admitted"], offered)
