"""Building a SimPy network from a Scenario.

Broker kinds come from the registry in :mod:`sim.kinds`; every kind plugs into the same producers,
worker pools and Recorder through the broker protocol of :mod:`models.broker`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models.admission import AdmissionGate, TokenBucket
from models.arrivals import DeterministicArrivals, PoissonArrivals, RenewalArrivals, ScheduleArrivals, TraceArrivals
from models.autoscaling import Autoscaler
from models.clients import Client, ClosedLoopClients, OpenLoopClient
from models.retry import DecorrelatedJitterBackoff, EqualJitterBackoff, ExponentialBackoff, FixedBackoff, FullJitterBackoff, RetryBudget
from models.triggers import CapacityLoss, LoadDependentServiceTime, SpikedArrivals
from models.database import Database
from models.dual_write import DualWrite
from models.idempotency import IdempotentDone
from models.outbox import Outbox, OutboxTable
from models.producer import Producer
from models.relay import CdcRelay, PollingRelay, RelayStats
from models.workers import Done, WorkerPool

from .components.database import DatabaseSpec
from .components.dual_write import DualWriteSpec
from .components.outbox import OutboxSpec
from .components.producers import DeterministicArrivals as DeterministicSpec
from .components.producers import PoissonArrivals as PoissonSpec
from .components.producers import Producer as ProducerSpec
from .components.producers import RenewalArrivals as RenewalSpec
from .components.producers import ScheduleArrivals as ScheduleSpec
from .components.producers import TraceArrivals as TraceSpec
from .components.workers import WorkerPool as WorkerPoolSpec
from .distributions import Exponential, Sampler, Uniform
from .kinds import KINDS
from .kinds.context import BuildContext
from .recorder import Recorder
from .schema import Scenario
from .streams import Streams

BROKER_KINDS: dict[str, Callable] = {name: kind.build for name, kind in KINDS.items()}


@dataclass
class Network:
    """The built components of one replication, by name. Groups of closed-loop clients are among
    the producers (they make requests and hold them); ``clients`` has every client's
    :class:`~models.clients.Client` (open- and closed-loop) for its metrics."""

    clients: dict[str, Client] = field(default_factory=dict)
    gates: dict[str, AdmissionGate] = field(default_factory=dict)
    autoscalers: dict[str, Autoscaler] = field(default_factory=dict)
    triggers: list = field(default_factory=list)
    producers: dict[str, Producer] = field(default_factory=dict)
    brokers: dict[str, object] = field(default_factory=dict)
    workers: dict[str, WorkerPool] = field(default_factory=dict)
    outboxes: dict[str, Outbox] = field(default_factory=dict)
    dual_writes: dict[str, DualWrite] = field(default_factory=dict)
    relays: dict[str, list] = field(default_factory=dict)

    def held_by_servers(self):
        """Ids held by brokers and workers: where an admitted attempt is until it ends."""
        for component in (*self.brokers.values(), *self.workers.values()):
            yield from component.held_ids()

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
    if isinstance(spec, PoissonSpec):
        return PoissonArrivals(Sampler(Exponential(1.0 / spec.rate), rng))
    if isinstance(spec, DeterministicSpec):
        return DeterministicArrivals(spec.rate)
    if isinstance(spec, RenewalSpec):
        return RenewalArrivals(Sampler(spec.interarrival.build(), rng))
    if isinstance(spec, ScheduleSpec):
        steps = [(step.duration, step.rate) for step in spec.steps]
        return ScheduleArrivals(steps, spec.repeat, Sampler(Exponential(1.0), rng))
    if isinstance(spec, TraceSpec):
        return TraceArrivals(spec.times_s())
    raise TypeError(f"no model for arrival process {spec.process!r}")


def build(scenario: Scenario, env, recorder: Recorder, streams: Streams) -> Network:
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
    targets = admission_gates(scenario, env, recorder, network, network.targets())
    for spec in scenario.workers:
        network.workers[spec.name] = worker_pool(spec, env, recorder, streams, targets)
    for spec in scenario.workers:
        elasticity(spec, env, recorder, network)
    for spec in scenario.producers:
        network.producers[spec.name] = producer(spec, env, recorder, streams, network, targets)
    closed_loop_clients(scenario, env, recorder, streams, network, targets)
    return network


# --- clients, admission control, triggers and elasticity ----------------------------------------


def admission_gates(scenario: Scenario, env, recorder: Recorder, network: Network, targets: dict) -> dict:
    """Put each ``admission`` gate in front of its broker in ``targets`` (what senders put into);
    returns ``targets``. A gate passes everything but ``put`` through to its broker."""
    pools = {p.name: p for p in scenario.workers}
    for spec in scenario.admission:
        if spec.in_front_of in pools:
            broker, consumers = pools[spec.in_front_of].consumes, [pools[spec.in_front_of]]
        else:
            broker = spec.in_front_of
            consumers = [p for p in scenario.workers if p.consumes == broker]
        means = {p.name: p.service_time.build().mean for p in consumers}

        def capacity_per_s(means=means) -> float:
            return sum(network.workers[name].present / mean for name, mean in means.items() if name in network.workers)

        limiter = TokenBucket(spec.rate_limit.rate, spec.rate_limit.burst) if spec.rate_limit is not None else None
        gate = AdmissionGate(env, spec.name, targets[broker], recorder.boundaries[broker], recorder.counter(spec.name), capacity_per_s,
                             max_queue=spec.max_queue, max_wait_s=spec.max_wait, rate_limiter=limiter)
        network.gates[spec.name] = targets[broker] = gate
    return targets


def service_time(spec: WorkerPoolSpec, env, sampler):
    """A pool's service time: its distribution, slowed down by load when it has a ``slowdown``."""
    base = sampler(spec.service_time.build(), "service_time")
    if spec.slowdown is None:
        return base
    slow = spec.slowdown
    return LoadDependentServiceTime(env, base, slow.per_concurrent, slow.per_waiting, slow.from_, slow.until, slow.factor or 1.0)


def elasticity(spec: WorkerPoolSpec, env, recorder: Recorder, network: Network) -> None:
    """What changes a built pool's capacity while it runs: slowdown, capacity loss, autoscaling."""
    pool = network.workers[spec.name]
    if isinstance(pool.service_time, LoadDependentServiceTime):
        pool.service_time.in_service = pool.in_service
        pool.service_time.waiting = recorder.boundaries.get(spec.consumes)
    if spec.capacity_loss is not None:
        loss = spec.capacity_loss
        network.triggers.append(CapacityLoss(env, pool, loss.from_, loss.until, loss.workers))
    if spec.autoscaling is not None:
        a = spec.autoscaling
        network.autoscalers[spec.name] = Autoscaler(
            env, pool, recorder.boundaries[spec.consumes], a.min, a.max, a.evaluation_interval, a.scale_out_delay, a.cooldown,
            target_backlog_per_worker=a.target_backlog_per_worker, target_utilization=a.target_utilization,
        )


def retry_policy(spec, streams: Streams, client: str):
    """(backoff policy or None, attempts at most) of a ``retry`` spec; jitter from the client's stream."""
    if spec is None or spec.policy == "none":
        return None, 1
    if spec.policy == "fixed":
        return FixedBackoff(spec.base), spec.max_attempts
    if spec.policy == "exponential":
        return ExponentialBackoff(spec.base, spec.cap), spec.max_attempts
    uniform = Sampler(Uniform(0.0, 1.0), streams.rng(client, "retry"))
    jitter = {"full_jitter": FullJitterBackoff, "equal_jitter": EqualJitterBackoff, "decorrelated_jitter": DecorrelatedJitterBackoff}
    return jitter[spec.policy](spec.base, spec.cap, uniform), spec.max_attempts


def make_client(spec, env, recorder: Recorder, streams: Streams, target) -> Client:
    """The client of a producer with a ``timeout`` or ``retry``, or of a group of closed-loop clients."""
    backoff, attempts = retry_policy(spec.retry, streams, spec.name)
    budget = RetryBudget(**spec.retry_budget.model_dump()) if spec.retry_budget is not None else None
    return Client(env, spec.name, target, recorder, backoff=backoff, max_attempts=attempts, timeout_s=spec.timeout, budget=budget)


def producer(spec: ProducerSpec, env, recorder: Recorder, streams: Streams, network: Network, targets: dict):
    """An open-loop producer: plain, or a client when it has a ``timeout`` or a ``retry`` policy."""
    arrivals = arrival_process(spec.arrivals, streams, spec.name)
    if spec.spike is not None:
        arrivals = SpikedArrivals(arrivals, spec.spike.at, spec.spike.duration, spec.spike.rate_multiplier)
    if not spec.is_client:
        return Producer(env, spec.name, arrivals, targets[spec.sends_to], recorder)
    client = network.clients[spec.name] = make_client(spec, env, recorder, streams, targets[spec.sends_to])
    return OpenLoopClient(env, spec.name, arrivals, client)


def closed_loop_clients(scenario: Scenario, env, recorder: Recorder, streams: Streams, network: Network, targets: dict) -> None:
    """Each group of closed-loop clients; a group goes among the producers (it holds requests)."""
    for spec in scenario.clients:
        client = network.clients[spec.name] = make_client(spec, env, recorder, streams, targets[spec.sends_to])
        think_time = Sampler(spec.think_time.build(), streams.rng(spec.name, "think_time"))
        network.producers[spec.name] = ClosedLoopClients(env, spec.name, spec.count, think_time, client)


def worker_pool(spec: WorkerPoolSpec, env, recorder: Recorder, streams: Streams, brokers: dict) -> WorkerPool:
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
    if spec.shed_expired:
        options["shed_expired"] = True
    return WorkerPool(
        env,
        spec.name,
        broker=brokers[spec.consumes],
        count=spec.count,
        service_time=service_time(spec, env, sampler),
        boundary=recorder.boundary(spec.name, "workers"),
        recorder=recorder,
        next_hop=next_hop(spec, env, recorder, brokers),
        **options,
    )


def next_hop(spec: WorkerPoolSpec, env, recorder: Recorder, targets: dict):
    """Where a pool's finished work goes: the next stage (a broker, an outbox, a dual write) or
    :class:`Done`; through the pool's processed-ids table when it is ``idempotent``."""
    hop = targets[spec.sends_to] if spec.sends_to else Done(env, recorder)
    if spec.idempotent:
        hop = IdempotentDone(env, recorder, recorder.counter(f"{spec.name}:idempotency"), hop)
    return hop


# --- the transactional outbox and the dual write ------------------------------------------------


def database(spec: DatabaseSpec, owner: str, env, recorder: Recorder, streams: Streams) -> Database:
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


def outbox(spec: OutboxSpec, env, recorder: Recorder, streams: Streams, brokers: dict) -> tuple[Outbox, list]:
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


def dual_write(spec: DualWriteSpec, env, recorder: Recorder, streams: Streams, brokers: dict) -> DualWrite:
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
