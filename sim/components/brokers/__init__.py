"""``brokers:`` queues of every kind, one module each (fifo, redis, sqs, rabbitmq).

A broker kind's module holds its scenario spec (``Spec``, a pydantic model tagged by ``kind``)
and its builder (``build(spec, context) -> broker``, a model that follows
:class:`models.broker.Broker`); adding a broker kind is adding a module here and its name in
:data:`sim.components.registry.BROKER_KINDS`. A kind's module is imported only when a scenario
has a broker of that kind (:func:`broker_spec`).

Each broker kind builds its model; what is measured is the same for all: the waiting time and
number waiting (its main boundary), the mean of each other boundary it keeps (messages in flight,
unacknowledged…), its event counts, and the metrics its model reports itself. Its cost is a
fixed ``price_per_hour`` (a server: RabbitMQ, Redis, fifo) and what its model bills (``cost_usd``: SQS
requests).
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Union

from pydantic import Field

from ...fields import HOUR_S
from ...recorder import Boundary
from ..base import Finding, Kind
from ..registry import BROKER_KINDS, broker_module

BROKER_EVENTS = ("deliveries", "redeliveries", "refused", "lost", "dead_lettered")


def broker_spec(kinds: frozenset[str]) -> Any:
    """The model of one broker of the given ``kinds`` (a scenario's :class:`Brokers` have no
    single ``Spec``): the union of the kinds' specs, tagged by ``kind``, in registry order."""
    return Annotated[Union[tuple(broker_module(kind).Spec for kind in BROKER_KINDS if kind in kinds)], Field(discriminator="kind")]


def dead_letter_queues(scenario) -> dict[str, str]:
    """Brokers that are another's dead-letter queue: {dead-letter queue: the broker it serves}."""
    return {target: broker.name for broker in scenario.brokers for target in broker.dead_letter_targets()}


class Brokers(Kind):
    section = "brokers"
    noun = "a broker"
    build_order = 0

    def problems(self, spec, scenario) -> Iterable[Finding]:
        consumed = {p.consumes for p in scenario.workers} | {q for app in scenario.task_queues for g in app.workers for q in g.queues}
        served = dead_letter_queues(scenario).get(spec.name)
        if served is not None:
            if spec.name in consumed:
                yield Finding(None, f"is the dead-letter queue of '{served}': dead-lettered messages stay there for inspection, so no worker pool may consume it")
        elif spec.name not in consumed:
            yield Finding(None, "no worker pool consumes this broker: its messages would never leave")

    def build(self, spec, context):
        broker = broker_module(spec.kind).build(spec, context)
        context.network.targets[spec.name] = broker
        return broker

    def models(self, spec, broker) -> Iterable[tuple[type, str]]:
        """The broker's model, and its spec (whose docstring says what the scenario's keys mean)."""
        yield type(broker), f"broker {spec.name}"
        yield type(spec), f"broker {spec.name} (scenario keys)"

    def measure(self, spec, broker, context, measures) -> None:
        name = spec.name
        prefix = f"brokers.{name}"
        waiting = context.recorder.boundaries[name]
        measures.distribution(f"{prefix}.wait_s", waiting.sojourns)
        measures.metrics[f"{prefix}.length_mean"] = waiting.area / measures.window_s
        measures.series[f"{prefix}.length"] = measures.level(waiting)
        for boundary in context.owned[name]:
            if isinstance(boundary, Boundary) and boundary.kind == "broker" and boundary is not waiting:
                suffix = boundary.name.split(":", 1)[1]
                measures.metrics[f"{prefix}.{suffix}_mean"] = boundary.area / measures.window_s
                measures.series[f"{prefix}.{suffix}"] = measures.level(boundary)
        measures.counts(prefix, context.recorder.counters[name], BROKER_EVENTS)
        for key, value in broker.metrics().items():
            measures.metrics[f"{prefix}.{key}"] = float(value)

    def cost_usd(self, spec, broker, context, window_s: float) -> float | None:
        """The broker's price per hour over the window, plus what its model billed (SQS requests)."""
        parts = [broker.metrics().get("cost_usd")]
        hourly = getattr(spec, "price_per_hour", None)
        if hourly is not None:
            parts.append(hourly * window_s / HOUR_S)
        priced = [p for p in parts if p is not None]
        return sum(priced) if priced else None
