"""``kind: fifo``: a plain first-in first-out queue."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from models.fifo import FifoBroker

from ...fields import Name, Price, Strict


class FifoSpec(Strict):
    """A plain FIFO queue. ``capacity`` bounds the messages waiting (not those in service): a
    message that finds it full is rejected; 0 means refused unless a worker is free.

    ``price_per_hour`` (⚑ no default): what the queue's server costs an hour, as for RabbitMQ and
    Redis — a fixed price per broker-hour, counted for the whole window in the run's ``cost``,
    whatever the load."""

    name: Name
    kind: Literal["fifo"]
    capacity: Optional[Annotated[int, Field(ge=0, strict=True)]] = None
    price_per_hour: Optional[Price] = None

    def consumer_capacity_per_s(self, server) -> tuple[float, str]:
        """What ``server`` (a :class:`~sim.components.base.Server`) can take from this queue a
        second, and the per-message overhead that lowers it ("" when none is modelled)."""
        return server.capacity_per_s, ""

    def bounds_queue(self) -> bool:
        return self.capacity is not None

    def dead_letter_targets(self) -> list[str]:
        return []


def build(spec: FifoSpec, context) -> FifoBroker:
    return FifoBroker(context.env, spec.name, context.boundary(spec.name), context.counter(spec.name), context.fates,
                      capacity=spec.capacity)


Spec = FifoSpec
