"""``outbox:`` the transactional outbox: a business row and its event committed together, and
relays (polling publishers or log tailing) that publish the events."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Iterable, Literal, Optional, Union

from pydantic import BeforeValidator, Field

from models.outbox import Outbox, OutboxTable
from models.relay import CdcRelay, PollingRelay, RelayStats

from ..distributions import Uniform
from ..fields import NOT_A_BOOL, Crashes, DurationOrDistribution, Name, PositiveDuration, Strict
from .base import BROKER, Finding, Kind, Relay
from .database import DatabaseSpec, build_database, database_overload, measure_database

RELAY_EVENTS = ("published", "republished", "refused_publishes", "failed_polls", "failed_marks", "crashes")


class CrashBeforeMarkSpec(Strict):
    """The relay dies after publishing a batch and before marking it sent, with ``probability``
    per batch, and is down for ``restart_time``."""

    probability: Annotated[float, Field(ge=0, lt=1), NOT_A_BOOL]
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
    crash_probability: Annotated[float, Field(ge=0, le=1), NOT_A_BOOL] = 0.0
    crashes: Optional[Crashes] = None


def unfed(spec, scenario) -> Iterable[Finding]:
    """An outbox or a dual write that nothing sends requests to."""
    senders = {p.sends_to for p in scenario.producers} | {p.sends_to for p in scenario.workers}
    if spec.name not in senders:
        yield Finding(None, f"nothing sends to it: give a producer (or a worker pool) 'sends_to: {spec.name}'")


@dataclass
class OutboxPart:
    """An outbox as built: the application's transactional writes (``box``: its database and
    table) and the relays that publish the table's rows."""

    box: Outbox
    relays: list

    def held_ids(self):
        yield from self.box.held_ids()
        for relay in self.relays:
            yield from relay.held_ids()


def relays(spec: OutboxSpec, box: Outbox, target, stats: RelayStats, context) -> list:
    """The relays of an outbox: one CDC connector (``NAME:relay``), or polling relays
    (``NAME:relay-0`` …), each drawing from its own streams."""
    relay, name, env = spec.relay, spec.name, context.env
    if relay.kind == "cdc":
        component = f"{name}:relay"
        cdc = CdcRelay(env, component, box.table, box.database, target, stats, context.sampler(relay.lag.build(), "lag", component),
                       offset_flush_interval_s=relay.offset_flush_interval, retry_interval_s=relay.retry_interval,
                       phase_s=context.sampler(Uniform(0.0, relay.offset_flush_interval), "phase", component)(),
                       crashes=context.crashes(relay.crashes, component))
        box.listeners.append(cdc.on_commit)
        return [cdc]
    built = []
    for i in range(relay.relays):
        component = f"{name}:relay-{i}"
        options = {}
        if relay.crash_before_mark is not None:
            options["crash_before_mark"] = relay.crash_before_mark.probability
            options["crash_draw"] = context.sampler(Uniform(0.0, 1.0), "crash_before_mark", component)
            options["crash_before_mark_restart"] = context.sampler(relay.crash_before_mark.restart_time.build(), "crash_before_mark_restart", component)
        built.append(PollingRelay(
            env, component, box.table, box.database, target, stats,
            poll_interval_s=relay.poll_interval,
            batch_size=relay.batch_size,
            query_time=context.sampler(relay.query_time.build(), "query_time", component),
            publish_time=context.sampler(relay.publish_time.build(), "publish_time", component),
            mark_time=context.sampler(relay.mark_time.build(), "mark_time", component),
            skip_locked=relay.skip_locked,
            phase_s=context.sampler(Uniform(0.0, relay.poll_interval), "phase", component)(),
            crashes=context.crashes(relay.crashes, component),
            **options,
        ))
    return built


class Outboxes(Kind):
    section = "outbox"
    noun = "an outbox"
    Spec = OutboxSpec
    build_order = 1

    def flow(self, spec: OutboxSpec) -> Relay:
        return Relay(spec.name, spec.publishes_to)

    def overload(self, spec: OutboxSpec, inflow_per_s: float) -> Iterable[Finding]:
        yield from database_overload(spec.database, inflow_per_s, spec.relay)
        capacity = spec.relay.capacity_per_s()
        if inflow_per_s / capacity >= 1:
            yield Finding("relay", f"unstable: {inflow_per_s:.4g} events/s committed, but the relays publish at most "
                          f"{capacity:.4g}/s (batch_size × relays per poll interval, or per cycle when a full batch "
                          "takes longer); the outbox backlog would grow without bound. Raise batch_size or relays, or poll more often")

    def build(self, spec: OutboxSpec, context) -> OutboxPart:
        """Its database, its table, the application's transactional write, its relays."""
        name = spec.name
        context.recorder.track_consistency()
        database = build_database(spec.database, name, context)
        table = OutboxTable(context.boundary(name, "outbox", keep_sojourns=False))
        box = Outbox(context.env, name, database, table, context.sampler(spec.database.commit_time.build(), "commit_time"),
                     context.fates, context.counter(name), context.window_start_s, crash_probability=spec.crash_probability,
                     crash_draw=context.sampler(Uniform(0.0, 1.0), "crash_in_transaction"), crashes=context.crashes(spec.crashes))
        stats = RelayStats(context.boundary(f"{name}:relay", "relay", keep_sojourns=False), context.counter(f"{name}:relay"),
                           context.window_start_s)
        context.network.targets[name] = box
        return OutboxPart(box, relays(spec, box, context.target(spec.publishes_to), stats, context))

    def measure(self, spec: OutboxSpec, part: OutboxPart, context, measures) -> None:
        """The table (rows pending and for how long), the relays' work, the database."""
        name, box, window = spec.name, part.box, measures.window_s
        prefix = f"outbox.{name}"
        table = box.table.boundary
        relay = context.recorder.boundaries[f"{name}:relay"]
        relay_counts = context.recorder.counters[f"{name}:relay"]
        own = context.recorder.counters[name]
        measures.distribution(f"{prefix}.request_latency_s", box.request_latencies_s)
        measures.distribution(f"{prefix}.publish_delay_s", part.relays[0].stats.publish_delays_s if part.relays else ())
        measures.metrics[f"{prefix}.pending_mean"] = table.area / window
        measures.metrics[f"{prefix}.pending_time_s.mean"] = table.sojourn_sum / table.completed if table.completed else float("nan")
        measures.metrics[f"{prefix}.committed_per_s"] = table.entries / window
        measures.counts(prefix, own, ("rolled_back", "refused", "died_in_transaction", "crashes"))
        measures.metrics[f"{prefix}.relay.in_relay_mean"] = relay.area / window
        for event in ("polls", "empty_polls", "marks"):
            measures.metrics[f"{prefix}.relay.{event}_per_s"] = relay_counts[event] / window
        measures.metrics[f"{prefix}.relay.statements_per_s"] = (relay_counts["polls"] + relay_counts["marks"]) / window
        measures.counts(f"{prefix}.relay", relay_counts, RELAY_EVENTS)
        measure_database(prefix, box.database, measures)
        measures.series[f"{prefix}.pending"] = measures.level(table)
        measures.series[f"{prefix}.in_relay"] = measures.level(relay)

    def problems(self, spec, scenario) -> Iterable[Finding]:
        return unfed(spec, scenario)
