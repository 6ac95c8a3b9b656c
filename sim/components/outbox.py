"""``outbox:`` the transactional outbox: a business row and its event committed together, and
relays (polling publishers or log tailing) that publish the events."""

from __future__ import annotations

import math
from typing import Annotated, Iterable, Literal, Optional, Union

from pydantic import BeforeValidator, Field

from ..fields import Crashes, DurationOrDistribution, Name, PositiveDuration, Strict
from .base import Finding, Kind, Refers
from .database import DatabaseSpec

BROKER = Refers(("brokers",))


class CrashBeforeMarkSpec(Strict):
    """The relay dies after publishing a batch and before marking it sent, with ``probability``
    per batch, and is down for ``restart_time``."""

    probability: Annotated[float, Field(ge=0, lt=1)]
    restart_time: DurationOrDistribution


class PollingRelaySpec(Strict):
    """A polling publisher: every ``poll_interval`` a query for at most ``batch_size`` unsent rows
    (``query_time``), a publication per row (``publish_time``), one mark-as-sent write
    (``mark_time``), in one transaction. ``relays`` instances; ``skip_locked`` (FOR UPDATE SKIP
    LOCKED) shares the rows out, without it relays can publish the same rows."""

    kind: Literal["polling"] = "polling"
    poll_interval: PositiveDuration = 0.5
    batch_size: Annotated[int, Field(ge=1, strict=True)] = 100
    query_time: DurationOrDistribution = Field(default="2ms", validate_default=True)
    publish_time: DurationOrDistribution = Field(default="1ms", validate_default=True)
    mark_time: DurationOrDistribution = Field(default="2ms", validate_default=True)
    relays: Annotated[int, Field(ge=1, strict=True)] = 1
    skip_locked: bool = True
    crashes: Optional[Crashes] = None
    crash_before_mark: Optional[CrashBeforeMarkSpec] = None

    def cycle_s(self) -> float:
        """Mean length of a poll with a full batch."""
        return self.query_time.build().mean + self.batch_size * self.publish_time.build().mean + self.mark_time.build().mean

    def capacity_per_s(self) -> float:
        """Rows per second the relays can publish at most (polls start at a fixed rate, or back
        to back when a full batch takes longer than the interval)."""
        return self.relays * self.batch_size / max(self.poll_interval, self.cycle_s())


class CdcRelaySpec(Strict):
    """Log tailing (CDC, as Debezium does): each committed event is published ``lag`` after its
    commit, in commit order; the connector records its offset every ``offset_flush_interval``
    and, after a crash, publishes again what it had published since."""

    kind: Literal["cdc"]
    lag: DurationOrDistribution
    offset_flush_interval: PositiveDuration = 60.0
    retry_interval: PositiveDuration = 0.1
    crashes: Optional[Crashes] = None

    def capacity_per_s(self) -> float:
        return math.inf


def _polling_by_default(value):
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "polling", **value}
    return value


RelaySpec = Annotated[Union[PollingRelaySpec, CdcRelaySpec], Field(discriminator="kind"), BeforeValidator(_polling_by_default)]


class OutboxSpec(Strict):
    """The transactional outbox: a request's business row and event row commit in one
    transaction of ``database``; a ``relay`` publishes the events to ``publishes_to``. The
    application can die as a dual write's does: ``crash_probability`` per request (inside the
    transaction, which rolls back) and ``crashes`` of the process."""

    name: Name
    database: DatabaseSpec
    relay: RelaySpec = Field(default_factory=PollingRelaySpec)
    publishes_to: Annotated[Name, BROKER]
    crash_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    crashes: Optional[Crashes] = None


def unfed(spec, scenario) -> Iterable[Finding]:
    """An outbox or a dual write that nothing sends requests to."""
    senders = {p.sends_to for p in scenario.producers} | {p.sends_to for p in scenario.workers}
    if spec.name not in senders:
        yield Finding(None, f"nothing sends to it: give a producer (or a worker pool) 'sends_to: {spec.name}'")


class Outboxes(Kind):
    section = "outbox"
    noun = "an outbox"
    Spec = OutboxSpec

    def problems(self, spec, scenario) -> Iterable[Finding]:
        return unfed(spec, scenario)
