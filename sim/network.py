"""Building a SimPy network from a Scenario.

Broker kinds come from the registry in :mod:`sim.kinds`; every kind plugs into the same producers,
worker pools and Recorder through the broker protocol of :mod:`models.broker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.arrivals import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from models.producer import Producer
from models.workers import Done, WorkerPool

from . import schema
from .distributions import Exponential, Sampler, Uniform
from .kinds import KINDS
from .kinds.context import BuildContext
from .recorder import Recorder
from .streams import Streams

BROKER_KINDS: dict[str, Callable] = {name: kind.build for name, kind in KINDS.items()}


@dataclass
class Network:
    """The built components of one replication, by name."""

    producers: dict[str, Producer] = field(default_factory=dict)
    brokers: dict[str, object] = field(default_factory=dict)
    workers: dict[str, WorkerPool] = field(default_factory=dict)

    def held_ids(self):
        """Ids of the messages some component holds now (a message may be held in several places)."""
        for component in (*self.producers.values(), *self.brokers.values(), *self.workers.values()):
            yield from component.held_ids()


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
    context = BuildContext(env, recorder, streams.rng, network.brokers.__getitem__)
    for spec in scenario.brokers:
        network.brokers[spec.name] = BROKER_KINDS[spec.kind](spec, context)
    for spec in scenario.workers:
        network.workers[spec.name] = worker_pool(spec, env, recorder, streams, network.brokers)
    for spec in scenario.producers:
        network.producers[spec.name] = Producer(
            env, spec.name, arrival_process(spec.arrivals, streams, spec.name), network.brokers[spec.sends_to], recorder
        )
    return network


def worker_pool(spec: schema.WorkerPool, env, recorder: Recorder, streams: Streams, brokers: dict) -> WorkerPool:
    """The model of a worker pool spec, each random quantity drawn from its own stream."""

    def sampler(distribution, purpose):
        return Sampler(distribution, streams.rng(spec.name, purpose))

    options = {}
    if spec.delivery_latency is not None:
        options["delivery_latency"] = sampler(spec.delivery_latency.build(), "delivery_latency")
    if spec.crashes is not None:
        options["crash_after"] = sampler(spec.crashes.time_to_failure_distribution(), "crashes")
        options["restart_time"] = sampler(spec.crashes.restart_time.build(), "restart_time")
    if spec.errors is not None:
        options["error_probability"] = spec.errors.probability
        options["poison_fraction"] = spec.errors.poison_fraction
        options["error_draw"] = sampler(Uniform(0.0, 1.0), "errors")
    return WorkerPool(
        env,
        spec.name,
        broker=brokers[spec.consumes],
        count=spec.count,
        service_time=sampler(spec.service_time.build(), "service_time"),
        boundary=recorder.boundary(spec.name, "workers"),
        recorder=recorder,
        next_hop=brokers[spec.sends_to] if spec.sends_to else Done(env, recorder),
        **options,
    )
