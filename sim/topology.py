"""The network a scenario wires: who sends to whom, in what order, and at what offered load.

Each kind of part says what it does to the flow of messages (:meth:`~sim.components.base.Kind.flow`):
a source sends at a long-run mean rate, a server takes from a queue at most its capacity and
passes on what it finishes, a relay (an outbox, a dual write) passes what is sent to it on to a
broker. The flow analysis propagates the sources' rates along these: a broker's offered load is
what its senders deliver, a stage passes on what it is offered (or at most its service capacity:
its workers' time per message, delivery latency included, plus what the broker makes a worker or a
prefetch slot wait for per message — an ack latency, SQS receive and delete calls — see each
broker spec's ``consumer_capacity_per_s``).
This is what the stability check and ``asyncsim check`` report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .components.base import Load, Relay, Server, Source
from .components.registry import parts_in
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
    overheads: tuple[str, ...] = ()

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


def flows_of(scenario: Scenario, role: type) -> list:
    """What the parts of ``scenario`` that play ``role`` (:class:`Source`, :class:`Server` or
    :class:`Relay`) do, in file order."""
    found = []
    for _, kind, spec in parts_in(scenario):
        found.extend(flow for flow in kind.flows(spec) if isinstance(flow, role))
    return found


def sources(scenario: Scenario) -> list[Source]:
    return flows_of(scenario, Source)


def servers(scenario: Scenario) -> list[Server]:
    return flows_of(scenario, Server)


def relayed_to(scenario: Scenario) -> dict[str, str]:
    """Where what is sent to a relay (an outbox, a dual write) goes on to: {relay: its broker}.
    What is sent to any other name reaches that name itself: ``relayed_to(s).get(name, name)``."""
    return {relay.name: relay.publishes_to for relay in flows_of(scenario, Relay)}


def broker_order(scenario: Scenario) -> list[str]:
    """Broker names upstream first; raises :class:`PipelineLoop` if stages form a cycle."""
    downstream: dict[str, set[str]] = {b.name: set() for b in scenario.brokers}
    relays = relayed_to(scenario)
    for server in servers(scenario):
        target = relays.get(server.sends_to, server.sends_to)
        if target in downstream and server.consumes in downstream:
            downstream[server.consumes].add(target)
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


def flows(scenario: Scenario) -> tuple[dict[str, BrokerFlow], dict[str, float]]:
    """(offered load on every broker, upstream first; messages per second sent to every name
    anything sends to: brokers, relays, delay stations, web tiers, and on through a relay)."""
    through = relayed_to(scenario)
    sent: dict[str, float] = {}
    inflow = {b.name: 0.0 for b in scenario.brokers}

    def deliver(name: str | None, rate: float) -> None:
        if name is None:
            return
        sent[name] = sent.get(name, 0.0) + rate
        onward = through.get(name)
        if onward is not None:
            sent[onward] = sent.get(onward, 0.0) + rate
        target = onward or name
        if target in inflow:
            inflow[target] += rate

    for source in sources(scenario):
        deliver(source.sends_to, source.rate_per_s)
    brokers = {b.name: b for b in scenario.brokers}
    all_servers = servers(scenario)
    result: dict[str, BrokerFlow] = {}
    for name in broker_order(scenario):
        consumers = [s for s in all_servers if s.consumes == name]
        taken = [brokers[name].consumer_capacity_per_s(s) for s in consumers]
        capacity = sum(rate for rate, _ in taken)
        flow = BrokerFlow(
            broker=name,
            arrival_rate_per_s=inflow[name],
            service_capacity_per_s=capacity,
            servers=sum(s.servers for s in consumers),
            consumers=tuple(s.name for s in consumers),
            bounded=brokers[name].bounds_queue(),
            overheads=tuple(f"{s.name}: {note}" for s, (_, note) in zip(consumers, taken) if note),
        )
        result[name] = flow
        for server, (rate, _) in zip(consumers, taken):
            if capacity > 0:
                deliver(server.sends_to, flow.departure_rate_per_s * rate / capacity)
    return result, sent


def sent_per_s(scenario: Scenario) -> dict[str, float]:
    """Messages a second sent in the long run to each name (see :func:`flows`)."""
    return flows(scenario)[1]


def broker_flows(scenario: Scenario) -> dict[str, BrokerFlow]:
    """Offered load on every broker, in upstream-first order."""
    return flows(scenario)[0]


def part_loads(scenario: Scenario) -> list[tuple[str, Any, Load]]:
    """(section, spec, load) of every part that serves without a broker in front (a web tier's
    handlers, a delay station), in file order: its kind's :meth:`~sim.components.base.Kind.load`."""
    sent = sent_per_s(scenario)
    return [(section, spec, load) for section, kind, spec in parts_in(scenario) if (load := kind.load(spec, scenario, sent)) is not None]
