"""Building a SimPy network from a Scenario: a registry of component kinds.

Each broker kind maps to a builder ``(env, spec, boundary) -> broker``; later kinds (redis, sqs,
rabbitmq) register here and plug into the same producers, worker pools and Recorder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.arrivals import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from models.fifo import FifoBroker
from models.producer import Producer
from models.workers import WorkerPool

from . import schema
from .distributions import Exponential, Sampler
from .recorder import Recorder
from .streams import Streams

BROKER_KINDS: dict[str, Callable] = {
    "fifo": lambda env, spec, boundary: FifoBroker(env, spec.name, boundary, capacity=spec.capacity),
}


@dataclass
class Network:
    """The built components of one replication, by name."""

    producers: dict[str, Producer] = field(default_factory=dict)
    brokers: dict[str, object] = field(default_factory=dict)
    workers: dict[str, WorkerPool] = field(default_factory=dict)

    def held(self) -> int:
        """Messages physically inside the network now: waiting in brokers or in service."""
        return sum(b.held() for b in self.brokers.values()) + sum(w.held() for w in self.workers.values())


def arrival_process(spec, streams: Streams, producer: str):
    """The model of an arrival spec, drawing from the producer's own stream."""
    rng = streams.rng(producer, "arrivals")
    if isinstance(spec, schema.PoissonArrivals):
        return PoissonArrivals(Sampler(Exponential(1.0 / spec.rate), rng))
    if isinstance(spec, schema.DeterministicArrivals):
        return DeterministicArrivals(spec.rate)
    if isinstance(spec, schema.RenewalArrivals):
        return RenewalArrivals(Sampler(spec.interarrival.build(), rng))
    if isinstance(spec, schema.ScheduleArrivals):
        steps = [(step.duration, step.rate) for step in spec.steps]
        return ScheduleArrivals(steps, spec.repeat, Sampler(Exponential(1.0), rng))
    if isinstance(spec, schema.TraceArrivals):
        return TraceArrivals(spec.times_s())
    raise TypeError(f"no model for arrival process {spec.process!r}")


def build(scenario: schema.Scenario, env, recorder: Recorder, streams: Streams) -> Network:
    """Instantiate every component of ``scenario`` in ``env``, wired and recording."""
    network = Network()
    for spec in scenario.brokers:
        boundary = recorder.boundary(spec.name, "broker", keep_sojourns=True)
        network.brokers[spec.name] = BROKER_KINDS[spec.kind](env, spec, boundary)
    for spec in scenario.workers:
        network.workers[spec.name] = WorkerPool(
            env,
            spec.name,
            source=network.brokers[spec.consumes],
            count=spec.count,
            service_time=Sampler(spec.service_time.build(), streams.rng(spec.name, "service_time")),
            boundary=recorder.boundary(spec.name, "workers"),
            recorder=recorder,
            next_hop=network.brokers[spec.sends_to] if spec.sends_to else None,
        )
    for spec in scenario.producers:
        network.producers[spec.name] = Producer(
            env, spec.name, arrival_process(spec.arrivals, streams, spec.name), network.brokers[spec.sends_to], recorder
        )
    return network
