"""Building a SimPy network from a Scenario.

Broker kinds come from the registry in :mod:`sim.kinds`; every kind plugs into the same producers,
worker pools and Recorder through the broker protocol of :mod:`models.broker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.arrivals import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from models.database import Database
from models.dual_write import DualWrite
from models.idempotency import IdempotentDone
from models.outbox import Outbox, OutboxTable
from models.producer import Producer
from models.relay import CdcRelay, PollingRelay, RelayStats
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
    outboxes: dict[str, Outbox] = field(default_factory=dict)
    dual_writes: dict[str, DualWrite] = field(default_factory=dict)
    relays: dict[str, list] = field(default_factory=dict)

    def held_ids(self):
        """Ids of the messages some component holds now (a message may be held in several places)."""
        for component in (*self.producers.values(), *self.brokers.values(), *self.workers.values()):
            yield from component.held_ids()
        for component in (*self.outboxes.values(), *self.dual_writes.values(), *(r for rs in self.relays.values() for r in rs)):
            yield from component.held_ids()

    def targets(self) -> dict:
        """What a producer or a worker pool can send to, by name: brokers, outboxes, dual writes."""
        return {**self.brokers, **self.outboxes, **self.dual_writes}


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
    if scenario.outbox or scenario.dual_write or any(pool.idempotent for pool in scenario.workers):
        recorder.track_consistency()
    for spec in scenario.outbox:
        network.outboxes[spec.name], network.relays[spec.name] = outbox(spec, env, recorder, streams, network.brokers)
    for spec in scenario.dual_write:
        network.dual_writes[spec.name] = dual_write(spec, env, recorder, streams, network.brokers)
    targets = network.targets()
    for spec in scenario.workers:
        network.workers[spec.name] = worker_pool(spec, env, recorder, streams, targets)
    for spec in scenario.producers:
        network.producers[spec.name] = Producer(
            env, spec.name, arrival_process(spec.arrivals, streams, spec.name), targets[spec.sends_to], recorder
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
        next_hop=next_hop(spec, env, recorder, brokers),
        **options,
    )


def next_hop(spec: schema.WorkerPool, env, recorder: Recorder, targets: dict):
    """Where a pool's finished work goes: the next stage (a broker, an outbox, a dual write) or
    :class:`Done`; through the pool's processed-ids table when it is ``idempotent``."""
    hop = targets[spec.sends_to] if spec.sends_to else Done(env, recorder)
    if spec.idempotent:
        hop = IdempotentDone(env, recorder, recorder.counter(f"{spec.name}:idempotency"), hop)
    return hop


# --- the transactional outbox and the dual write ------------------------------------------------


def database(spec: schema.DatabaseSpec, owner: str, env, recorder: Recorder, streams: Streams) -> Database:
    """The database of an outbox or a dual write, named ``OWNER:database``."""
    name = f"{owner}:database"
    crash_after = restart_time = None
    if spec.crashes is not None:
        crash_after = Sampler(spec.crashes.time_to_failure_distribution(), streams.rng(name, "crashes"))
        restart_time = Sampler(spec.crashes.restart_time.build(), streams.rng(name, "restart_time"))
    return Database(
        env,
        name,
        spec.connections,
        recorder.boundary(name, "database"),
        recorder.boundary(f"{owner}:connection-wait", "database", keep_sojourns=True),
        recorder.counter(name),
        crash_after,
        restart_time,
    )


def outbox(spec: schema.OutboxSpec, env, recorder: Recorder, streams: Streams, brokers: dict) -> tuple[Outbox, list]:
    """An outbox: its database, its table, the application's transactional write, its relays."""
    name = spec.name
    db = database(spec.database, name, env, recorder, streams)
    table = OutboxTable(recorder.boundary(name, "outbox"))
    application = {}
    if spec.crashes is not None:
        application["crash_after"] = Sampler(spec.crashes.time_to_failure_distribution(), streams.rng(name, "crashes"))
        application["restart_time"] = Sampler(spec.crashes.restart_time.build(), streams.rng(name, "restart_time"))
    box = Outbox(env, name, db, table, Sampler(spec.database.commit_time.build(), streams.rng(name, "commit_time")),
                 recorder, recorder.counter(name), recorder.warmup_s, crash_probability=spec.crash_probability,
                 crash_draw=Sampler(Uniform(0.0, 1.0), streams.rng(name, "crash_in_transaction")), **application)
    stats = RelayStats(recorder.boundary(f"{name}:relay", "relay"), recorder.counter(f"{name}:relay"), recorder.warmup_s)
    target = brokers[spec.publishes_to]
    relay = spec.relay
    relays = []
    if relay.kind == "cdc":
        component = f"{name}:relay"

        def sampler(distribution, purpose):
            return Sampler(distribution, streams.rng(component, purpose))

        options = {}
        if relay.crashes is not None:
            options["crash_after"] = sampler(relay.crashes.time_to_failure_distribution(), "crashes")
            options["restart_time"] = sampler(relay.crashes.restart_time.build(), "restart_time")
        cdc = CdcRelay(env, component, table, db, target, stats, sampler(relay.lag.build(), "lag"),
                       offset_flush_interval_s=relay.offset_flush_interval, retry_interval_s=relay.retry_interval,
                       phase_s=sampler(Uniform(0.0, relay.offset_flush_interval), "phase")(), **options)
        box.listeners.append(cdc.on_commit)
        relays.append(cdc)
        return box, relays
    for i in range(relay.relays):
        component = f"{name}:relay-{i}"

        def sampler(distribution, purpose):
            return Sampler(distribution, streams.rng(component, purpose))

        options = {}
        if relay.crashes is not None:
            options["crash_after"] = sampler(relay.crashes.time_to_failure_distribution(), "crashes")
            options["restart_time"] = sampler(relay.crashes.restart_time.build(), "restart_time")
        if relay.crash_before_mark is not None:
            options["crash_before_mark"] = relay.crash_before_mark.probability
            options["crash_draw"] = sampler(Uniform(0.0, 1.0), "crash_before_mark")
            options["crash_before_mark_restart"] = sampler(relay.crash_before_mark.restart_time.build(), "crash_before_mark_restart")
        relays.append(PollingRelay(
            env, component, table, db, target, stats,
            poll_interval_s=relay.poll_interval,
            batch_size=relay.batch_size,
            query_time=sampler(relay.query_time.build(), "query_time"),
            publish_time=sampler(relay.publish_time.build(), "publish_time"),
            mark_time=sampler(relay.mark_time.build(), "mark_time"),
            skip_locked=relay.skip_locked,
            phase_s=sampler(Uniform(0.0, relay.poll_interval), "phase")(),
            **options,
        ))
    return box, relays


def dual_write(spec: schema.DualWriteSpec, env, recorder: Recorder, streams: Streams, brokers: dict) -> DualWrite:
    """An application writing its database and the broker in two steps."""
    name = spec.name

    def sampler(distribution, purpose):
        return Sampler(distribution, streams.rng(name, purpose))

    options = {}
    if spec.crashes is not None:
        options["crash_after"] = sampler(spec.crashes.time_to_failure_distribution(), "crashes")
        options["restart_time"] = sampler(spec.crashes.restart_time.build(), "restart_time")
    return DualWrite(
        env,
        name,
        database(spec.database, name, env, recorder, streams),
        brokers[spec.publishes_to],
        recorder,
        recorder.boundary(name, "application"),
        recorder.counter(name),
        commit_time=sampler(spec.database.commit_time.build(), "commit_time"),
        publish_time=sampler(spec.publish_time.build(), "publish_time"),
        commit_first=spec.order == "commit-then-publish",
        crash_probability=spec.crash_probability,
        crash_draw=sampler(Uniform(0.0, 1.0), "crash_between_writes"),
        ack_lost_draw=sampler(Uniform(0.0, 1.0), "publish_timeouts"),
        publish_timeout_s=spec.publish_timeout,
        publish_timeout_probability=spec.publish_timeout_probability,
        publish_retries=spec.publish_retries,
        window_start_s=recorder.warmup_s,
        **options,
    )
