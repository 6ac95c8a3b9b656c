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
from models.triggers import CapacityLoss, Slowdown, SpikedArrivals
from models.database import Database
from models.dual_write import DualWrite, DualWriteOptions
from models.fates import Fates
from models.idempotency import IdempotentDone
from models.outbox import Outbox, OutboxTable
from models.producer import Producer
from models.relay import CdcRelay, PollingRelay, RelayStats
from models.workers import Done, WorkerOptions, WorkerPool

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
from .kinds.context import BuildContext, crashes
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


def arrival_process(spec, streams: Streams | BuildContext, producer: str):
    """The model of an arrival spec, drawing from the producer's own stream (``streams.rng``)."""
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
    fates = Fates(recorder)
    context = BuildContext(env, recorder, fates, streams.rng, network.brokers.__getitem__)
    for spec in scenario.brokers:
        network.brokers[spec.name] = BROKER_KINDS[spec.kind](spec, context)
    if scenario.outbox or scenario.dual_write or any(pool.idempotent for pool in scenario.workers):
        recorder.track_consistency()
    for spec in scenario.outbox:
        network.outboxes[spec.name], network.relays[spec.name] = outbox(spec, context, network.brokers)
    for spec in scenario.dual_write:
        network.dual_writes[spec.name] = dual_write(spec, context, network.brokers)
    targets = admission_gates(scenario, context, network, network.targets())
    for spec in scenario.workers:
        network.workers[spec.name] = worker_pool(spec, context, targets)
    for spec in scenario.workers:
        elasticity(spec, env, network)
    for spec in scenario.producers:
        network.producers[spec.name] = producer(spec, context, network, targets)
    closed_loop_clients(scenario, context, network, targets)
    return network


# --- clients, admission control, triggers and elasticity ----------------------------------------


def admission_gates(scenario: Scenario, context: BuildContext, network: Network, targets: dict) -> dict:
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
        gate = AdmissionGate(context.env, spec.name, targets[broker], context.counter(spec.name), capacity_per_s,
                             max_queue=spec.max_queue, max_wait_s=spec.max_wait, rate_limiter=limiter)
        network.gates[spec.name] = targets[broker] = gate
    return targets


def slowdown(spec: WorkerPoolSpec) -> Slowdown | None:
    """How a pool's service slows down with load, if it has a ``slowdown``."""
    slow = spec.slowdown
    if slow is None:
        return None
    return Slowdown(slow.per_concurrent, slow.per_waiting, slow.from_, slow.until, slow.factor or 1.0)


def elasticity(spec: WorkerPoolSpec, env, network: Network) -> None:
    """What changes a built pool's capacity while it runs: capacity loss, autoscaling."""
    pool = network.workers[spec.name]
    if spec.capacity_loss is not None:
        loss = spec.capacity_loss
        network.triggers.append(CapacityLoss(env, pool, loss.from_, loss.until, loss.workers))
    if spec.autoscaling is not None:
        a = spec.autoscaling
        network.autoscalers[spec.name] = Autoscaler(
            env, pool, a.min, a.max, a.evaluation_interval, a.scale_out_delay, a.cooldown,
            target_backlog_per_worker=a.target_backlog_per_worker, target_utilization=a.target_utilization,
        )


def retry_policy(spec, streams: Streams | BuildContext, client: str):
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


def make_client(spec, context: BuildContext, target) -> Client:
    """The client of a producer with a ``timeout`` or ``retry``, or of a group of closed-loop clients."""
    backoff, attempts = retry_policy(spec.retry, context, spec.name)
    budget = RetryBudget(**spec.retry_budget.model_dump()) if spec.retry_budget is not None else None
    requests = context.boundary(spec.name, "clients", keep_sojourns=True)
    open_attempts = context.boundary(f"{spec.name}:attempts", "attempts", keep_sojourns=False)
    return Client(context.env, spec.name, target, context.fates, requests, open_attempts, context.window_start_s,
                  backoff=backoff, max_attempts=attempts, timeout_s=spec.timeout, budget=budget)


def producer(spec: ProducerSpec, context: BuildContext, network: Network, targets: dict):
    """An open-loop producer: plain, or a client when it has a ``timeout`` or a ``retry`` policy."""
    arrivals = arrival_process(spec.arrivals, context, spec.name)
    if spec.spike is not None:
        arrivals = SpikedArrivals(arrivals, spec.spike.at, spec.spike.duration, spec.spike.rate_multiplier)
    if not spec.is_client:
        return Producer(context.env, spec.name, arrivals, targets[spec.sends_to], context.fates)
    client = network.clients[spec.name] = make_client(spec, context, targets[spec.sends_to])
    return OpenLoopClient(context.env, spec.name, arrivals, client)


def closed_loop_clients(scenario: Scenario, context: BuildContext, network: Network, targets: dict) -> None:
    """Each group of closed-loop clients; a group goes among the producers (it holds requests)."""
    for spec in scenario.clients:
        client = network.clients[spec.name] = make_client(spec, context, targets[spec.sends_to])
        think_time = Sampler(spec.think_time.build(), context.rng(spec.name, "think_time"))
        network.producers[spec.name] = ClosedLoopClients(context.env, spec.name, spec.count, think_time, client)


def worker_pool(spec: WorkerPoolSpec, context: BuildContext, brokers: dict) -> WorkerPool:
    """The model of a worker pool spec, each random quantity drawn from its own stream."""

    def sampler(distribution, purpose):
        return Sampler(distribution, context.rng(spec.name, purpose))

    options = WorkerOptions(crashes=context.crashes(spec.crashes, spec.name), shed_expired=spec.shed_expired,
                            slowdown=slowdown(spec))
    if spec.delivery_latency is not None:
        options.delivery_latency = sampler(spec.delivery_latency.build(), "delivery_latency")
    if spec.errors is not None:
        options.error_probability = spec.errors.probability
        options.poison_fraction = spec.errors.poison_fraction
        options.error_draw = sampler(Uniform(0.0, 1.0), "errors")
    service_time = sampler(spec.service_time.build(), "service_time")
    boundary = context.boundary(spec.name, "workers", keep_sojourns=False)
    hop = next_hop(spec, context, brokers)
    return WorkerPool(context.env, spec.name, brokers[spec.consumes], spec.count, service_time, hop, context.fates, boundary,
                      context.recorder.gauge(spec.name, spec.count), context.counter(spec.name), options)


def next_hop(spec: WorkerPoolSpec, context: BuildContext, targets: dict):
    """Where a pool's finished work goes: the next stage (a broker, an outbox, a dual write) or
    :class:`Done`; through the pool's processed-ids table when it is ``idempotent``."""
    hop = targets[spec.sends_to] if spec.sends_to else Done(context.env, context.fates)
    if spec.idempotent:
        hop = IdempotentDone(context.env, context.fates, context.counter(f"{spec.name}:idempotency"), hop)
    return hop


# --- the transactional outbox and the dual write ------------------------------------------------


def database(spec: DatabaseSpec, owner: str, context: BuildContext) -> Database:
    """The database of an outbox or a dual write, named ``OWNER:database``."""
    name = f"{owner}:database"
    return Database(
        context.env,
        name,
        spec.connections,
        context.boundary(name, "database", keep_sojourns=False),
        context.boundary(f"{owner}:connection-wait", "database", keep_sojourns=True),
        context.counter(name),
        context.crashes(spec.crashes, name),
    )


def outbox(spec: OutboxSpec, context: BuildContext, brokers: dict) -> tuple[Outbox, list]:
    """An outbox: its database, its table, the application's transactional write, its relays."""
    name = spec.name
    env, rng = context.env, context.rng
    db = database(spec.database, name, context)
    table = OutboxTable(context.boundary(name, "outbox", keep_sojourns=False))
    box = Outbox(env, name, db, table, Sampler(spec.database.commit_time.build(), rng(name, "commit_time")),
                 context.fates, context.counter(name), context.window_start_s, crash_probability=spec.crash_probability,
                 crash_draw=Sampler(Uniform(0.0, 1.0), rng(name, "crash_in_transaction")),
                 crashes=context.crashes(spec.crashes, name))
    stats = RelayStats(context.boundary(f"{name}:relay", "relay", keep_sojourns=False), context.counter(f"{name}:relay"),
                       context.window_start_s)
    target = brokers[spec.publishes_to]
    relay = spec.relay
    if relay.kind == "cdc":
        component = f"{name}:relay"
        cdc = CdcRelay(env, component, table, db, target, stats, Sampler(relay.lag.build(), rng(component, "lag")),
                       offset_flush_interval_s=relay.offset_flush_interval, retry_interval_s=relay.retry_interval,
                       phase_s=Sampler(Uniform(0.0, relay.offset_flush_interval), rng(component, "phase"))(),
                       crashes=context.crashes(relay.crashes, component))
        box.listeners.append(cdc.on_commit)
        return box, [cdc]
    relays = []
    for i in range(relay.relays):
        component = f"{name}:relay-{i}"

        def sampler(distribution, purpose):
            return Sampler(distribution, rng(component, purpose))

        options = {}
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
            crashes=context.crashes(relay.crashes, component),
            **options,
        ))
    return box, relays


def dual_write(spec: DualWriteSpec, context: BuildContext, brokers: dict) -> DualWrite:
    """An application writing its database and the broker in two steps."""
    name = spec.name

    def sampler(distribution, purpose):
        return Sampler(distribution, context.rng(name, purpose))

    db = database(spec.database, name, context)
    options = DualWriteOptions(
        commit_time=sampler(spec.database.commit_time.build(), "commit_time"),
        publish_time=sampler(spec.publish_time.build(), "publish_time"),
        commit_first=spec.order == "commit-then-publish",
        crash_probability=spec.crash_probability,
        crash_draw=sampler(Uniform(0.0, 1.0), "crash_between_writes"),
        ack_lost_draw=sampler(Uniform(0.0, 1.0), "publish_timeouts"),
        publish_timeout_s=spec.publish_timeout,
        publish_timeout_probability=spec.publish_timeout_probability,
        publish_retries=spec.publish_retries,
        crashes=context.crashes(spec.crashes, name),
        window_start_s=context.window_start_s,
    )
    return DualWrite(context.env, name, db, brokers[spec.publishes_to], context.fates,
                     context.boundary(name, "application", keep_sojourns=False), context.counter(name), options)
