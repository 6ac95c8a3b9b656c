"""``brokers:`` queues of every kind (:mod:`sim.kinds`: fifo, redis, sqs, rabbitmq)."""

from __future__ import annotations

from typing import Iterable

from ..kinds import BrokerSpec
from .base import Finding, Kind


def dead_letter_queues(scenario) -> dict[str, str]:
    """Brokers that are another's dead-letter queue: {dead-letter queue: the broker it serves}."""
    return {target: broker.name for broker in scenario.brokers for target in broker.dead_letter_targets()}


class Brokers(Kind):
    section = "brokers"
    noun = "a broker"
    Spec = BrokerSpec

    def problems(self, spec, scenario) -> Iterable[Finding]:
        consumed = {p.consumes for p in scenario.workers}
        served = dead_letter_queues(scenario).get(spec.name)
        if served is not None:
            if spec.name in consumed:
                yield Finding(None, f"is the dead-letter queue of '{served}': dead-lettered messages stay there for inspection, so no worker pool may consume it")
        elif spec.name not in consumed:
            yield Finding(None, "no worker pool consumes this broker: its messages would never leave")
