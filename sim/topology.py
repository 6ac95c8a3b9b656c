"""The network a scenario wires: who sends to whom, in what order, and at what offered load.

The flow analysis propagates each producer's long-run mean rate along ``sends_to`` and
``consumes``: a broker's offered load is what its senders deliver, a stage passes on what it is
offered (or at most its service capacity when the broker in front of it is bounded and sheds the
rest). This is what the stability check and ``asyncsim check`` report.

Outboxes and dual writes sit between a sender and a broker: what is sent to one reaches the
broker it ``publishes_to`` (every request is counted, failures aside), and its database and
relay have capacities of their own (:func:`writer_flows`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import Scenario


class PipelineLoop(ValueError):
    """Worker pools whose ``sends_to`` lead messages back to a broker they came through."""

    def __init__(self, brokers: list[str]):
        self.brokers = brokers
        super().__init__("messages would go round a loop: " + " → ".join(brokers))


@dataclass(frozen=True)
class BrokerFlow:
    """The long-run load on one broker and the pools consuming it."""

    broker: str
    arrival_rate_per_s: float
    service_capacity_per_s: float
    servers: int
    consumers: tuple[str, ...]
    bounded: bool

    @property
    def offered_load(self) -> float:
        """λ / (c μ): above 1 a queue with no bound grows without limit."""
        if self.arrival_rate_per_s == 0:
            return 0.0
        if self.service_capacity_per_s == 0:
            return float("inf")
        return self.arrival_rate_per_s / self.service_capacity_per_s

    @property
    def departure_rate_per_s(self) -> float:
        return min(self.arrival_rate_per_s, self.service_capacity_per_s)


def pool_capacity(pool) -> float:
    """Messages per second a worker pool can finish in the long run: count (an autoscaled pool's
    max) / mean service time, times the fraction of time a worker is up when it crashes and restarts."""
    capacity = getattr(pool, "max_count", pool.count) / pool.service_time.build().mean
    if pool.crashes is not None:
        up = pool.crashes.time_to_failure_distribution().mean
        capacity *= up / (up + pool.crashes.restart_time.build().mean)
    return capacity


def writers(scenario: Scenario) -> dict:
    """Outboxes and dual writes by name: each takes requests and publishes to a broker."""
    return {w.name: w for w in (*scenario.outbox, *scenario.dual_write)}


def delivers_to(scenario: Scenario, name: str | None) -> str | None:
    """The broker that what is sent to ``name`` reaches: ``name`` itself, or the broker an
    outbox or a dual write publishes to."""
    writer = writers(scenario).get(name)
    return writer.publishes_to if writer is not None else name


@dataclass(frozen=True)
class WriterFlow:
    """The long-run load on an outbox's or a dual write's database and relay."""

    name: str
    section: str
    arrival_rate_per_s: float
    database_load: float
    relay_capacity_per_s: float

    @property
    def relay_load(self) -> float:
        return self.arrival_rate_per_s / self.relay_capacity_per_s


def writer_flows(scenario: Scenario) -> dict[str, WriterFlow]:
    """Requests per second on each outbox and dual write, the busy fraction of its connection
    pool (requests and relays, counting crash downtime against it) and its relay's capacity."""
    found = writers(scenario)
    inflow = {name: 0.0 for name in found}
    for producer in scenario.producers:
        if producer.sends_to in inflow:
            inflow[producer.sends_to] += producer.arrivals.mean_rate()
    flows = broker_flows(scenario)
    for name, flow in flows.items():
        pools = [p for p in scenario.workers if p.consumes == name]
        capacity = sum(pool_capacity(p) for p in pools)
        for pool in pools:
            if pool.sends_to in inflow and capacity > 0:
                inflow[pool.sends_to] += flow.departure_rate_per_s * pool_capacity(pool) / capacity
    result = {}
    for name, writer in found.items():
        rate = inflow[name]
        database = writer.database
        busy_s = rate * database.commit_time.build().mean
        relay = getattr(writer, "relay", None)
        relay_capacity = float("inf")
        if relay is not None and relay.kind == "polling":
            relay_capacity = relay.capacity_per_s()
            polls_per_s = relay.relays / max(relay.poll_interval, relay.cycle_s())
            busy_s += polls_per_s * (relay.query_time.build().mean + relay.mark_time.build().mean) + rate * relay.publish_time.build().mean
        up = 1.0
        if database.crashes is not None:
            mean_up = database.crashes.time_to_failure_distribution().mean
            up = mean_up / (mean_up + database.crashes.restart_time.build().mean)
        section = "outbox" if writer in scenario.outbox else "dual_write"
        result[name] = WriterFlow(name, section, rate, busy_s / (database.connections * up), relay_capacity)
    return result


def broker_order(scenario: Scenario) -> list[str]:
    """Broker names upstream first; raises :class:`PipelineLoop` if stages form a cycle."""
    downstream: dict[str, set[str]] = {b.name: set() for b in scenario.brokers}
    for pool in scenario.workers:
        target = delivers_to(scenario, pool.sends_to)
        if target in downstream and pool.consumes in downstream:
            downstream[pool.consumes].add(target)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise PipelineLoop(trail[trail.index(name):] + [name])
        state[name] = 1
        for nxt in sorted(downstream[name]):
            visit(nxt, trail + [name])
        state[name] = 2
        order.append(name)

    for name in downstream:
        visit(name, [])
    return order[::-1]


def broker_flows(scenario: Scenario) -> dict[str, BrokerFlow]:
    """Offered load on every broker, in upstream-first order."""
    inflow = {b.name: 0.0 for b in scenario.brokers}
    for producer in scenario.producers:
        target = delivers_to(scenario, producer.sends_to)
        if target in inflow:
            inflow[target] += producer.arrivals.mean_rate()
    brokers = {b.name: b for b in scenario.brokers}
    flows: dict[str, BrokerFlow] = {}
    for name in broker_order(scenario):
        pools = [p for p in scenario.workers if p.consumes == name]
        capacity = sum(pool_capacity(p) for p in pools)
        flow = BrokerFlow(
            broker=name,
            arrival_rate_per_s=inflow[name],
            service_capacity_per_s=capacity,
            servers=sum(p.count for p in pools),
            consumers=tuple(p.name for p in pools),
            bounded=brokers[name].bounds_queue(),
        )
        flows[name] = flow
        for pool in pools:
            target = delivers_to(scenario, pool.sends_to)
            if target in inflow and capacity > 0:
                share = pool_capacity(pool) / capacity
                inflow[target] += flow.departure_rate_per_s * share
    return flows
