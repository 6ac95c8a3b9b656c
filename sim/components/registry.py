"""The registry of the kinds of parts a scenario is made of, in the order of a scenario file;
the scenario model (:mod:`sim.schema`) and the loader's checks (:mod:`sim.loading`) are
assembled from it. Adding a kind of part is adding its module and a line here.

The registry names the kinds without importing them: a kind's module is imported the first time
a scenario has parts of that kind (:func:`kinds_in`, :func:`kinds_used`), or when everything is
asked for (the JSON schema, an error message that lists every kind). So a scenario of producers,
a fifo broker and workers never imports the Celery apps, the web tiers or RabbitMQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from types import ModuleType
from typing import Any, Iterator

from .base import Kind

SECTIONS: dict[str, str] = {
    "producers": "producers:Producers",
    "brokers": "brokers:Brokers",
    "workers": "workers:Workers",
    "clients": "clients:Clients",
    "admission": "admission:Admission",
    "outbox": "outbox:Outboxes",
    "dual_write": "dual_write:DualWrites",
    "delays": "delays:Delays",
    "web": "web:WebTiers",
    "task_queues": "task_queues:TaskQueues",
}
"""Each section of a scenario file, in the file's order: ``module:class`` of its kind in
``sim/components/``."""

BROKER_KINDS: tuple[str, ...] = ("fifo", "redis", "sqs", "rabbitmq")
"""The kinds of broker (a broker's ``kind:``), each the name of its module in
``sim/components/brokers/``, in the order error messages list them."""


@cache
def kind_of(section: str) -> Kind:
    """The kind of the parts of ``section`` (its module imported on the first call)."""
    module, name = SECTIONS[section].split(":")
    return getattr(import_module(f"{__package__}.{module}"), name)()


def broker_module(kind: str) -> ModuleType:
    """The module of a kind of broker: its ``Spec`` and its ``build``."""
    return import_module(f"{__package__}.brokers.{kind}")


def kinds_in(scenario: Any) -> list[tuple[str, Kind]]:
    """(section, kind) for each section in which ``scenario`` has parts, in a file's order."""
    return [(section, kind_of(section)) for section in SECTIONS if getattr(scenario, section)]


def parts_in(scenario: Any) -> Iterator[tuple[str, Kind, Any]]:
    """(section, kind, spec) for each part of ``scenario``, in a file's order."""
    for section, kind in kinds_in(scenario):
        for spec in getattr(scenario, section):
            yield section, kind, spec


@dataclass(frozen=True)
class KindsUsed:
    """What a scenario's model is made of (:func:`sim.schema.scenario_model`): the sections its
    file has and the kinds of its brokers."""

    sections: frozenset[str]
    broker_kinds: frozenset[str]


EVERY = KindsUsed(frozenset(SECTIONS), frozenset(BROKER_KINDS))


def kinds_used(data: Any) -> KindsUsed:
    """The kinds scenario ``data`` (a file's mapping) uses: the sections it gives other than as
    an empty list; the kinds its brokers name, or every kind when one names none that exists
    (its error lists them all)."""
    if not isinstance(data, dict):
        return EVERY
    brokers = data.get("brokers") or []
    named = [item.get("kind") if isinstance(item, dict) else None for item in brokers] if isinstance(brokers, list) else [None]
    broker_kinds = frozenset(kind for kind in BROKER_KINDS if kind in named)
    if any(name not in BROKER_KINDS for name in named):
        broker_kinds = EVERY.broker_kinds
    return KindsUsed(frozenset(section for section in SECTIONS if section in data and data[section] != []), broker_kinds)
