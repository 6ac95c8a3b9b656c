"""The network a scenario wires: who sends to whom, in what order, and at what offered load.

The flow analysis propagates each producer's long-run mean rate along ``sends_to`` and
``consumes``: a broker's offered load is what its senders deliver, a stage passes on what it is
offered (or at most its service capacity when the broker in front of it is bounded and sheds the
rest). This is what the stability check and ``asyncsim check`` report.
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
    """Messages per second a worker pool can finish in the long run: count / mean service time,
    times the fraction of time a worker is up when it crashes and restarts."""
    capacity = pool.count / pool.service_time.build().mean
    if pool.crashes is not None:
        up = pool.crashes.time_to_failure_distribution().mean
        capacity *= up / (up + pool.crashes.restart_time.build().mean)
    return capacity


def broker_order(scenario: Scenario) -> list[str]:
    """Broker names upstream first; raises :class:`PipelineLoop` if stages form a cycle."""
    downstream: dict[str, set[str]] = {b.name: set() for b in scenario.brokers}
    for pool in scenario.workers:
        if pool.sends_to in downstream and pool.consumes in downstream:
            downstream[pool.consumes].add(pool.sends_to)
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
        if producer.sends_to in inflow:
            inflow[producer.sends_to] += producer.arrivals.mean_rate()
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
            if pool.sends_to in inflow and capacity > 0:
                share = pool_capacity(pool) / capacity
                inflow[pool.sends_to] += flow.departure_rate_per_s * share
    return flows
